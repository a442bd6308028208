"""The status report: one row per host and certificate, as a terminal table, JSON for
monitoring and a self-contained HTML page. Pure: built from the plan and the same
observations the audit reads (``etcd_pki.audit.HostObservation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .audit import evaluate_cert, evaluate_crl, evaluate_timer
from .certs import common_name, leaf_sans, lifetime_used
from .crl import LedgerEntry, inspect_crl
from .findings import ERROR
from .observation import CaCrl, HostObservation
from .plan import ClusterPlan, HostPlan

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates"
HTML_TEMPLATE = "status.html.j2"

# State of a certificate, worst first: what the row, the bar and monitoring show.
STATES = ("missing", "invalid", "expired", "overdue", "due", "ok")
_STATE_OF_RULE = {
    "cert-missing": "missing",
    "key-missing": "missing",
    "cert-unreadable": "invalid",
    "key-unreadable": "invalid",
    "key-mismatch": "invalid",
    "chain": "invalid",
    "subject": "invalid",
    "sans": "invalid",
    "eku": "invalid",
    "expired": "expired",
    "renewal-overdue": "overdue",
    "renewal-due": "due",
}


@dataclass
class CertRow:
    """One certificate on one host, as the report shows it."""

    host: str
    name: str
    kind: str
    path: str
    subject: str | None
    sans: list[str]
    serial: str | None  # hex, zero-padded to whole bytes
    not_before: datetime | None
    not_after: datetime | None
    days_left: float | None
    used_percent: float | None
    threshold: int
    next_run: datetime | None  # next run of its renewal timer
    timer: str  # "enabled, active" / "missing" / ...
    state: str  # one of STATES
    problems: list[str] = field(default_factory=list)  # rule: detail

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("not_before", "not_after", "next_run"):
            value = getattr(self, key)
            data[key] = value.isoformat(timespec="seconds") if value else None
        for key in ("days_left", "used_percent"):
            if data[key] is not None:
                data[key] = round(data[key], 4)
        return data


def host_rows(
    hp: HostPlan, obs: HostObservation, root_pem: str | None, now: datetime
) -> list[CertRow]:
    """Rows for each certificate planned on ``hp``."""
    rows = []
    threshold = hp.settings.renew_threshold_percent
    for spec in hp.certs:
        found = obs.certs.get(spec.name)
        timer, service = (obs.timers.get(f"{spec.unit}.{sfx}") for sfx in ("timer", "service"))
        findings = evaluate_cert(spec, found, root_pem, threshold, now)
        findings += evaluate_timer(spec, timer, service)
        states = [_STATE_OF_RULE[f.rule] for f in findings if f.rule in _STATE_OF_RULE]
        state = min(states, key=STATES.index) if states else "ok"
        row = CertRow(
            host=hp.name,
            name=spec.name,
            kind=spec.kind,
            path=spec.crt,
            subject=None,
            sans=[],
            serial=None,
            not_before=None,
            not_after=None,
            days_left=None,
            used_percent=None,
            threshold=threshold,
            next_run=timer.next_run if timer else None,
            timer=_timer_text(timer),
            state=state,
            problems=[f"{f.rule}: {f.detail}" for f in findings],
        )
        leaf = None
        if found is not None and found.chain_pem:
            try:
                leaf = found.leaf
            except ValueError:
                leaf = None
        if leaf is not None:
            row.subject = common_name(leaf)
            row.sans = sorted(leaf_sans(leaf), key=_san_order)
            serial = f"{leaf.serial_number:x}"
            row.serial = serial.zfill(len(serial) + len(serial) % 2)
            row.not_before = leaf.not_valid_before_utc
            row.not_after = leaf.not_valid_after_utc
            row.days_left = (row.not_after - now).total_seconds() / 86400
            row.used_percent = lifetime_used(leaf, now) * 100
        rows.append(row)
    return rows


def _san_order(name: str) -> tuple[int, str]:
    return (1 if name[:1].isdigit() or ":" in name else 0, name)


def _timer_text(timer) -> str:
    if timer is None or not timer.loaded:
        return "missing"
    return f"{timer.enabled or '?'}, {timer.active or '?'}"


def worst(rows: Iterable[CertRow]) -> str:
    states = [r.state for r in rows]
    return min(states, key=STATES.index) if states else "ok"


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def left_text(days: float | None) -> str:
    """Time left, readable: ``730 d``, ``5.2 h``, ``12 min``, ``expired``."""
    if days is None:
        return "-"
    if days <= 0:
        return "expired"
    if days >= 2:
        return f"{days:.0f} d"
    if days * 24 >= 2:
        return f"{days * 24:.1f} h"
    return f"{days * 1440:.0f} min"


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


def _roles(hp: HostPlan) -> str:
    roles = []
    if hp.is_etcd:
        roles.append("etcd")
    if not hp.is_etcd and hp.certs:
        roles.append("client")
    if hp.is_active_ca:
        roles.append("CA")
    elif hp.is_cert_manager:
        roles.append("standby CA")
    return ", ".join(roles)


def _cells(r: CertRow) -> tuple[str, ...]:
    return (
        r.kind,
        r.subject or "-",
        r.serial or "-",
        _when(r.not_after),
        left_text(r.days_left),
        f"{r.used_percent:.1f}%" if r.used_percent is not None else "-",
        _when(r.next_run),
        r.state,
    )


TABLE_HEADERS = ("CERT", "SUBJECT", "SERIAL", "NOT AFTER (UTC)", "LEFT", "USED", "NEXT CHECK")


def render_table(plan: ClusterPlan, rows: Sequence[CertRow], unreachable: dict[str, str]) -> str:
    """Plain-text table per host, for a terminal (no colour); columns line up across
    hosts. SANs and problems go on indented lines below their certificate."""
    headers = (*TABLE_HEADERS, "STATE")
    cells = {id(r): _cells(r) for r in rows}
    widths = [max([len(h)] + [len(c[i]) for c in cells.values()]) for i, h in enumerate(headers)]
    right = {4, 5}  # numbers
    fmt = "  ".join(f"{{:{'>' if i in right else '<'}{w}}}" for i, w in enumerate(widths))
    indent = " " * (widths[0] + 4)
    lines: list[str] = []
    for name, hp in plan.hosts.items():
        mine = [r for r in rows if r.host == name]
        if not mine and name not in unreachable:
            continue
        lines.append(f"{name} ({_roles(hp)}, {hp.address})")
        if name in unreachable:
            lines += [f"  not read: {unreachable[name]}", ""]
            continue
        lines.append("  " + fmt.format(*headers).rstrip())
        for r in mine:
            lines.append("  " + fmt.format(*cells[id(r)]).rstrip())
            lines.append(f"{indent}SANs: {', '.join(r.sans) or '-'}")
            lines += [f"{indent}! {problem}" for problem in r.problems]
        lines.append("")
    counts = {s: sum(r.state == s for r in rows) for s in STATES}
    lines.append(
        f"{len(rows)} certificate(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + (f"; {len(unreachable)} host(s) not read" if unreachable else "")
    )
    return "\n".join(lines)


def report_data(
    plan: ClusterPlan,
    rows: Sequence[CertRow],
    unreachable: dict[str, str],
    now: datetime,
    root: dict[str, Any] | None = None,
    intermediate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document (also the HTML template's input)."""
    hosts = []
    for name, hp in plan.hosts.items():
        mine = [r for r in rows if r.host == name]
        if not mine and name not in unreachable:
            continue
        hosts.append(
            {
                "name": name,
                "address": hp.address,
                "roles": _roles(hp),
                "error": unreachable.get(name),
                "state": worst(mine) if name not in unreachable else "unknown",
                "certificates": [r.as_dict() for r in mine],
            }
        )
    counts = {s: sum(r.state == s for r in rows) for s in STATES}
    return {
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "ca_url": plan.ca_url,
        "root": root,
        "intermediate": intermediate,
        "state": worst(rows) if not unreachable else "unknown",
        "counts": counts,
        "hosts": hosts,
    }


