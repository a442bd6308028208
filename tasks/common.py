"""What every task module shares: the validated plan and this host's place in it."""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path
from typing import TypeVar

import gevent
import gevent.lock
from pyinfra import host, inventory, logger, state
from pyinfra.api import FactBase, Host, StringCommand
from pyinfra.api.arguments import pop_global_arguments
from pyinfra.api.exceptions import ConnectError, NestedOperationError, PyinfraError
from pyinfra.api.operation import OperationMeta
from pyinfra.api.util import get_template
from pyinfra.context import ctx_config, ctx_host, ctx_inventory
from pyinfra.operations import python, server

from etcd_pki.plan import ClusterPlan, HostInput, HostPlan, build_plan
from etcd_pki.requirements import parse_tools, requirement_problems, tools_command
from etcd_pki.settings import ConfigError
from facts.pki import PublicFile
from facts.snapshot import HostSnapshot, Snapshot, Want, parse

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_plans: dict[int, ClusterPlan] = {}


@dataclass
class RunState:
    """What this run has done so far, shared by every host's tasks."""

    minted: bool = False  # one-time tokens were handed out: step-ca issued certificates
    ca_crl: object = None  # the CA's CRL read at execute time (tasks/crl.py: ca_crl_now)


_run_states: dict[int, RunState] = {}


def run_state() -> RunState:
    """This run's `RunState` (one per inventory: tests run several in one process)."""
    return _run_states.setdefault(id(ctx_inventory.get()), RunState())


T = TypeVar("T")


def node_name(h: Host) -> str:
    """Plain node name: host data `node_name`, else the inventory name (@docker/x -> x)."""
    return h.data.get("node_name") or h.name.rsplit("/", 1)[-1]


def get_plan() -> ClusterPlan:
    """The cluster plan for this run, from the whole inventory (not only --limit).

    Built and validated once, before any operation runs; bad input stops the deploy
    with every problem listed.
    """
    key = id(ctx_inventory.get())
    if key not in _plans:
        if state.cwd and Path(state.cwd).resolve() != PROJECT_ROOT:
            raise PyinfraError(
                f"run pyinfra from the project directory {PROJECT_ROOT} (cd there, or add "
                f"--chdir {PROJECT_ROOT}): group_data/ and templates/ are read from there"
            )
        hosts = [HostInput(node_name(h), frozenset(h.groups), h.data.dict()) for h in inventory]
        try:
            _plans[key] = build_plan(hosts)
        except ConfigError as e:
            raise PyinfraError(str(e)) from None
    return _plans[key]


def this_host() -> HostPlan:
    """This host's plan. Also checks, from the host's snapshot, that commands run there as
    root and that it has what its role needs (etcd_pki/requirements.py): one clear error
    up front instead of a failure in the middle."""
    me = get_plan().hosts[node_name(host)]
    problems = requirement_problems(me, parse_tools(snapshot(WHO).outputs.get(WHO_KEY) or []))
    if problems:
        raise PyinfraError(f"host {me.name}: " + "; ".join(problems))
    return me


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

    def run(name: str) -> T:
        with ctx_host.use(pyinfra_host(name)):
            return function(name)

    jobs = {name: spawn_in_context(run, name) for name in names}
    gevent.joinall(list(jobs.values()), raise_error=True)
    return {name: job.value for name, job in jobs.items()}


_roots: dict[tuple[int, str], str] = {}
_roots_lock = gevent.lock.BoundedSemaphore()


def ca_root_pem() -> str:
    """The root certificate (public) read from the active cert-manager, at execute time.

    Cached for the run once it exists: the CA may be created earlier in the same run.
    """
    plan = get_plan()
    key = (id(ctx_inventory.get()), plan.active_ca)
    with _roots_lock:  # every host asks at once: read it once, not once per host
        if key not in _roots:
            path = plan.ca.settings.ca_root
            pem = pyinfra_host(plan.active_ca).get_fact(PublicFile, path=path)
            if not pem:
                raise PyinfraError(
                    f"the CA root {path} is missing on {plan.active_ca}; "
                    "did step-ca init fail there?"
                )
            _roots[key] = pem
    return _roots[key]


WantOf = Callable[[HostPlan], Want]
_readers: list[WantOf] = []
_snapshots: dict[tuple[int, str], Snapshot] = {}


def reads(want_of: WantOf) -> WantOf:
    """Register what a task reads on a host (a function of its plan) so that the first
    `snapshot()` on the host reads it together with every other registered task's.

    .. code:: python

        @reads
        def _reads(me: HostPlan) -> Want:
            return Want.of(stat=[f"{me.settings.ssl_dir}"])
    """
    _readers.append(want_of)
    return want_of


_snapshot_locks: dict[tuple[int, str], gevent.lock.BoundedSemaphore] = {}


