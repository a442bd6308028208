"""The run: what every host's tasks share during one pyinfra run.

One `Run` per inventory (tests run several in one process), created on first use and
dropped with the inventory: the validated plan, each host's snapshot (its state before
the run, read in one command), the CA's root, and what tasks tell each other (tokens
were minted, the CA's CRL, the audit's and status report's findings).
"""

from __future__ import annotations

import functools
import operator
import weakref
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path
from typing import Any

import gevent.lock
from pyinfra import host, inventory, state
from pyinfra.api import FactBase
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory
from pyinfra.context import ctx_inventory

from etcd_pki.commands.rotation import STATE as ROTATION_STATE
from etcd_pki.plan import ClusterPlan, HostInput, HostPlan, build_plan
from etcd_pki.requirements import parse_tools, requirement_problems, tools_command
from etcd_pki.rotation import Rotation
from etcd_pki.rotation import parse_state as parse_rotation
from etcd_pki.settings import ConfigError
from facts.pki import PublicFile
from facts.snapshot import HostSnapshot, Snapshot, Want, parse
from tasks.common import PROJECT_ROOT, node_name, on_hosts, pyinfra_host


@dataclass
class Run:
    """What one run shares across hosts; see `this_run`."""

    plan: ClusterPlan | None = None
    snapshots: dict[str, Snapshot] = field(default_factory=dict)  # by inventory host name
    snapshot_locks: defaultdict[str, gevent.lock.BoundedSemaphore] = field(
        default_factory=lambda: defaultdict(gevent.lock.BoundedSemaphore)
    )
    ca_root: str | None = None  # the active CA's root certificate, once read
    ca_root_lock: gevent.lock.BoundedSemaphore = field(default_factory=gevent.lock.BoundedSemaphore)
    minted: bool = False  # one-time tokens were handed out: step-ca issued certificates
    rotating: bool = False  # rotate_ca.py: the CA changes in this run (decide at execute time)
    certs_current: set[str] = field(default_factory=set)  # hosts whose certificates are right
    roots: dict[str, str] = field(default_factory=dict)  # rotation: "old"/"new" root, as read
    members_checked: str | None = None  # rotation: "" every member healthy, else why not
    ca_intermediate: str | None = None  # the CA's intermediate, once read at execute time
    minter: Any = None  # tasks/certs.py: gathers token requests into one command on the CA
    ca_crl: Any = None  # the CA's CRL read at execute time (tasks/crl.py: ca_crl_now)
    ca_crl_lock: gevent.lock.BoundedSemaphore = field(default_factory=gevent.lock.BoundedSemaphore)
    audit: dict[str, Any] = field(default_factory=dict)  # tasks/audit.py: node -> HostResult
    audit_ca_crl: Any = None  # tasks/audit.py: the CA's CRL as the audit read it
    audit_ca_crl_read: bool = False
    audit_trust: Any = None  # tasks/audit.py: what hosts must trust, as the audit read it
    audit_trust_read: bool = False
    status: dict[str, Any] = field(default_factory=dict)  # tasks/status.py: observations
    exposure: dict[str, dict[str, float]] = field(default_factory=dict)  # tasks/status.py


_runs: weakref.WeakKeyDictionary[Inventory, Run] = weakref.WeakKeyDictionary()


def this_run() -> Run:
    """This run's `Run` (one per inventory)."""
    current = ctx_inventory.get()
    if current not in _runs:
        _runs[current] = Run()
    return _runs[current]


def get_plan() -> ClusterPlan:
    """The cluster plan for this run, from the whole inventory (not only --limit).

    Built and validated once, before any operation runs; bad input stops the deploy
    with every problem listed.
    """
    run = this_run()
    if run.plan is None:
        if state.cwd and Path(state.cwd).resolve() != PROJECT_ROOT:
            raise PyinfraError(
                f"run pyinfra from the project directory {PROJECT_ROOT} (cd there, or add "
                f"--chdir {PROJECT_ROOT}): group_data/ and templates/ are read from there"
            )
        hosts = [HostInput(node_name(h), frozenset(h.groups), h.data.dict()) for h in inventory]
        try:
            run.plan = build_plan(hosts)
        except ConfigError as e:
            raise PyinfraError(str(e)) from None
    return run.plan


def this_host() -> HostPlan:
    """This host's plan. Also checks, from the host's snapshot, that commands run there as
    root and that it has what its role needs (etcd_pki/requirements.py): one clear error
    up front instead of a failure in the middle."""
    me = get_plan().hosts[node_name(host)]
    problems = requirement_problems(me, parse_tools(snapshot(WHO).outputs.get(WHO_KEY) or []))
    if problems:
        raise PyinfraError(f"host {me.name}: " + "; ".join(problems))
    return me


