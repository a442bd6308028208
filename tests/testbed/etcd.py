"""etcd release tarballs in the official layout, in the mirror tree: made from Debian's
etcd binaries, or from upstream etcd built from its Go modules.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .binaries import find_go, reproducible_tarball
from .engine import (
    TestbedError,
    cache_dir,
    cache_lock,
    go_arch,
    log,
    mirror_dir,
    run,
    run_logged,
    sha256_file,
    write_atomic,
)
from .image import DEBIAN_MIRROR, SUITE
from .network import mirror_url

# Path of etcd's releases below the mirror root, as on GitHub: a deploy's
# `etcd_release_url` is ``{mirror}/ETCD_RELEASE_PATH`` (or the same below mirror_dir()).
ETCD_RELEASE_PATH = "etcd-io/etcd/releases/download"
ETCD_DEBS = ("etcd-server", "etcd-client")
# The tarball's binaries, in the official order; etcdutl is in etcd-server since 3.5.
ETCD_BINARIES = ("etcd", "etcdctl", "etcdutl")


@dataclass(frozen=True)
class EtcdRelease:
    """The release-format etcd tarball in the mirror tree (see :func:`etcd_release`)."""

    version: str
    sha256: str
    tarball: Path
    arch: str

    def release_url(self, source: str = "mirror") -> str:
        """``etcd_release_url`` for this bed: the HTTP mirror (``mirror``, each host
        downloads) or the mirror tree on the controller (``controller``, uploaded)."""
        if source == "mirror":
            return f"{mirror_url()}/{ETCD_RELEASE_PATH}"
        if source == "controller":
            return str(mirror_dir() / ETCD_RELEASE_PATH)
        raise ValueError(f"unknown etcd release source {source!r}")

    def inventory_data(self, source: str = "mirror") -> dict[str, Any]:
        """Host data that makes the deploy install etcd from this tarball."""
        return {
            "etcd_install_source": "release",
            "etcd_version": self.version,
            "etcd_release_url": self.release_url(source),
            "etcd_sha256": {self.arch: self.sha256},
        }


def etcd_tarball_path(version: str, arch: str | None = None) -> Path:
    """Where the tarball of etcd ``version`` lives in the mirror tree."""
    name = f"etcd-v{version}-linux-{arch or go_arch()}.tar.gz"
    return mirror_dir() / ETCD_RELEASE_PATH / f"v{version}" / name


def download_etcd_debs() -> list[Path]:
    """Return Debian's etcd-server and etcd-client .debs (suite :data:`SUITE`) in
    ``CACHE/debs``, fetched with ``apt-get download`` on the controller if missing.

    apt runs with its own sources list and state in ``CACHE/apt-SUITE`` (the node
    image's suite, which may not be the controller's), so the system's apt is untouched.
    """
    debs_dir = cache_dir() / "debs"
    arch = go_arch()
    found = [sorted(debs_dir.glob(f"{name}_*_{arch}.deb")) for name in ETCD_DEBS]
    if all(found):
        return [paths[-1] for paths in found]
    apt_dir = cache_dir() / f"apt-{SUITE}"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    sources = apt_dir / "sources.list"
    sources.write_text(f"deb {DEBIAN_MIRROR} {SUITE} main\n")
    options = [
        "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", f"APT::Architecture={arch}", "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip
    log(f"apt-get download {' '.join(ETCD_DEBS)} ({SUITE}) into {debs_dir}")
    run(["apt-get", *options, "update"], timeout=600)
    debs_dir.mkdir(parents=True, exist_ok=True)
    run(["apt-get", *options, "download", *ETCD_DEBS], cwd=debs_dir, timeout=600)
    return [sorted(debs_dir.glob(f"{name}_*_{arch}.deb"))[-1] for name in ETCD_DEBS]


def upstream_version(deb: Path) -> str:
    """The upstream part of a .deb's version: ``3.5.16-4`` -> ``3.5.16``."""
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
    return version.split(":", 1)[-1].rsplit("-", 1)[0].split("+", 1)[0]


def ensure_etcd_release() -> EtcdRelease:
    """Write ``etcd-v{ver}-linux-{arch}.tar.gz`` (top dir ``etcd-v{ver}-linux-{arch}/``
    with etcd, etcdctl, etcdutl, as upstream ships it) from Debian's binaries into the
    mirror tree, with a ``SHA256SUMS`` beside it; reuse it when up to date.

    Call without :func:`cache_lock` held (use :func:`etcd_release`).
    """
    debs = download_etcd_debs()
    versions = {upstream_version(deb) for deb in debs}
    if len(versions) != 1:
        raise TestbedError(f"etcd .debs of different versions: {[d.name for d in debs]}")
    version = versions.pop()
    arch = go_arch()
    tarball = etcd_tarball_path(version, arch)
    sums = tarball.parent / "SHA256SUMS"
    newest_deb = max(deb.stat().st_mtime for deb in debs)
    if (
        tarball.exists()
        and sums.exists()
        and tarball.stat().st_mtime >= newest_deb
        and sums.read_text() == f"{sha256_file(tarball)}  {tarball.name}\n"
    ):
        return EtcdRelease(version, sha256_file(tarball), tarball, arch)
    tmp_parent = cache_dir() / "tmp"
    tmp_parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="etcd-debs-", dir=tmp_parent) as tmp:
        for deb in debs:
            run(["dpkg-deb", "-x", str(deb), tmp])
        bins = Path(tmp) / "usr" / "bin"
        reported = run([str(bins / "etcd"), "--version"]).stdout
        if f"etcd Version: {version}" not in reported:
            raise TestbedError(f"Debian's etcd reports {reported!r}, expected {version}")
        members = [(b, (bins / b).read_bytes()) for b in ETCD_BINARIES if (bins / b).exists()]
    if [m[0] for m in members][:2] != ["etcd", "etcdctl"]:
        raise TestbedError(f"etcd or etcdctl missing from {[d.name for d in debs]}")
    data = reproducible_tarball(tarball.name.removesuffix(".tar.gz"), members)
    log(f"writing {tarball.relative_to(mirror_dir())} (Debian's etcd {version})")
    write_atomic(tarball, data)
    digest = hashlib.sha256(data).hexdigest()
    write_atomic(sums, f"{digest}  {tarball.name}\n".encode())
    return EtcdRelease(version, digest, tarball, arch)


