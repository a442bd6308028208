"""etcd from the official release tarball (`etcd_install_source = "release"`).

The tarball is made from Debian's etcd binaries in the official layout and served by
the bed's HTTP mirror (tests/testbed/etcd.py: etcd_release). Debian's etcd packages are
purged from the etcd hosts first (with the `etcd` user and /var/lib/etcd), so the
binaries, the user and the data root can only come from the deploy.
"""

from __future__ import annotations

import hashlib
import tarfile

import pytest

from tests import testbed as tb

from .conftest import ETCD_HOSTS, deploy, etcdctl, https, purge_debian_etcd, sh

pytestmark = pytest.mark.e2e

HOST = "etcd-k8s-3"
BINARIES = ("etcd", "etcdctl", "etcdutl")
FAKE = "#!/bin/sh\necho 'etcd Version: 3.5.0'\n"


@pytest.fixture(scope="module")
def release():
    return tb.etcd_release()


@pytest.fixture(scope="module")
def cluster(testbed, release):
    bed = tb.up(fresh=True)
    for host in ETCD_HOSTS:
        purge_debian_etcd(host)
        leftovers = sh(
            host, "ls -d /usr/bin/etcd* /opt/bin/etcd* /var/lib/etcd; getent passwd etcd", False
        )
        assert leftovers == "", f"{host}: {leftovers}"
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_etcd_release.py", data=release.inventory_data("mirror")
    )
    first = deploy(inventory)
    return bed, inventory, first


def tarball_digests(release) -> dict[str, str]:
    """sha256 of each binary in the tarball."""
    with tarfile.open(release.tarball) as tar:
        return {
            m.name.rsplit("/", 1)[-1]: hashlib.sha256(tar.extractfile(m).read()).hexdigest()
            for m in tar.getmembers()
            if m.isfile()
        }


def installed_digests(host: str) -> dict[str, str]:
    out = sh(host, "cd /opt/bin && sha256sum " + " ".join(BINARIES))
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def main_pid(host: str) -> str:
    return sh(host, "systemctl show -p MainPID --value etcd.service").strip()


def running_binary(host: str) -> str:
    """argv[0] of the etcd service's main process (/proc/PID/exe needs CAP_SYS_PTRACE)."""
    return sh(host, f"tr '\\0' '\\n' < /proc/{main_pid(host)}/cmdline | head -n1").strip()


def assert_healthy(bed) -> None:
    endpoints = ",".join(https(bed.ip(h)) for h in ETCD_HOSTS)
    rc, out = etcdctl("app-server", "app-server-client", "endpoint", "health", endpoints=endpoints)
    assert rc == 0 and out.count("is healthy") == 3, out


def limited(inventory):
    return deploy(inventory, "--limit", f"@docker/{tb.container_name(HOST)}")


def test_deploy_installs_the_tarball_binaries(cluster, release):
    bed, _, first = cluster
    assert first.rc == 0, first.output[-4000:]
    assert f"Download {release.tarball.name}" in first.output
    assert set(tarball_digests(release)) == set(BINARIES)
    for host in ETCD_HOSTS:
        assert sh(host, "dpkg -s etcd-server 2>&1", check=False).count("is not installed"), host
        assert installed_digests(host) == tarball_digests(release), host
        assert f"etcd Version: {release.version}" in sh(host, "/opt/bin/etcd --version")
        assert f"etcdctl version: {release.version}" in sh(host, "/opt/bin/etcdctl version")
        assert f"etcdutl version: {release.version}" in sh(host, "/opt/bin/etcdutl version")
        assert "path=/opt/bin/etcd " in sh(host, "systemctl show -p ExecStart etcd.service")
        assert running_binary(host) == "/opt/bin/etcd"


def test_the_deploy_creates_the_etcd_user_and_data_root(cluster):
    for host in ETCD_HOSTS:
        user = sh(host, "getent passwd etcd").strip().split(":")
        assert int(user[2]) < 1000 and user[5] == "/var/lib/etcd", user
        assert user[6] in ("/usr/sbin/nologin", "/sbin/nologin"), user
        assert sh(host, "getent group etcd").split(":")[2] == user[3]
        assert sh(host, "stat -c '%U %G %a' /var/lib/etcd").strip() == "etcd etcd 700"
        assert sh(host, f"stat -c '%U' /etc/etcd/ssl/{host}-server.key").strip() == "etcd"


def test_cluster_is_healthy_and_serves_app_server(cluster):
    bed, _, _ = cluster
    assert_healthy(bed)
    for host in ETCD_HOSTS:
        ep = https(bed.ip(host))
        rc, out = etcdctl("app-server", "app-server-client", "put", f"r-{host}", "v", endpoints=ep)
        assert rc == 0 and "OK" in out, out
        rc, out = etcdctl("app-server", "app-server-client", "get", f"r-{host}", endpoints=ep)
        assert rc == 0 and out.split() == [f"r-{host}", "v"], out


def test_second_run_changes_and_downloads_nothing(cluster):
    _, inventory, _ = cluster
    pids = {h: main_pid(h) for h in ETCD_HOSTS}
    second = deploy(inventory)
    assert second.rc == 0, second.output[-3000:]
    assert second.changed == 0, second.changed_operations()
    assert "etcd-v" not in second.output  # no download, upload or install step at all
    assert {h: main_pid(h) for h in ETCD_HOSTS} == pids


@pytest.mark.parametrize("source", ["mirror", "controller"])
def test_wrong_sha256_is_refused_and_the_binaries_stay(cluster, release, source):
    bed, _, _ = cluster
    data = release.inventory_data(source)
    bad = tb.write_inventory(
        tb.STATE_DIR / f"inventory_etcd_badsum_{source}.py",
        data={**data, "etcd_sha256": {release.arch: "0" * 64}},
    )
    # An older etcd in place (the running member keeps its binary): the deploy must
    # want to install, and must not replace anything with an unverified tarball.
    sh(HOST, f"printf %s {FAKE!r} > /opt/bin/.fake && chmod 755 /opt/bin/.fake")
    sh(HOST, "mv -f /opt/bin/.fake /opt/bin/etcd")
    before, pid = installed_digests(HOST), main_pid(HOST)
    run = limited(bad)
    assert run.rc != 0
    assert "sha256 mismatch" in run.output and "0" * 64 in run.output, run.output[-3000:]
    assert "left unchanged" in run.output
    assert installed_digests(HOST) == before
    assert main_pid(HOST) == pid
    # The right pin from the same source installs, and the member restarts onto it.
    fixed = limited(tb.write_inventory(tb.STATE_DIR / "inventory_etcd_fixed.py", data=data))
    assert fixed.rc == 0, fixed.output[-3000:]
    verb = "Upload" if source == "controller" else "Download"
    assert f"{verb} {release.tarball.name}" in fixed.output
    assert installed_digests(HOST) == tarball_digests(release)
    assert main_pid(HOST) != pid
    assert running_binary(HOST) == "/opt/bin/etcd"
    assert_healthy(bed)
