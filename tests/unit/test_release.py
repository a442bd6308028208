"""etcd release tarballs: names and locations, the version fact, and the shared
verify-then-install command run for real on a local tarball."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from etcd_pki.commands.install import install_command
from etcd_pki.release import (
    ETCD_ARCHES,
    EtcdRelease,
    arch_for,
    controller_dir,
    release_url_problem,
)
from facts.pki import EtcdVersions
from tests import testbed as tb

from .conftest import contents, make_tarball


def test_etcd_release_names_follow_the_official_layout():
    release = EtcdRelease("3.5.16", "amd64")
    assert release.top == "etcd-v3.5.16-linux-amd64"
    assert release.tarball == "etcd-v3.5.16-linux-amd64.tar.gz"
    assert (
        release.location("https://github.com/etcd-io/etcd/releases/download/")
        == "https://github.com/etcd-io/etcd/releases/download/v3.5.16/etcd-v3.5.16-linux-amd64.tar.gz"
    )
    assert release.location("/srv/etcd") == "/srv/etcd/v3.5.16/etcd-v3.5.16-linux-amd64.tar.gz"


def test_controller_directory_or_download():
    assert controller_dir("/srv/etcd") == "/srv/etcd"
    assert controller_dir("file:///srv/my%20etcd") == "/srv/my etcd"
    assert controller_dir("https://github.com/etcd-io/etcd/releases/download") is None
    assert release_url_problem("http://mirror:8099/etcd") is None
    assert release_url_problem("file:///srv/etcd") is None
    assert release_url_problem("https://") is not None
    assert release_url_problem("/") is not None
    assert release_url_problem("") is not None


def test_etcd_architectures():
    assert arch_for("x86_64", ETCD_ARCHES, "etcd") == "amd64"
    assert arch_for("aarch64", ETCD_ARCHES, "etcd") == "arm64"
    with pytest.raises(ValueError, match="no etcd release for architecture 'armv7l'"):
        arch_for("armv7l", ETCD_ARCHES, "etcd")
    assert arch_for("armv7l") == "armv7"  # Smallstep's table stays the default


def test_etcd_versions_fact_parses_each_binary():
    fact = EtcdVersions()
    output = [
        "etcd etcd Version: 3.5.16",
        "etcdctl etcdctl version: 3.5.16",
        "etcdutl garbage",
    ]
    assert fact.process(output) == {"etcd": "3.5.16", "etcdctl": "3.5.16", "etcdutl": ""}
    assert "/opt/bin/etcd --version" in fact.command("/opt/bin")


def test_testbed_tarball_is_reproducible_with_the_official_top_dir():
    members = [("etcd", b"server"), ("etcdctl", b"client")]
    first = tb.reproducible_tarball("etcd-v3.5.16-linux-amd64", members)
    assert first == tb.reproducible_tarball("etcd-v3.5.16-linux-amd64", members)
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o755 for m in tar.getmembers())
    assert names == [
        "etcd-v3.5.16-linux-amd64",
        "etcd-v3.5.16-linux-amd64/etcd",
        "etcd-v3.5.16-linux-amd64/etcdctl",
    ]


# --- the install command, run locally (it installs as root:root) --------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="install -o root needs root")


def run_install(tmp_path, tarball, sha256, optional=("etcdutl",)):
    command = install_command(
        str(tarball), sha256, ("etcd", "etcdctl"), str(tmp_path / "bin"), optional
    )
    return subprocess.run(
        ["sh", "-c", f"set -e; {command}"], capture_output=True, text=True, check=False
    )


@pytest.fixture
def bin_dir(tmp_path):
    path = tmp_path / "bin"
    path.mkdir()
    for name in ("etcd", "etcdctl"):
        (path / name).write_text(f"old {name}\n")
    return path


@needs_root
def test_install_replaces_every_binary_and_the_optional_one(tmp_path, bin_dir):
    tarball = tmp_path / "etcd.tar.gz"
    digest = make_tarball(tarball, ["etcd", "etcdctl", "etcdutl"])
    result = run_install(tmp_path, tarball, digest)
    assert result.returncode == 0, result.stderr
    assert contents(bin_dir) == {
        "etcd": "#!/bin/sh\necho new etcd\n",
        "etcdctl": "#!/bin/sh\necho new etcdctl\n",
        "etcdutl": "#!/bin/sh\necho new etcdutl\n",
    }
    assert all(os.access(p, os.X_OK) for p in bin_dir.iterdir())


@needs_root
def test_install_without_the_optional_binary(tmp_path, bin_dir):
    tarball = tmp_path / "etcd.tar.gz"
    digest = make_tarball(tarball, ["etcd", "etcdctl"])
    result = run_install(tmp_path, tarball, digest)
    assert result.returncode == 0, result.stderr
    assert sorted(contents(bin_dir)) == ["etcd", "etcdctl"]


@needs_root
def test_a_sha256_mismatch_changes_nothing_and_deletes_the_download(tmp_path, bin_dir):
    tarball = tmp_path / "etcd.tar.gz"
    make_tarball(tarball, ["etcd", "etcdctl"])
    result = run_install(tmp_path, tarball, "0" * 64)
    assert result.returncode != 0
    assert f"sha256 mismatch for {tarball}: expected {'0' * 64}" in result.stderr
    assert "etcd, " in result.stderr and "etcdctl left unchanged" in result.stderr
    assert contents(bin_dir) == {"etcd": "old etcd\n", "etcdctl": "old etcdctl\n"}
    assert not tarball.exists()


@needs_root
def test_a_missing_required_binary_changes_nothing(tmp_path, bin_dir):
    tarball = tmp_path / "etcd.tar.gz"
    digest = make_tarball(tarball, ["etcd", "etcdutl"])
    result = run_install(tmp_path, tarball, digest)
    assert result.returncode != 0
    assert "etcdctl not found in" in result.stderr
    assert contents(bin_dir) == {"etcd": "old etcd\n", "etcdctl": "old etcdctl\n"}
