"""The audit's rules, as pure functions from what was observed to findings.

No pyinfra import: ``tasks/audit.py`` gathers a :class:`HostObservation` per host with
read-only facts, and everything here turns observations plus the cluster plan into
:class:`Finding` objects (host, file, rule, detail). The status report reads the same
observations (``etcd_pki/status.py``). Observations and their parsers are in
``etcd_pki/observation.py``; the controller's own scan in ``etcd_pki/controller_scan.py``;
the list of rules and the Finding type in ``etcd_pki/findings.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certs import (
    CRT_MODE,
    EKUS,
    KEY_MODE,
    CertOnHost,
    _public_bytes,
    chains_to,
    common_name,
    leaf_ekus,
    leaf_sans,
    lifetime_used,
    pem_blocks,
)
from .crl import crl_problem, inspect_crl
from .findings import ERROR, UNIT_DIR, WARNING, Finding
from .observation import CaCrl, ExpectedFile, HostObservation, UnitState, is_ca_secret
from .plan import CertSpec, HostPlan

# How long before the root or intermediate expires the audit warns (rotate_ca.py).
CA_EXPIRY_WARNING = timedelta(days=365)


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# ---------------------------------------------------------------------------
# Per-host evaluation
# ---------------------------------------------------------------------------

REQUIRED_EKUS = EKUS


def overdue_percent(threshold: int) -> float:
    """Lifetime used past which a renewal counts as failing: halfway to expiry."""
    return (threshold + 100) / 2


def evaluate_cert(
    spec: CertSpec,
    found: CertOnHost | None,
    root_pem: str | None,
    threshold: int,
    now: datetime,
) -> list[Finding]:
    """Findings about one planned certificate/key pair (files, content, expiry)."""
    out: list[Finding] = []

    def add(path: str, rule: str, detail: str, severity: str = ERROR) -> None:
        out.append(Finding(spec.host, path, rule, detail, severity))

    if found is None or found.crt_meta is None or not found.chain_pem:
        add(spec.crt, "cert-missing", f"no {spec.kind} certificate")
    elif found.crt_meta.mode != CRT_MODE:
        add(spec.crt, "crt-mode", f"mode {found.crt_meta.mode}, want {CRT_MODE}")
    if found is None or found.key_meta is None:
        add(spec.key, "key-missing", f"no {spec.kind} key")
    else:
        if found.key_meta.owner != spec.owner:
            add(spec.key, "key-owner", f"owner {found.key_meta.owner}, want {spec.owner}")
        if found.key_meta.mode != KEY_MODE:
            add(spec.key, "key-mode", f"mode {found.key_meta.mode}, want {KEY_MODE}")
        if found.key_public_pem is None:
            add(spec.key, "key-unreadable", "`step crypto key public` could not read it")
    if found is None or not found.chain_pem:
        return out

    try:
        leaf = x509.load_pem_x509_certificate(found.chain_pem[0].encode())
    except ValueError as e:
        add(spec.crt, "cert-unreadable", f"not a PEM certificate: {e}")
        return out
    if found.key_public_pem is not None:
        try:
            key = serialization.load_pem_public_key(found.key_public_pem.encode())
            if _public_bytes(key) != _public_bytes(leaf.public_key()):
                add(spec.key, "key-mismatch", f"does not match {spec.crt}")
        except ValueError as e:
            add(spec.key, "cert-unreadable", f"public key unreadable: {e}")
    if root_pem is not None and not chains_to(found.chain_pem, root_pem):
        add(spec.crt, "chain", "does not verify up to the CA's root certificate")
    if common_name(leaf) != spec.subject:
        add(spec.crt, "subject", f"CN {common_name(leaf)!r}, want {spec.subject!r}")
    have, want = leaf_sans(leaf), set(spec.sans)
    if have != want:
        add(
            spec.crt,
            "sans",
            f"missing: {', '.join(sorted(want - have)) or '-'}; "
            f"unexpected: {', '.join(sorted(have - want)) or '-'}",
        )
    missing_ekus = REQUIRED_EKUS[spec.kind] - leaf_ekus(leaf)
    if missing_ekus:
        add(spec.crt, "eku", f"lacks {', '.join(sorted(missing_ekus))}")
    extra_ekus = leaf_ekus(leaf) - REQUIRED_EKUS[spec.kind]
    if extra_ekus:
        add(
            spec.crt,
            "eku-extra",
            f"also {', '.join(sorted(extra_ekus))}, which a {spec.kind} certificate does not need",
        )

    not_after = leaf.not_valid_after_utc
    used = lifetime_used(leaf, now) * 100
    if not_after <= now:
        add(spec.crt, "expired", f"expired {not_after:%Y-%m-%d %H:%M} UTC")
    elif used >= overdue_percent(threshold):
        add(
            spec.crt,
            "renewal-overdue",
            f"{used:.0f}% of its lifetime used (renewal due at {threshold}%), "
            f"expires {not_after:%Y-%m-%d %H:%M} UTC",
        )
    elif used >= threshold:
        add(
            spec.crt,
            "renewal-due",
            f"{used:.0f}% of its lifetime used (threshold {threshold}%)",
            WARNING,
        )
    return out


def evaluate_timer(
    spec: CertSpec, state: UnitState | None, service: UnitState | None = None
) -> list[Finding]:
    """The renewal timer of ``spec`` (and, when read, the service it starts)."""
    path = f"{UNIT_DIR}/{spec.unit}.timer"
    out = []
    # exec-condition: `step certificate needs-renewal` said "not due", a clean skip.
    if service and service.result not in ("", "success", "exec-condition"):
        # A warning: the certificate rules turn it into an error as expiry nears; one
        # failed run (the CA briefly away) is retried by the next timer run.
        out.append(
            Finding(
                spec.host,
                f"{UNIT_DIR}/{spec.unit}.service",
                "renewal-failed",
                f"last run ended with Result={service.result}: journalctl -u {spec.unit}.service",
                WARNING,
            )
        )
    if state is None or not state.loaded:
        return [
            Finding(spec.host, path, "timer-missing", f"no renewal timer for {spec.name}"),
            *out,
        ]
    if state.enabled != "enabled":
        out.append(Finding(spec.host, path, "timer-disabled", f"UnitFileState={state.enabled}"))
    if state.active != "active":
        out.append(Finding(spec.host, path, "timer-inactive", f"ActiveState={state.active}"))
    return out


CRL_UNIT = "etcd-pki-crl"
# step-ca makes a new CRL (same revocations, next number) at every start and every 2/3
# of its cache duration; members fetch hourly. Behind for longer is worth a warning.
CRL_BEHIND_GRACE = timedelta(hours=3)


def evaluate_crl(
    hp: HostPlan, obs: HostObservation, ca: CaCrl | None, root_pem: str | None, now: datetime
) -> list[Finding]:
    """Revocation on ``hp``: its certificates not revoked; on a member, a CRL that etcd
    can enforce (present, signed by the CA, current, listing what the CA's lists) and
    the timer that keeps it so. ``ca`` None: the CA could not be read (not judged)."""
    out: list[Finding] = []
    name = hp.name
    revoked = ca.crl.serials if ca and ca.crl else frozenset()
    for spec in hp.certs:
        found = obs.certs.get(spec.name)
        if found and found.chain_pem:
            try:
                serial = x509.load_pem_x509_certificate(found.chain_pem[0].encode()).serial_number
            except ValueError:
                continue
            if serial in revoked:
                out.append(Finding(name, spec.crt, "cert-revoked", f"serial {serial} is revoked"))
    if hp.is_active_ca and ca is not None and ca.crl is None:
        out.append(Finding(name, hp.settings.ca_json, "ca-crl", "step-ca serves no CRL"))
    if not hp.is_etcd:
        return out
    path = hp.settings.crl_file
    problem = crl_problem(obs.crl, ca.intermediate if ca else None, root_pem, now)
    # During a rotation a member may still hold the CRL of the intermediate just
    # replaced (it fetches the new one after its certificates): fine until it is done.
    for previous in ca.previous if ca and problem and problem != "missing" else ():
        if crl_problem(obs.crl, previous, root_pem, now) is None:
            problem = None
            break
    if problem == "missing":
        out.append(Finding(name, path, "crl-missing", "etcd refuses every connection without it"))
    elif problem and "nextUpdate" in problem:
        out.append(Finding(name, path, "crl-expired", problem))
    elif problem:
        out.append(Finding(name, path, "crl-invalid", problem))
    elif ca and ca.crl:
        mine = inspect_crl(obs.crl)  # it parses: crl_problem passed it
        missing = ca.crl.serials - mine.serials
        if missing:
            out.append(Finding(name, path, "crl-stale", f"lacks {len(missing)} revoked serial(s)"))
        elif (
            mine.number is not None
            and ca.crl.number is not None
            and mine.number < ca.crl.number
            and now - ca.crl.this_update > CRL_BEHIND_GRACE
        ):
            detail = (
                f"CRL number {mine.number}; the CA made number {ca.crl.number} at "
                f"{ca.crl.this_update:%Y-%m-%d %H:%M} UTC: is the fetch timer running?"
            )
            out.append(Finding(name, path, "crl-behind", detail, WARNING))
    timer, service = (obs.timers.get(f"{CRL_UNIT}.{sfx}") for sfx in ("timer", "service"))
    unit = f"{UNIT_DIR}/{CRL_UNIT}.timer"
    if timer is None or not timer.loaded or timer.enabled != "enabled" or timer.active != "active":
        state = f"{timer.enabled or 'no unit file'}, {timer.active}" if timer else "missing"
        out.append(Finding(name, unit, "crl-timer", f"the CRL fetch timer is {state}"))
    if service and service.result not in ("", "success"):
        out.append(
            Finding(
                name,
                f"{UNIT_DIR}/{CRL_UNIT}.service",
                "crl-fetch-failed",
                f"last run ended with Result={service.result}: journalctl -u {CRL_UNIT}",
                WARNING,
            )
        )
    return out


def evaluate_ca_lifetimes(
    hp: HostPlan,
    obs: HostObservation,
    root_pem: str | None,
    intermediate_pem: str | None,
    now: datetime,
) -> list[Finding]:
    """Warnings that the CA itself needs rotating: on the active cert-manager, a root or
    intermediate expiring within :data:`CA_EXPIRY_WARNING`; on any host, a certificate
    valid past its intermediate (it stops verifying when the intermediate expires)."""
    out: list[Finding] = []
    s = hp.settings
    issuer_end = _not_after(intermediate_pem)
    if hp.is_active_ca:
        for kind, pem, path in (
            ("root", root_pem, s.ca_root),
            ("intermediate", intermediate_pem, s.ca_intermediate),
        ):
            end = _not_after(pem)
            if end is not None and end - now < CA_EXPIRY_WARNING:
                days = max(0, (end - now).days)
                out.append(
                    Finding(hp.name, path, "ca-expiring",
                            f"the {kind} expires {end:%Y-%m-%d} ({days} days): rotate it with "
                            f"rotate_ca.py --data rotate={kind} (docs/rotation.md)", WARNING)
                )  # fmt: skip
    if issuer_end is None:
        return out
    for spec in hp.certs:
        found = obs.certs.get(spec.name)
        end = _not_after(found.chain_pem[0]) if found and found.chain_pem else None
        if end is not None and end > issuer_end:
            out.append(
                Finding(hp.name, spec.crt, "leaf-outlives-issuer",
                        f"valid until {end:%Y-%m-%d}, its intermediate only until "
                        f"{issuer_end:%Y-%m-%d}: rotate_ca.py --data rotate=intermediate",
                        WARNING)
            )  # fmt: skip
    return out


def _not_after(pem: str | None) -> datetime | None:
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    except ValueError:
        return None


def evaluate_host(
    hp: HostPlan,
    obs: HostObservation,
    root_pem: str | None,
    ca_files: Sequence[ExpectedFile] = (),
    now: datetime | None = None,
    ca_crl: CaCrl | None = None,
    root_choices: Sequence[str] = (),
) -> list[Finding]:
    """Every finding on host ``hp`` from ``obs``.

    ``root_pem`` is what certificates must chain to, read from the active cert-manager
    (its root, both roots during a root rotation; None when it could not be read: then
    chains are not checked, and the CA host reports ``ca-root-missing``).
    ``root_choices`` the root files a host may hold (default: ``root_pem``; more than
    one in the middle of a root rotation, etcd_pki/rotation.py: trust_now).
    ``ca_files`` is what every cert-manager (active or standby) must hold, with
    owner/group/mode.
    """
    now = now or datetime.now(UTC)
    name = hp.name
    if obs.error:
        return [Finding(name, "-", "unreachable", obs.error)]
    s = hp.settings
    out: list[Finding] = []
    for spec in hp.certs:
        out += evaluate_cert(
            spec, obs.certs.get(spec.name), root_pem, s.renew_threshold_percent, now
        )
        timer, service = (obs.timers.get(f"{spec.unit}.{sfx}") for sfx in ("timer", "service"))
        out += evaluate_timer(spec, timer, service)
    out += evaluate_crl(hp, obs, ca_crl, root_pem, now)
    out += evaluate_ca_lifetimes(hp, obs, root_pem, ca_crl.intermediate if ca_crl else None, now)

    if hp.certs:
        root_path = s.trusted_root
        stat = obs.stats.get(root_path)
        if obs.root_pem is None:
            out.append(Finding(name, root_path, "root-missing", "the CA root is not installed"))
        else:
            allowed = [_roots(pem) for pem in root_choices or ([root_pem] if root_pem else [])]
            if allowed and _roots(obs.root_pem) not in allowed:
                out.append(Finding(name, root_path, "root-mismatch", "differs from the CA's root"))
            if stat is not None and stat.mode != CRT_MODE:
                out.append(Finding(name, root_path, "crt-mode", f"mode {stat.mode}, want 644"))

    if hp.is_active_ca and root_pem is None:
        out.append(Finding(name, s.ca_root, "ca-root-missing", "no CA root"))
    # Active and standby cert-managers hold the same CA files with the same owners/modes.
    for want in ca_files if hp.is_cert_manager else ():
        have = obs.stats.get(want.path)
        if have is None:
            if not want.optional:
                out.append(Finding(name, want.path, "ca-file-missing", "missing"))
            continue
        if (have.owner, have.group) != (want.owner, want.group):
            out.append(
                Finding(
                    name,
                    want.path,
                    "ca-file-owner",
                    f"{have.owner}:{have.group}, want {want.owner}:{want.group}",
                )
            )
        if have.mode != want.mode:
            out.append(
                Finding(name, want.path, "ca-file-mode", f"mode {have.mode}, want {want.mode}")
            )
    svc = obs.ca_service
    unit = f"{UNIT_DIR}/step-ca.service"
    if hp.is_active_ca:
        if svc is None or not svc.loaded or svc.active != "active" or svc.enabled != "enabled":
            state = f"{svc.enabled or 'no unit file'}, {svc.active}" if svc else "unknown"
            out.append(Finding(name, unit, "ca-service", f"step-ca is {state}"))
    elif hp.is_cert_manager and svc is not None and svc.active in ("active", "activating"):
        out.append(
            Finding(name, unit, "standby-ca-running", "step-ca runs on a standby cert-manager")
        )

    for path in obs.secret_files:
        if not hp.is_cert_manager:
            out.append(
                Finding(
                    name,
                    path,
                    "ca-secret-off-manager",
                    "CA key or password on a host that is not a cert-manager",
                )
            )
        elif not _under(path, s.ca_dir):
            out.append(Finding(name, path, "ca-secret-outside-ca-dir", f"outside {s.ca_dir}"))

    own_keys = {spec.key for spec in hp.certs}
    for path in obs.private_key_files:
        if path in own_keys or (hp.is_cert_manager and _under(path, s.ca_dir)):
            continue
        if not hp.is_cert_manager and is_ca_secret(path):
            continue  # already reported as ca-secret-off-manager
        out.append(
            Finding(name, path, "stray-private-key", "a private key the plan has no use for")
        )
    return sorted(set(out))


def _roots(text: str) -> set[str]:
    """The certificates of a root file (one, or two during a root rotation), as a set."""
    return {_normal_pem(block) for block in pem_blocks(text, "CERTIFICATE")} or {_normal_pem(text)}


def _normal_pem(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def summary(findings: Sequence[Finding], audited: Sequence[str], not_audited: Sequence[str]) -> str:
    """The audit's closing report: one line per finding, then the verdict."""
    errors = [f for f in findings if f.severity == ERROR]
    warnings = [f for f in findings if f.severity != ERROR]
    lines = []
    if findings:
        width_host = max(len("HOST"), *(len(f.host) for f in findings))
        width_path = max(len("FILE"), *(len(f.path) for f in findings))
        width_rule = max(len("RULE"), *(len(f.rule) for f in findings))
        lines.append(
            f"{'HOST':<{width_host}}  {'FILE':<{width_path}}  {'RULE':<{width_rule}}  DETAIL"
        )
        for f in sorted(findings, key=lambda f: (f.severity != ERROR, f.host, f.path, f.rule)):
            detail = f.detail if f.severity == ERROR else f"[{f.severity}] {f.detail}"
            lines.append(
                f"{f.host:<{width_host}}  {f.path:<{width_path}}  {f.rule:<{width_rule}}  {detail}"
            )
    verdict = "FAILED" if errors or not_audited else "passed"
    lines.append(
        f"audit {verdict}: {len(errors)} violation(s), {len(warnings)} warning(s) on "
        f"{len(audited)} host(s) and the controller"
        + (f"; not audited: {', '.join(not_audited)}" if not_audited else "")
    )
    return "\n".join(lines)
