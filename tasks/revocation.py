"""Revoking a host's certificates (revoke.py) and removing a node (remove_node.py).

Both work on one target host, named by `--limit HOST`, or by `--data node=HOST` when the
host cannot be reached (pyinfra stops before running anything when no host of --limit
answers, so the run is then limited to hosts that do, e.g. `--limit etcd_cert_managers`).
The work runs once, from one host of the run (the target when it answers, else the
active CA), as a few steps that each check their result and stop with a message naming
host and step:

1. find every certificate of the target: the CA's ledger (what step-ca issued, renewals
   included) and, when it answers, the files on the target itself;
2. (revoke.py, target answers) issue new certificates there, with new keys made there;
   (remove_node.py) take the member out of etcd through a surviving member, stop etcd
   on the target when it answers;
3. revoke every old serial at the CA with a one-time token (no key needed);
4. push the new CRL to every member at once and check that each lists the serials;
5. restart members one at a time, each only when the cluster is healthy and the
   previous one is back, where etcd started before its CRL did: etcd checks the CRL only
   when a connection is accepted, and connections opened before stay usable;
6. (remove_node.py) remove units, certificates and keys from the target, only now.

A re-run finishes a half-done run: a member already removed, a serial already revoked
and a member restarted since its CRL are steps with nothing to do.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from pyinfra import host, logger, state
from pyinfra.api import Host
from pyinfra.api.exceptions import PyinfraError

from etcd_pki.certs import parse_state_output
from etcd_pki.commands.ca import ledger_command
from etcd_pki.commands.certs import issue_command
from etcd_pki.commands.crl import SERVICE as CRL_SERVICE
from etcd_pki.commands.crl import TIMER as CRL_TIMER
from etcd_pki.commands.crl import crl_fetch_now_command, scan_ledger_command
from etcd_pki.commands.etcd import data_aside_command, etcdctl, restart_if_needed_command
from etcd_pki.commands.tokens import revoke_command
from etcd_pki.crl import (
    Revocation,
    decode_b64,
    live_certificates,
    parse_ledger,
    serials_of,
)
from etcd_pki.plan import CertSpec, HostPlan
from facts.pki import CertStates, FileBase64
from tasks.certs import mint_tokens
from tasks.common import call, hosts_in_run, node_name, on_hosts, pyinfra_host, run_on
from tasks.crl import parse_revoked, script_path
from tasks.etcd import INITIAL_ENV_FILE
from tasks.run import get_plan, this_host

KINDS = ("peer", "server", "client")


def target_of_run(entry: str) -> HostPlan:
    """The host this run is about: `--data node=HOST`, else the one host of --limit."""
    plan = get_plan()
    node = host.data.get("node")
    if node:
        if str(node) not in plan.hosts:
            raise PyinfraError(
                f"{entry}: --data node={node} is not a host of the inventory "
                f"(hosts: {', '.join(plan.hosts)})"
            )
        return plan.hosts[str(node)]
    limit = state.limit_hosts
    if not limit:
        raise PyinfraError(
            f"{entry} needs the host to work on: --limit HOST, or when HOST cannot be "
            "reached: --limit etcd_cert_managers --data node=HOST"
        )
    names = sorted({node_name(h) for h in limit})
    if len(names) != 1:
        raise PyinfraError(f"{entry} works on one host at a time; --limit matched {names}")
    return plan.hosts[names[0]]


def runs_here(target: HostPlan) -> bool:
    """Whether this host does the work of the run (exactly one host does): the target
    when it is in the run, else the active CA when it is, else the first host of the run."""
    active = hosts_in_run()
    plan = get_plan()
    for candidate in (target.name, plan.active_ca):
        if candidate in active:
            return this_host().name == candidate
    return bool(active) and this_host().name == active[0]


def kinds_of_run(target: HostPlan) -> list[CertSpec]:
    """The target's certificates `--data revoke_kinds=peer,client` selects (all without)."""
    wanted = host.data.get("revoke_kinds")
    if wanted in (None, ""):
        return list(target.certs)
    names = [k.strip() for k in str(wanted).split(",") if k.strip()]
    unknown = [k for k in names if k not in KINDS]
    if unknown or not names:
        raise PyinfraError(
            f"revoke_kinds: {', '.join(unknown) or repr(wanted)} is not a certificate kind; "
            f"use a comma list of {', '.join(KINDS)}"
        )
    have = [c.kind for c in target.certs]
    missing = [k for k in names if k not in have]
    if missing:
        raise PyinfraError(
            f"revoke_kinds: {target.name} has no {', '.join(missing)} certificate "
            f"(it has: {', '.join(have) or 'none'})"
        )
    return [c for c in target.certs if c.kind in names]


