"""Phase 5: the CA node is destroyed; restore onto a fresh one."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests import testbed as tb

from ..conftest import SSL, Run, deploy, force_renew, openssl_fingerprint, read_cert, sh
from ..conftest import sans as cert_sans
from .helpers import (
    CA,
    EXPECTED,
    OLD_FILES,
    REVOKED,
    Ha,
    ca_log_has_renewal,
    ca_stats,
    crl_serials_at,
    is_active,
    refused_by,
    renewal_refused_as_revoked,
    scan_controller,
)

pytestmark = pytest.mark.e2e


def restore(ha: Ha, *extra: str) -> Run:
    return deploy(
        ha.inventories["back"],
        "-vv",
        "--data",
        f"restore_from={ha.backup}",
        "--data",
        f"restore_identity_file={ha.identity_file}",
        *extra,
        deploy_file="restore.py",
    )


def test_restore_over_a_different_ca_is_refused_without_force(fresh_ca_node):
    ha = fresh_ca_node
    stray = openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt")
    run = restore(ha)
    assert run.rc != 0
    assert "etcd-k8s-2 already holds a different CA" in run.output
    assert "Traceback" not in run.output  # the refusal alone
    assert stray in run.output and "restore_force=true" in run.output
    assert openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt") == stray
    scan_controller(ha, run.output)


def test_restore_with_force_then_deploy_runs_the_same_ca(fresh_ca_node):
    ha = fresh_ca_node
    run = restore(ha, "--data", "restore_force=true")
    assert run.rc == 0, run.output[-4000:]
    scan_controller(ha, run.output)
    assert "existing CA moved aside" in run.output
    aside = sh("etcd-k8s-2", f"ls -d {CA}.replaced-*").split()
    assert len(aside) == 1
    assert ca_stats("etcd-k8s-2") == EXPECTED
    assert not sh("etcd-k8s-2", "ls -d /run/etcd-pki-* 2>/dev/null || true").strip()
    assert openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt") == ha.root_fingerprint
    sh("etcd-k8s-2", f"rm -rf {aside[0]}")

    run = deploy(ha.inventories["back"])
    assert run.rc == 0, run.output[-4000:]
    assert is_active("etcd-k8s-2") == "active"
    leaf = sh(
        "app-server",
        f"echo | openssl s_client -connect {ha.bed.ip('etcd-k8s-2')}:9000 "
        f"-CAfile {SSL}/root_ca.crt -verify_return_error 2>/dev/null | openssl x509",
    )
    cert = x509.load_pem_x509_certificate(leaf.encode())
    chain_root = sh("app-server", f"cat {SSL}/root_ca.crt")
    root = x509.load_pem_x509_certificate(chain_root.encode())
    assert root.fingerprint(hashes.SHA256()).hex() == ha.root_fingerprint
    assert ha.bed.ip("etcd-k8s-2") in cert_sans(cert)
    for host in ("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3", "app-server"):
        assert openssl_fingerprint(host, f"{SSL}/root_ca.crt") == ha.root_fingerprint


def test_a_certificate_revoked_before_the_backup_stays_revoked(fresh_ca_node):
    assert renewal_refused_as_revoked(
        "etcd-k8s-3", f"{REVOKED}/c.crt", f"{REVOKED}/c.key", ca="etcd-k8s-2"
    )


def test_revocations_survive_the_restore(fresh_ca_node):
    ha = fresh_ca_node
    serials = crl_serials_at("app-server", "etcd-k8s-2")
    assert ha.revoked_serial in serials
    revoked_test = read_cert("etcd-k8s-3", f"{REVOKED}/c.crt").serial_number
    assert revoked_test in serials
    assert refused_by(("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3"), *OLD_FILES)


def test_certificate_issued_before_the_backup_renews_after_the_restore(fresh_ca_node):
    # app-server-client dates from the very first deploy (CA on etcd-k8s-1).
    before, after = force_renew("app-server", "app-server-client")
    assert after != before
    assert ca_log_has_renewal("etcd-k8s-2", "app-server-client")
    rc, out = tb.exec_in(
        "app-server",
        f"etcdctl --endpoints=https://{tb.bed().ip('etcd-k8s-2')}:2379 --cacert "
        f"{SSL}/root_ca.crt --cert {SSL}/app-server-client.crt --key "
        f"{SSL}/app-server-client.key --dial-timeout=5s endpoint health 2>&1",
    )
    assert rc == 0 and "is healthy" in out, out


def test_after_the_restore_a_second_run_changes_nothing(fresh_ca_node):
    ha = fresh_ca_node
    # The renewal above is recorded in the CA's ledger, which goes to the standby.
    run = deploy(ha.inventories["back"])
    assert run.rc == 0, run.output[-3000:]
    assert set(run.changed_operations()) <= {
        "Ledger of issued certificates | Record issued certificates in /etc/step-ca/ledger.tsv",
        "CA material on standbys | Copy the CA material from etcd-k8s-2 to standbys "
        "(age-encrypted to a one-time key of each)",
    }, run.changed_operations()
    run = deploy(ha.inventories["back"])
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0, run.changed_operations()