def snapshot(want: Want) -> Snapshot:
    """This host's state as it was before the run, for what ``want`` lists.

    The first call on a host (at prepare time, before any operation runs) reads what
    every `reads`-registered task wants in one command; later calls are answered from
    it. pyinfra 3 keeps no fact cache, so without this each task paid a round trip.
    A ``want`` that nobody registered is read on its own.
    """
    key = (id(ctx_inventory.get()), host.name)
    # Another host's task may ask for this host's snapshot (`snapshots_of`): read once.
    with _snapshot_locks.setdefault(key, gevent.lock.BoundedSemaphore()):
        if key not in _snapshots:
            me = get_plan().hosts[node_name(host)]
            union = functools.reduce(operator.or_, (r(me) for r in _readers), want)
            _snapshots[key] = parse(host.get_fact(HostSnapshot, want=union), union)
    if _snapshots[key].want.covers(want):
        return _snapshots[key]
    return parse(host.get_fact(HostSnapshot, want=want), want)


def snapshots_of(wanted: Mapping[str, Want]) -> dict[str, Snapshot]:
    """``{node: want}``: those hosts' snapshots, read at once (and shared with the hosts'
    own tasks: each host's snapshot is read once per run, whoever asks first).

    .. code:: python

        snapshots_of({"etcd-k8s-2": Want.of(contents={"/etc/etcd/ssl/root_ca.crt"})})
    """
    return on_hosts(wanted, lambda name: snapshot(wanted[name]))


# Who runs the commands, the tools there, systemd's version (see `this_host`).
WHO_KEY = "requirements"
WHO = Want.of(commands={(WHO_KEY, tools_command())})
reads(lambda me: WHO)


@reads
def _active_ca_reads(me: HostPlan) -> Want:
    if not me.is_active_ca:
        return Want()
    s = me.settings
    return Want.of(stat={s.ca_json, s.ca_root}, contents={s.ca_root})


def ca_root_before_run() -> str | None:
    """The active CA's root certificate if that CA existed before the run (it then
    stays the same throughout the run: only `step ca init` makes one), else None.

    Lets tasks decide at prepare time what a host needs, so a host with nothing to do
    gets no operation at all.
    """
    plan = get_plan()
    ca_json, root_path = plan.ca.settings.ca_json, plan.ca.settings.ca_root
    try:
        ca = snapshots_of({plan.active_ca: Want.of(stat={ca_json}, contents={root_path})})[
            plan.active_ca
        ]
    except Exception:  # unreachable now: decided at execute time, which reports it
        return None
    root = ca.contents.get(root_path)
    if not (ca.is_file(ca_json) and root):
        return None
    with _roots_lock:
        _roots.setdefault((id(ctx_inventory.get()), plan.active_ca), root)
    return root


def decided_before_run(me: HostPlan) -> bool:
    """Whether a task that reads the CA (trust, issuance) may decide at prepare time on
    ``me``, and leave out its operation when there is nothing to do.

    Not on the active CA: pyinfra orders operations by each host's own sequence, and the
    CA's operation is what keeps every host's after the CA's changes in this run (new
    lifetimes, a restart). Not when the CA is new in this run (its root is unknown).
    """
    return not me.is_active_ca and ca_root_before_run() is not None


def fact_want(cls: type[FactBase], **kwargs: Hashable) -> Want:
    """A `Want` that runs the command of pyinfra fact ``cls`` inside the snapshot."""
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
    # A short, stable section name (the arguments may be long: certificate lists).
    key = f"{cls.__module__}.{cls.__name__}:{sha1(args.encode()).hexdigest()[:12]}"
    return Want.of(commands={(key, cls().command(**kwargs))})


def fact_before_run(cls: type[FactBase], **kwargs: Hashable):
    """`host.get_fact(cls, **kwargs)` as before the run: from the host's snapshot when a
    task registered `fact_want(cls, **kwargs)` (no command of its own), else read now."""
    want = fact_want(cls, **kwargs)
    ((key, _),) = want.commands
    lines = snapshot(want).outputs.get(key)
    return cls().process(lines) if lines else cls().default()


def render(src: str, **data) -> str:
    """Text of template ``src`` for this host, as ``files.template(src=src, **data)``
    would upload it."""
    data.setdefault("host", host)
    data.setdefault("state", state)
    data.setdefault("inventory", state.inventory)
    path = os.path.join(state.cwd, src) if state.cwd else src
    return get_template(path).render(data)


NOLOGIN = "/usr/sbin/nologin"


def system_account(user: str, home: str, what: str, before: Snapshot | None = None) -> None:
    """A system group and a no-login system user of the same name (home not created).

    With ``before`` (a Snapshot that read them), what it shows right is left out.
    """
    if not (before and before.has_group(user)):
        server.group(name=f"{what} group {user}", group=user, system=True)
    if before and before.has_user(user, group=user, home=home, shell=NOLOGIN):
        return
    server.user(
        name=f"{what} user {user} (no login)",
        user=user,
        group=user,
        system=True,
        home=home,
        create_home=False,
        ensure_home=False,
        shell=NOLOGIN,
    )
