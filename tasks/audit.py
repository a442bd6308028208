"""Read-only inspection of every host for the audit (audit.py) and the status report
(status.py). Nothing here changes a host.

How the verdict is reached, and why this way:

* At prepare time each host's facts are read once into a
  :class:`~etcd_pki.audit.HostObservation` and evaluated by the pure rules in
  ``etcd_pki/audit.py``; the result is kept in a module-level collector, keyed by the
  run's inventory (deploy files are re-executed per host, imported modules are not).
* Every host then gets two operations, both gated by ``_if`` so that a clean host
  reports "No changes": "Audit findings" logs what was found on it, and "Audit
  verdict" fails *that host* when it has violations (a ``python.call`` whose callback
  returns False: pyinfra counts an error on the host, with no traceback). pyinfra
  exits non-zero when any host failed, and the error is attributed to the host the
  violation is on.
* The last active host in inventory order also scans the controller and prints the
  summary of every host's findings. Operations run in lock-step, so by then every
  host's findings are in the collector. Controller findings fail that last host's
  verdict (the controller is not an inventory host), and say "controller" in their
  host column.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
from pyinfra import host, inventory, state
from pyinfra.api import Host, deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from etcd_pki.audit import evaluate_host, summary
from etcd_pki.commands.crl import SERVICE as CRL_SERVICE
from etcd_pki.commands.crl import TIMER as CRL_TIMER
from etcd_pki.commands.rotation import NEXT, RETIRED
from etcd_pki.controller_scan import scan_controller
from etcd_pki.crl import decode_b64, inspect_crl
from etcd_pki.findings import ERROR, Finding
from etcd_pki.observation import CaCrl, ExpectedFile, HostObservation
from etcd_pki.plan import HostPlan
from etcd_pki.rotation import Trust, root_rotation_unfinished, trust_now
from etcd_pki.status import host_rows, left_text, render_ca, root_info
from facts.audit import CaSecretFiles, FileStats, PrivateKeyFiles, UnitStates
from facts.pki import CertStates, FileBase64, HttpsBase64, NewestPublicFile, PublicFile
from tasks.ca import CA_DIRS, CA_FILES
from tasks.common import node_name, pyinfra_host
from tasks.crl import local_crl_url
from tasks.install import DOWNLOAD_DIR
from tasks.run import ca_root_pem, get_plan, rotation_before_run, this_host, this_run

# Where a CA secret (by file name) is searched for on every host.
SECRET_ROOTS = ("/etc", "/root", "/home", "/opt", "/srv", "/tmp", "/var", "/usr/local")
# Directories scanned for private keys of any kind (by content) on every host, beside
# ssl_dir, step_dir and ca_dir. `.ssh` and `.gnupg` directories are not searched.
KEY_DIRS = ("/etc/etcd", "/etc/systemd/system", "/root", "/tmp", "/var/tmp", DOWNLOAD_DIR)


@dataclass
class HostResult:
    observation: HostObservation
    findings: list[Finding] = field(default_factory=list)
    expiry: list[dict] = field(default_factory=list)  # per certificate: days left etc.


def results() -> dict[str, HostResult]:
    """This run's results so far, by node name."""
    return this_run().audit


def expected_ca_files(me: HostPlan) -> list[ExpectedFile]:
    """The CA's files and directories with the owner/group/mode tasks/ca.py gives them."""
    s = me.settings

    def who(value: str) -> str:
        return s.ca_user if value == "CA" else value

    return [
        ExpectedFile(
            f"{s.ca_dir}/{path}".rstrip("/"),
            who(owner),
            who(group),
            mode,
            # A rotation's files exist while one runs (its state from the first one on).
            optional=path.startswith("rotation/"),
        )
        for path, owner, group, mode in (*CA_FILES, *CA_DIRS)
        # the root key's own password exists only with backup recipients to encrypt it to
        if not (path == "secrets/root_ca_key.password.age" and not s.backup_recipients)
    ]


