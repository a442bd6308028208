"""Fixtures for the fast unit tests: the real defaults from group_data/all.py."""

from __future__ import annotations

import hashlib
import runpy
from pathlib import Path

import pytest

from etcd_pki.plan import CERT_MANAGERS, CLIENTS, ETCD, HostInput
from tests import testbed as tb

ALL_PY = Path(__file__).resolve().parents[2] / "group_data" / "all.py"


def load_defaults() -> dict:
    return {k: v for k, v in runpy.run_path(str(ALL_PY)).items() if not k.startswith("__")}


@pytest.fixture
def defaults() -> dict:
    return load_defaults()


def seed_hosts(defaults: dict, **overrides) -> list[HostInput]:
    """The seed's cluster; ``overrides`` maps host name -> extra data for that host."""
    layout = {
        "etcd-k8s-1": ({ETCD, CERT_MANAGERS}, "10.0.1.10"),
        "etcd-k8s-2": ({ETCD}, "10.0.1.11"),
        "etcd-k8s-3": ({ETCD}, "10.0.1.12"),
        "app-server": ({CLIENTS}, "10.0.2.50"),
    }
    return [
        HostInput(name, frozenset(groups), {**defaults, "address": ip, **overrides.get(name, {})})
        for name, (groups, ip) in layout.items()
    ]


def make_tarball(path: Path, binaries) -> str:
    """An etcd-release-shaped tarball at ``path`` whose each binary prints "new NAME";
    returns its sha256."""
    data = tb.reproducible_tarball(
        "etcd-v3.5.16-linux-amd64",
        [(name, f"#!/bin/sh\necho new {name}\n".encode()) for name in binaries],
    )
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def contents(directory: Path) -> dict[str, str]:
    """Every file in ``directory``: name -> text."""
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}
