"""etcd on the `etcd` hosts with mutual TLS on the certificates issued by step-ca.

A new cluster starts all members at once (`initial-cluster-state=new`, start without
waiting for systemd's notify, then wait for health). A host that joins a running
cluster is first registered with `etcdctl member add`, from the host itself with its
own client certificate, so `--limit NEW-HOST` touches no other host. So does a host
the cluster removed while it was away (remove_node.py): its old data, which etcd would
refuse to start on, is kept aside and it joins anew.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import files, server

from etcd_pki.commands.etcd import (
    data_aside_command,
    etcd_bins,
    etcdctl,
    initial_env,
    member_add_command,
    rolling_restart_command,
)
from etcd_pki.commands.files import ownership_command, units_enabled_command, write_files_command
from etcd_pki.plan import ClusterPlan, HostPlan
from etcd_pki.requirements import etcd_problem, etcd_version
from facts.snapshot import Snapshot, Want
from tasks.common import call, render, run_on, system_account
from tasks.install import install_etcd_release
from tasks.metrics import metrics_prefix
from tasks.metrics import report as report_metrics
from tasks.ops import Op, emit, shell
from tasks.run import get_plan, snapshot, snapshots_of, this_host

ETC_DIR = "/etc/etcd"
ENV_FILE = f"{ETC_DIR}/etcd.env"
INITIAL_ENV_FILE = f"{ETC_DIR}/initial-cluster.env"
PACKAGES = ("etcd-server", "etcd-client")
ENV_TEMPLATE = "templates/etcd.env.j2"
UNIT_TEMPLATE = "templates/etcd.service.j2"
MEMBERS_MARK = "__members__"
METRICS_MARK = "__metrics_done__"
# The etcd Debian gives this host: installed, else the candidate apt would install.
DEBIAN_ETCD_KEY = "debian-etcd"
DEBIAN_ETCD_VERSION = (
    "if [ -x /usr/bin/etcd ]; then /usr/bin/etcd --version | head -n1; else "
    "apt-cache show --no-all-versions etcd-server 2>/dev/null | sed -n 's/^Version: //p' | "
    "head -n1; fi"
)


def _paths(me: HostPlan) -> tuple[str, str, str]:
    """etcd's service name, unit file and member directory on ``me``."""
    service = f"{me.settings.etcd_service_name}.service"
    return service, f"/etc/systemd/system/{service}", f"{me.etcd_data_dir}/member"


def reads(me: HostPlan) -> Want:
    if not me.is_etcd:
        return Want()
    s = me.settings
    service, unit_path, member_path = _paths(me)
    want = Want()
    if s.etcd_install_source == "debian":
        want = Want.of(commands={(DEBIAN_ETCD_KEY, DEBIAN_ETCD_VERSION)})
    return want | Want.of(
        stat={ETC_DIR, s.etcd_data_root, me.etcd_data_dir, member_path, ENV_FILE, unit_path},
        sha1={ENV_FILE, unit_path},
        units={service, "etcd.service"},
        packages=PACKAGES if s.etcd_install_source == "debian" else (),
        users={s.etcd_user} if s.etcd_install_source == "release" else (),
        groups={s.etcd_user} if s.etcd_install_source == "release" else (),
    )


@deploy("Install etcd")
def install_etcd() -> None:
    """Install etcd: Debian packages (not letting the package start a default etcd), or
    with `etcd_install_source = "release"` the official tarball into `bin_dir`
    (tasks/install.py) plus what the package would make: the system user and data root.

    Runs before certificates are issued: the `etcd` user owns the keys.

    .. code:: python

        install_etcd()
    """
    me = this_host()
    s = me.settings
    before = snapshot(reads(me))
    if s.etcd_install_source == "release":
        system_account(s.etcd_user, s.etcd_data_root, "etcd", before)
        if not before.is_directory(s.etcd_data_root, s.etcd_user, s.etcd_user, "700"):
            files.directory(
                name=f"Directory {s.etcd_data_root}",
                path=s.etcd_data_root,
                user=s.etcd_user,
                group=s.etcd_user,
                mode="700",
            )
        install_etcd_release()
        return
    found = before.outputs.get(DEBIAN_ETCD_KEY) or []
    problem = etcd_problem(etcd_version(found[0] if found else None), "Debian's etcd-server here")
    if problem:
        raise PyinfraError(f"host {me.name}: {problem}")
    missing = [p for p in PACKAGES if not before.has_package(p)]
    if missing:
        # policy-rc.d (exit 101) stops the package from starting etcd with its defaults.
        server.shell(
            name=f"Install {' '.join(missing)} (not started)",
            commands=[
                "set -e; created=; if [ ! -e /usr/sbin/policy-rc.d ]; then "
                "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; "
                "chmod 755 /usr/sbin/policy-rc.d; created=1; fi; "
                "trap '[ -n \"$created\" ] && rm -f /usr/sbin/policy-rc.d' EXIT; "
                "apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                + " ".join(missing)
            ],
        )


