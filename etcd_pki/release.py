"""Smallstep release artefacts: names, URLs/paths and checksums, for every install source.

All three sources share GitHub's layout below a base:
``{base}/{repo}/releases/download/v{version}/{tarball}`` plus ``checksums.txt`` beside it.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

GITHUB_BASE = "https://github.com/smallstep"
CHECKSUMS = "checksums.txt"

# `uname -m` -> the architecture word in Smallstep's tarball names.
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armv7", "ppc64le": "ppc64le"}


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


def arch_for(machine: str) -> str:
    """Map ``uname -m`` to Smallstep's architecture name."""
    try:
        return ARCHES[machine]
    except KeyError:
        raise ValueError(f"no Smallstep release for architecture {machine!r}") from None


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
