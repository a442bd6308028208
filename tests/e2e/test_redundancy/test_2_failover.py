"""Phase 2: the active is lost; fail over to the standby (etcd-k8s-2)."""

from __future__ import annotations

import pytest
from cryptography import x509

from tests import testbed as tb

from ..conftest import SSL, deploy, file_digests, force_renew, openssl_fingerprint, sh
from ..conftest import sans as cert_sans
from .helpers import (
    CA,
    CM,
    KEYS_AND_CERTS,
    OLD_FILES,
    ca_log_has_renewal,
    crl_serials_at,
    inventory,
    is_active,
    is_enabled,
    refused_by,
    renewal_refused_as_revoked,
    scan_controller,
)

pytestmark = pytest.mark.e2e


def test_failover_to_a_host_without_material_is_refused(one_down):
    ha = one_down
    inv = inventory(ha, "bad", "etcd-k8s-3", ["etcd-k8s-3"])
    run = deploy(inv)
    assert run.rc != 0
    assert "etcd-k8s-3 is the active cert-manager but has no CA material" in run.output
    assert ha.root_fingerprint in run.output
    assert not sh("etcd-k8s-3", f"ls -A {CA} 2>/dev/null || true").strip()
    assert file_digests("etcd-k8s-3", KEYS_AND_CERTS) == ha.ssl_before["etcd-k8s-3"]


def test_two_active_cert_managers_are_refused(one_down):
    ha = one_down
    inv = tb.write_inventory(
        tb.STATE_DIR / "inventory_ha_two.py",
        nodes=tb.running_nodes(),
        data=ha.data,
        groups={CM: ["etcd-k8s-2", "etcd-k8s-3"]},
        host_data={
            "etcd-k8s-2": {"active_cert_manager": "etcd-k8s-2"},
            "etcd-k8s-3": {"active_cert_manager": "etcd-k8s-3"},
        },
    )
    run = deploy(inv)
    assert run.rc != 0 and "two active cert-managers named" in run.output


def test_failover_deploy_keeps_the_root_and_every_certificate(failed_over):
    ha = failed_over
    run = ha.runs["failover"]
    assert run.rc == 0, run.output[-4000:]
    assert is_active("etcd-k8s-2") == "active" and is_enabled("etcd-k8s-2") == "enabled"
    assert openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt") == ha.root_fingerprint
    ca_url = f"https://{ha.bed.ip('etcd-k8s-2')}:9000"
    for host in ("etcd-k8s-2", "etcd-k8s-3", "app-server"):
        # Nothing re-issued: certificates, keys and root file are byte-identical (the
        # CRL is the new CA's: it revoked again what the lost CA had revoked).
        assert file_digests(host, KEYS_AND_CERTS) == ha.ssl_before[host], host
        assert openssl_fingerprint(host, f"{SSL}/root_ca.crt") == ha.root_fingerprint
        defaults = sh(host, "cat /etc/step/config/defaults.json")
        assert ca_url in defaults and ha.root_fingerprint in defaults, host
    scan_controller(ha, run.output)


def test_revocations_survive_the_failover(failed_over):
    """The standby never held the lost CA's database: the deploy revoked again."""
    ha = failed_over
    assert ha.revoked_serial in crl_serials_at("app-server", "etcd-k8s-2")
    assert refused_by(("etcd-k8s-2", "etcd-k8s-3"), *OLD_FILES)
    assert renewal_refused_as_revoked("app-server", *OLD_FILES, ca="etcd-k8s-2")


def test_new_ca_serves_a_tls_certificate_for_its_own_name_and_address(failed_over):
    ha = failed_over
    ip = ha.bed.ip("etcd-k8s-2")
    out = sh(
        "app-server",
        f"echo | openssl s_client -connect {ip}:9000 -CAfile {SSL}/root_ca.crt "
        "-verify_return_error 2>/dev/null | openssl x509",
    )
    leaf = x509.load_pem_x509_certificate(out.encode())
    assert {"etcd-k8s-2", "etcd-k8s-2.local", ip} <= cert_sans(leaf)
    assert ha.bed.ip("etcd-k8s-1") not in cert_sans(leaf)
    rc, health = tb.exec_in("etcd-k8s-3", "STEPPATH=/etc/step /opt/bin/step ca health")
    assert rc == 0 and "ok" in health


def test_existing_certificate_renews_against_the_new_ca(failed_over):
    before, after = force_renew("etcd-k8s-3", "etcd-k8s-3-client")
    assert after != before
    crt = f"{SSL}/etcd-k8s-3-client.crt"
    assert sh("etcd-k8s-3", f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
    # etcd-k8s-1 is stopped: the renewal was served by etcd-k8s-2.
    assert ca_log_has_renewal("etcd-k8s-2", "etcd-k8s-3-client")


def test_new_node_gets_certificates_from_the_new_ca(failed_over):
    ha = failed_over
    tb.add("app-client-1", tb.GROUP_CLIENTS)
    ha.bed = tb.bed()
    inv = inventory(ha, "failover_add", "etcd-k8s-2", ["etcd-k8s-2"])
    run = deploy(inv, "--limit", f"@docker/{tb.container_name('app-client-1')}")
    assert run.rc == 0, run.output[-4000:]
    crt = f"{SSL}/app-client-1-client.crt"
    out = sh("app-client-1", f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
    assert out.strip().endswith(": OK")
    assert openssl_fingerprint("app-client-1", f"{SSL}/root_ca.crt") == ha.root_fingerprint
    journal = sh("etcd-k8s-2", "journalctl -u step-ca --no-pager -o cat")
    assert "subject=app-client-1-client" in journal
