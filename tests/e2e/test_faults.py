"""Fault injection on a deployed bed. Each fault must fail visibly (or be reported by
the audit), and each test ends with a re-run of the deploy that converges, an audit
that passes, and every certificate and key that was fine byte-identical.

Faults: the CA down during issuance (step-ca stopped; the CA container frozen), a node
container killed in the middle of the deploy, the network to the CA cut during a
renewal, a certificate deleted by hand, a key with wrong owner and mode, and a
certificate that expired (short lifetime), which mTLS renewal cannot renew.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from tests import testbed as tb

from .conftest import ALL_HOSTS, ETCD_HOSTS, SSL, Run, deploy, etcdctl, https, read_cert, sh

pytestmark = pytest.mark.e2e

CA_HOST = "etcd-k8s-1"
CA_FILES = "/etc/step-ca/certs/* /etc/step-ca/secrets/*"


def snapshot(hosts: Iterable[str] = ALL_HOSTS) -> dict[tuple[str, str], str]:
    """sha256 of every certificate and key on ``hosts``, and of the CA's files."""
    digests = {}
    for host in hosts:
        files = f"{SSL}/*.crt {SSL}/*.key" + (f" {CA_FILES}" if host == CA_HOST else "")
        out = sh(host, f"sha256sum {files} 2>/dev/null || true")
        for line in out.splitlines():
            digest, path = line.split()
            digests[(host, path)] = digest
    return digests


def pair(host: str, kind: str) -> set[tuple[str, str]]:
    return {(host, f"{SSL}/{host}-{kind}.crt"), (host, f"{SSL}/{host}-{kind}.key")}


def audit(bed: tb.Bed, *args: str) -> Run:
    return deploy(bed.inventory_docker, *args, deploy_file="audit.py")


def assert_audit_passes(bed: tb.Bed) -> None:
    run = audit(bed)
    assert run.rc == 0 and "audit passed: 0 violation(s)" in run.output, run.output[-3000:]
    assert run.changed == 0, run.changed_operations()


def converge(bed: tb.Bed, before: dict, replaced: Iterable[tuple[str, str]] = ()) -> Run:
    """Re-run the deploy, audit, and compare with ``before``: only ``replaced`` differ."""
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    assert_audit_passes(bed)
    after = snapshot()
    replaced = set(replaced)
    kept = {k: v for k, v in before.items() if k not in replaced}
    assert {k: after.get(k) for k in kept} == kept, "a file that was fine changed"
    for key in replaced:
        assert after.get(key) and after[key] != before.get(key), f"{key} was not re-issued"
    return run


def assert_cluster_healthy(bed: tb.Bed) -> None:
    endpoints = ",".join(https(bed.ip(h)) for h in ETCD_HOSTS)
    for _ in range(30):
        rc, out = etcdctl(
            "app-server", "app-server-client", "endpoint", "health", endpoints=endpoints
        )
        if rc == 0 and out.count("is healthy") == 3:
            return
        time.sleep(2)
    raise AssertionError(f"etcd not healthy: {out}")