def render_html(data: dict[str, Any], template_dir: Path = TEMPLATE_DIR) -> str:
    """The self-contained HTML page (inline CSS, no external assets)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["left"] = left_text
    env.filters["when"] = lambda iso: iso.replace("T", " ")[:16] if iso else "-"
    return env.get_template(HTML_TEMPLATE).render(**data, error_severity=ERROR)


def crl_rows(
    plan: ClusterPlan,
    observations: dict[str, HostObservation],
    ca: CaCrl | None,
    root_pem: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Per etcd member: its CRL's number, thisUpdate, nextUpdate, revoked count, and what
    the audit says of it ("ok" or the rules it breaks)."""
    rows = []
    for name, hp in plan.hosts.items():
        obs = observations.get(name)
        if obs is None or not hp.is_etcd or obs.error:
            continue
        row: dict[str, Any] = {"host": name, "number": None, "this_update": None}
        row |= {"next_update": None, "revoked": None}
        try:
            info = inspect_crl(obs.crl) if obs.crl else None
        except ValueError:
            info = None
        if info:
            row |= {
                "number": info.number,
                "this_update": info.this_update.isoformat(timespec="seconds"),
                "next_update": info.next_update.isoformat(timespec="seconds")
                if info.next_update
                else None,
                "revoked": len(info.serials),
            }
        rules = [
            f.rule for f in evaluate_crl(hp, obs, ca, root_pem, now) if f.rule.startswith("crl-")
        ]
        row["state"] = ", ".join(rules) or "ok"
        rows.append(row)
    return rows