def snapshot(want: Want) -> Snapshot:
    """This host's state as it was before the run, for what ``want`` lists.

    The first call on a host (at prepare time, before any operation runs) reads what
    every task declares in tasks/reads.py in one command; later calls are answered from
    it. pyinfra 3 keeps no fact cache, so without this each task paid a round trip.
    A ``want`` that is not declared there is read on its own.
    """
    # Imported here: tasks/reads.py imports every task module, which import this one.
    from tasks.reads import READS

    run = this_run()
    # Another host's task may ask for this host's snapshot (`snapshots_of`): read once.
    with run.snapshot_locks[host.name]:
        if host.name not in run.snapshots:
            me = get_plan().hosts[node_name(host)]
            union = functools.reduce(operator.or_, (r(me) for r in READS), want)
            run.snapshots[host.name] = parse(host.get_fact(HostSnapshot, want=union), union)
    before = run.snapshots[host.name]
    if before.want.covers(want):
        return before
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


def requirements_reads(me: HostPlan) -> Want:
    return WHO


def active_ca_reads(me: HostPlan) -> Want:
    """The active CA's root, whether it was initialised (`ca_root_before_run`), and the
    state of a rotation (`rotation_before_run`)."""
    if not me.is_active_ca:
        return Want()
    s = me.settings
    return Want.of(stat={s.ca_json, s.ca_root}, contents={s.ca_root, rotation_state_path(s)})


def rotation_state_path(s) -> str:
    return f"{s.ca_dir}/{ROTATION_STATE}"


def rotation_before_run() -> Rotation | None:
    """The CA's rotation state before the run (etcd_pki/rotation.py), None when no
    rotation was ever made; PyinfraError when the file is damaged."""
    plan = get_plan()
    path = rotation_state_path(plan.ca.settings)
    try:
        ca = snapshots_of({plan.active_ca: Want.of(contents={path})})[plan.active_ca]
    except Exception:  # unreachable now: the run reports it
        return None
    try:
        return parse_rotation(ca.contents.get(path))
    except ValueError as e:
        raise PyinfraError(f"{plan.active_ca}:{path}: {e}") from None


def ca_root_pem() -> str:
    """The root certificate (public) read from the active cert-manager, at execute time.

    Kept for the run once it exists: the CA may be created earlier in the same run.
    """
    plan, run = get_plan(), this_run()
    with run.ca_root_lock:  # every host asks at once: read it once, not once per host
        if run.ca_root is None:
            path = plan.ca.settings.ca_root
            pem = pyinfra_host(plan.active_ca).get_fact(PublicFile, path=path)
            if not pem:
                raise PyinfraError(
                    f"the CA root {path} is missing on {plan.active_ca}; "
                    "did step-ca init fail there?"
                )
            run.ca_root = pem
    return run.ca_root


def ca_intermediate_now() -> str:
    """The active CA's intermediate certificate as it is now (after a rotation in this
    run), read once per run at execute time."""
    plan, run = get_plan(), this_run()
    with run.ca_root_lock:
        if run.ca_intermediate is None:
            path = plan.ca.settings.ca_intermediate
            pem = pyinfra_host(plan.active_ca).get_fact(PublicFile, path=path)
            if not pem:
                raise PyinfraError(f"the CA's intermediate {path} is missing on {plan.active_ca}")
            run.ca_intermediate = pem
    return run.ca_intermediate


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
    run = this_run()
    with run.ca_root_lock:
        if run.ca_root is None:
            run.ca_root = root
    return root


def decided_before_run(me: HostPlan) -> bool:
    """Whether a task that reads the CA (trust, issuance) may decide at prepare time on
    ``me``, and leave out its operation when there is nothing to do.

    Not on the active CA: pyinfra orders operations by each host's own sequence, and the
    CA's operation is what keeps every host's after the CA's changes in this run (new
    lifetimes, a restart). Not when the CA is new in this run (its root is unknown).
    """
    return not me.is_active_ca and not this_run().rotating and ca_root_before_run() is not None


def fact_want(cls: type[FactBase], **kwargs: Hashable) -> Want:
    """A `Want` that runs the command of pyinfra fact ``cls`` inside the snapshot."""
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
    # A short, stable section name (the arguments may be long: certificate lists).
    key = f"{cls.__module__}.{cls.__name__}:{sha1(args.encode()).hexdigest()[:12]}"
    return Want.of(commands={(key, cls().command(**kwargs))})


def fact_before_run(cls: type[FactBase], **kwargs: Hashable):
    """`host.get_fact(cls, **kwargs)` as before the run: from the host's snapshot when a
    task declared `fact_want(cls, **kwargs)` (no command of its own), else read now."""
    want = fact_want(cls, **kwargs)
    ((key, _),) = want.commands
    lines = snapshot(want).outputs.get(key)
    return cls().process(lines) if lines else cls().default()