def ca_crl_or_none() -> CaCrl | None:
    """The active CA's current CRL and intermediate (read once per run), and during an
    unfinished rotation the intermediate it replaced; None when the CA cannot be read."""
    run = this_run()
    if not run.audit_ca_crl_read:
        plan = get_plan()
        s = plan.ca.settings
        ca = pyinfra_host(plan.active_ca)
        try:
            der = decode_b64(ca.get_fact(HttpsBase64, url=local_crl_url(s), root=s.ca_root))
            intermediate = ca.get_fact(PublicFile, path=s.ca_intermediate)
            rotation = rotation_before_run()
            previous = None
            if rotation is not None and not rotation.finished:
                retired = f"{s.ca_dir}/{RETIRED}"
                previous = ca.get_fact(
                    NewestPublicFile, directory=retired, prefix="intermediate_ca.", suffix=".crt"
                )
            crl = inspect_crl(der) if der else None
            run.audit_ca_crl = CaCrl(crl, intermediate, (previous,) if previous else ())
        except (PyinfraError, ValueError):
            run.audit_ca_crl = None
        run.audit_ca_crl_read = True
    return run.audit_ca_crl


def trust_or_none() -> Trust | None:
    """What hosts must trust now (read once per run): the CA's root, or in the middle of
    a root rotation what that phase allows (etcd_pki/rotation.py: trust_now); None when
    the CA cannot be read."""
    run = this_run()
    if not run.audit_trust_read:
        run.audit_trust = _read_trust()
        run.audit_trust_read = True
    return run.audit_trust


def _read_trust() -> Trust | None:
    try:
        root = ca_root_pem()
        state = rotation_before_run()
    except PyinfraError:
        return None
    if not root_rotation_unfinished(state):
        return trust_now(state, root, None, None)
    plan = get_plan()
    ca, d = pyinfra_host(plan.active_ca), f"{plan.ca.settings.ca_dir}/{NEXT}"
    try:
        next_root = ca.get_fact(PublicFile, path=f"{d}/root_ca.crt")
        previous = ca.get_fact(PublicFile, path=f"{d}/previous_root_ca.crt")
        return trust_now(state, root, next_root, previous)
    except (PyinfraError, ValueError):
        return None


def ca_certificates(trust: Trust | None, ca: CaCrl | None) -> dict[str, dict | None]:
    """The CA's current root and intermediate (subject, not-after, fingerprint) for the
    headers of the audit and the status report; None where they could not be read."""
    return {
        "root": root_info(trust.current if trust else None),
        "intermediate": root_info(ca.intermediate if ca else None),
    }


def observe(me: HostPlan, full: bool = True) -> HostObservation:
    """Read this host's state with facts. ``full=False``: certificates and timers only.

    A fact that cannot be read does not raise in pyinfra 3: it marks the host failed and
    returns the fact's default (which would look like "no certificate"). So the result
    is only trusted when the host is still not failed afterwards.
    """
    return _observe(me, full)


class _FactFailed(Exception):
    pass


def _observe(me: HostPlan, full: bool) -> HostObservation:
    s = me.settings
    me_host = pyinfra_host(me.name)

    def fact(cls, **kwargs):
        value = host.get_fact(cls, **kwargs)
        if me_host in state.failed_hosts:
            raise _FactFailed(cls.__name__)
        return value

    try:
        certs = fact(CertStates, certs=me.certs, step=f"{s.bin_dir}/step") if me.certs else {}
        units = tuple(f"{c.unit}.{sfx}" for c in me.certs for sfx in ("timer", "service"))
        if me.is_cert_manager:
            units += ("step-ca.service",)
        if me.is_etcd:
            units += (CRL_TIMER, CRL_SERVICE)
        unit_states = fact(UnitStates, units=units) if units else {}
        if not full:
            crl = fact(FileBase64, path=s.crl_file) if me.is_etcd else None
            return HostObservation(certs=certs, timers=unit_states, crl=decode_b64(crl))
        root_path = s.trusted_root
        paths = (root_path,)
        if me.is_cert_manager:
            paths += tuple(f.path for f in expected_ca_files(me))
        key_dirs = tuple(dict.fromkeys((s.ssl_dir, s.step_dir, s.ca_dir, *KEY_DIRS)))
        roots = tuple(host.data.get("audit_secret_roots") or SECRET_ROOTS)
        crl = fact(FileBase64, path=s.crl_file) if me.is_etcd else None
        return HostObservation(
            certs=certs,
            timers=unit_states,
            crl=decode_b64(crl),
            root_pem=fact(PublicFile, path=root_path) if me.certs else None,
            stats=fact(FileStats, paths=paths),
            ca_service=unit_states.get("step-ca.service"),
            secret_files=fact(CaSecretFiles, roots=roots),
            private_key_files=fact(PrivateKeyFiles, dirs=key_dirs),
        )
    except _FactFailed as e:
        return HostObservation(error=f"facts could not be read ({e} failed, see above)")
    except PyinfraError as e:
        return HostObservation(error=f"facts could not be read: {e}")