def wait_booted(host: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc, out = tb.exec_in(host, "systemctl is-system-running", timeout=30)
        if out.strip() in ("running", "degraded"):
            return
        time.sleep(1)
    raise AssertionError(f"{host} did not boot")


@pytest.fixture(scope="module")
def bed(testbed):
    bed = tb.up()
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    assert_audit_passes(bed)
    return bed


def test_ca_service_stopped_during_issuance(bed):
    """etcd-k8s-3 needs a new peer certificate while step-ca is down: the deploy for that
    host (CA host outside --limit, so nothing restarts step-ca) fails naming the CA."""
    before = snapshot()
    sh("etcd-k8s-3", f"rm {SSL}/etcd-k8s-3-peer.crt")
    sh(CA_HOST, "systemctl stop step-ca")
    try:
        run = deploy(bed.inventory_docker, "--limit", f"@docker/{tb.container_name('etcd-k8s-3')}")
    finally:
        sh(CA_HOST, "systemctl start step-ca")
    assert run.rc != 0, run.output[-3000:]
    assert "could not mint a token for etcd-k8s-3-peer on etcd-k8s-1" in run.output
    assert "connection refused" in run.output
    assert "Traceback" not in run.output  # the error alone, not pyinfra's traceback
    during = snapshot()
    assert ("etcd-k8s-3", f"{SSL}/etcd-k8s-3-peer.crt") not in during
    assert {k: v for k, v in during.items()} == {
        k: v for k, v in before.items() if k != ("etcd-k8s-3", f"{SSL}/etcd-k8s-3-peer.crt")
    }
    assert not sh("etcd-k8s-3", f"ls -A {SSL} | grep '^\\.' || true").strip()
    converge(bed, before, pair("etcd-k8s-3", "peer"))
    assert_cluster_healthy(bed)


def test_a_member_that_does_not_answer_fails_its_host_without_a_traceback(bed):
    """etcd on etcd-k8s-3 frozen (SIGSTOP: systemd still sees it running): the deploy's
    health report fails that host with the reason, not with pyinfra's traceback."""
    sh("etcd-k8s-3", "systemctl kill -s STOP etcd.service")
    try:
        run = deploy(bed.inventory_docker, "--limit", f"@docker/{tb.container_name('etcd-k8s-3')}")
    finally:
        sh("etcd-k8s-3", "systemctl kill -s CONT etcd.service")
    assert run.rc != 0, run.output[-3000:]
    assert "etcd on etcd-k8s-3 is not healthy" in run.output, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    assert_cluster_healthy(bed)


def test_ca_container_frozen_during_the_deploy(bed):
    """The whole CA container frozen (docker pause): the deploy stops with an error and
    creates nothing (no second CA, no certificate); after unpausing it converges."""
    before = snapshot()
    sh("app-server", f"rm {SSL}/app-server-client.crt")
    tb.docker("pause", tb.container_name(CA_HOST))
    try:
        run = deploy(bed.inventory_docker)
    finally:
        tb.docker("unpause", tb.container_name(CA_HOST))
    assert run.rc != 0, run.output[-3000:]
    assert "is paused" in run.output
    during = snapshot()
    missing = ("app-server", f"{SSL}/app-server-client.crt")
    assert during == {k: v for k, v in before.items() if k != missing}
    converge(bed, before, pair("app-server", "client"))


def _run_and_kill(inventory, container: str, trigger: str) -> tuple[int, str, bool]:
    """Run the deploy; `docker kill` ``container`` as soon as ``trigger`` is printed."""
    cmd = [str(tb.REPO_ROOT / ".venv" / "bin" / "pyinfra"), "-y", str(inventory), "deploy.py"]
    proc = subprocess.Popen(
        cmd, cwd=tb.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed = False
    lines = []
    timer = threading.Timer(tb.PYINFRA_TIMEOUT, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not killed and trigger in line:
                tb.docker("kill", container)
                killed = True
        rc = proc.wait()
    finally:
        timer.cancel()
    return rc, "".join(lines), killed


def test_node_killed_in_the_middle_of_the_deploy(bed):
    """etcd-k8s-2 lost its certificates; the deploy re-issues them and the container is
    killed as the first issuance starts. It is started again, the deploy converges."""
    host = "etcd-k8s-2"
    before = snapshot()
    sh(host, f"rm -f {SSL}/{host}-*.crt {SSL}/{host}-*.key")
    rc, output, killed = _run_and_kill(
        # All its certificates missing: trust, issuance and renewal units in one command.
        bed.inventory_docker,
        tb.container_name(host),
        f"issue {host}-",
    )
    assert killed, output[-3000:]
    assert rc != 0, output[-3000:]
    # The other hosts carried on and are untouched.
    others = {k: v for k, v in before.items() if k[0] != host}
    assert snapshot(h for h in ALL_HOSTS if h != host) == others
    tb.docker("start", tb.container_name(host))
    wait_booted(host)
    replaced = pair(host, "peer") | pair(host, "server") | pair(host, "client")
    converge(bed, before, replaced)
    assert_cluster_healthy(bed)


def test_network_to_the_ca_cut_during_a_renewal(bed):
    """app-server's renewal (forced, via renew_now.py) with its network unplugged fails
    and keeps both files; reconnected with the same IP, it renews and keeps the key."""
    host, name = "app-server", "app-server-client"
    limit = ("--limit", f"@docker/{tb.container_name(host)}")
    before = snapshot()
    ip = bed.ip(host)
    network = tb.NETWORK
    tb.docker("network", "disconnect", network, tb.container_name(host))
    try:
        run = deploy(
            bed.inventory_docker,
            *limit,
            "--data",
            "renew_now_force=true",
            deploy_file="renew_now.py",
        )
        assert run.rc != 0, run.output[-3000:]
        assert f"step-renew-{name}.service failed" in run.output, run.output[-3000:]
        assert snapshot() == before
        assert not sh(host, f"ls -A {SSL} | grep '^\\.' || true").strip()
    finally:
        tb.docker("network", "connect", "--ip", ip, network, tb.container_name(host))
    assert sh(host, "ip -4 -o addr show scope global").split()[3] == f"{ip}/24"
    serial = read_cert(host, f"{SSL}/{name}.crt").serial_number
    run = deploy(
        bed.inventory_docker, *limit, "--data", "renew_now_force=true", deploy_file="renew_now.py"
    )
    assert run.rc == 0, run.output[-3000:]
    assert read_cert(host, f"{SSL}/{name}.crt").serial_number != serial
    # `renew` keeps the key: only the certificate is new.
    converged = converge(bed, before, {(host, f"{SSL}/{name}.crt")})
    assert converged.changed == 0, converged.changed_operations()


def test_certificate_deleted_by_hand(bed):
    host = "etcd-k8s-3"
    before = snapshot()
    sh(host, f"rm {SSL}/{host}-server.crt")
    run = audit(bed)
    assert run.rc != 0
    assert f"{host}  {SSL}/{host}-server.crt" in run.output and "cert-missing" in run.output
    converge(bed, before, pair(host, "server"))
    assert_cluster_healthy(bed)


def test_key_with_wrong_owner_and_mode(bed):
    host = "etcd-k8s-2"
    key = f"{SSL}/{host}-peer.key"
    before = snapshot()
    sh(host, f"chown root:root {key} && chmod 644 {key}")
    run = audit(bed)
    assert run.rc != 0
    assert f"{host}: {key}: key-mode: mode 644, want 400" in run.output, run.output[-3000:]
    assert f"{host}: {key}: key-owner: owner root, want etcd" in run.output
    fixed = converge(bed, before)  # nothing re-issued: the key keeps its content
    assert "Owner/mode of /etc/etcd/ssl/etcd-k8s-2-peer.key" in fixed.output
    assert sh(host, f"stat -c '%U %a' {key}").split() == ["etcd", "400"]


SHORT = {"cert_lifetime": "1m", "cert_lifetime_min": "1m", "cert_lifetime_max": "1h"}


def test_expired_certificate_is_reissued_with_a_token(bed):
    """A one-minute certificate (short lifetime via data) is left to expire: mTLS renewal
    refuses it, the audit reports it, and the deploy re-issues it with a fresh token."""
    host, name = "app-server", "app-server-client"
    crt = f"{SSL}/{name}.crt"
    before = snapshot()
    short = tb.write_inventory(tb.STATE_DIR / "inventory_faults_short.py", data=SHORT)
    sh(host, f"rm {crt}")
    run = deploy(short)
    assert run.rc == 0, run.output[-4000:]
    cert = read_cert(host, crt)
    assert cert.not_valid_after_utc - datetime.now(UTC) < timedelta(minutes=2)
    delay = (cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() + 2
    time.sleep(max(delay, 0))
    expired = sh(host, f"sha256sum {crt} {SSL}/{name}.key")
    rc, _ = tb.exec_in(host, f"systemctl start step-renew-{name}.service")
    assert rc != 0, "mTLS renewal of an expired certificate must fail"
    assert sh(host, f"sha256sum {crt} {SSL}/{name}.key") == expired
    run = audit(bed)
    assert run.rc != 0 and f"{host}: {crt}: expired: expired" in run.output, run.output[-3000:]
    fixed = converge(bed, before, pair(host, "client"))
    assert f"Issue {name} (expired on" in fixed.output
    lifetime = read_cert(host, crt)
    assert lifetime.not_valid_after_utc - lifetime.not_valid_before_utc > timedelta(days=700)


# What the deploy keeps each directory it relies on as: root's, writable by nobody else.
DIRECTORIES = {
    "/opt/bin": "root:root 755",
    "/var/cache/etcd-pki": "root:root 700",
    "/etc/etcd": "root:root 755",
    SSL: "root:root 755",
    "/etc/step": "root:root 700",
    "/etc/step/config": "root:root 700",
}


def test_directories_of_another_owner_or_writable_by_others_are_repaired(bed):
    before = snapshot()
    sh("app-server", f"chown nobody /opt/bin {SSL} && chmod 777 /etc/step /var/cache/etcd-pki "
       "&& chmod g+w /etc/etcd")  # fmt: skip
    sh("etcd-k8s-2", "chown nobody:nogroup /etc/etcd /etc/step/config && chmod o+w /opt/bin")
    converge(bed, before)
    for host in ("app-server", "etcd-k8s-2"):
        out = sh(host, f"stat -c '%n %U:%G %a' {' '.join(DIRECTORIES)}")
        assert dict(line.split(" ", 1) for line in out.splitlines()) == DIRECTORIES, host
