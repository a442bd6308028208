"""Revocation on the hosts: the CRL on every etcd member, and the CA's part in it.

Members get the fetch script (templates/etcd-pki-crl-fetch.j2), `etcd-pki-crl.service`
and its timer. Where a member's CRL is missing, does not verify, has passed its
nextUpdate or lacks a revocation the CA knows, the deploy runs the fetch at once: the
CRL is in place before etcd starts or restarts with it (tasks/etcd.py runs later).

The active CA keeps its ledger of issued certificates current (from step-ca's log),
and revokes again what its database lacks after a failover to a standby or a restore
of an older backup: the ledger's revocations and those in members' CRLs that are newer
than the CA's own.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pyinfra import host, inventory, logger, state
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError

from etcd_pki.commands.crl import CURSOR, SERVICE, TIMER, crl_fetch_now_command, scan_ledger_command
from etcd_pki.commands.files import (
    timers_enabled_command,
    units_enabled_command,
    write_files_command,
)
from etcd_pki.commands.metrics import script_path as metrics_script_path
from etcd_pki.commands.tokens import revoke_command
from etcd_pki.crl import (
    CRL_PATH,
    INTERMEDIATES_PATH,
    CrlInfo,
    LedgerEntry,
    Revocation,
    decode_b64,
    fetch_reason,
    inspect_crl,
    live_revocations,
    reapply,
)
from etcd_pki.metrics import STATE_DIR
from etcd_pki.plan import HostPlan
from etcd_pki.settings import Settings
from facts.pki import FileBase64, HttpsBase64
from facts.redundancy import LedgerLines, LedgerPending
from facts.snapshot import Want
from tasks import batch
from tasks.common import call, node_name, on_hosts, pyinfra_host, render, run_on
from tasks.run import (
    ca_root_before_run,
    fact_before_run,
    fact_want,
    get_plan,
    snapshot,
    this_host,
    this_run,
)

UNIT_DIR = "/etc/systemd/system"


def script_path(s: Settings) -> str:
    return f"{s.bin_dir}/etcd-pki-crl-fetch"


def _unit_paths(s: Settings) -> tuple[str, str, str]:
    return script_path(s), f"{UNIT_DIR}/{SERVICE}", f"{UNIT_DIR}/{TIMER}"


def local_crl_url(s: Settings) -> str:
    """The CRL as the CA node itself reads it (its TLS certificate names 127.0.0.1)."""
    return f"https://127.0.0.1:{s.ca_port}{CRL_PATH}"


def unit_files(me: HostPlan) -> list[tuple[str, str, str]]:
    """(path, text, mode) of the fetch script, its service and its timer on ``me``."""
    plan = get_plan()
    s = me.settings
    script, service, timer = _unit_paths(s)
    q = shlex.quote
    return [
        (
            script,
            render(
                "templates/etcd-pki-crl-fetch.j2",
                crl_url=q(plan.ca_url + CRL_PATH),
                intermediates_url=q(plan.ca_url + INTERMEDIATES_PATH),
                root=q(s.trusted_root),
                dest=q(s.crl_file),
            ),
            "755",
        ),
        (
            service,
            render(
                "templates/etcd-pki-crl.service.j2",
                script=script,
                dest=s.crl_file,
                ssl_dir=s.ssl_dir,
                metrics=metrics_script_path(s.bin_dir),
                metrics_dir=s.metrics_dir,
                state_dir=STATE_DIR,
            ),
            "644",
        ),
        (
            timer,
            render(
                "templates/etcd-pki-crl.timer.j2",
                on_calendar=s.crl_fetch_on_calendar,
                randomized_delay=s.crl_fetch_randomized_delay,
            ),
            "644",
        ),
    ]


def member_reads(me: HostPlan) -> Want:
    if not me.is_etcd:
        return Want()
    paths = _unit_paths(me.settings)
    return Want.of(stat=paths, sha1=paths, units={SERVICE, TIMER}) | fact_want(
        FileBase64, path=me.settings.crl_file
    )


def ca_reads(me: HostPlan) -> Want:
    """The active CA's current CRL, the intermediate that signs it, its ledger's
    revocations and what step-ca logged since the ledger was last brought up to date."""
    if not me.is_active_ca:
        return Want()
    s = me.settings
    return (
        fact_want(HttpsBase64, url=local_crl_url(s), root=s.ca_root)
        | fact_want(LedgerLines, path=s.ledger, kind="revoked")
        | fact_want(LedgerPending, cursor=CURSOR)
        | Want.of(contents={s.ca_intermediate}, stat={s.ledger})
    )


@dataclass(frozen=True)
class CaView:
    """What the active CA held before the run (public material)."""

    existed: bool  # it had a CA (root) before the run
    crl: CrlInfo | None  # its current CRL; None: new, or step-ca did not answer
    intermediate: str | None
    root: str | None
    ledger_revoked: dict[int, LedgerEntry] = field(default_factory=dict)  # unexpired only
    pending: list[LedgerEntry] = field(default_factory=list)

    @property
    def revoked(self) -> frozenset[int]:
        """Every serial the CA (or its ledger) knows as revoked."""
        return (self.crl.serials if self.crl else frozenset()) | frozenset(self.ledger_revoked)


def ca_view() -> CaView:
    """The active CA's revocation state before the run (from its snapshot)."""
    plan = get_plan()
    root = ca_root_before_run()
    if root is None:
        return CaView(existed=False, crl=None, intermediate=None, root=None)
    s = plan.ca.settings

    def read(_: str) -> CaView:
        der = decode_b64(fact_before_run(HttpsBase64, url=local_crl_url(s), root=s.ca_root))
        try:
            crl = inspect_crl(der) if der else None
        except ValueError:
            crl = None
        return CaView(
            existed=True,
            crl=crl,
            intermediate=snapshot(ca_reads(plan.ca)).contents.get(s.ca_intermediate),
            root=root,
            ledger_revoked=live_revocations(
                fact_before_run(LedgerLines, path=s.ledger, kind="revoked")
            ),
            pending=fact_before_run(LedgerPending, cursor=CURSOR),
        )

    return on_hosts([plan.active_ca], read)[plan.active_ca]


