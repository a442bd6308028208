"""Phase 6: a cert-manager is demoted."""

from __future__ import annotations

import pytest

from ..conftest import deploy, sh
from .helpers import CA, inventory, is_active, is_enabled

pytestmark = pytest.mark.e2e


def test_a_demoted_cert_manager_keeps_no_ca_keys(fresh_ca_node):
    ha = fresh_ca_node
    # A different CA on a host that never was a cert-manager is refused, not deleted.
    sh("etcd-k8s-3", f"mkdir -p {CA}/config {CA}/certs && echo '{{}}' > {CA}/config/ca.json")
    sh(
        "etcd-k8s-3",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        f"-subj /CN=another-ca -keyout /dev/null -out {CA}/certs/root_ca.crt 2>/dev/null",
    )
    refused = deploy(ha.inventories["back"])
    assert refused.rc != 0 and "etcd-k8s-3 holds CA material" in refused.output
    assert sh("etcd-k8s-3", f"ls {CA}/certs/root_ca.crt").strip()
    sh("etcd-k8s-3", f"rm -rf {CA}")

    inv = inventory(ha, "demoted", "etcd-k8s-2", ["etcd-k8s-2"])
    assert sh("etcd-k8s-1", f"ls {CA}/secrets").split()  # the standby's copy
    run = deploy(inv)
    assert run.rc == 0, run.output[-4000:]
    assert sh("etcd-k8s-1", f"ls -d {CA} 2>/dev/null || true").strip() == ""
    # Its database is kept aside, its keys and passwords are not.
    (aside,) = sh("etcd-k8s-1", f"ls -d {CA}.retired-*").split()
    kept = sh("etcd-k8s-1", f"ls {aside}").split()
    assert {"db", "ledger.tsv", "config"} <= set(kept) and "secrets" not in kept, kept
    assert is_enabled("etcd-k8s-1") != "enabled" and is_active("etcd-k8s-1") != "active"
    assert is_active("etcd-k8s-2") == "active"
    again = deploy(inv)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
