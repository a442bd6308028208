"""What every task module shares: running a callback as an operation, commands on
other hosts, greenlets with pyinfra's context, templates, system accounts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import gevent
import gevent.lock
from pyinfra import inventory, logger, state
from pyinfra.api import Host, StringCommand
from pyinfra.api.arguments import pop_global_arguments
from pyinfra.api.exceptions import ConnectError, NestedOperationError, PyinfraError
from pyinfra.api.operation import OperationMeta
from pyinfra.api.util import get_template
from pyinfra.context import ctx_config, ctx_host
from pyinfra.operations import python

from facts.snapshot import Snapshot
from tasks.ops import Op

PROJECT_ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def node_name(h: Host) -> str:
    """Plain node name: host data `node_name`, else the inventory name (@docker/x -> x)."""
    return h.data.get("node_name") or h.name.rsplit("/", 1)[-1]


def call(
    name: str,
    function: Callable[..., object],
    check: Callable[[], bool] | None = None,
    check_now: bool = False,
    **kwargs,
) -> OperationMeta | None:
    """`python.call(name=, function=, _if=check)` where a PyinfraError raised by the
    check or the function fails this host with its message alone. (pyinfra prints a
    traceback for any exception from a callback; a function that takes ``(state, host)``
    may instead return False to fail.)

    With ``check_now`` the check runs now, at prepare time, when everything it reads is
    known before the run: nothing to do means no operation at all (None).

    .. code:: python

        call("Copy the CA material", copy, check=needs_copy)
    """
    problem: list[PyinfraError] = []  # from the check, raised again by the function
    if check and check_now:
        try:
            if not check():
                return None
            check = None  # decided: the operation runs
        except PyinfraError:
            pass  # asked again at execute time, where its error fails the host

    def condition() -> bool:
        try:
            return check() if check else True
        except PyinfraError as e:
            problem.append(e)
            return True

    def run(state, host, *args, **kwargs) -> bool:  # pyinfra passes (state, host) first
        try:
            if problem:
                raise problem[0]
            with ctx_config.use(state.config.copy()), ctx_host.use(host):
                function(*args, **kwargs)
        except NestedOperationError:  # that operation has printed its own error
            host.log_styled("Error in nested operation", fg="red", log_func=logger.error)
            return False
        except PyinfraError as e:
            host.log_styled(f"Error: {e}", fg="red", log_func=logger.error)
            return False
        return True

    return python.call(name=name, function=run, _if=condition, **kwargs)


# pyinfra's global arguments that decide how a command runs on a host (become root with
# sudo, which shell, ...): operations get them from pyinfra; execute-time callbacks pass
# them to `run_shell_command` themselves (see `run_on`).
CONNECTOR_ARGUMENTS = (
    "_sudo",
    "_sudo_user",
    "_use_sudo_login",
    "_sudo_password",
    "_preserve_sudo_env",
    "_su_user",
    "_use_su_login",
    "_preserve_su_env",
    "_su_shell",
    "_su_password",
    "_doas",
    "_doas_user",
    "_dzdo",
    "_dzdo_user",
    "_shell_executable",
)


def connector_arguments(h: Host) -> dict[str, object]:
    """How this run executes commands on ``h`` (`--sudo`, `_sudo` in group_data, ...):
    pyinfra's global arguments from the CLI, the config and ``h``'s data."""
    arguments, _ = pop_global_arguments(state, h, {})
    return {k: arguments[k] for k in CONNECTOR_ARGUMENTS if k in arguments}  # type: ignore[literal-required]


def run_on(h: Host, command: str, what: str, stdin: str | list[str] | None = None) -> str:
    """Run ``command`` on ``h`` (connected now if it is not: a host outside --limit) as
    this run runs commands there, printing nothing; its stdout. A failure raises
    PyinfraError naming the host and ``what``.
    """
    try:
        if not h.connected:
            h.connect(reason=f"for {what}", raise_exceptions=True)
        extra = {"_stdin": stdin} if stdin is not None else {}
        ok, out = h.run_shell_command(
            StringCommand(command), print_output=False, **connector_arguments(h), **extra
        )
    except ConnectError as e:
        raise PyinfraError(f"{what} on {node_name(h)}: cannot reach it ({e})") from None
    except PyinfraError:
        raise
    except Exception as e:  # a connection lost on the way
        raise PyinfraError(f"{what} on {node_name(h)}: cannot reach it ({e})") from None
    if not ok:
        raise PyinfraError(f"{what} failed on {node_name(h)}: {out.stderr.strip()[-400:]}")
    return out.stdout


def hosts_in_run() -> list[str]:
    """The node names of the hosts this run acts on (all, or those of --limit)."""
    return [node_name(h) for h in inventory if h in state.activated_hosts]


def pyinfra_host(name: str) -> Host:
    """The inventory Host of node ``name`` (connected lazily if outside --limit)."""
    for h in inventory:
        if node_name(h) == name:
            return h
    raise PyinfraError(f"no inventory host for node {name}")


def spawn_in_context(function: Callable[..., object], *args) -> gevent.Greenlet:
    """`gevent.spawn` with this run's pyinfra config: pyinfra keeps the config and the
    current host greenlet-local, so a new greenlet starts without them (`on_hosts`
    sets the host)."""
    config = state.config

    def run() -> object:
        with ctx_config.use(config.copy()):
            return function(*args)

    return gevent.spawn(run)


def on_hosts(names: Iterable[str], function: Callable[[str], T]) -> dict[str, T]:
    """``{name: function(name)}`` with each of those hosts as pyinfra's current host, all
    at once, one greenlet each (a loop over other hosts waits for each round trip)."""

    def run(name: str) -> tuple[T | None, Exception | None]:
        # The error is handed back, not raised: gevent prints the traceback of a greenlet
        # that raises, and the operator must see only pyinfra's one-line error.
        try:
            with ctx_host.use(pyinfra_host(name)):
                return function(name), None
        except Exception as e:
            return None, e

    jobs = {name: spawn_in_context(run, name) for name in names}
    gevent.joinall(list(jobs.values()))
    results: dict[str, T] = {}
    for name, job in jobs.items():
        value, error = job.value
        if error is not None:
            raise error
        results[name] = value  # type: ignore[assignment]
    return results


def render(src: str, **data) -> str:
    """Text of template ``src`` (a path in the project) as ``files.template(src=src,
    **data)`` would upload it; pure (the templates read only ``data``)."""
    return get_template(str(PROJECT_ROOT / src)).render(data)


NOLOGIN = "/usr/sbin/nologin"


def account_ops(user: str, home: str, what: str, before: Snapshot | None = None) -> list[Op]:
    """A system group and a no-login system user of the same name (home not created).

    With ``before`` (a Snapshot that read them), what it shows right is left out.
    """
    ops = []
    if not (before and before.has_group(user)):
        ops.append(Op(f"group {user}", f"{what} group {user}", "group",
                      {"group": user, "system": True}))  # fmt: skip
    if not (before and before.has_user(user, group=user, home=home, shell=NOLOGIN)):
        args = {
            "user": user,
            "group": user,
            "system": True,
            "home": home,
            "create_home": False,
            "ensure_home": False,
            "shell": NOLOGIN,
        }
        ops.append(Op(f"user {user}", f"{what} user {user} (no login)", "user", args))
    return ops


def system_account(user: str, home: str, what: str, before: Snapshot | None = None) -> None:
    """`account_ops`, emitted."""
    from tasks.ops import emit

    emit(account_ops(user, home, what, before))