def _cluster_exists(plan: ClusterPlan, me: HostPlan) -> bool:
    """True if another etcd member already has data (read before this run changes any;
    from the members' own snapshots, which read their data dirs anyway)."""
    members = {other.name: f"{other.etcd_data_dir}/member" for other in plan.etcd_members}
    members.pop(me.name, None)
    found = snapshots_of({name: Want.of(stat={path}) for name, path in members.items()})
    return any(found[name].is_directory(path) for name, path in members.items())


def _other_endpoints(plan: ClusterPlan, me: HostPlan) -> str:
    """The client URLs of every member but ``me``, as etcdctl's --endpoints."""
    return ",".join(h.client_url for h in plan.etcd_members if h.name != me.name)


def _members(plan: ClusterPlan, me: HostPlan) -> list[list[str]]:
    """The cluster's `member list`, asked from this host through the other members:
    per member ID, status, name, peer URLs, client URLs, is-learner."""
    endpoints = _other_endpoints(plan, me)
    out = run_on(
        host,
        etcdctl(me, endpoints, "member", "list", "-w", "simple"),
        f"reaching the etcd cluster at {endpoints}",
    )
    return [[f.strip() for f in line.split(",")] for line in out.splitlines() if line]


def _rejoin_if_removed(plan: ClusterPlan, me: HostPlan) -> None:
    """etcd does not start on the data of a member the cluster removed (remove_node.py
    while this host was away). When the cluster answers and lists this host neither by
    name nor by peer URL, the data goes aside (renamed, kept) and the host joins anew.
    A cluster that does not answer decides nothing: etcd starts on its data."""
    try:
        members = _members(plan, me)
    except PyinfraError as e:
        logger.warning(f"{host.print_prefix}membership not checked ({e}); starting etcd as is")
        return
    if any(m[2] == me.name or me.peer_url in m[3].split(" ") for m in members):
        return
    run_on(host, data_aside_command(me, fresh=True), "keeping the removed member's data aside")
    logger.info(
        f"{host.print_prefix}the cluster had removed {me.name}: its old data is kept in "
        f"{me.etcd_data_dir}.removed-*, and it joins anew"
    )
    _join_existing(plan, me, members)


def _join_existing(plan: ClusterPlan, me: HostPlan, members: list[list[str]] | None = None) -> None:
    """Register this host with `member add` (unless listed already) and write its
    initial-cluster file from the cluster's own answer (``members``, asked when None)."""
    members = _members(plan, me) if members is None else members
    if not any(me.peer_url in m[3].split(" ") for m in members):
        run_on(
            host,
            member_add_command(me, _other_endpoints(plan, me)),
            f"etcdctl member add {me.name}",
        )
        logger.info(f"{host.print_prefix}added etcd member {me.name} ({me.peer_url})")
        members.append(["", "unstarted", me.name, me.peer_url, "", "false"])
    cluster = ",".join(f"{m[2] or me.name}={m[3].split(' ')[0]}" for m in members)
    files.put(
        name=f"{INITIAL_ENV_FILE} (join existing cluster)",
        src=StringIO(initial_env("existing", cluster, me.settings.etcd_cluster_name)),
        dest=INITIAL_ENV_FILE,
        mode="644",
    )


@deploy("Configure etcd")
def configure_etcd() -> None:
    """Configure and start etcd with TLS on client and peer ports; join new members.

    .. code:: python

        configure_etcd()
    """
    plan, me = get_plan(), this_host()
    before = snapshot(reads(me))
    service, _, member_path = _paths(me)
    # Whether other members have data matters to a first start (join or bootstrap) and
    # to a member not running (was it removed while away?), never to a running one.
    first_start = not before.is_directory(member_path)
    asked = first_start or not before.unit_running(service)
    exists = asked and _cluster_exists(plan, me)
    calls = {
        "join": lambda: _join_existing(plan, me),
        "rejoin": lambda: _rejoin_if_removed(plan, me),
    }
    emit(decide(me, plan, before, exists), calls=calls)


def planned_files(me: HostPlan) -> dict[str, str]:
    """etcd's environment and unit file as this task writes them on ``me``."""
    s = me.settings
    _, unit_path, _ = _paths(me)
    env_data = {"me": me, "s": s, "server": me.cert("server"), "peer": me.cert("peer")}
    unit_data = {
        "me": me,
        "s": s,
        "env_file": ENV_FILE,
        "initial_env_file": INITIAL_ENV_FILE,
        "etcd_bin": etcd_bins(me)[0],
    }
    return {
        ENV_FILE: render(ENV_TEMPLATE, **env_data),
        unit_path: render(UNIT_TEMPLATE, **unit_data),
    }


