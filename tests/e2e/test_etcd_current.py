"""The core flow on current upstream etcd (3.6 and 3.7, built by the test bed from their
Go modules at pinned versions and served as release tarballs): fresh deploy, a re-run that
changes nothing, a member added with --limit, revocation enforced from a DER CRL,
renewal, audit. Debian's etcd is purged from the members first.
"""

from __future__ import annotations

import pytest

from tests import testbed as tb

from .conftest import ETCD_HOSTS, SSL, deploy, https, purge_debian_etcd, read_cert, sh

pytestmark = pytest.mark.e2e

NEW = "etcd-k8s-4"


@pytest.fixture(scope="module", params=tb.UPSTREAM_ETCD_VERSIONS)
def cluster(testbed, request):
    release = tb.upstream_etcd_release(request.param)
    bed = tb.up(fresh=True)
    for host in ETCD_HOSTS:
        purge_debian_etcd(host)
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_etcd_current.py", "ssh", data=release.inventory_data("mirror")
    )
    return bed, release, inventory, deploy(inventory)


def etcdctl(host: str, *args: str, cert: str | None = None, key: str | None = None):
    endpoints = ",".join(https(tb.bed().ip(h)) for h in ETCD_HOSTS)
    cert = cert or f"{SSL}/app-server-client.crt"
    key = key or f"{SSL}/app-server-client.key"
    binary = "/opt/bin/etcdctl" if host.startswith("etcd-") else "etcdctl"  # Debian's on clients
    return tb.exec_in(
        host,
        f"{binary} --endpoints={endpoints} --cacert {SSL}/root_ca.crt --cert {cert} "
        f"--key {key} --dial-timeout=4s --command-timeout=8s {' '.join(args)} 2>&1",
    )


def test_members_run_the_current_release(cluster):
    bed, release, _, first = cluster
    assert first.rc == 0, first.output[-4000:]
    for host in ETCD_HOSTS:
        assert f"etcd Version: {release.version}" in sh(host, "/opt/bin/etcd --version")
    rc, status = etcdctl(ETCD_HOSTS[0], "endpoint", "status", cert=f"{SSL}/etcd-k8s-1-client.crt",
                         key=f"{SSL}/etcd-k8s-1-client.key")  # fmt: skip
    assert rc == 0 and status.count(f", {release.version}, ") == 3, status


def test_a_second_run_changes_nothing(cluster):
    _, _, inventory, _ = cluster
    run = deploy(inventory)
    assert run.rc == 0 and run.changed == 0, run.changed_operations()


def test_a_revoked_certificate_is_refused_by_current_etcd(cluster):
    """etcd 3.6 reads the CRL as DER only: revocation must work there too."""
    bed, _, inventory, _ = cluster
    sh("etcd-k8s-1", "mkdir -p /root/old && cp /etc/etcd/ssl/etcd-k8s-1-client.* /root/old/")
    run = deploy(inventory, "--limit", "etcd-k8s-1", "--data", "revoke_kinds=client",
                 deploy_file="revoke.py")  # fmt: skip
    assert run.rc == 0, run.output[-4000:]
    for member in ETCD_HOSTS:
        rc, out = tb.exec_in(
            "etcd-k8s-1",
            f"/opt/bin/etcdctl --endpoints={https(bed.ip(member))} --cacert {SSL}/root_ca.crt "
            "--cert /root/old/etcd-k8s-1-client.crt --key /root/old/etcd-k8s-1-client.key "
            "--dial-timeout=4s get x 2>&1",
        )
        assert rc != 0, f"{member} accepted a revoked certificate: {out}"
    rc, health = etcdctl("app-server", "endpoint", "health")
    assert rc == 0 and health.count("is healthy") == 3, health
    sh("etcd-k8s-1", "rm -rf /root/old")  # the audit below flags a stray key


def test_a_member_added_with_limit_and_renewal(cluster):
    _, release, _, _ = cluster
    tb.add(NEW, tb.GROUP_ETCD)
    purge_debian_etcd(NEW)
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_etcd_current.py", "ssh", data=release.inventory_data("mirror")
    )
    run = deploy(inventory, "--limit", NEW)
    assert run.rc == 0, run.output[-4000:]
    rc, members = etcdctl("app-server", "member", "list")
    assert rc == 0 and members.count(", started, ") == 4, members
    before = read_cert(NEW, f"{SSL}/{NEW}-peer.crt").serial_number
    run = deploy(inventory, "--limit", NEW, "--data", "renew_now_force=true",
                 deploy_file="renew_now.py")  # fmt: skip
    assert run.rc == 0, run.output[-4000:]
    assert read_cert(NEW, f"{SSL}/{NEW}-peer.crt").serial_number != before
    audit = deploy(inventory, deploy_file="audit.py")
    assert audit.rc == 0, audit.output[-4000:]
    run = deploy(inventory, "--limit", NEW, deploy_file="remove_node.py")
    assert run.rc == 0, run.output[-4000:]
    tb.remove(NEW)


def test_an_older_etcd_is_refused_before_anything_runs(cluster):
    bed, release, _, _ = cluster
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_etcd_old.py",
        "ssh",
        data={**release.inventory_data("mirror"), "etcd_version": "3.4.23"},
    )
    run = deploy(inventory)
    assert run.rc != 0
    assert "`etcd_version` = '3.4.23': the deploy supports etcd 3.5, 3.6 and 3.7" in run.output
