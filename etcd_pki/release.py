"""Release artefacts: names, URLs/paths and checksums, for every install source.

Smallstep (step, step-ca): all three sources share GitHub's layout below a base:
``{base}/{repo}/releases/download/v{version}/{tarball}`` plus ``checksums.txt`` beside it.

etcd: ``{etcd_release_url}/v{version}/etcd-v{version}-linux-{arch}.tar.gz``, where the
base is GitHub's ``https://github.com/etcd-io/etcd/releases/download``, a mirror of it,
or a directory on the controller (an absolute path or ``file://`` URL).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from .fields import url_problem

GITHUB_BASE = "https://github.com/smallstep"
CHECKSUMS = "checksums.txt"

# `uname -m` -> the architecture word in Smallstep's tarball names.
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armv7", "ppc64le": "ppc64le"}
# `uname -m` -> the architecture word in etcd's tarball names (etcd ships no armv7).
ETCD_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class Artefact:
    """One binary to install: `step` (repo cli) or `step-ca` (repo certificates)."""

    binary: str
    version: str
    arch: str

    @property
    def repo(self) -> str:
        return "cli" if self.binary == "step" else "certificates"

    @property
    def tarball(self) -> str:
        return f"{self.binary}_linux_{self.version}_{self.arch}.tar.gz"

    @property
    def release_dir(self) -> str:
        """Path below a base (URL or directory) holding the tarball and checksums.txt."""
        return f"{self.repo}/releases/download/v{self.version}"

    def location(self, base: str, name: str | None = None) -> str:
        """URL or path of ``name`` (default: the tarball) below ``base``."""
        return f"{base.rstrip('/')}/{self.release_dir}/{name or self.tarball}"


@dataclass(frozen=True)
class EtcdRelease:
    """The official etcd tarball: ``etcd-v{version}-linux-{arch}/`` holding the binaries."""

    version: str
    arch: str

    # Always in the tarball, and what the deploy itself runs.
    BINARIES = ("etcd", "etcdctl")
    # Installed when the tarball has it (3.5 and later).
    OPTIONAL = ("etcdutl",)

    @property
    def top(self) -> str:
        return f"etcd-v{self.version}-linux-{self.arch}"

    @property
    def tarball(self) -> str:
        return f"{self.top}.tar.gz"

    def location(self, base: str) -> str:
        """URL or controller path of the tarball below ``etcd_release_url`` ``base``."""
        return f"{base.rstrip('/')}/v{self.version}/{self.tarball}"


def controller_dir(url: str) -> str | None:
    """The controller directory named by an ``etcd_release_url``, or None for an
    http(s) URL (which each host downloads from).

    >>> controller_dir("file:///srv/etcd"), controller_dir("/srv/etcd")
    ('/srv/etcd', '/srv/etcd')
    >>> controller_dir("https://github.com/etcd-io/etcd/releases/download") is None
    True
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if not parsed.scheme and url.startswith("/"):
        return url
    return None


def release_url_problem(url: object) -> str | None:
    """Why ``url`` is not a usable ``etcd_release_url``, or None."""
    text = str(url or "")
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https"):
        return url_problem(text)
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        return "a file:// URL names a directory on the controller: file:///path, no host"
    directory = controller_dir(text)
    if directory is not None and directory.startswith("/") and len(directory) > 1:
        return None
    return (
        "must be an http(s):// URL (each host downloads the tarball) or a directory on "
        "the controller, as an absolute path or file:///path (uploaded to each host)"
    )


def arch_for(machine: str, arches: dict[str, str] = ARCHES, project: str = "Smallstep") -> str:
    """Map ``uname -m`` to ``project``'s architecture name (Smallstep's by default)."""
    try:
        return arches[machine]
    except KeyError:
        raise ValueError(f"no {project} release for architecture {machine!r}") from None


def checksum_from(checksums_txt: str, filename: str) -> str | None:
    """The sha256 for ``filename`` in a ``sha256sum``-format checksums file."""
    for line in checksums_txt.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == filename and len(parts[0]) == 64:
            return parts[0].lower()
    return None


def fetch_checksums(base: str, artefact: Artefact, timeout: float = 15) -> str:
    """Read ``checksums.txt`` of ``artefact``'s release below ``base`` (URL or directory).

    Runs on the controller before any host is touched, so a mirror that is down or a
    release that is missing is reported up front.
    """
    location = artefact.location(base, CHECKSUMS)
    if "://" not in base:
        try:
            return Path(location).read_text()
        except OSError as e:
            raise ValueError(f"cannot read {location}: {e.strerror}") from None
    try:
        with urllib.request.urlopen(location, timeout=timeout) as response:
            return response.read().decode()
    except (OSError, urllib.error.URLError) as e:
        raise ValueError(f"cannot fetch {location}: {getattr(e, 'reason', e)}") from None