def member_crls() -> dict[str, CrlInfo]:
    """Each etcd member's installed CRL that parses, as before the run."""
    plan = get_plan()

    def read(name: str) -> bytes | None:
        return decode_b64(fact_before_run(FileBase64, path=plan.hosts[name].settings.crl_file))

    found = {}
    try:
        ders = on_hosts([m.name for m in plan.etcd_members], read)
    except Exception:  # noqa: BLE001 - an unreachable member holds nothing we can use
        return {}
    for name, der in ders.items():
        try:
            found[name] = inspect_crl(der) if der else None
        except ValueError:
            continue
    return {name: crl for name, crl in found.items() if crl}


def wanted_serials(view: CaView) -> frozenset[int]:
    """The revoked serials every member's CRL must list after this run."""
    again = reapply(view.crl, view.ledger_revoked, member_crls().values()) if view.existed else []
    return view.revoked | {r.serial for r in again}


def ca_crl_now() -> CrlInfo:
    """The active CA's CRL as it serves it now: read once per run, at execute time, when
    step-ca did not answer before the run (a restore or a failover starts it)."""
    run = this_run()
    with run.ca_crl_lock:
        if run.ca_crl is None:
            plan = get_plan()
            s = plan.ca.settings
            command = HttpsBase64().command(url=local_crl_url(s), root=s.ca_root)
            der = decode_b64(run_on(pyinfra_host(plan.active_ca), command, "reading the CA's CRL"))
            if not der:
                raise PyinfraError(f"step-ca on {plan.active_ca} serves no CRL at {CRL_PATH}")
            run.ca_crl = inspect_crl(der)
    return run.ca_crl