def etcd_release() -> EtcdRelease:
    """The release-format etcd tarball in the shared mirror tree (made once, cached):
    version (Debian's, e.g. 3.5.16), sha256, path. Served by every bed's HTTP mirror."""
    with cache_lock():
        return ensure_etcd_release()


# Current upstream etcd, built from its Go modules (pinned): the e2e suite runs the core
# flow on each besides Debian's 3.5 (tests/e2e/test_etcd_current.py).
UPSTREAM_ETCD_VERSIONS = ("3.6.16", "3.7.3")
UPSTREAM_ETCD_VERSION = UPSTREAM_ETCD_VERSIONS[0]
# The modules of one etcd release: each go.mod has replace directives for its siblings,
# so `go install module@version` refuses them; a wrapper module requiring all of them
# at the same version builds the three binaries.
ETCD_MODULES = ("api", "client/pkg", "client", "pkg", "server", "etcdctl", "etcdutl")
ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def upstream_etcd_binaries(version: str = UPSTREAM_ETCD_VERSION) -> Path:
    """The directory with etcd, etcdctl and etcdutl ``version`` built from go.etcd.io
    modules (cached; a few minutes the first time)."""
    target = cache_dir() / "bin" / f"etcd-{version}"
    if all((target / b).exists() for b in ETCD_BINARIES):
        return target
    go, env = find_go()
    tmp_parent = cache_dir() / "tmp"
    tmp_parent.mkdir(parents=True, exist_ok=True)
    logfile = cache_dir() / "logs" / f"go-build-etcd-{version}.log"
    log(f"building etcd {version} from go.etcd.io modules (a few minutes; log: {logfile})")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="etcd-build-", dir=tmp_parent) as tmp:
        work = Path(tmp)
        requires = "\n".join(f"\tgo.etcd.io/etcd/{m}/v3 v{version}" for m in ETCD_MODULES)
        (work / "go.mod").write_text(
            f"module etcdpki.test/etcd\n\ngo 1.24\n\nrequire (\n{requires}\n)\n"
        )
        (work / "cmd" / "etcd").mkdir(parents=True)
        (work / "cmd" / "etcd" / "main.go").write_text(ETCD_MAIN)
        (work / "tools.go").write_text(
            "//go:build tools\n\npackage tools\n\nimport (\n"
            '\t_ "go.etcd.io/etcd/etcdctl/v3"\n\t_ "go.etcd.io/etcd/etcdutl/v3"\n)\n'
        )
        out = work / "out"
        run_logged([go, "mod", "tidy"], logfile, env=env, cwd=work)
        ldflags = "-s -w"
        for name, package in (
            ("etcd", "./cmd/etcd"),
            ("etcdctl", "go.etcd.io/etcd/etcdctl/v3"),
            ("etcdutl", "go.etcd.io/etcd/etcdutl/v3"),
        ):
            cmd = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out / name), package]
            run_logged(cmd, logfile, env=env, cwd=work, append=True)
        reported = run([str(out / "etcd"), "--version"]).stdout
        if f"etcd Version: {version}" not in reported:
            raise TestbedError(f"the etcd built reports {reported!r}, expected {version}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(out, target)
    log(f"built etcd {version} in {time.monotonic() - started:.0f} s")
    return target


def upstream_etcd_release(version: str = UPSTREAM_ETCD_VERSION) -> EtcdRelease:
    """The release-format tarball of upstream etcd ``version`` in the mirror tree."""
    with cache_lock():
        binaries = upstream_etcd_binaries(version)
        arch = go_arch()
        tarball = etcd_tarball_path(version, arch)
        sums = tarball.parent / "SHA256SUMS"
        if not (tarball.exists() and sums.exists()):
            members = [(b, (binaries / b).read_bytes()) for b in ETCD_BINARIES]
            data = reproducible_tarball(tarball.name.removesuffix(".tar.gz"), members)
            log(f"writing {tarball.relative_to(mirror_dir())} (etcd {version} from source)")
            write_atomic(tarball, data)
            write_atomic(sums, f"{hashlib.sha256(data).hexdigest()}  {tarball.name}\n".encode())
        return EtcdRelease(version, sha256_file(tarball), tarball, arch)
