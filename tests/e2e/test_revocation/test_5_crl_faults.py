"""A CRL that must not be installed, a CA that is down, a CRL deleted by hand; then
the audit is clean and status shows the CRLs."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import testbed as tb

from ..conftest import ETCD_HOSTS, SSL, deploy, sh
from .helpers import (
    CA,
    CRL,
    SAVED,
    as_member,
    crl_of,
    crl_serials,
    pids,
    use,
    wait_for,
    works_everywhere,
)

pytestmark = pytest.mark.e2e


def intermediate_key():
    """The CA's intermediate key, read from the CA node by the test (to sign CRLs that are
    genuine but expired or older)."""
    password = sh("etcd-k8s-1", f"cat {CA}/secrets/password").strip().encode()
    pem = sh("etcd-k8s-1", f"cat {CA}/secrets/intermediate_ca_key").encode()
    return serialization.load_pem_private_key(pem, password=password)


def forged(kind: str) -> bytes:
    now = datetime.now(UTC)
    inter = x509.load_pem_x509_certificate(
        sh("etcd-k8s-1", f"cat {CA}/certs/intermediate_ca.crt").encode()
    )
    issuer, signer = inter.subject, intermediate_key()
    this, nxt, number = now - timedelta(minutes=1), now + timedelta(hours=1), 10**6
    if kind == "wrong signature":
        signer = ec.generate_private_key(ec.SECP256R1())
    elif kind == "foreign CA":
        signer = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    elif kind == "expired":
        this, nxt = now - timedelta(days=2), now - timedelta(hours=1)
    elif kind == "older":  # what etcd-k8s-2 holds, one number back
        installed = crl_of("etcd-k8s-2")
        this = installed.last_update_utc - timedelta(hours=1)
        number = installed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number - 1
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(this)
        .next_update(nxt)
        .add_extension(x509.CRLNumber(number), critical=False)
        .sign(signer, hashes.SHA256())
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    return der[:60] if kind == "truncated" else der


@pytest.mark.parametrize("kind", ["wrong signature", "foreign CA", "expired", "truncated", "older"])
def test_a_bad_crl_is_never_installed_and_etcd_keeps_serving(bed, kind):
    """The member's own fetch script, pointed at an HTTPS server on the member that serves
    the bad CRL (with the member's server certificate, which the root trusts)."""
    host = "etcd-k8s-2"
    www = "/root/www"
    if crl_of(host).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 0:
        # step-ca makes a new CRL (the next number) at every start.
        sh("etcd-k8s-1", "systemctl restart step-ca")
        wait_for(
            lambda: tb.exec_in(host, "systemctl start etcd-pki-crl.service")[0] == 0,
            "no CRL after the restart",
            30,
        )
    sh(
        host,
        f"mkdir -p {www}/1.0 && curl -fsS --cacert {SSL}/root_ca.crt "
        f"https://{bed.ip('etcd-k8s-1')}:9000/intermediates.pem -o {www}/intermediates.pem",
    )
    data = base64.b64encode(forged(kind)).decode()
    sh(host, f"echo {data} | base64 -d > {www}/1.0/crl")
    tb.docker(
        "exec",
        "-d",
        "-w",
        www,
        tb.container_name(host),
        "openssl",
        "s_server",
        "-WWW",
        "-quiet",
        "-accept",
        "127.0.0.1:8443",
        "-cert",
        f"{SSL}/{host}-server.crt",
        "-cert_chain",
        f"{SSL}/{host}-server.crt",
        "-key",
        f"{SSL}/{host}-server.key",
    )
    try:
        url = "https://127.0.0.1:8443"
        sh(
            host,
            f"sed -e 's|^CRL_URL=.*|CRL_URL={url}/1.0/crl|' "
            f"-e 's|^INTERMEDIATES_URL=.*|INTERMEDIATES_URL={url}/intermediates.pem|' "
            "/opt/bin/etcd-pki-crl-fetch > /root/fetch-test && chmod 755 /root/fetch-test",
        )
        before = sh(host, f"sha256sum {CRL}")
        wait_for(
            lambda: (
                tb.exec_in(
                    host, f"curl -fsS --cacert {SSL}/root_ca.crt {url}/1.0/crl -o /dev/null"
                )[0]
                == 0
            ),
            "the test server did not start",
        )
        rc, out = tb.exec_in(host, "/root/fetch-test 2>&1")
        assert rc != 0 and "the installed CRL is kept" in out, out
        assert sh(host, f"sha256sum {CRL}") == before
        rc, health = as_member(host, "endpoint", "health")
        assert rc == 0 and health.count("is healthy") == 3, health
    finally:
        tb.exec_in(host, "pkill -f 's_server -WWW'; rm -f /root/fetch-test")


def test_a_ca_that_is_down_fails_the_fetch_visibly_and_changes_nothing(bed):
    host = "etcd-k8s-3"
    before = sh(host, f"sha256sum {CRL}")
    sh("etcd-k8s-1", "systemctl stop step-ca")
    try:
        rc, _ = tb.exec_in(host, "systemctl start etcd-pki-crl.service")
        assert rc != 0
        assert (
            sh(host, "systemctl show -p Result --value etcd-pki-crl.service").strip() == "exit-code"
        )
        journal = sh(host, "journalctl -u etcd-pki-crl -o cat --no-pager | tail -5")
        assert "cannot fetch" in journal and "the installed CRL is kept" in journal
        assert sh(host, f"sha256sum {CRL}") == before
        rc, health = as_member(host, "endpoint", "health")
        assert rc == 0 and health.count("is healthy") == 3, health
        audit = deploy(bed.inventory_docker, deploy_file="audit.py")
        assert audit.rc != 0  # step-ca down is a violation; the failed fetch a warning
        assert re.search(
            rf"{host}\s+/etc/systemd/system/etcd-pki-crl.service\s+crl-fetch-failed", audit.output
        )
    finally:
        sh("etcd-k8s-1", "systemctl start step-ca")
    wait_for(
        lambda: tb.exec_in(host, "systemctl start etcd-pki-crl.service")[0] == 0,
        "the fetch did not succeed once step-ca was back",
        30,
    )


def test_a_crl_deleted_by_hand_comes_back_before_anything_restarts_etcd(bed):
    host = "etcd-k8s-3"
    before = pids()
    sh(host, f"rm {CRL}")
    rc, out = use(host, f"{SSL}/{host}-client.crt", f"{SSL}/{host}-client.key", host, "get", "x")
    assert rc != 0, "etcd without its CRL must refuse every connection"
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    assert run.changed_operations() == [
        "CRL on this member | CRL fetch on this member: fetch now (CRL missing)"
    ]
    assert pids() == before
    works_everywhere(host, f"{SSL}/{host}-client.crt", f"{SSL}/{host}-client.key")


def test_audit_is_clean_and_status_shows_the_crls(bed):
    sh("app-server", f"rm -rf {SAVED}")
    for host in ETCD_HOSTS:
        sh(host, f"rm -rf {SAVED} /root/www /tmp/chain.pem")
        tb.exec_in(host, "pkill etcdctl; systemctl reset-failed etcd-pki-crl.service")
    tb.exec_in("app-server", "pkill etcdctl")
    audit = deploy(bed.inventory_docker, deploy_file="audit.py")
    assert audit.rc == 0, audit.output[-3000:]
    status = deploy(bed.inventory_docker, deploy_file="status.py")
    assert status.rc == 0, status.output[-3000:]
    for host in ETCD_HOSTS:
        number = crl_of(host).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert re.search(rf"  {host}: number {number}, next update .*\(ok\)", status.output), host
    serials = sorted(crl_serials("etcd-k8s-1"))
    for serial in serials:
        assert f"revoked {serial} (" in status.output
