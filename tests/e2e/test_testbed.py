"""The test bed itself: containers boot, binaries are real, pyinfra and the mirror work."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from pathlib import Path

import pytest

from tests import testbed as tb

pytestmark = pytest.mark.e2e


def test_every_container_is_running(testbed: tb.Bed) -> None:
    assert set(tb.DEFAULT_NODES) <= set(testbed.names)
    for name in testbed.names:
        rc, out = tb.exec_in(name, "systemctl is-system-running")
        assert (rc, out.strip()) == (0, "running"), name


def test_groups(testbed: tb.Bed) -> None:
    assert [n.name for n in testbed.group("etcd_cert_managers")] == ["etcd-k8s-1"]
    assert {"etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3"} <= {n.name for n in testbed.group("etcd")}
    assert "app-server" in {n.name for n in testbed.group("etcd_clients")}


@pytest.mark.parametrize("tool", tb.TOOLS, ids=lambda t: t.name)
def test_binaries_report_pinned_version(testbed: tb.Bed, tool: tb.Tool) -> None:
    version = testbed.versions[tool.name]
    out = tb.run([str(tb.binary_path(tool, version)), "version"]).stdout
    assert re.search(rf"/{re.escape(version)} \(linux/", out), out


@pytest.mark.parametrize("tool", tb.TOOLS, ids=lambda t: t.name)
def test_mirror_tarball_matches_checksums(testbed: tb.Bed, tool: tb.Tool) -> None:
    version = testbed.versions[tool.name]
    release = testbed.mirror_dir / tool.repo / "releases" / "download" / f"v{version}"
    tarball = release / f"{tool.name}_linux_{version}_amd64.tar.gz"
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert (release / "checksums.txt").read_text() == f"{digest}  {tarball.name}\n"
    with tarfile.open(tarball) as tar:
        member = tar.getmember(f"{tool.name}_{version}/bin/{tool.name}")
        assert member.mode & 0o111
        extracted = tar.extractfile(member)
        assert extracted is not None
        binary = tb.binary_path(tool, version).read_bytes()
        assert extracted.read() == binary


def test_mirror_serves_checksums_to_a_container(testbed: tb.Bed) -> None:
    version = testbed.versions["step"]
    path = f"cli/releases/download/v{version}/checksums.txt"
    rc, out = tb.exec_in("app-server", f"curl -fsS {testbed.mirror_url}/{path}")
    assert rc == 0
    assert out == (testbed.mirror_dir / path).read_text()


@pytest.mark.parametrize("flavour", ["docker", "ssh"])
def test_pyinfra_reaches_every_host(testbed: tb.Bed, flavour: str) -> None:
    inventory = testbed.inventory_docker if flavour == "docker" else testbed.inventory_ssh
    result = tb.run_pyinfra(inventory, "exec", "--", "hostname", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for name in testbed.names:
        host = f"@docker/{tb.container_name(name)}" if flavour == "docker" else name
        # pyinfra prints each output line as "[host] line".
        assert re.search(rf"^\[{re.escape(host)}\]\s+{re.escape(name)}$", output, re.M), output


def test_inventory_carries_host_data(testbed: tb.Bed) -> None:
    namespace: dict = {}
    exec(testbed.inventory_docker.read_text(), namespace)
    hosts = dict(namespace["etcd"])
    data = hosts[f"@docker/{tb.container_name('etcd-k8s-1')}"]
    assert data["address"] == testbed.ip("etcd-k8s-1")
    assert data["node_name"] == "etcd-k8s-1"
    assert data["install_source"] == "controller"
    assert data["install_controller_dir"] == str(testbed.mirror_dir)
    assert namespace["etcd_cert_managers"] == [f"@docker/{tb.container_name('etcd-k8s-1')}"]


def parse_debug_inventory(output: str) -> dict[str, tuple[list[str], dict]]:
    """Parse ``pyinfra INVENTORY debug-inventory`` into {host: (groups, data)}."""
    pattern = (
        r"^\[(?P<host>[^\]]+)\] *\n--> Groups: (?P<groups>[^\n]*)\n--> Data:\n(?P<data>\{.*?^\})"
    )
    return {
        m["host"]: (m["groups"].split(", "), json.loads(m["data"]))
        for m in re.finditer(pattern, output, re.M | re.S)
    }


def test_inventory_variants(testbed: tb.Bed, tmp_path: Path) -> None:
    inventory = tb.write_inventory(
        tmp_path / "inventory.py",
        "ssh",
        data={"install_source": "mirror", "install_mirror_url": testbed.mirror_url},
        group_data={"etcd_clients": {"renew_mode": "rekey"}},
        host_data={"etcd-k8s-2": {"install_controller_dir": tb.UNSET}},
        groups={"etcd_cert_managers": ["etcd-k8s-1", "etcd-k8s-2"]},
    )
    result = tb.run_pyinfra(inventory, "debug-inventory", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    hosts = parse_debug_inventory(result.stdout + result.stderr)
    assert set(hosts) == set(testbed.names)
    for name, (groups, data) in hosts.items():
        # Inventory host data wins over group_data/all.py ("github").
        assert data["install_source"] == "mirror"
        assert data["install_mirror_url"] == testbed.mirror_url
        assert data["ssh_hostname"] == data["address"] == testbed.ip(name)
        assert data["node_name"] == name
        assert ("etcd_cert_managers" in groups) == (name in ("etcd-k8s-1", "etcd-k8s-2"))
        if "etcd_clients" in groups:
            assert data["renew_mode"] == "rekey"
    # UNSET dropped the host-level key, so group_data/all.py's default shows through.
    assert hosts["etcd-k8s-2"][1]["install_controller_dir"] is None
    assert hosts["etcd-k8s-1"][1]["install_controller_dir"] == str(testbed.mirror_dir)