def revoked_list(ca: CaCrl | None, ledger: list[LedgerEntry]) -> list[dict[str, Any]]:
    """The serials the CA's CRL lists, with what the ledger knows of each."""
    if not ca or not ca.crl:
        return []
    known = {e.serial: e for e in ledger if e.kind == "revoked"}
    out = []
    for serial in sorted(ca.crl.serials):
        e = known.get(serial)
        out.append(
            {
                "serial": str(serial),
                "subject": e.subject if e else None,
                "reason": e.detail if e else None,
                "revoked_at": e.time if e else None,
            }
        )
    return out


def render_revocation(ca: CaCrl | None, rows: list[dict], revoked: list[dict]) -> str:
    """The CRL lines of the terminal report."""
    if ca is None:
        return "CRL: the CA could not be read"
    ca_line = (
        f"CRL of the CA: number {ca.crl.number}, next update {_when(ca.crl.next_update)} UTC, "
        f"{len(ca.crl.serials)} revoked"
        if ca.crl
        else "CRL of the CA: none served"
    )
    lines = [ca_line]
    for r in rows:
        nxt = (r["next_update"] or "-").replace("T", " ")[:16]
        lines.append(
            f"  {r['host']}: number {r['number'] if r['number'] is not None else '-'}, "
            f"next update {nxt}, {r['revoked'] if r['revoked'] is not None else '-'} revoked"
            f" ({r['state']})"
        )
    for r in revoked:
        about = ", ".join(filter(None, (r["subject"], r["reason"], r["revoked_at"])))
        lines.append(f"  revoked {r['serial']}" + (f" ({about})" if about else ""))
    return "\n".join(lines)


def root_info(root_pem: str | None) -> dict[str, Any] | None:
    """Subject, validity and fingerprint of the CA's root (or intermediate), for the
    report's header."""
    if not root_pem:
        return None
    from cryptography import x509

    from .certs import fingerprint

    cert = x509.load_pem_x509_certificate(root_pem.encode())
    return {
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(timespec="seconds"),
        "fingerprint": fingerprint(root_pem),
    }


def render_ca(
    root: dict[str, Any] | None, intermediate: dict[str, Any] | None, now: datetime
) -> str:
    """The CA's root and intermediate with their validity; one expiring within a year is
    marked with the command that rotates it (docs/rotation.md)."""
    lines = ["--> CA"]
    for kind, info in (("root", root), ("intermediate", intermediate)):
        if info is None:
            lines.append(f"  {kind}: could not be read")
            continue
        end = datetime.fromisoformat(info["not_after"])
        note = ""
        if (end - now).days < 365:
            note = f"  (expires within a year: rotate_ca.py --data rotate={kind})"
        lines.append(
            f"  {kind}: {info['subject']}, valid until {end:%Y-%m-%d}, "
            f"fingerprint {info['fingerprint'][:16]}...{note}"
        )
    return "\n".join(lines)