def _log(h: Host, finding: Finding) -> None:
    colour = "red" if finding.severity == ERROR else "yellow"
    h.log_styled(
        f"{finding.rule}{'' if finding.severity == ERROR else ' (warning)'}: "
        f"{finding.path}: {finding.detail}",
        fg=colour,
    )


def _active_in_order() -> list[Host]:
    return [h for h in inventory if h in state.active_hosts]


def _not_audited() -> list[str]:
    """Hosts of this run (inside --limit) that failed before the verdict."""
    return [node_name(h) for h in state.inventory.iter_activated_hosts() if h in state.failed_hosts]


def controller_dirs() -> tuple[list[str], list[str]]:
    """(walked recursively, read one level deep) on the controller."""
    recursive = [str(Path(state.cwd or ".").resolve())]
    extra = host.data.get("audit_controller_dirs") or []
    if isinstance(extra, str):
        extra = [extra]
    recursive += [str(p) for p in extra]
    shallow = list(dict.fromkeys([tempfile.gettempdir(), "/tmp", "/var/tmp"]))
    return recursive, shallow


def _write_json(
    path: str, findings: list[Finding], audited: list[str], missing: list[str], cas: dict
) -> None:
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ca": cas,  # the root's and intermediate's subject, not-after, fingerprint
        "passed": not missing and not any(f.severity == ERROR for f in findings),
        "audited_hosts": audited,
        "not_audited": missing,
        "findings": [f.as_dict() for f in sorted(findings)],
        "certificates": [c for r in results().values() for c in r.expiry],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n")


@deploy("Audit")
def audit_host() -> None:
    """Check this host against the plan; fail the host when a rule is broken.

    Rules and their meaning: ``etcd_pki.findings.RULES``. Options (``--data``):
    ``audit_controller_dirs`` (more controller directories to scan),
    ``audit_secret_roots`` (where to look for CA secrets by name on hosts),
    ``audit_json`` (also write the findings as JSON to this controller path).

    .. code:: python

        audit_host()
    """
    plan = get_plan()
    me = this_host()
    trust = trust_or_none()
    root = trust.chain if trust else None
    obs = observe(me)
    ca_files = expected_ca_files(me) if me.is_cert_manager else []
    choices = trust.choices if trust else ()
    found = evaluate_host(me, obs, root, ca_files, ca_crl=ca_crl_or_none(), root_choices=choices)
    rows = [] if obs.error else host_rows(me, obs, root, datetime.now(UTC))
    expiry = [
        {k: r.as_dict()[k] for k in ("host", "name", "not_after", "days_left", "used_percent")}
        for r in rows
    ]
    results()[me.name] = HostResult(obs, found, expiry)
    mine = [f for f in found if f.severity == ERROR]
    controller: list[Finding] = []

    def show() -> bool:
        if rows:
            host.log(
                "days until expiry: "
                + ", ".join(f"{r.kind} {left_text(r.days_left)}" for r in rows)
            )
        for finding in found:
            _log(host, finding)
        return False  # reading is not a change

    def verdict() -> bool:
        """True when this host must fail; the last host also judges the controller."""
        if node_name(_active_in_order()[-1]) != me.name:
            return bool(mine)
        recursive, shallow = controller_dirs()
        controller.extend(scan_controller(recursive, shallow))
        everything = [f for r in results().values() for f in r.findings] + controller
        audited = sorted(results())
        missing = _not_audited()
        cas = ca_certificates(trust, ca_crl_or_none())
        click.echo(
            render_ca(cas["root"], cas["intermediate"], datetime.now(UTC))
            + f"\n--> Audit of {len(audited)} host(s) of {len(plan.hosts)}:\n"
            + summary(everything, audited, missing),
            err=False,
        )
        json_path = host.data.get("audit_json")
        if json_path:
            _write_json(str(json_path), everything, audited, missing, cas)
        return bool(mine or controller)

    def fail(state, host) -> bool:  # noqa: ARG001 - pyinfra passes (state, host)
        for finding in mine + controller:
            host.log_styled(f"VIOLATION {finding.line()}", fg="red")
        return False

    python.call(name="Audit findings", function=lambda: None, _if=show)
    python.call(name="Audit verdict", function=fail, _if=verdict)