@dataclass
class Work:
    """What the steps of one run found and did."""

    target: HostPlan
    certs: list[CertSpec]
    reason: str
    removing: bool = False  # remove_node.py: the target leaves the cluster
    reachable: bool | None = None
    revocations: list[Revocation] = field(default_factory=list)
    not_done: list[str] = field(default_factory=list)


def reach(h: Host) -> bool:
    """Whether ``h`` answers (it is connected now if it does)."""
    if h.connected:
        return True
    try:
        h.connect(reason="the host to revoke or remove", show_errors=False, raise_exceptions=True)
    except Exception:  # noqa: BLE001 - unreachable, for whatever reason
        return False
    return True


def find_certificates(work: Work) -> None:
    """Every unexpired, unrevoked certificate of the target's selected kinds: in the CA's
    ledger (brought up to date from step-ca's log first) and on the target when it
    answers."""
    plan = get_plan()
    ca = plan.ca.settings
    ledger = run_on(
        pyinfra_host(plan.active_ca),
        f"umask 022; {ledger_command(ca)} && {scan_ledger_command(ca)} && "
        f"cat {shlex.quote(ca.ledger)}",
        "reading the CA's ledger",
    )
    entries = parse_ledger(ledger)
    subject = {c.subject: c for c in work.certs}
    found = {
        i.serial: (subject[i.subject], i.not_after) for i in live_certificates(entries, subject)
    }
    revoked = {e.serial for e in entries if e.kind == "revoked"}
    work.reachable = reach(pyinfra_host(work.target.name))
    if work.reachable:
        step = f"{work.target.settings.bin_dir}/step"
        out = run_on(
            pyinfra_host(work.target.name),
            CertStates().command(certs=tuple(work.certs), step=step),
            "reading its certificates",
        )
        for name, on_host in parse_state_output(out.splitlines()).items():
            cert = next((c for c in work.certs if c.name == name), None)
            if cert and on_host.chain_pem:
                leaf = x509.load_pem_x509_certificate(on_host.chain_pem[0].encode())
                if leaf.serial_number not in revoked:
                    found.setdefault(leaf.serial_number, (cert, leaf.not_valid_after_utc))
    else:
        work.not_done.append(f"{work.target.name} did not answer: its files were not read")
    work.revocations = [
        Revocation(serial, cert.subject, not_after, work.reason)
        for serial, (cert, not_after) in sorted(found.items(), key=lambda kv: kv[1][0].name)
    ]
    listed = ", ".join(f"{r.subject} {r.serial}" for r in work.revocations) or "none"
    logger.info(f"{host.print_prefix}certificates of {work.target.name} to revoke: {listed}")


def issue_new(work: Work) -> None:
    """New certificates with new keys, made on the target (revoke.py)."""
    plan = get_plan()
    if not work.reachable:
        work.not_done.append(
            f"{work.target.name} got no new certificates (it did not answer); when it is "
            f"back: pyinfra INVENTORY deploy.py --limit {work.target.name}"
        )
        return
    tokens = mint_tokens(plan, work.certs)
    run_on(
        pyinfra_host(work.target.name),
        issue_command(work.target, work.certs, plan.ca_url),
        "issuing new certificates",
        stdin=tokens,
    )
    logger.info(
        f"{host.print_prefix}new keys and certificates on {work.target.name}: "
        + ", ".join(c.name for c in work.certs)
    )


def record_new(work: Work) -> None:
    """The new certificates into the CA's ledger at once (a later revocation finds them)."""
    plan = get_plan()
    if work.reachable:
        ca = plan.ca.settings
        run_on(
            pyinfra_host(plan.active_ca), scan_ledger_command(ca), "recording the new certificates"
        )