@deploy("CRL on this member")
def member_crl() -> None:
    """The CRL fetch (script, service, timer) on an etcd member, and a fetch now where the
    member's CRL is missing, broken or lacks a revocation: etcd refuses every connection
    without a CRL it can parse, so this runs before etcd starts with it.

    .. code:: python

        member_crl()
    """
    me = this_host()
    s = me.settings
    before = snapshot(member_reads(me))
    written = [(p, t, m) for p, t, m in unit_files(me) if not before.has_text(p, t, mode=m)]
    view = ca_view()
    installed = decode_b64(fact_before_run(FileBase64, path=s.crl_file))
    idle = not before.unit_is(TIMER, running=True, enabled=True)
    units = {SERVICE: f"{UNIT_DIR}/{SERVICE}", TIMER: f"{UNIT_DIR}/{TIMER}"}
    paths = {p for p, *_ in written}
    # A unit file systemd has loaded is read again only after a daemon-reload.
    reload = any(p in paths and not before.unit_not_loaded(u) for u, p in units.items())
    enable = ""
    if reload:
        enable = units_enabled_command([TIMER] if idle else [], daemon_reload=True)
    elif idle:
        enable = timers_enabled_command([TIMER])

    def why(crl: CrlInfo | None) -> str | None:
        seen = replace(view, crl=crl)
        return fetch_reason(installed, seen.intermediate, seen.root, wanted_serials(seen))

    def steps(reason: str | None) -> None:
        done = [f"{len(written)} file(s)" if written else "", "timer enabled" if idle else ""]
        done.append(f"fetch now ({reason})" if reason else "")
        fetch = reason or script_path(s) in paths  # a new script is tried at once
        batch.steps(
            name=f"CRL fetch on this member: {', '.join(filter(None, done))}",
            commands=[
                write_files_command(written),
                enable,
                crl_fetch_now_command() if fetch else "",
            ],
        )

    if view.existed and view.crl is None:
        # step-ca did not answer before the run: what its CRL lists is known once this
        # runs (after init_ca started it).
        found: dict[str, str | None] = {}

        def check() -> bool:
            found["why"] = why(ca_crl_now())
            return bool(written or idle or found["why"])

        call("CRL fetch on this member", lambda: steps(found["why"]), check=check)
        return
    reason = why(view.crl)
    if written or reason or idle:
        steps(reason)


@deploy("Revocations on the CA")
def reapply_revocations() -> None:
    """On the active CA: revoke again what its database lacks, so that its CRL lists
    everything revoked before a failover or a restore (and step-ca refuses to renew it).

    .. code:: python

        reapply_revocations()
    """
    plan = get_plan()
    me = this_host()
    view = ca_view()
    if not view.existed:
        return  # a CA made in this run has revoked nothing
    todo: list[Revocation] = []

    def check() -> bool:
        # step-ca did not answer before the run (a restore, a failover): ask it now.
        crl = view.crl or ca_crl_now()
        todo[:] = reapply(crl, view.ledger_revoked, member_crls().values())
        return bool(todo)

    def apply() -> None:
        out = run_on(
            host, revoke_command(me.settings, plan.ca_url, todo), "revoking certificates again"
        )
        parse_revoked(out, todo, me.name)
        logger.info(
            f"{host.print_prefix}revoked again at step-ca: "
            + ", ".join(f"{r.serial} ({r.subject or 'from a member CRL'})" for r in todo)
        )

    call(
        "Revocations made before a failover or restore, made again",
        apply,
        check=check,
        check_now=view.crl is not None,
    )


def parse_revoked(output: str, revocations: Sequence[Revocation], ca: str) -> list[str]:
    """The serials ``output`` of `revoke_command` reports as revoked; PyinfraError naming
    the first one that failed or got no answer."""
    done: dict[int, str] = {}
    errors: dict[int, str] = {}
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        serial, _, why = rest.partition(" ")
        if serial.isdigit() and kind in ("revoked", "already"):
            done[int(serial)] = kind
        elif serial.isdigit() and kind == "error":
            errors[int(serial)] = why.strip()
    for r in revocations:
        if r.serial not in done:
            why = errors.get(r.serial, "no answer from the CA node")
            raise PyinfraError(f"could not revoke serial {r.serial} ({r.subject}) on {ca}: {why}")
    return [str(r.serial) for r in revocations]


@deploy("Ledger of issued certificates")
def record_ledger() -> None:
    """On the active CA, at the end of a run: record in the ledger every certificate
    step-ca issued since it was last brought up to date (this run's and the renewals'),
    so that revocation by serial finds them (and standbys get them with the material).

    .. code:: python

        record_ledger()
    """
    me = this_host()
    view = ca_view()

    def apply() -> None:
        run_on(host, scan_ledger_command(me.settings), "recording issued certificates")

    call(
        f"Record issued certificates in {me.settings.ledger}",
        apply,
        check=lambda: bool(view.pending) or this_run().minted,
    )


def record_renewals() -> None:
    """After renewals on the hosts of this run (renew_now.py): the first host of the run
    (in inventory order) records them in the CA's ledger, once."""
    me = this_host()
    active = [h for h in inventory if h in state.activated_hosts]
    if not active or node_name(active[0]) != me.name:
        return
    plan = get_plan()

    def apply() -> None:
        run_on(
            pyinfra_host(plan.active_ca),
            scan_ledger_command(plan.ca.settings),
            "recording the renewals in the CA's ledger",
        )

    call(f"Record the renewals in the ledger on {plan.active_ca}", apply)
