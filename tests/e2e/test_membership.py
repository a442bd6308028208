"""Adding and removing etcd members on a running cluster.

The new node joins through the `@ssh` inventory, whose host names are the production
ones, with `--limit etcd-k8s-4`: nothing else may change.
"""

from __future__ import annotations

import pytest

from tests import testbed as tb

from .conftest import ETCD_HOSTS, SSL, deploy, etcdctl, https, sh

pytestmark = pytest.mark.e2e

NEW = "etcd-k8s-4"


def snapshot(host: str) -> str:
    """Checksums of everything the deploy manages on ``host`` (certs, keys, units, config)."""
    return sh(
        host,
        f"sha256sum {SSL}/* /etc/etcd/*.env /etc/systemd/system/step-renew-* "
        "/etc/systemd/system/etcd.service /etc/step/config/defaults.json 2>/dev/null; "
        "[ -d /etc/step-ca ] && find /etc/step-ca -type f ! -path '*/db/*' -exec sha256sum {} +"
        " ; true",
    )


def pid(host: str, unit: str) -> str:
    return sh(host, f"systemctl show -p MainPID --value {unit}").strip()


def members(bed) -> str:
    endpoints = ",".join(https(bed.ip(h)) for h in ETCD_HOSTS)
    rc, out = etcdctl("app-server", "app-server-client", "member", "list", endpoints=endpoints)
    assert rc == 0, out
    return out


@pytest.fixture(scope="module")
def cluster(testbed):
    bed = tb.up(fresh=True)
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    return tb.add(NEW, "etcd")


@pytest.fixture(scope="module")
def added(cluster):
    before = {h: snapshot(h) for h in (*ETCD_HOSTS, "app-server")}
    pids = {h: pid(h, "etcd") for h in ETCD_HOSTS} | {"ca": pid("etcd-k8s-1", "step-ca")}
    run = deploy(cluster.inventory_ssh, "--limit", NEW)
    return cluster, run, before, pids


def test_limit_adds_the_node_through_ssh(added):
    bed, run, _, _ = added
    assert run.rc == 0, run.output[-4000:]
    out = members(bed)
    assert out.count(", started, ") == 4, out
    assert f"started, {NEW}, https://{bed.ip(NEW)}:2380" in out
    rc, health = etcdctl(
        "app-server", "app-server-client", "endpoint", "health", endpoints=https(bed.ip(NEW))
    )
    assert rc == 0 and "is healthy" in health, health


def test_the_new_node_has_certificates_from_the_existing_ca(added):
    root = sh("etcd-k8s-1", "cat /etc/step-ca/certs/root_ca.crt")
    assert sh(NEW, f"cat {SSL}/root_ca.crt") == root
    for kind in ("peer", "server", "client"):
        crt = f"{SSL}/{NEW}-{kind}.crt"
        assert sh(NEW, f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
        assert sh(NEW, f"stat -c '%U %a' {SSL}/{NEW}-{kind}.key").split() == ["etcd", "400"]
    assert sh(NEW, f"systemctl is-active step-renew-{NEW}-peer.timer").strip() == "active"
    assert sh(NEW, "ls /etc/step-ca 2>/dev/null || true").strip() == ""


def test_no_other_host_changed(added):
    _, _, before, pids = added
    for host, digest in before.items():
        assert snapshot(host) == digest, host
    for host in ETCD_HOSTS:
        assert pid(host, "etcd") == pids[host], host
    assert pid("etcd-k8s-1", "step-ca") == pids["ca"]


def test_full_runs_after_the_add_restart_nothing_and_converge(added):
    bed, _, _, pids = added
    first = deploy(bed.inventory_docker)
    assert first.rc == 0, first.output[-3000:]
    for host in ETCD_HOSTS:
        assert pid(host, "etcd") == pids[host], host
    second = deploy(bed.inventory_docker)
    assert second.rc == 0 and second.changed == 0, second.changed_operations()


def test_remove_node_leaves_a_healthy_cluster_and_revokes(added):
    bed = tb.bed()
    sh(NEW, f"mkdir -p /root/saved && cp {SSL}/{NEW}-peer.crt {SSL}/{NEW}-peer.key /root/saved/")
    run = deploy(
        bed.inventory_docker,
        "--limit",
        f"@docker/{tb.container_name(NEW)}",
        deploy_file="remove_node.py",
    )
    assert run.rc == 0, run.output[-4000:]
    out = members(bed)
    assert NEW not in out and out.count(", started, ") == 3, out
    endpoints = ",".join(https(bed.ip(h)) for h in ETCD_HOSTS)
    rc, health = etcdctl(
        "app-server", "app-server-client", "endpoint", "health", endpoints=endpoints
    )
    assert rc == 0 and health.count("is healthy") == 3, health
    assert sh(NEW, "systemctl is-active etcd || true").strip() != "active"
    assert sh(NEW, "ls /etc/systemd/system | grep step-renew || true").strip() == ""
    # The revoked certificate can no longer be renewed at the CA.
    journal = "journalctl -u step-ca --no-pager | grep -c 'certificate has been revoked' || true"
    refusals = int(sh("etcd-k8s-1", journal).strip())
    rc, renew = tb.exec_in(
        NEW,
        "STEPPATH=/etc/step /opt/bin/step ca renew --force --out /root/saved/new.crt "
        "/root/saved/etcd-k8s-4-peer.crt /root/saved/etcd-k8s-4-peer.key 2>&1",
    )
    assert rc != 0, renew
    assert int(sh("etcd-k8s-1", journal).strip()) == refusals + 1
    tb.remove(NEW)
    after = deploy(tb.bed().inventory_docker)
    assert after.rc == 0 and after.changed == 0, after.changed_operations()