def revoke_at_ca(work: Work) -> None:
    """Revoke the serials found at the CA (a serial revoked before counts as done)."""
    plan = get_plan()
    if not work.revocations:
        logger.info(f"{host.print_prefix}nothing to revoke: the ledger lists none unrevoked")
        return
    out = run_on(
        pyinfra_host(plan.active_ca),
        revoke_command(plan.ca.settings, plan.ca_url, work.revocations),
        "revoking at the CA",
    )
    parse_revoked(out, work.revocations, plan.active_ca)
    logger.info(
        f"{host.print_prefix}revoked at {plan.active_ca}: "
        + ", ".join(f"{r.subject} {r.serial}" for r in work.revocations)
    )


def members_besides(target: HostPlan) -> list[HostPlan]:
    return [m for m in get_plan().etcd_members if m.name != target.name]


def enforcing(work: Work) -> list[HostPlan]:
    """The members that must enforce the revocation: all of them, but a member that is
    being removed (or did not answer: it gets the CRL from its timer when it is back)."""
    skip = work.removing or work.reachable is False
    return [m for m in get_plan().etcd_members if not (skip and m.name == work.target.name)]


def push_crl(work: Work, serials: Iterable[int] | None = None) -> None:
    """Every other member fetches the new CRL now; each must then list ``serials``."""
    wanted = set(serials if serials is not None else (r.serial for r in work.revocations))
    members = enforcing(work)

    def fetch(name: str) -> str | None:
        s = get_plan().hosts[name].settings
        try:
            out = run_on(
                pyinfra_host(name),
                f"{crl_fetch_now_command()} && {FileBase64().command(path=s.crl_file)}",
                "fetching the CRL",
            )
        except PyinfraError as e:
            return str(e)
        listed = serials_of(decode_b64(out.strip()))
        if listed is None or not wanted <= listed:
            return f"the CRL on {name} does not list every revoked serial after the fetch"
        return None

    problems = {
        name: why for name, why in on_hosts([m.name for m in members], fetch).items() if why
    }
    for name, why in problems.items():
        work.not_done.append(f"CRL not pushed to {name}: {why} (its timer fetches it later)")
        logger.warning(f"{host.print_prefix}{why}")
    done = [m.name for m in members if m.name not in problems]
    logger.info(f"{host.print_prefix}new CRL on {', '.join(done) or 'no member'}")
    if not done:
        raise PyinfraError("no member took the new CRL: the revocation is not enforced yet")


def end_open_connections(work: Work) -> None:
    """Restart every member that enforces the revocation, one at a time, where etcd
    started before its current CRL: etcd checks the CRL only when it accepts a
    connection."""
    members = enforcing(work)
    logger.info(
        f"{host.print_prefix}etcd checks the CRL only when a connection opens: members "
        "whose etcd started before their new CRL restart one at a time, so that no "
        "connection of a revoked certificate stays open"
    )
    for member in members:
        try:
            out = run_on(
                pyinfra_host(member.name),
                restart_if_needed_command(member, members_besides(work.target)),
                "restarting etcd",
            )
        except PyinfraError as e:
            raise PyinfraError(f"{e} (members restart one at a time; re-run to go on)") from None
        what = "restarted" if "restarted" in out else "kept (started after its CRL)"
        logger.info(f"{host.print_prefix}etcd on {member.name}: {what}")


def report(work: Work, entry: str) -> None:
    """Say what could not be done (each as a warning); the run still succeeds."""
    for line in work.not_done:
        logger.warning(f"{host.print_prefix}{entry}: {line}")


def _steps(work: Work, steps: Sequence[tuple[str, object]]) -> None:
    for name, function in steps:
        call(name, function, work=work)


def revoke_host() -> None:
    """revoke.py: revoke every (selected) certificate of the target and give it new ones."""
    target = target_of_run("revoke.py")
    certs = kinds_of_run(target)
    if not runs_here(target):
        return
    kinds = ", ".join(c.kind for c in certs)
    work = Work(target, certs, reason=f"revoked with revoke.py ({kinds})")
    _steps(
        work,
        [
            (f"Find the certificates of {target.name} ({kinds})", find_certificates),
            (f"New keys and certificates on {target.name}", issue_new),
            ("Record them in the CA's ledger", record_new),
            ("Revoke the old serials at the CA", revoke_at_ca),
            ("Push the new CRL to every member", push_crl),
            ("Restart members whose etcd predates their CRL", end_open_connections),
            ("Report", lambda work: report(work, "revoke.py")),
        ],
    )


