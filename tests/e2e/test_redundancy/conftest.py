"""The scenario's phases as package-scoped fixtures: each phase is brought about once,
by the first test that needs it, and the phase modules after it build on its state."""

from __future__ import annotations

import shutil

import pytest

from tests import testbed as tb
from tests.agekeys import generate, write_identity

from ..conftest import SSL, deploy, file_digests, sh
from .helpers import CA, KEYS_AND_CERTS, Ha, inventory


def etcd_member_remove(via: str, name: str) -> None:
    """What the operator does for a lost member: remove it, from a surviving one."""
    auth = (
        f"--endpoints=https://127.0.0.1:2379 --cacert {SSL}/root_ca.crt "
        f"--cert {SSL}/{via}-client.crt --key {SSL}/{via}-client.key"
    )
    members = sh(via, f"etcdctl {auth} member list -w simple")
    member_id = next(x.split(",")[0] for x in members.splitlines() if f", {name}," in x)
    sh(via, f"etcdctl {auth} member remove {member_id}")


@pytest.fixture(scope="package")
def ha(testbed):
    """Phase 1: a fresh bed deployed with etcd-k8s-1 active and etcd-k8s-2 its standby;
    an age identity for the backups (and another one, not a recipient)."""
    bed = tb.up(fresh=True)
    identity, recipient = generate()
    other_identity, _ = generate()
    identity_file = write_identity(
        tb.STATE_DIR / "ha-backup-identity.txt", identity, f"test recipient {recipient}"
    )
    backup_dir = tb.STATE_DIR / "ha-backups"
    shutil.rmtree(backup_dir, ignore_errors=True)
    state = Ha(
        bed=bed,
        recipient=recipient,
        identity_file=identity_file,
        other_identity=other_identity,
        backup_dir=backup_dir,
        data={"backup_recipients": [recipient], "backup_dir": str(backup_dir)},
    )
    inv = inventory(state, "start", "etcd-k8s-1", ["etcd-k8s-1", "etcd-k8s-2"])
    state.runs["first"] = deploy(inv, "-vv")
    state.inventories["start"] = inv
    yield state
    identity_file.unlink(missing_ok=True)


@pytest.fixture(scope="package")
def one_down(ha):
    """etcd-k8s-1 stopped; the SSL files and roots of the survivors recorded first."""
    for host in ("etcd-k8s-2", "etcd-k8s-3", "app-server"):
        ha.ssl_before[host] = file_digests(host, KEYS_AND_CERTS)
    tb.docker("stop", tb.container_name("etcd-k8s-1"))
    return ha


@pytest.fixture(scope="package")
def failed_over(one_down):
    """Phase 2: the deploy run with etcd-k8s-2, the standby, as the active cert-manager."""
    ha = one_down
    inv = inventory(ha, "failover", "etcd-k8s-2", ["etcd-k8s-2"])
    ha.runs["failover"] = deploy(inv, "-vv")
    return ha


@pytest.fixture(scope="package")
def fresh_ca_node(failed_over):
    """etcd-k8s-2 destroyed and rebuilt empty (same name and address), after its etcd
    member was removed from a survivor, as an operator would; a stray CA planted on it."""
    ha = failed_over
    assert ha.backup is not None
    tb.docker("rm", "-f", tb.container_name("etcd-k8s-2"))
    etcd_member_remove("etcd-k8s-1", "etcd-k8s-2")
    tb.add("etcd-k8s-2", tb.GROUP_ETCD)
    ha.bed = tb.bed()
    sh(
        "etcd-k8s-2",
        f"mkdir -p {CA}/certs {CA}/config && echo '{{}}' > {CA}/config/ca.json && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        f"-subj /CN=another-ca -keyout /dev/null -out {CA}/certs/root_ca.crt 2>/dev/null",
    )
    return ha
