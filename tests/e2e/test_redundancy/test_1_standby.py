"""Phase 1: an active cert-manager (etcd-k8s-1) and a standby (etcd-k8s-2)."""

from __future__ import annotations

import pytest
from cryptography import x509

from tests import testbed as tb

from ..conftest import SSL, deploy, openssl_fingerprint, read_cert, sh
from .helpers import (
    CA,
    EXPECTED,
    OLD_FILES,
    OLD_PAIR,
    ca_stats,
    is_active,
    is_enabled,
    material_digests,
    refused_by,
    scan_controller,
)

pytestmark = pytest.mark.e2e


def test_deploy_with_a_standby_succeeds(ha):
    first = ha.runs["first"]
    assert first.rc == 0, first.output[-4000:]
    ha.passwords = sh("etcd-k8s-1", f"cat {CA}/secrets/password; echo; "
                      f"cat {CA}/secrets/provisioner_password").split()  # fmt: skip
    assert len(ha.passwords) == 2 and all(len(p) >= 40 for p in ha.passwords)
    ha.root_fingerprint = openssl_fingerprint("etcd-k8s-1", f"{CA}/certs/root_ca.crt")


def test_standby_holds_the_material_with_the_same_owners_and_modes(ha):
    assert ca_stats("etcd-k8s-1") == EXPECTED
    assert ca_stats("etcd-k8s-2") == EXPECTED
    active, standby = material_digests("etcd-k8s-1"), material_digests("etcd-k8s-2")
    assert list(active.values()) == list(standby.values())
    assert openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt") == ha.root_fingerprint
    # The standby's keys really are the CA's: the intermediate key matches its certificate.
    for host in ("etcd-k8s-1", "etcd-k8s-2"):
        out = sh(
            host,
            f"openssl x509 -noout -pubkey -in {CA}/certs/intermediate_ca.crt | sha256sum; "
            f"/opt/bin/step crypto key public {CA}/secrets/intermediate_ca_key "
            f"--password-file {CA}/secrets/password | sha256sum",
        )
        first, second = out.splitlines()
        assert first == second, host


def test_the_online_ca_cannot_use_the_root_key(ha):
    """The root key has its own password, stored only age-encrypted to the backup
    recipients: the CA's password (which step-ca reads) no longer opens it; an
    operator's identity does. The standby holds the same."""
    pw = f"{CA}/secrets/root_ca_key.password.age"
    for host in ("etcd-k8s-1", "etcd-k8s-2"):
        assert sh(host, f"stat -c '%U:%G %a' {pw}").strip() == "root:root 400", host
        assert sh(host, f"head -1 {pw}").startswith("-----BEGIN AGE ENCRYPTED FILE-----")
        rc, _ = tb.exec_in(
            host,
            f"/opt/bin/step crypto key public {CA}/secrets/root_ca_key "
            f"--password-file {CA}/secrets/password",
        )
        assert rc != 0, f"{host}: the CA's password opens the root key"
    identity = ha.identity_file.read_text()
    opened = tb.run(
        ["docker", "exec", "-i", tb.container_name("etcd-k8s-1"), "sh", "-c",
         "set -e; umask 077; t=$(mktemp -d /run/t.XXXXXX); trap 'rm -rf $t' EXIT; "
         f"cat > $t/id; age -d -i $t/id -o $t/pw {pw}; /opt/bin/step crypto key public "
         f"{CA}/secrets/root_ca_key --password-file $t/pw"],
        input=identity,
        check=False,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    root = x509.load_pem_x509_certificate(sh("etcd-k8s-1", f"cat {CA}/certs/root_ca.crt").encode())
    from cryptography.hazmat.primitives import serialization

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert (
        opened.stdout.strip()
        == root.public_key().public_bytes(serialization.Encoding.PEM, spki).decode().strip()
    )


def test_step_ca_is_installed_but_not_running_on_the_standby(ha):
    assert "0.30" in sh("etcd-k8s-2", "/opt/bin/step-ca version")
    assert is_active("etcd-k8s-2") != "active"
    assert is_enabled("etcd-k8s-2") != "enabled"
    assert not sh("etcd-k8s-2", "pgrep -x step-ca || true").strip()
    assert is_active("etcd-k8s-1") == "active"
    # The other hosts hold no CA material at all.
    for host in ("etcd-k8s-3", "app-server"):
        assert not sh(host, f"ls -A {CA} 2>/dev/null || true").strip(), host


def test_only_ciphertext_crossed_the_controller(ha):
    first = ha.runs["first"]
    assert "Copy the CA material from etcd-k8s-1 to standbys" in first.output
    scan_controller(ha, first.output)
    # The one-time key pair and the decrypted archive were in /run and are gone.
    for host in ("etcd-k8s-1", "etcd-k8s-2"):
        assert not sh(host, "ls -d /run/etcd-pki-* 2>/dev/null || true").strip(), host
        # (rotation/: where rotate_ca.py keeps its state, made with the CA's directories)
        assert not sh(host, f"ls -A {CA} | grep -v -e config -e certs -e secrets -e db -e "
                      "templates -e ledger.tsv -e rotation || true").strip()  # fmt: skip


def test_second_run_with_a_standby_changes_nothing(ha):
    again = deploy(ha.inventories["start"])
    assert again.rc == 0, again.output[-3000:]
    assert again.changed == 0, again.changed_operations()


def test_a_revocation_reaches_the_standby(ha):
    sh("app-server", f"mkdir -p {OLD_PAIR} && cp {SSL}/app-server-client.crt "
       f"{SSL}/app-server-client.key {OLD_PAIR}/")  # fmt: skip
    ha.revoked_serial = read_cert("app-server", f"{OLD_PAIR}/app-server-client.crt").serial_number
    run = deploy(ha.inventories["start"], "--limit", f"@docker/{tb.container_name('app-server')}",
                 deploy_file="revoke.py")  # fmt: skip
    assert run.rc == 0, run.output[-4000:]
    assert refused_by(("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3"), *OLD_FILES)
    run = deploy(ha.inventories["start"])  # the ledger's revocation goes to the standby
    assert run.rc == 0, run.output[-4000:]
    line = f"revoked\t{ha.revoked_serial}\tapp-server-client"
    assert line in sh("etcd-k8s-2", f"cat {CA}/ledger.tsv")
