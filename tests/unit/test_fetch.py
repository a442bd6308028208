"""The download-and-install command of the http(s) install sources, run locally with
fake `curl` / `wget` (no network): which tool is used, what a failed download leaves,
and that a good tarball already in the cache is not fetched again."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from etcd_pki.commands.install import fetch_command, install_command, one_command

from .conftest import contents, make_tarball

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install -o root needs root")

URL = "http://mirror.invalid/v3.5.16/etcd-v3.5.16-linux-amd64.tar.gz"
BINARIES = ("etcd", "etcdctl")
# What the command needs besides the downloader (a PATH without curl and wget).
TOOLS = "sh cat chmod chown cut find gzip head mkdir mktemp mv rm sha256sum tar".split()  # noqa: SIM905

# Serves URL from $SERVE and logs each call to $CALLS; when $SERVE is empty, writes a
# partial file and exits 22 (like curl -f, or wget after a broken transfer).
FAKE = """#!/bin/sh
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in -o|-O) out="$2"; shift 2;; -*) shift;; *) url="$1"; shift;; esac
done
echo "${0##*/} $url" >> "$CALLS"
[ -s "$SERVE" ] || { echo partial > "$out"; echo "${0##*/}: (22) 404 Not Found" >&2; exit 22; }
cat "$SERVE" > "$out"
"""


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A bin dir with old binaries, an empty cache, the served tarball and a PATH dir."""
    paths = {name: tmp_path / name for name in ("bin", "cache", "path")}
    for path in paths.values():
        path.mkdir()
    for name in BINARIES:
        (paths["bin"] / name).write_text(f"old {name}\n")
    for tool in TOOLS:
        (paths["path"] / tool).symlink_to(shutil.which(tool))
    paths["served"] = tmp_path / "served.tar.gz"
    make_tarball(paths["served"], BINARIES)
    paths["calls"] = tmp_path / "calls"
    paths["calls"].touch()
    return paths


def with_downloader(site: dict[str, Path], *tools: str) -> None:
    for tool in tools:
        fake = site["path"] / tool
        fake.write_text(FAKE)
        fake.chmod(0o755)


def run(site: dict[str, Path], sha256: str | None = None) -> subprocess.CompletedProcess:
    sha256 = sha256 or hashlib.sha256(site["served"].read_bytes()).hexdigest()
    tarball = str(site["cache"] / "etcd.tar.gz")
    command = one_command(
        fetch_command(URL, tarball, sha256, BINARIES),
        install_command(tarball, sha256, BINARIES, str(site["bin"])),
    )
    env = {"PATH": str(site["path"]), "SERVE": str(site["served"]), "CALLS": str(site["calls"])}
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, check=False, env=env
    )


def test_curl_downloads_then_the_binaries_are_installed(site):
    with_downloader(site, "curl", "wget")
    result = run(site)
    assert result.returncode == 0, result.stderr
    assert site["calls"].read_text() == f"curl {URL}\n"
    assert contents(site["bin"]) == {n: f"#!/bin/sh\necho new {n}\n" for n in BINARIES}
    assert sorted(p.name for p in site["cache"].iterdir()) == ["etcd.tar.gz"]


def test_wget_is_used_when_curl_is_missing(site):
    with_downloader(site, "wget")
    result = run(site)
    assert result.returncode == 0, result.stderr
    assert site["calls"].read_text() == f"wget {URL}\n"
    assert contents(site["bin"])["etcd"] == "#!/bin/sh\necho new etcd\n"


def test_without_curl_or_wget_the_error_says_so_and_nothing_changes(site):
    result = run(site)
    assert result.returncode != 0
    assert "neither curl nor wget is installed" in result.stderr
    assert f"cannot download {URL}; etcd, etcdctl left unchanged" in result.stderr
    assert contents(site["bin"]) == {"etcd": "old etcd\n", "etcdctl": "old etcdctl\n"}
    assert list(site["cache"].iterdir()) == []


def test_a_failed_download_names_the_url_and_leaves_no_file(site):
    with_downloader(site, "curl")
    site["served"].write_bytes(b"")  # the fake answers 404
    result = run(site, sha256="1" * 64)
    assert result.returncode != 0
    assert "(22) 404 Not Found" in result.stderr
    assert f"cannot download {URL}; etcd, etcdctl left unchanged" in result.stderr
    assert list(site["cache"].iterdir()) == []
    assert contents(site["bin"]) == {"etcd": "old etcd\n", "etcdctl": "old etcdctl\n"}


def test_a_good_tarball_in_the_cache_is_not_downloaded_again(site):
    with_downloader(site, "curl")
    shutil.copy(site["served"], site["cache"] / "etcd.tar.gz")
    result = run(site)
    assert result.returncode == 0, result.stderr
    assert site["calls"].read_text() == ""
    assert contents(site["bin"])["etcdctl"] == "#!/bin/sh\necho new etcdctl\n"


def test_a_bad_tarball_in_the_cache_is_replaced_by_a_download(site):
    with_downloader(site, "curl")
    (site["cache"] / "etcd.tar.gz").write_bytes(b"truncated")
    result = run(site)
    assert result.returncode == 0, result.stderr
    assert site["calls"].read_text() == f"curl {URL}\n"
    assert (site["cache"] / "etcd.tar.gz").read_bytes() == site["served"].read_bytes()


def test_a_served_tarball_of_another_digest_is_refused_and_deleted(site):
    with_downloader(site, "curl")
    result = run(site, sha256="0" * 64)
    assert result.returncode != 0
    assert "sha256 mismatch for" in result.stderr
    assert contents(site["bin"]) == {"etcd": "old etcd\n", "etcdctl": "old etcdctl\n"}
    assert list(site["cache"].iterdir()) == []
