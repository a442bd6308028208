"""etcd on a member: etcdctl with the host's client certificate, the environment of a
first start, and restarts one member at a time with the cluster healthy."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..plan import HostPlan


def etcd_bins(me: HostPlan) -> tuple[str, str]:
    """Paths of etcd and etcdctl for the configured install source."""
    if me.settings.etcd_install_source == "debian":
        return "/usr/bin/etcd", "/usr/bin/etcdctl"
    return f"{me.settings.bin_dir}/etcd", f"{me.settings.bin_dir}/etcdctl"


def etcdctl(me: HostPlan, endpoints: str, *args: str) -> str:
    """An etcdctl command line authenticated with this host's client certificate."""
    client = me.cert("client")
    return " ".join(
        [
            etcd_bins(me)[1],
            f"--endpoints={endpoints}",
            f"--cacert={me.settings.trusted_root}",
            f"--cert={client.crt}",
            f"--key={client.key}",
            "--dial-timeout=3s",
            "--command-timeout=10s",
            *args,
        ]
    )


def member_add_command(me: HostPlan, endpoints: str, tries: int = 15) -> str:
    """`etcdctl member add` for ``me``, made sure of. When it fails, the member list
    decides: etcdctl retries a request whose answer was lost, and the retry of an add
    that went through is refused ("unhealthy cluster": the new member is not started),
    so a listed peer URL means added. Otherwise "unhealthy cluster" (a member
    unreachable or up for less than 5 s) is tried again every 2 s; other errors fail."""
    add = etcdctl(me, endpoints, "member", "add", me.name, f"--peer-urls={me.peer_url}")
    listed = etcdctl(me, endpoints, "member", "list", "-w", "simple")
    url = shlex.quote(f", {me.peer_url},")
    return (
        f"for i in $(seq 1 {int(tries)}); do out=$({add} 2>&1) && {{ printf '%s\\n' \"$out\"; "
        f"exit 0; }}; if {listed} 2>/dev/null | grep -qF -- {url}; then "
        "echo 'added (the answer to the first request was lost)'; exit 0; fi; "
        "case \"$out\" in *'unhealthy cluster'*) sleep 2 ;; *) break ;; esac; "
        "done; printf '%s\\n' \"$out\" >&2; exit 1"
    )


def data_aside_command(me: HostPlan, fresh: bool) -> str:
    """Stop etcd on ``me`` and keep its data directory aside (renamed
    `.removed-SECONDS`, never deleted); with ``fresh`` an empty one takes its place."""
    s = me.settings
    data, user = shlex.quote(me.etcd_data_dir), shlex.quote(s.etcd_user)
    service = shlex.quote(f"{s.etcd_service_name}.service")
    return (
        f"systemctl stop {service} 2>/dev/null || true; "
        f"if [ -d {data} ]; then mv {data} {data}.removed-$(date +%s); fi"
        + (f" && install -d -o {user} -g {user} -m 700 {data}" if fresh else "")
    )


def initial_env(state: str, initial_cluster: str, cluster_name: str) -> str:
    return (
        "# Written by the etcd PKI deploy when this member first joined.\n"
        f"ETCD_INITIAL_CLUSTER_STATE={state}\n"
        f"ETCD_INITIAL_CLUSTER={initial_cluster}\n"
        f"ETCD_INITIAL_CLUSTER_TOKEN={cluster_name}\n"
    )


def rolling_restart_command(me: HostPlan, members: Sequence[HostPlan]) -> str:
    """Restart etcd on ``me`` only once every one of ``members`` answers healthy, and come
    back only when ``me`` is healthy again (run for one member at a time: quorum is kept)."""
    service = shlex.quote(f"{me.settings.etcd_service_name}.service")
    endpoints = ",".join(m.client_url for m in members)
    everyone = etcdctl(me, endpoints, "endpoint", "health")
    local = etcdctl(me, f"https://127.0.0.1:{me.settings.etcd_client_port}", "endpoint", "health")
    return (
        f"for i in $(seq 1 60); do {everyone} >/dev/null 2>&1 && break; "
        f"[ $i = 60 ] && {{ echo 'not every etcd member is healthy: {me.name} is not restarted' "
        f">&2; {everyone} >&2; exit 1; }}; sleep 1; done; "
        f"systemctl restart {service}; "
        f"for i in $(seq 1 120); do {local} >/dev/null 2>&1 && exit 0; sleep 1; done; "
        f"echo 'etcd on {me.name} not healthy 120 s after its restart' >&2; {local} >&2; exit 1"
    )


def restart_if_needed_command(
    me: HostPlan, members: Sequence[HostPlan], read_at_start: str | None = None
) -> str:
    """On member ``me``: restart etcd (as `rolling_restart_command`) only when it started
    before the file ``read_at_start`` (default: its CRL) last changed; print `restarted`
    or `kept`. etcd reads its trusted roots only when it starts."""
    service = shlex.quote(f"{me.settings.etcd_service_name}.service")
    changed = shlex.quote(read_at_start or me.settings.crl_file)
    return (
        f"started=$(systemctl show -p ExecMainStartTimestamp --timestamp=unix --value {service} "
        "2>/dev/null | tr -d @); "
        f'changed=$(stat -c %Y {changed}); if [ -n "$started" ] && [ "$started" -gt "$changed" ]; '
        f"then echo kept; exit 0; fi; ( {rolling_restart_command(me, members)} ) && echo restarted"
    )


def access_state_command(me: HostPlan, full: bool) -> str:
    """Print etcd's authentication state as ``me`` (a member) sees it on its own client
    port: `status<TAB>JSON`, and with ``full`` a `user<TAB>NAME<TAB>JSON` line per user
    and a `role<TAB>NAME<TAB>JSON` line per role (etcd_pki/etcd_auth.py parses them).
    Prints nothing when etcd does not answer."""
    e = etcdctl(me, f"https://127.0.0.1:{me.settings.etcd_client_port}")
    lines = [
        f"s=$({e} auth status -w json 2>/dev/null) || exit 0",
        "printf 'status\\t%s\\n' \"$s\"",
    ]
    if full:
        for kind in ("user", "role"):
            lines.append(
                f"{e} {kind} list 2>/dev/null | while IFS= read -r n; do "
                f'printf \'{kind}\\t%s\\t%s\\n\' "$n" "$({e} {kind} get "$n" -w json)"; done'
            )
    return "; ".join(lines)


def access_command(me: HostPlan, changes: Sequence[Sequence[str]]) -> str:
    """Run each etcdctl argument list of ``changes`` as ``me`` (a member: root role) on
    its own client port, in order, stopping at the first failure."""
    local = f"https://127.0.0.1:{me.settings.etcd_client_port}"
    return " && ".join(
        etcdctl(me, local, *(shlex.quote(a) for a in args)) + " >/dev/null" for args in changes
    )