def leave_cluster(work: Work) -> None:
    """`etcdctl member remove` through the active CA (a surviving member)."""
    plan = get_plan()
    if not work.target.is_etcd:
        return
    via = plan.ca
    others = ",".join(m.client_url for m in members_besides(work.target))
    listed = run_on(
        pyinfra_host(via.name),
        etcdctl(via, others, "member", "list", "-w", "simple"),
        "listing the etcd members",
    )
    for line in listed.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) > 3 and (
            work.target.peer_url in fields[3].split(" ") or fields[2] == work.target.name
        ):
            remove = etcdctl(via, others, "member", "remove", fields[0])
            # etcd refuses a removal while a remaining member has been connected for only
            # a few seconds ("unhealthy cluster": it just restarted): try again shortly.
            run_on(
                pyinfra_host(via.name),
                f"for i in $(seq 1 20); do out=$({remove} 2>&1) && exit 0; "
                'case $out in *"unhealthy cluster"*) sleep 2 ;; *) break ;; esac; done; '
                'echo "$out" >&2; exit 1',
                f"removing etcd member {work.target.name}",
            )
            logger.info(f"{host.print_prefix}etcd member {work.target.name} ({fields[0]}) removed")
            return
    logger.info(f"{host.print_prefix}{work.target.name} is not an etcd member (any more)")


def stop_on_target(work: Work) -> None:
    """Stop etcd on the target and keep its data aside (when it answers)."""
    me = work.target
    if not me.is_etcd or not work.reachable:
        if me.is_etcd:
            work.not_done.append(f"etcd on {me.name} was not stopped (it did not answer)")
        return
    s = me.settings
    run_on(
        pyinfra_host(me.name),
        f"systemctl disable --now {shlex.quote(s.etcd_service_name + '.service')} {CRL_TIMER}"
        f" 2>/dev/null || true; {data_aside_command(me, fresh=False)}; "
        f"rm -f {INITIAL_ENV_FILE}",
        "stopping etcd",
    )


def clean_target(work: Work) -> None:
    """Remove the target's renewal and CRL units, certificates and keys (they are revoked)."""
    me = work.target
    if not work.reachable:
        work.not_done.append(
            f"on {me.name} (did not answer) these stay until it is wiped: its renewal timers,"
            f" certificates and keys in {me.settings.ssl_dir} (all revoked)"
        )
        return
    units = [f"{c.unit}.{sfx}" for c in me.certs for sfx in ("timer", "service")]
    if me.is_etcd:
        units += [CRL_TIMER, CRL_SERVICE]
    files = [f"/etc/systemd/system/{u}" for u in units] + [
        p for c in me.certs for p in (c.crt, c.key)
    ]
    if me.is_etcd:
        files += [script_path(me.settings), me.settings.crl_file]
    q = " ".join(shlex.quote(u) for u in units if u.endswith(".timer"))
    run_on(
        pyinfra_host(me.name),
        f"systemctl disable --now {q} 2>/dev/null || true; "
        f"rm -f {' '.join(shlex.quote(f) for f in files)}; systemctl daemon-reload",
        "removing its units, certificates and keys",
    )
    logger.info(f"{host.print_prefix}{me.name}: renewal units, certificates and keys removed")


def remove_host() -> None:
    """remove_node.py: take the target out of the cluster and revoke all it holds."""
    plan = get_plan()
    target = target_of_run("remove_node.py")
    if target.is_active_ca:
        raise PyinfraError(
            f"{target.name} runs the active CA: make another cert-manager active first "
            "(docs/operations.md: failover)"
        )
    if not runs_here(target):
        return
    if not target.certs:
        raise PyinfraError(f"{target.name} holds no certificates of this deploy")
    work = Work(target, list(target.certs), reason="member removed", removing=True)
    _steps(
        work,
        [
            (f"Find the certificates of {target.name}", find_certificates),
            (f"Take {target.name} out of etcd (through {plan.active_ca})", leave_cluster),
            (f"Stop etcd on {target.name}", stop_on_target),
            ("Revoke its certificates at the CA", revoke_at_ca),
            ("Push the new CRL to every member", push_crl),
            ("Restart members whose etcd predates their CRL", end_open_connections),
            (f"Remove units, certificates and keys from {target.name}", clean_target),
            ("Report", lambda work: report(work, "remove_node.py")),
        ],
    )
