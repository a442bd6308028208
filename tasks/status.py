"""The status report: read certificates and timers on every host, then the last host
writes reports/status.json and reports/status.html on the controller and prints the
table. Changes nothing on any host.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from pyinfra import host, state
from pyinfra.api import deploy
from pyinfra.operations import python

from etcd_pki.commands.crl import SERVICE as CRL_SERVICE
from etcd_pki.crl import LedgerEntry
from etcd_pki.observation import HostObservation
from etcd_pki.status import (
    crl_rows,
    host_rows,
    render_ca,
    render_html,
    render_revocation,
    render_table,
    report_data,
    revoked_list,
)
from facts.audit import UnitExposure
from facts.redundancy import LedgerLines
from tasks.audit import (
    _active_in_order,
    ca_certificates,
    ca_crl_or_none,
    observe,
    trust_or_none,
)
from tasks.common import node_name, pyinfra_host
from tasks.run import get_plan, this_host, this_run

DEFAULT_DIR = "reports"


def deploy_units(me) -> tuple[str, ...]:
    """The services the deploy runs on ``me``."""
    units = [f"{c.unit}.service" for c in me.certs]
    if me.is_etcd:
        units += [f"{me.settings.etcd_service_name}.service", CRL_SERVICE]
    if me.is_active_ca:
        units.append("step-ca.service")
    return tuple(units)


def render_exposure(exposure: dict[str, dict[str, float]]) -> str:
    """One line per host: each service's systemd-analyze exposure (0 best, 10 worst)."""
    lines = ["Service exposure (systemd-analyze security; 0 is best, 10 worst):"]
    for name, scores in exposure.items():
        shown = ", ".join(f"{u.removesuffix('.service')} {v:.1f}" for u, v in scores.items())
        lines.append(f"  {name}: {shown or 'not read'}")
    return "\n".join(lines)


def write_report(directory: Path, data: dict, html: str) -> tuple[Path, Path]:
    """Write status.json and status.html atomically (a reader never sees half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("status.json", json.dumps(data, indent=2) + "\n"), ("status.html", html)):
        target = directory / name
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(target)
        written.append(target)
    return written[0], written[1]


def ca_ledger() -> list[LedgerEntry]:
    """The revocations the active CA's ledger records ([] when it cannot be read)."""
    plan = get_plan()
    try:
        return pyinfra_host(plan.active_ca).get_fact(
            LedgerLines, path=plan.ca.settings.ledger, kind="revoked"
        )
    except Exception:  # noqa: BLE001 - the report says the CA could not be read
        return []


@deploy("Status report")
def status_report() -> None:
    """Collect this host's certificates and timers; the last host writes the report.

    Options (``--data``): ``status_dir`` (default ``reports``, relative to the
    directory pyinfra runs in).

    .. code:: python

        status_report()
    """
    plan = get_plan()
    me = this_host()
    run = this_run()
    observations: dict[str, HostObservation] = run.status
    observations[me.name] = observe(me, full=False)
    exposure = run.exposure
    exposure[me.name] = host.get_fact(UnitExposure, units=deploy_units(me))

    def report() -> bool:
        if node_name(_active_in_order()[-1]) != me.name:
            return False
        now = datetime.now(UTC)
        trust = trust_or_none()
        root = trust.chain if trust else None
        rows, unreachable = [], {}
        for name, obs in observations.items():
            if obs.error:
                unreachable[name] = obs.error
            else:
                rows += host_rows(plan.hosts[name], obs, root, now)
        for h in state.inventory.iter_activated_hosts():
            if h in state.failed_hosts and node_name(h) not in observations:
                unreachable[node_name(h)] = "connection failed"
        ca = ca_crl_or_none()
        cas = ca_certificates(trust, ca)
        data = report_data(plan, rows, unreachable, now, cas["root"], cas["intermediate"])
        members = crl_rows(plan, observations, ca, root, now)
        revoked = revoked_list(ca, ca_ledger())
        data["crl"] = {"members": members, "revoked": revoked}
        scores = {n: exposure[n] for n in plan.hosts if n in exposure}
        data["exposure"] = scores
        directory = Path(state.cwd or ".") / str(host.data.get("status_dir") or DEFAULT_DIR)
        json_path, html_path = write_report(directory, data, render_html(data))
        click.echo(
            render_ca(data["root"], data["intermediate"], now)
            + "\n--> Certificate status\n"
            + render_table(plan, rows, unreachable)
            + "\n"
            + render_revocation(ca, members, revoked)
            + "\n"
            + render_exposure(scores)
            + f"\nwritten: {json_path}, {html_path}"
        )
        return False  # reporting is not a change

    python.call(name="Status report", function=lambda: None, _if=report)
