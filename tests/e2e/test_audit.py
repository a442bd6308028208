"""audit.py and status.py on a deployed bed: read-only, and right about what they see.

Violations are planted by hand (each restored afterwards); the audit must name the
host, the file and the rule of every one, exit non-zero, and change nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests import testbed as tb

from .conftest import (
    ALL_HOSTS,
    ETCD_HOSTS,
    SSL,
    deploy,
    file_digests,
    read_cert,
    sh,
    start_renewal,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bed(testbed):
    bed = tb.up()
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    # A reused bed keeps the failed renewal runs that other modules cause on purpose
    # (CA stopped, network cut, 10-minute certificates left to expire): clear them, so
    # this module starts from a clean cluster.
    for host in ALL_HOSTS:
        sh(host, "systemctl reset-failed 'step-renew-*' 2>/dev/null || true")
    return bed


@pytest.fixture
def scratch():
    """A controller directory outside /tmp (concurrent runs scan /tmp for keys)."""
    path = tb.STATE_DIR / "audit-scratch"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def audit(bed, *args):
    return deploy(bed.inventory_docker, *args, deploy_file="audit.py")


def test_clean_cluster_passes_and_nothing_changes(bed, scratch):
    before = {h: file_digests(h) for h in ALL_HOSTS}
    report = scratch / "audit.json"
    run = audit(bed, "--data", f"audit_json={report}")
    assert run.rc == 0, run.output[-3000:]
    assert "audit passed: 0 violation(s), 0 warning(s) on 4 host(s)" in run.output
    assert run.changed == 0 and run.totals[2] == 0, run.output[-2000:]
    data = json.loads(report.read_text())
    assert data["passed"] is True and data["findings"] == []
    assert sorted(data["audited_hosts"]) == sorted(ALL_HOSTS)
    assert {h: file_digests(h) for h in ALL_HOSTS} == before


def _key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


PLANTED = [
    # (host, command that breaks something, command that restores it, file, rule)
    (
        "etcd-k8s-2",
        f"chmod 640 {SSL}/etcd-k8s-2-server.key",
        f"chmod 400 {SSL}/etcd-k8s-2-server.key",
        f"{SSL}/etcd-k8s-2-server.key",
        "key-mode",
    ),
    (
        "app-server",
        "mkdir -p /root/ca-copy && cp /etc/etcd/ssl/root_ca.crt /root/ca-copy/root_ca_key",
        "rm -rf /root/ca-copy",
        "/root/ca-copy/root_ca_key",
        "ca-secret-off-manager",
    ),
    (
        "etcd-k8s-3",
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out /var/tmp/old.pem",
        "rm -f /var/tmp/old.pem",
        "/var/tmp/old.pem",
        "stray-private-key",
    ),
    (
        "etcd-k8s-3",
        "systemctl disable step-renew-etcd-k8s-3-client.timer",
        "systemctl enable step-renew-etcd-k8s-3-client.timer",
        "/etc/systemd/system/step-renew-etcd-k8s-3-client.timer",
        "timer-disabled",
    ),
    (
        "etcd-k8s-1",
        "chmod 644 /etc/step-ca/secrets/provisioner_password",
        "chmod 400 /etc/step-ca/secrets/provisioner_password",
        "/etc/step-ca/secrets/provisioner_password",
        "ca-file-mode",
    ),
]


def test_planted_violations_are_named_by_host_file_and_rule(bed, scratch):
    (scratch / "leak").mkdir()
    leaked = scratch / "leak" / "etcd-k8s-9-peer.key"
    leaked.write_bytes(_key_pem())
    report = scratch / "audit.json"
    try:
        for host, breaks, _, _, _ in PLANTED:
            sh(host, breaks)
        before = {h: file_digests(h) for h in ALL_HOSTS}
        run = audit(
            bed,
            "--data",
            f"audit_json={report}",
            "--data",
            f'audit_controller_dirs=["{scratch / "leak"}"]',
        )
        after = {h: file_digests(h) for h in ALL_HOSTS}
    finally:
        for host, _, restore, _, _ in PLANTED:
            sh(host, restore)
    assert run.rc != 0, run.output[-3000:]
    assert after == before
    # Nothing changed. (Every host has a violation here, so every host fails its
    # verdict and pyinfra ends with "No hosts remaining!" instead of its results table.)
    assert not re.search(r"\] Success$", run.output, re.M), run.output[-3000:]
    for host, _, _, path, rule in PLANTED:
        assert re.search(rf"^{re.escape(host)} +{re.escape(path)} +{rule} ", run.output, re.M), (
            host,
            path,
            rule,
            run.output[-4000:],
        )
    assert re.search(
        rf"^controller +{re.escape(str(leaked))} +controller-private-key", run.output, re.M
    )
    findings = json.loads(report.read_text())["findings"]
    assert {(f["host"], f["path"], f["rule"]) for f in findings} == {
        *((h, p, r) for h, _, _, p, r in PLANTED),
        ("controller", str(leaked), "controller-private-key"),
    }
    assert "audit FAILED: 6 violation(s)" in run.output
    # Every host with a violation fails its own verdict.
    for host in {p[0] for p in PLANTED}:
        assert f"[@docker/{tb.container_name(host)}] VIOLATION {host}:" in run.output
    # Restored: the audit passes again.
    run = audit(bed)
    assert run.rc == 0, run.output[-3000:]


def test_a_failed_renewal_run_is_reported_as_a_warning(bed, scratch):
    unit = "step-renew-app-server-client.service"
    sh("etcd-k8s-1", "systemctl stop step-ca")
    try:
        start_renewal("app-server", "app-server-client")  # the CA is away: fails
    finally:
        sh(
            "etcd-k8s-1",
            "systemctl start step-ca; for i in $(seq 1 60); do /opt/bin/step ca health "
            f"--ca-url https://{bed.ip('etcd-k8s-1')}:9000 --root /etc/step-ca/certs/root_ca.crt"
            " && exit 0; sleep 0.5; done; exit 1",
        )
    report = scratch / "audit.json"
    try:
        assert sh("app-server", f"systemctl show -p Result --value {unit}").strip() == "exit-code"
        run = audit(bed, "--data", f"audit_json={report}")
        assert run.rc == 0, run.output[-3000:]  # a warning, not a violation
        findings = json.loads(report.read_text())["findings"]
        assert [(f["host"], f["path"], f["rule"], f["severity"]) for f in findings] == [
            ("app-server", f"/etc/systemd/system/{unit}", "renewal-failed", "warning")
        ]
        assert f"journalctl -u {unit}" in findings[0]["detail"]
        # The deploy re-issues the certificate (deleted here): the failure is moot and
        # its state is cleared.
        sh("app-server", f"rm {SSL}/app-server-client.crt")
        run = deploy(bed.inventory_docker)
        assert run.rc == 0, run.output[-3000:]
        assert sh("app-server", f"systemctl show -p Result --value {unit}").strip() == "success"
    finally:
        sh("app-server", f"systemctl reset-failed {unit}")
    run = audit(bed, "--data", f"audit_json={report}")
    assert run.rc == 0 and json.loads(report.read_text())["findings"] == []


def test_audit_of_one_host_with_limit(bed):
    run = audit(bed, "--limit", f"@docker/{tb.container_name('app-server')}")
    assert run.rc == 0, run.output[-3000:]
    assert "audit passed: 0 violation(s), 0 warning(s) on 1 host(s)" in run.output


def test_status_report(bed, scratch):
    run = deploy(bed.inventory_docker, "--data", f"status_dir={scratch}", deploy_file="status.py")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0
    data = json.loads((scratch / "status.json").read_text())
    assert data["state"] == "ok" and data["counts"]["ok"] == 10
    by_name = {c["name"]: c for h in data["hosts"] for c in h["certificates"]}
    assert len(by_name) == 10
    for host in ALL_HOSTS:
        kinds = ("peer", "server", "client") if host in ETCD_HOSTS else ("client",)
        for kind in kinds:
            row = by_name[f"{host}-{kind}"]
            cert = read_cert(host, f"{SSL}/{host}-{kind}.crt")
            assert int(row["serial"], 16) == cert.serial_number
            assert row["not_after"] == cert.not_valid_after_utc.isoformat()
            assert bed.ip(host) in row["sans"]
            assert 729 < row["days_left"] <= 730.1 and row["used_percent"] < 1
            assert row["next_run"] and row["timer"] == "enabled, active"
            # The table shows the same serial and state.
            assert re.search(rf"^  {kind} +\S+ +{row['serial']} .* ok$", run.output, re.M)
    html = (scratch / "status.html").read_text()
    assert html.count('class="bar"') == 10
    assert not re.search(r"<(script|link|img)\b|(src|href)=|url\(", html)
    assert Path(scratch / "status.json").stat().st_size > 1000
