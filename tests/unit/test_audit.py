"""The audit's rules on observations built with a real (test) CA: one clean host, then
one broken thing at a time, each expected to produce exactly its rule on its file."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from etcd_pki.audit import ERROR, RULES, WARNING, Finding, evaluate_host, summary
from etcd_pki.certs import FileMeta
from etcd_pki.controller_scan import private_material, scan_controller
from etcd_pki.crl import inspect_crl
from etcd_pki.observation import (
    CaCrl,
    FileStat,
    HostObservation,
    UnitState,
    is_ca_secret,
    parse_file_stats,
    parse_unit_states,
)
from etcd_pki.plan import build_plan

from .conftest import seed_hosts
from .pki_fixtures import NOW, Ca, expected_ca_files, good_cert, good_observation, public_pem

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca():
    return Ca()


@pytest.fixture
def plan(defaults):
    return build_plan(seed_hosts(defaults))


DEFAULT = object()


def audit(plan, ca, name, obs=None, root=DEFAULT, ca_crl=None):
    hp = plan.hosts[name]
    obs = obs or good_observation(ca, hp)
    ca_files = expected_ca_files(hp) if hp.is_cert_manager else []
    root = ca.root_pem if root is DEFAULT else root
    return evaluate_host(hp, obs, root, ca_files, NOW, ca_crl=ca_crl)


@pytest.mark.parametrize("name", ["etcd-k8s-1", "etcd-k8s-2", "app-server"])
def test_a_host_as_deployed_has_no_findings(plan, ca, name):
    assert audit(plan, ca, name) == []


def with_cert(obs, name, **changes):
    certs = dict(obs.certs)
    certs[name] = replace(certs[name], **changes)
    return replace(obs, certs=certs)


def peer(plan, host="etcd-k8s-2"):
    return plan.hosts[host].cert("peer")


# Each case: (host, mutate(obs, plan, ca) -> obs, expected (path, rule) pairs).
CASES = {
    "key mode 644": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", key_meta=FileMeta("etcd", "644")),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-mode")],
    ),
    "key owned by root on an etcd host": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-server", key_meta=FileMeta("root", "400")),
        [("/etc/etcd/ssl/etcd-k8s-2-server.key", "key-owner")],
    ),
    "certificate mode 600": (
        "app-server",
        lambda o, p, c: with_cert(o, "app-server-client", crt_meta=FileMeta("root", "600")),
        [("/etc/etcd/ssl/app-server-client.crt", "crt-mode")],
    ),
    "certificate deleted": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", chain_pem=[], crt_meta=None),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "cert-missing")],
    ),
    "key deleted": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", key_public_pem=None, key_meta=None),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-missing")],
    ),
    "key unreadable": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", key_public_pem=None),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-unreadable")],
    ),
    "key of another certificate": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(
            o,
            "etcd-k8s-2-peer",
            key_public_pem=public_pem(ec.generate_private_key(ec.SECP256R1())),
        ),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-mismatch")],
    ),
    "issued by another CA": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", **_fields(good_cert(Ca("rogue"), peer(p)))),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "chain")],
    ),
    "a SAN missing": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(
            o,
            "etcd-k8s-2-peer",
            **_fields(good_cert(c, peer(p), sans=("etcd-k8s-2", "etcd-k8s-2.local"))),
        ),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "sans")],
    ),
    "wrong subject": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(
            o, "etcd-k8s-2-peer", **_fields(good_cert(c, peer(p), subject="etcd-k8s-9"))
        ),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "subject")],
    ),
    "peer certificate without clientAuth": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(
            o,
            "etcd-k8s-2-peer",
            **_fields(good_cert(c, peer(p), ekus=(ExtendedKeyUsageOID.SERVER_AUTH,))),
        ),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "eku")],
    ),
    "client certificate that can also serve": (
        "app-server",
        lambda o, p, c: with_cert(
            o,
            "app-server-client",
            **_fields(
                good_cert(
                    c,
                    p.hosts["app-server"].cert("client"),
                    ekus=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
                )
            ),
        ),
        [("/etc/etcd/ssl/app-server-client.crt", "eku-extra")],
    ),
    "expired": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", **_fields(good_cert(c, peer(p), used=1.2))),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "expired")],
    ),
    "renewal overdue (90% used, threshold 66%)": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", **_fields(good_cert(c, peer(p), used=0.9))),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "renewal-overdue")],
    ),
    "timer disabled": (
        "etcd-k8s-3",
        lambda o, p, c: replace(
            o,
            timers={
                **o.timers,
                "step-renew-etcd-k8s-3-client.timer": UnitState(
                    "step-renew-etcd-k8s-3-client.timer", True, "disabled", "inactive"
                ),
            },
        ),
        [
            ("/etc/systemd/system/step-renew-etcd-k8s-3-client.timer", "timer-disabled"),
            ("/etc/systemd/system/step-renew-etcd-k8s-3-client.timer", "timer-inactive"),
        ],
    ),
    "timer not installed": (
        "app-server",
        lambda o, p, c: replace(
            o,
            timers={
                "step-renew-app-server-client.timer": UnitState(
                    "step-renew-app-server-client.timer", False, "", "inactive"
                )
            },
        ),
        [("/etc/systemd/system/step-renew-app-server-client.timer", "timer-missing")],
    ),
    "root certificate missing on the host": (
        "app-server",
        lambda o, p, c: replace(o, root_pem=None),
        [("/etc/etcd/ssl/root_ca.crt", "root-missing")],
    ),
    "root certificate of another CA on the host": (
        "app-server",
        lambda o, p, c: replace(o, root_pem=Ca("old").root_pem),
        [("/etc/etcd/ssl/root_ca.crt", "root-mismatch")],
    ),
    "root CA key readable by the group": (
        "etcd-k8s-1",
        lambda o, p, c: replace(
            o,
            stats={**o.stats, "/etc/step-ca/secrets/root_ca_key": FileStat("root", "root", "440")},
        ),
        [("/etc/step-ca/secrets/root_ca_key", "ca-file-mode")],
    ),
    "intermediate key owned by root": (
        "etcd-k8s-1",
        lambda o, p, c: replace(
            o,
            stats={
                **o.stats,
                "/etc/step-ca/secrets/intermediate_ca_key": FileStat("root", "root", "400"),
            },
        ),
        [("/etc/step-ca/secrets/intermediate_ca_key", "ca-file-owner")],
    ),
    "CA key missing": (
        "etcd-k8s-1",
        lambda o, p, c: replace(o, stats={**o.stats, "/etc/step-ca/secrets/root_ca_key": None}),
        [("/etc/step-ca/secrets/root_ca_key", "ca-file-missing")],
    ),
    "step-ca stopped": (
        "etcd-k8s-1",
        lambda o, p, c: replace(
            o, ca_service=UnitState("step-ca.service", True, "enabled", "failed")
        ),
        [("/etc/systemd/system/step-ca.service", "ca-service")],
    ),
    "CA key copied to a member": (
        "etcd-k8s-2",
        lambda o, p, c: replace(
            o,
            secret_files=["/root/root_ca_key"],
            private_key_files=[*o.private_key_files, "/root/root_ca_key"],
        ),
        [("/root/root_ca_key", "ca-secret-off-manager")],
    ),
    "CA password on a client": (
        "app-server",
        lambda o, p, c: replace(o, secret_files=["/etc/step-ca/secrets/password"]),
        [("/etc/step-ca/secrets/password", "ca-secret-off-manager")],
    ),
    "CA key backup left in /tmp on the CA": (
        "etcd-k8s-1",
        lambda o, p, c: replace(o, secret_files=[*o.secret_files, "/tmp/intermediate_ca_key"]),
        [("/tmp/intermediate_ca_key", "ca-secret-outside-ca-dir")],
    ),
    "an interrupted issuance left a key behind": (
        "etcd-k8s-3",
        lambda o, p, c: replace(
            o,
            private_key_files=[*o.private_key_files, "/etc/etcd/ssl/.issue-Ab12/key"],
        ),
        [("/etc/etcd/ssl/.issue-Ab12/key", "stray-private-key")],
    ),
    "facts could not be read": (
        "etcd-k8s-3",
        lambda o, p, c: HostObservation(error="facts could not be read: connection refused"),
        [("-", "unreachable")],
    ),
}


def _fields(found):
    return {
        "chain_pem": found.chain_pem,
        "key_public_pem": found.key_public_pem,
        "crt_meta": found.crt_meta,
        "key_meta": FileMeta(found.key_meta.owner, "400"),
    }


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_broken_thing_is_reported_with_host_file_and_rule(plan, ca, case):
    name, mutate, expected = CASES[case]
    obs = mutate(good_observation(ca, plan.hosts[name]), plan, ca)
    findings = audit(plan, ca, name, obs)
    assert sorted((f.path, f.rule) for f in findings) == sorted(expected), findings
    assert all(f.host == name and f.severity == ERROR for f in findings)
    assert all(f.rule in RULES for f in findings)


def test_past_the_threshold_is_only_a_warning(plan, ca):
    obs = good_observation(ca, plan.hosts["etcd-k8s-2"], used=0.7)
    findings = audit(plan, ca, "etcd-k8s-2", obs)
    assert {f.rule for f in findings} == {"renewal-due"}
    assert {f.severity for f in findings} == {WARNING}
    assert len(findings) == 3  # peer, server, client


def test_the_ca_may_hold_ca_keys_in_ca_dir_only(plan, ca):
    obs = good_observation(ca, plan.hosts["etcd-k8s-1"])
    obs = replace(
        obs,
        private_key_files=[*obs.private_key_files, "/etc/step-ca/.interrupted-init-1/secrets/k"],
    )
    assert audit(plan, ca, "etcd-k8s-1", obs) == []


def test_without_the_ca_root_chains_are_not_judged_and_the_ca_says_why(plan, ca):
    findings = audit(plan, ca, "etcd-k8s-1", root=None)
    assert [(f.path, f.rule) for f in findings] == [
        ("/etc/step-ca/certs/root_ca.crt", "ca-root-missing")
    ]


def test_parse_unit_states():
    lines = [
        "==> step-renew-a-peer.timer",
        "NextElapseUSecRealtime=Sun 2026-11-29 03:58:16 UTC",
        "LastTriggerUSec=@1780308000",
        "Id=step-renew-a-peer.timer",
        "LoadState=loaded",
        "ActiveState=active",
        "UnitFileState=enabled",
        "==> step-renew-a-peer.service",
        "Id=step-renew-a-peer.service",
        "LoadState=loaded",
        "ActiveState=failed",
        "Result=exit-code",
        "==> gone.timer",
        "NextElapseUSecRealtime=",
        "LoadState=not-found",
        "ActiveState=inactive",
        "UnitFileState=",
    ]
    states = parse_unit_states(lines)
    a = states["step-renew-a-peer.timer"]
    assert (a.loaded, a.enabled, a.active) == (True, "enabled", "active")
    assert a.next_run == datetime(2026, 11, 29, 3, 58, 16, tzinfo=UTC)
    assert a.last_run == datetime.fromtimestamp(1780308000, UTC)
    assert not states["gone.timer"].loaded
    assert states["step-renew-a-peer.service"].result == "exit-code"


def test_a_failed_renewal_run_is_a_warning_naming_the_journal(plan, ca):
    obs = good_observation(ca, plan.hosts["app-server"])
    unit = "step-renew-app-server-client.service"
    ok = UnitState(unit, True, "static", "inactive", result="success")
    assert audit(plan, ca, "app-server", replace(obs, timers={**obs.timers, unit: ok})) == []
    skipped = replace(ok, result="exec-condition")  # not due yet: ExecCondition said so
    assert audit(plan, ca, "app-server", replace(obs, timers={**obs.timers, unit: skipped})) == []
    failed = replace(ok, active="failed", result="exit-code")
    findings = audit(plan, ca, "app-server", replace(obs, timers={**obs.timers, unit: failed}))
    assert [(f.path, f.rule, f.severity) for f in findings] == [
        (f"/etc/systemd/system/{unit}", "renewal-failed", WARNING)
    ]
    assert f"Result=exit-code: journalctl -u {unit}" in findings[0].detail


def test_parse_file_stats():
    stats = parse_file_stats(
        ["root step 750 /etc/step-ca/secrets", "missing - - /etc/step-ca/secrets/password"]
    )
    assert stats == {
        "/etc/step-ca/secrets": FileStat("root", "step", "750"),
        "/etc/step-ca/secrets/password": None,
    }


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("/etc/step-ca/secrets/root_ca_key", True),
        ("/root/intermediate_ca_key", True),
        ("/etc/step-ca/secrets/provisioner_password", True),
        ("/etc/step-ca/secrets/password", True),
        ("/etc/etcd/ssl/etcd-k8s-1-peer.key", False),
        ("/etc/password", False),
    ],
)
def test_ca_secret_names(path, secret):
    assert is_ca_secret(path) is secret


# --- the controller -------------------------------------------------------------------


@pytest.fixture
def scratch():
    """A scratch directory *inside the repo's .testbed/* (not /tmp: concurrent e2e runs
    scan /tmp for private keys and must not see these test keys)."""
    path = REPO / ".testbed" / f"unit-scan-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _key_pem(encrypted: bool = False) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = (
        serialization.BestAvailableEncryption(b"pw") if encrypted else serialization.NoEncryption()
    )
    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, algorithm)


def test_private_material_kinds():
    assert private_material(_key_pem()) == "PEM PRIVATE KEY"
    assert private_material(_key_pem(encrypted=True)) == "PEM ENCRYPTED PRIVATE KEY"
    jwe = ".".join(["eyJ" + "a" * 150, "b" * 54, "c" * 16, "d" * 339, "e" * 22])
    assert private_material(f'{{"encryptedKey": "{jwe}"}}'.encode()) == "step JWK private key"
    assert private_material(b'{"encryptedKey": "eyJhbGciOiJQQkVTMi1IUzI1NiJ9.SECRET"}') is None
    assert private_material(b"AGE-SECRET-KEY-1" + b"Q" * 58) == "age secret key"
    # The words alone (docs, regexes in code) are not a key.
    # Built at run time so no tracked file carries a PEM private-key header.
    header = b"-----BEGIN " + b"PRIVATE KEY-----"
    assert private_material(b"grep '" + header + b"' file") is None
    assert private_material(Ca().root_pem.encode()) is None


def test_scan_controller_walks_the_repo_but_not_skipped_dirs(scratch):
    (scratch / "deep" / "er").mkdir(parents=True)
    (scratch / "deep" / "er" / "leaked.pem").write_bytes(_key_pem())
    (scratch / ".venv").mkdir()
    (scratch / ".venv" / "vendored-test-key.pem").write_bytes(_key_pem())
    (scratch / "notes.txt").write_text("no secrets here\n")
    (scratch / "provisioner_password").write_text("hunter2\n")
    findings = scan_controller([scratch])
    assert [(Path(f.path).relative_to(scratch).as_posix(), f.rule) for f in findings] == [
        ("deep/er/leaked.pem", "controller-private-key"),
        ("provisioner_password", "controller-private-key"),
    ]
    assert all(f.host == "controller" for f in findings)


def test_scan_controller_reads_temp_dirs_one_level_deep(scratch):
    (scratch / "tmpab12cd").write_bytes(b"xx\n" + _key_pem(encrypted=True))
    (scratch / "other-tool").mkdir()
    (scratch / "other-tool" / "its-own.key").write_bytes(_key_pem())
    findings = scan_controller([], shallow=[scratch])
    assert [Path(f.path).name for f in findings] == ["tmpab12cd"]
    assert "ENCRYPTED PRIVATE KEY" in findings[0].detail


def test_summary_names_host_file_and_rule_and_the_verdict():
    findings = [
        Finding(
            "etcd-k8s-2", "/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-mode", "mode 644, want 400"
        ),
        Finding("etcd-k8s-3", "/etc/etcd/ssl/etcd-k8s-3-peer.crt", "renewal-due", "70%", WARNING),
    ]
    text = summary(findings, ["etcd-k8s-2", "etcd-k8s-3"], [])
    assert "etcd-k8s-2  /etc/etcd/ssl/etcd-k8s-2-peer.key  key-mode" in text
    assert "[warning] 70%" in text
    assert text.splitlines()[-1].startswith("audit FAILED: 1 violation(s), 1 warning(s)")
    ok = summary(findings[1:], ["etcd-k8s-3"], [])
    assert ok.splitlines()[-1].startswith("audit passed")
    assert summary([], ["a"], ["b"]).endswith("not audited: b")


def test_lifetime_fixture_sanity(ca, plan):
    chain, _ = ca.leaf(peer(plan), used=0.5, lifetime=timedelta(hours=10))
    assert chain.count("BEGIN CERTIFICATE") == 2


def test_chains_to_says_no_for_another_ca_instead_of_crashing(plan, ca):
    # Regression: chains_to caught `x509.InvalidSignature`, which does not exist, so a
    # certificate from another CA raised AttributeError (in the deploy too).
    from etcd_pki.certs import chains_to, reissue_reason

    rogue = good_cert(Ca("rogue"), peer(plan))
    assert chains_to(rogue.chain_pem, ca.root_pem) is False
    assert reissue_reason(rogue, peer(plan), ca.root_pem, 66, NOW) == "not issued by this CA"


@pytest.fixture
def standby_plan(defaults):
    hosts = seed_hosts(defaults)
    hosts = [
        replace(h, groups=h.groups | {"etcd_cert_managers"}) if h.name == "etcd-k8s-2" else h
        for h in hosts
    ]
    hosts = [replace(h, data={**h.data, "active_cert_manager": "etcd-k8s-1"}) for h in hosts]
    return build_plan(hosts)


def test_a_standby_holds_the_ca_files_with_the_same_modes(standby_plan, ca):
    assert standby_plan.standbys == ("etcd-k8s-2",)
    assert audit(standby_plan, ca, "etcd-k8s-2") == []
    obs = good_observation(ca, standby_plan.hosts["etcd-k8s-2"])
    broken = replace(
        obs,
        stats={**obs.stats, "/etc/step-ca/secrets/root_ca_key": FileStat("root", "root", "644")},
    )
    assert [(f.path, f.rule) for f in audit(standby_plan, ca, "etcd-k8s-2", broken)] == [
        ("/etc/step-ca/secrets/root_ca_key", "ca-file-mode")
    ]


def test_step_ca_running_on_a_standby_is_a_violation(standby_plan, ca):
    obs = good_observation(ca, standby_plan.hosts["etcd-k8s-2"])
    running = replace(obs, ca_service=UnitState("step-ca.service", True, "enabled", "active"))
    assert [(f.path, f.rule) for f in audit(standby_plan, ca, "etcd-k8s-2", running)] == [
        ("/etc/systemd/system/step-ca.service", "standby-ca-running")
    ]


def rules_of(findings) -> list[tuple[str, str, str]]:
    return [(f.path, f.rule, f.severity) for f in findings]


def test_a_member_whose_crl_matches_the_cas_has_no_findings(plan, ca):
    current = CaCrl(inspect_crl(ca.crl((9,), number=3)), ca.pem_inter)
    obs = replace(good_observation(ca, plan.hosts["etcd-k8s-2"]), crl=ca.crl((9,), number=3))
    assert audit(plan, ca, "etcd-k8s-2", obs, ca_crl=current) == []


@pytest.mark.parametrize(
    "case, rule, severity",
    [
        ("no CRL", "crl-missing", ERROR),
        ("unreadable", "crl-invalid", ERROR),
        ("another CA's", "crl-invalid", ERROR),
        ("expired", "crl-expired", ERROR),
        ("lacks a revocation", "crl-stale", ERROR),
        ("older number", "crl-behind", WARNING),
    ],
)
def test_a_member_crl_etcd_cannot_rely_on_is_a_finding(plan, ca, case, rule, severity):
    current = CaCrl(inspect_crl(ca.crl((9,), number=3)), ca.pem_inter)
    crl = {
        "no CRL": None,
        "unreadable": b"not a crl",
        "another CA's": Ca(name="other").crl((9,), number=3),
        "expired": ca.crl((9,), this_update=NOW - timedelta(days=2), next_update=NOW),
        "lacks a revocation": ca.crl((), number=3),
        "older number": ca.crl((9,), number=2),
    }[case]
    made = NOW - timedelta(hours=4)  # the CA's CRL, newer than the member's for 4 h
    current = CaCrl(inspect_crl(ca.crl((9,), number=3, this_update=made)), ca.pem_inter)
    obs = replace(good_observation(ca, plan.hosts["etcd-k8s-2"]), crl=crl)
    found = audit(plan, ca, "etcd-k8s-2", obs, ca_crl=current)
    assert rules_of(found) == [("/etc/etcd/ssl/crl.der", rule, severity)]


def test_the_crl_timer_and_a_failed_fetch(plan, ca):
    obs = good_observation(ca, plan.hosts["etcd-k8s-3"])
    timers = dict(obs.timers)
    timers["etcd-pki-crl.timer"] = replace(timers["etcd-pki-crl.timer"], active="inactive")
    timers["etcd-pki-crl.service"] = replace(timers["etcd-pki-crl.service"], result="exit-code")
    found = audit(plan, ca, "etcd-k8s-3", replace(obs, timers=timers))
    assert rules_of(found) == [
        ("/etc/systemd/system/etcd-pki-crl.service", "crl-fetch-failed", WARNING),
        ("/etc/systemd/system/etcd-pki-crl.timer", "crl-timer", ERROR),
    ]


def test_a_revoked_certificate_on_a_host_is_a_violation(plan, ca):
    hp = plan.hosts["app-server"]
    obs = good_observation(ca, hp)
    leaf = obs.certs["app-server-client"].chain_pem[0]
    serial = x509.load_pem_x509_certificate(leaf.encode()).serial_number
    current = CaCrl(inspect_crl(ca.crl((serial,))), ca.pem_inter)
    found = audit(plan, ca, "app-server", obs, ca_crl=current)
    assert rules_of(found) == [("/etc/etcd/ssl/app-server-client.crt", "cert-revoked", ERROR)]


def test_a_ca_that_serves_no_crl(plan, ca):
    found = audit(plan, ca, "etcd-k8s-1", ca_crl=CaCrl(None, ca.pem_inter))
    assert ("/etc/step-ca/config/ca.json", "ca-crl", ERROR) in rules_of(found)


def test_a_member_just_behind_a_new_crl_of_the_ca_is_fine(plan, ca):
    """step-ca makes a new CRL at every start; members fetch it within the hour."""
    current = CaCrl(inspect_crl(ca.crl((9,), number=4, this_update=NOW)), ca.pem_inter)
    obs = replace(good_observation(ca, plan.hosts["etcd-k8s-2"]), crl=ca.crl((9,), number=3))
    assert audit(plan, ca, "etcd-k8s-2", obs, ca_crl=current) == []
