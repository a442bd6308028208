"""Fixtures for the fast unit tests: the real defaults from group_data/all.py."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from etcd_pki.plan import CERT_MANAGERS, CLIENTS, ETCD, HostInput

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
