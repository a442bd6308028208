"""The test bed itself: containers boot, binaries are real, pyinfra and the mirror work."""

from __future__ import annotations

import hashlib
import re
import tarfile

import pytest

from tests import testbed

pytestmark = pytest.mark.e2e


def test_every_container_is_running(bed: testbed.Bed) -> None:
    assert set(testbed.DEFAULT_NODES) <= set(bed.names)
    for name in bed.names:
        rc, out = testbed.exec_in(name, "systemctl is-system-running")
        assert (rc, out.strip()) == (0, "running"), name


def test_groups(bed: testbed.Bed) -> None:
    assert [n.name for n in bed.group("etcd_cert_managers")] == ["etcd-k8s-1"]
    assert {"etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3"} <= {n.name for n in bed.group("etcd")}
    assert "app-server" in {n.name for n in bed.group("etcd_clients")}


@pytest.mark.parametrize("tool", testbed.TOOLS, ids=lambda t: t.name)
def test_binaries_report_pinned_version(bed: testbed.Bed, tool: testbed.Tool) -> None:
    version = bed.versions[tool.name]
    out = testbed.run([str(testbed.binary_path(tool, version)), "version"]).stdout
    assert re.search(rf"/{re.escape(version)} \(linux/", out), out


@pytest.mark.parametrize("tool", testbed.TOOLS, ids=lambda t: t.name)
def test_mirror_tarball_matches_checksums(bed: testbed.Bed, tool: testbed.Tool) -> None:
    version = bed.versions[tool.name]
    release = bed.mirror_dir / tool.repo / "releases" / "download" / f"v{version}"
    tarball = release / f"{tool.name}_linux_{version}_amd64.tar.gz"
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert (release / "checksums.txt").read_text() == f"{digest}  {tarball.name}\n"
    with tarfile.open(tarball) as tar:
        member = tar.getmember(f"{tool.name}_{version}/bin/{tool.name}")
        assert member.mode & 0o111
        extracted = tar.extractfile(member)
        assert extracted is not None
        binary = testbed.binary_path(tool, version).read_bytes()
        assert extracted.read() == binary


def test_mirror_serves_checksums_to_a_container(bed: testbed.Bed) -> None:
    version = bed.versions["step"]
    path = f"cli/releases/download/v{version}/checksums.txt"
    rc, out = testbed.exec_in("app-server", f"curl -fsS {bed.mirror_url}/{path}")
    assert rc == 0
    assert out == (bed.mirror_dir / path).read_text()


@pytest.mark.parametrize("flavour", ["docker", "ssh"])
def test_pyinfra_reaches_every_host(bed: testbed.Bed, flavour: str) -> None:
    inventory = bed.inventory_docker if flavour == "docker" else bed.inventory_ssh
    result = testbed.run_pyinfra(inventory, "exec", "--", "hostname", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for name in bed.names:
        host = f"@docker/{name}" if flavour == "docker" else name
        # pyinfra prints each output line as "[host] line".
        assert re.search(rf"^\[{re.escape(host)}\]\s+{re.escape(name)}$", output, re.M), output


def test_inventory_carries_host_data(bed: testbed.Bed) -> None:
    namespace: dict = {}
    exec(bed.inventory_docker.read_text(), namespace)
    hosts = dict(namespace["etcd"])
    data = hosts["@docker/etcd-k8s-1"]
    assert data["address"] == bed.ip("etcd-k8s-1")
    assert data["node_name"] == "etcd-k8s-1"
    assert data["install_source"] == "controller"
    assert data["install_controller_dir"] == str(bed.mirror_dir)
    assert namespace["etcd_cert_managers"] == ["@docker/etcd-k8s-1"]
