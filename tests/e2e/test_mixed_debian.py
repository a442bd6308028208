"""A cluster of Debian 13 and Debian 12 hosts together (node images of both built by the
test bed with debootstrap): etcd-k8s-3 and app-server run bookworm. The members run
the current upstream etcd (Debian 12's own etcd, 3.4, is refused); the deploy checks
what each host needs before it starts.
"""

from __future__ import annotations

import pytest

from tests import testbed as tb

from .conftest import ALL_HOSTS, ETCD_HOSTS, SSL, deploy, https, purge_debian_etcd, read_cert, sh

pytestmark = pytest.mark.e2e

BOOKWORM = ("etcd-k8s-3", "app-server")


@pytest.fixture(scope="module")
def cluster(testbed):
    release = tb.upstream_etcd_release()
    tb.up(fresh=True)
    tb.add("etcd-k8s-3", tb.GROUP_ETCD, suite="bookworm")
    tb.add("app-server", tb.GROUP_CLIENTS, suite="bookworm")
    for host in ETCD_HOSTS:
        purge_debian_etcd(host)
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_mixed.py", "ssh", data=release.inventory_data("mirror")
    )
    return inventory


def codename(host: str) -> str:
    return sh(host, ". /etc/os-release; echo $VERSION_CODENAME").strip()


def healthy() -> None:
    endpoints = ",".join(https(tb.bed().ip(h)) for h in ETCD_HOSTS)
    rc, out = tb.exec_in(
        "etcd-k8s-1",
        f"/opt/bin/etcdctl --endpoints={endpoints} --cacert {SSL}/root_ca.crt "
        f"--cert {SSL}/etcd-k8s-1-client.crt --key {SSL}/etcd-k8s-1-client.key endpoint health",
    )
    assert rc == 0 and out.count("is healthy") == 3, out


def test_missing_tools_are_named_before_anything_runs(cluster):
    host = "etcd-k8s-3"
    sh(host, "mv /usr/bin/openssl /usr/bin/openssl.away && mv /usr/bin/curl /usr/bin/curl.away")
    try:
        run = deploy(cluster)
        assert run.rc != 0
        assert f"host {host}: neither curl nor wget is installed" in run.output
        assert "openssl is not installed" in run.output
        assert "Traceback" not in run.output
        for h in ALL_HOSTS:
            assert sh(h, "ls /opt/bin /etc/etcd/ssl 2>/dev/null || true").strip() == "", h
    finally:
        sh(host, "mv /usr/bin/openssl.away /usr/bin/openssl; mv /usr/bin/curl.away /usr/bin/curl")


def test_debian_12s_own_etcd_is_refused(cluster):
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_mixed_debian_etcd.py",
        "ssh",
        host_data={"etcd-k8s-3": {"etcd_install_source": "debian"}},
    )
    run = deploy(inventory)
    assert run.rc != 0
    assert "host etcd-k8s-3: Debian's etcd-server here is etcd 3.4" in run.output
    assert "the deploy supports etcd 3.5, 3.6 and 3.7" in run.output


def test_a_mixed_cluster_deploys(cluster):
    assert [codename(h) for h in ALL_HOSTS] == ["trixie", "trixie", "bookworm", "bookworm"]
    run = deploy(cluster)
    assert run.rc == 0, run.output[-4000:]
    healthy()
    for host in ALL_HOSTS:
        kinds = ("peer", "server", "client") if host in ETCD_HOSTS else ("client",)
        for kind in kinds:
            crt = f"{SSL}/{host}-{kind}.crt"
            out = sh(host, f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
            assert out.strip().endswith(": OK"), out
    again = deploy(cluster)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()


def test_renewal_on_debian_12_and_audit(cluster):
    for host, name in (("app-server", "app-server-client"), ("etcd-k8s-3", "etcd-k8s-3-peer")):
        before = read_cert(host, f"{SSL}/{name}.crt").serial_number
        run = deploy(cluster, "--limit", host, "--data", "renew_now_force=true",
                     deploy_file="renew_now.py")  # fmt: skip
        assert run.rc == 0, run.output[-4000:]
        assert read_cert(host, f"{SSL}/{name}.crt").serial_number != before
    healthy()
    audit = deploy(cluster, deploy_file="audit.py")
    assert audit.rc == 0, audit.output[-4000:]
