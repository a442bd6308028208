"""etcd's users, roles and authentication, as `etcd_auth` says (etcd_pki/etcd_auth.py).

One etcd member of the run applies the changes, with its own client certificate (the
root role), on a member that runs. Each member's snapshot reads etcd's state as it was
before the run, so a run with nothing to change has no operation. Two places in the
deploy: before etcd is (re)configured, so that a new member's user exists before it
joins a cluster with authentication on; and after, for a cluster made in this run.
"""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError

from etcd_pki.commands.etcd import access_command, access_state_command
from etcd_pki.etcd_auth import Access, changes, parse_state, wanted
from etcd_pki.plan import ClusterPlan, HostPlan
from facts.snapshot import Want
from tasks.common import hosts_in_run, pyinfra_host, run_on
from tasks.ops import Op, emit
from tasks.run import get_plan, snapshots_of, this_host

STATE_KEY = "etcd-access"


def reads(me: HostPlan) -> Want:
    """etcd's authentication state on a member (users and roles only when `etcd_auth`
    is on; with it off, whether authentication is on, to turn it off)."""
    if not me.is_etcd:
        return Want()
    full = bool(me.settings.etcd_auth.get("enabled"))
    return Want.of(commands={(STATE_KEY, access_state_command(me, full))})


def _want(plan: ClusterPlan) -> Access:
    admins = [m.cert("client").subject for m in plan.etcd_members]
    return wanted(plan.ca.settings.etcd_auth, admins)


def decide(plan: ClusterPlan, member: str, have: Access | None) -> list[Op]:
    """The operation that brings etcd's access control in line, applied on ``member``
    (which found ``have`` before the run); none when nothing changes or ``have`` is
    unknown (etcd did not run there)."""
    if have is None:
        return []
    todo = changes(_want(plan), have)
    if not todo:
        return []
    summary = ", ".join(" ".join(args[:3]) for args in todo[:4]) + (" ..." if len(todo) > 4 else "")
    return [
        Op(
            "access",
            f"etcd access control on {member}: {summary}",
            "call",
            {"member": member, "changes": todo},
        )
    ]


def _states(plan: ClusterPlan) -> dict[str, Access | None]:
    """Each member's view of etcd's access control before the run (None: no answer)."""
    members = [m.name for m in plan.etcd_members]
    try:
        found = snapshots_of({name: reads(plan.hosts[name]) for name in members})
    except Exception:  # noqa: BLE001 - an unreachable member has no view
        return dict.fromkeys(members)
    return {name: parse_state(found[name].outputs.get(STATE_KEY) or []) for name in members}


def _apply(member: str, changes: list[list[str]]) -> None:
    """Run the etcdctl ``changes`` on ``member`` with its own client certificate."""
    command = access_command(get_plan().hosts[member], changes)
    run_on(pyinfra_host(member), command, "changing etcd's access control")


def _runs_here(me: HostPlan, plan: ClusterPlan) -> bool:
    """Exactly one host of the run carries the operation: the first etcd member in it."""
    members = [m.name for m in plan.etcd_members if m.name in hosts_in_run()]
    return bool(members) and members[0] == me.name


@deploy("etcd access control")
def etcd_access(new_cluster: bool = False) -> None:
    """Users, roles and authentication as `etcd_auth` says. Without ``new_cluster``, on
    a cluster that ran before this run (from a member's state before it); with it, on a
    cluster made in this run, once etcd runs (its state read then).

    .. code:: python

        etcd_access()                  # before configure_etcd
        configure_etcd()
        etcd_access(new_cluster=True)  # after it
    """
    plan, me = get_plan(), this_host()
    if not me.is_etcd or not _runs_here(me, plan):
        return
    states = _states(plan)
    found = next(((name, s) for name, s in states.items() if s is not None), None)
    if not new_cluster:
        if found is not None:
            emit(decide(plan, *found), calls={"access": _apply})
        return
    if found is not None or not plan.ca.settings.etcd_auth.get("enabled"):
        return  # the cluster ran before (done above), or nothing to turn on

    def apply_now() -> None:
        have = parse_state(run_on(pyinfra_host(me.name), access_state_command(me, True),
                                  "reading etcd's access control").splitlines())  # fmt: skip
        if have is None:
            raise PyinfraError(f"etcd on {me.name} does not answer: access control not set")
        todo = changes(_want(plan), have)
        if todo:
            _apply(me.name, todo)

    emit([Op("access", "etcd access control of the new cluster", "call")],
         calls={"access": apply_now})  # fmt: skip
