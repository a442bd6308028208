"""Operations as data: what a task's decision returns, and how it becomes pyinfra's.

A task reads the host's snapshot (and what else it needs), then calls its decision, a
pure function of those values to a list of `Op`; `emit` turns the list into pyinfra
operations. The decisions are tested without Docker, as pyinfra tests its operations:
state in, operations out (tests/operations/, tests/unit/test_operations.py).

.. code:: python

    emit(decide_renewal(me, snapshot(reads(me))))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from tasks import batch


@dataclass(frozen=True)
class Op:
    """One operation: pyinfra's ``kind`` (see OPERATIONS) with ``args``.

    ``when_changed``: run only when one of these earlier ops (by key) changed something;
    ops not emitted are left out of the condition. ``serial``: one host at a time.
    """

    key: str
    name: str
    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)
    when_changed: tuple[str, ...] = ()
    serial: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "name": self.name, "kind": self.kind}
        out.update({k: v for k, v in self.args.items()})
        if self.when_changed:
            out["when_changed"] = list(self.when_changed)
        if self.serial:
            out["serial"] = True
        return out


def shell(key: str, name: str, command: str, **options: Any) -> Op:
    """An `Op` running one shell ``command`` (`server.shell`)."""
    return Op(key, name, "shell", {"commands": [command]}, **options)


OPERATIONS: Mapping[str, Callable[..., OperationMeta]] = {
    "shell": server.shell,
    "steps": batch.steps,
    "ownership": batch.ownership,
    "units_enabled": batch.units_enabled,
    "service": systemd.service,
    "group": server.group,
    "user": server.user,
    "file": files.file,
    "directory": files.directory,
}


def emit(
    ops: Iterable[Op],
    calls: Mapping[str, Callable[..., object]] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, OperationMeta]:
    """Add each of ``ops`` as a pyinfra operation, in order; by key, what was added.

    An op of kind ``call`` runs ``calls[key]`` at execute time (tasks.common.call).
    ``extra[key]``: arguments known only now (a secret on stdin: ``_stdin``), never
    part of the decision.
    """
    from tasks.common import call  # tasks/common.py imports nothing of this module

    done: dict[str, OperationMeta] = {}
    for op in ops:
        options: dict[str, Any] = dict((extra or {}).get(op.key, {}))
        if op.when_changed:
            metas = [done[k] for k in op.when_changed if k in done]
            if not metas:
                continue  # nothing it depends on runs: nothing can change
            options["_if"] = any_changed(*metas)
        if op.serial:
            options["_serial"] = True
        if op.kind == "call":
            meta = call(op.name, (calls or {})[op.key], **dict(op.args), **options)
        else:
            meta = OPERATIONS[op.kind](name=op.name, **dict(op.args), **options)
        if meta is not None:
            done[op.key] = meta
    return done