def decide(me: HostPlan, plan: ClusterPlan, before: Snapshot, cluster_exists: bool) -> list[Op]:
    """The operations that configure and start etcd on member ``me``, from its state
    before the run (nothing earlier in the deploy writes these paths) and whether
    another member already has data (a new member then joins with `member add`; a
    member not running checks that the cluster did not remove it)."""
    s = me.settings
    service, unit_path, member_path = _paths(me)
    dirs = []
    if not before.is_directory(ETC_DIR, "root", "root", "755"):
        dirs.append((ETC_DIR, "root", "root", "755"))
    if not before.is_directory(me.etcd_data_dir, s.etcd_user, s.etcd_user, "700"):
        dirs.append((me.etcd_data_dir, s.etcd_user, s.etcd_user, "700"))
    written = [
        (path, text, "644")
        for path, text in planned_files(me).items()
        if not before.has_text(path, text, mode="644")
    ]
    first_start = not before.is_directory(member_path)
    new_cluster = first_start and not cluster_exists
    if new_cluster:
        text = initial_env("new", plan.initial_cluster, s.etcd_cluster_name)
        written.append((INITIAL_ENV_FILE, text, "644"))
    ops = []
    if dirs or written:
        # Directories, environment, unit (and a new cluster's initial-cluster file),
        # then daemon-reload: one command.
        names = ", ".join(p for p, *_ in written)
        commands = [
            ownership_command(dirs),
            write_files_command(written),
            units_enabled_command([], daemon_reload=bool(written)),
        ]
        name = f"etcd directories and configuration ({names})" if written else "etcd directories"
        ops.append(Op("config", name, "steps", {"commands": commands}))
    # Configuration that etcd reads at start: a running member restarts for it.
    reconfigured = any(p in (ENV_FILE, unit_path) for p, *_ in written)
    if s.etcd_service_name != "etcd" and not before.unit_is(
        "etcd.service", running=False, enabled=False
    ):
        # The package's own etcd.service would hold 127.0.0.1:2379.
        ops.append(
            Op(
                "package unit",
                "Package default etcd.service stopped and disabled",
                "service",
                {"service": "etcd.service", "running": False, "enabled": False},
            )
        )
    if first_start:
        if new_cluster:
            joined = "config"  # wrote the initial-cluster file
        else:
            joined = "join"
            ops.append(Op("join", "Join the running cluster (etcdctl member add)", "call"))
        # --no-block: members of a new cluster wait for each other (notify needs quorum).
        ops.append(
            shell(
                "start",
                f"Start {service} (first start of this member)",
                f"systemctl enable {service} && systemctl restart --no-block {service}",
            )
        )
        waited_on: tuple[str, ...] = (joined, "start")
    else:
        waited_on = ()
        if cluster_exists and not before.unit_running(service):
            ops.append(
                Op("rejoin", "Rejoin if the cluster removed this member (data kept aside)", "call")
            )
            waited_on = ("rejoin",)
        if reconfigured:
            ops.append(
                shell(
                    "restart",
                    f"Restart {service} (configuration changed), one member at a time",
                    rolling_restart_command(me, plan.etcd_members),
                    when_changed=("config",),
                    serial=True,  # one member at a time keeps quorum
                )
            )
            waited_on += ("restart",)
        if not before.unit_is(service, running=True, enabled=True):
            ops.append(
                Op(
                    "enable",
                    f"{service} enabled and running",
                    "units_enabled",
                    {"units": [service]},
                )
            )
    if waited_on:
        health = etcdctl(me, f"https://127.0.0.1:{s.etcd_client_port}", "endpoint", "health")
        ops.append(
            shell(
                "wait",
                "Wait until etcd is healthy",
                f"for i in $(seq 1 120); do {health} >/dev/null 2>&1 && exit 0; sleep 1; done; "
                f"echo 'etcd on {me.name} not healthy after 120 s; see journalctl -u {service}' "
                f">&2; {health}; exit 1",
                when_changed=waited_on,
            )
        )
    return ops


@deploy("Report etcd health")
def report_health() -> None:
    """Write the metrics file again, then print this member's health and the member
    count; change nothing.

    .. code:: python

        report_health()
    """
    me = this_host()
    local = f"https://127.0.0.1:{me.settings.etcd_client_port}"

    def report() -> bool:
        # One command: the status, then (if it succeeded) the member list.
        status = etcdctl(me, local, "endpoint", "status", "-w", "simple")
        members = etcdctl(me, local, "member", "list", "-w", "simple")
        try:
            # The metrics file first (tasks/metrics.py): no round trip of its own.
            out = run_on(
                host,
                metrics_prefix(me)
                + f"echo {METRICS_MARK}; {status} && {{ echo {MEMBERS_MARK}; {members}; true; }}",
                "the etcd health check",
            )
        except PyinfraError as e:
            raise PyinfraError(f"etcd on {me.name} is not healthy: {e}") from None
        metrics, _, out = out.partition(f"{METRICS_MARK}\n")
        report_metrics(me, metrics)
        lines = out.splitlines()
        cut = lines.index(MEMBERS_MARK) if MEMBERS_MARK in lines else len(lines)
        # endpoint status simple: endpoint, ID, version, db size, is leader, ...
        fields = [f.strip() for f in ",".join(lines[:cut]).split(",")]
        role = "leader" if len(fields) > 4 and fields[4] == "true" else "follower"
        version = fields[2] if len(fields) > 2 else "?"
        logger.info(
            f"{host.print_prefix}etcd healthy: {role}, version {version}, "
            f"{len(lines[cut + 1 :])} members"
        )
        return False  # reporting is not a change

    # call(): an unhealthy member fails this host with the message, no traceback.
    call("etcd health", lambda: None, check=report)
