"""Run the pyinfra CLI with a command log (used by the bench package, `python -m bench`).

    python bench/pyinfra_timed.py LOGFILE [pyinfra arguments...]

Behaves exactly like ``pyinfra [arguments...]`` and appends one JSON object per line
to LOGFILE:

* ``{"k": "cmd"|"put"|"get", "host", "t", "d", "stage", "op", "fact"}`` for every
  command, upload and download pyinfra makes on a host (``Host.run_shell_command``,
  ``Host.put_file``, ``Host.get_file``: every connector goes through these), with the
  start time ``t`` and duration ``d`` in seconds, the stage (``prepare`` or
  ``execute``), the operation being executed (None while preparing) and the fact it
  was loading (None for an operation's own commands);
* ``{"k": "op", "op", "t", "d"}`` for every operation, timed over all hosts (pyinfra
  runs operation N on every host before operation N+1 starts);
* ``{"k": "stage", "stage", "t"}`` when the run enters a stage.

Counting here, at pyinfra's host API, is independent of the connector (docker exec,
SSH) and of pyinfra's log format. Only the log is added: no behaviour changes.
"""

from __future__ import annotations

import contextvars
import json
import sys
import time

from pyinfra.api import facts, host, operations, state

_fact: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_fact", default=None)
_log = None


def _write(record: dict) -> None:
    _log.write(json.dumps(record) + "\n")
    _log.flush()


def _op_name(st, op_hash) -> str:
    return ", ".join(st.get_op_meta(op_hash).names) or op_hash


def _wrap_host_call(kind: str, method):
    def wrapper(self, *args, **kwargs):
        start = time.time()
        try:
            return method(self, *args, **kwargs)
        finally:
            op_hash = self.nested_executing_op_hash or self.executing_op_hash
            _write(
                {
                    "k": kind,
                    "host": self.name,
                    "t": start,
                    "d": time.time() - start,
                    "stage": "execute" if self.state.is_executing else "prepare",
                    "op": _op_name(self.state, op_hash) if op_hash else None,
                    "fact": _fact.get(),
                }
            )

    return wrapper


def _wrap_get_fact(method):
    def wrapper(st, hst, cls, *args, **kwargs):
        token = _fact.set(getattr(cls, "__name__", str(cls)))
        try:
            return method(st, hst, cls, *args, **kwargs)
        finally:
            _fact.reset(token)

    return wrapper


def _wrap_single_op(method):
    def wrapper(st, op_hash):
        start = time.time()
        try:
            return method(st, op_hash)
        finally:
            _write({"k": "op", "op": _op_name(st, op_hash), "t": start, "d": time.time() - start})

    return wrapper


def _wrap_stage(method):
    def wrapper(self, stage):
        _write({"k": "stage", "stage": getattr(stage, "name", str(stage)), "t": time.time()})
        return method(self, stage)

    return wrapper


def install(log_path: str) -> None:
    """Patch pyinfra's host API, fact loader and operation loop to log into ``log_path``."""
    global _log
    _log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
    host.Host.run_shell_command = _wrap_host_call("cmd", host.Host.run_shell_command)
    host.Host.put_file = _wrap_host_call("put", host.Host.put_file)
    host.Host.get_file = _wrap_host_call("get", host.Host.get_file)
    facts._get_fact = _wrap_get_fact(facts._get_fact)
    operations._run_single_op = _wrap_single_op(operations._run_single_op)
    state.State.set_stage = _wrap_stage(state.State.set_stage)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    install(sys.argv.pop(1))
    _write({"k": "stage", "stage": "start", "t": time.time()})
    from pyinfra_cli.main import main as pyinfra_main

    sys.argv[0] = "pyinfra"
    return pyinfra_main()


if __name__ == "__main__":
    sys.exit(main())
