"""Test-bed instances (``ETCD_PKI_BED``): names, labels and state of the current bed.

This module owns the current instance (:data:`BED`, :data:`NETWORK`, :data:`STATE_DIR`,
read from the environment once, at import); other modules read them as ``instance.BED``
so there is only one copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .engine import STATE_ROOT, TestbedError, cache_dir, cache_lock, file_lock, run

BED_ENV = "ETCD_PKI_BED"
BED_NAME_RE = re.compile(r"[a-z0-9]{1,8}")


# The default bed (ETCD_PKI_BED unset). Named instances derive theirs: see bed_settings().
DEFAULT_NETWORK = "etcd-pki-test"
SUBNET = "172.30.99.0/24"
GATEWAY = "172.30.99.1"
DEFAULT_BRIDGE_NAME = "etcdpki0"
MIRROR_PORT = 8099
MIRROR_URL = f"http://{GATEWAY}:{MIRROR_PORT}"
# Named instances take a /24 in 172.30.INSTANCE_SUBNETS.0/24.
INSTANCE_SUBNETS = range(100, 200)

LABEL = "etcd-pki-testbed"
LABEL_GROUPS = f"{LABEL}.groups"
LABEL_SUITE = f"{LABEL}.suite"
LABEL_BED = f"{LABEL}.bed"


def bed_name(value: str | None = None) -> str:
    """Return the validated instance name from ``value`` or ``$ETCD_PKI_BED`` ("" = default)."""
    name = os.environ.get(BED_ENV, "") if value is None else value
    if name and not BED_NAME_RE.fullmatch(name):
        raise TestbedError(f"{BED_ENV}={name!r}: an instance name is [a-z0-9]{{1,8}}")
    return name


@dataclass(frozen=True)
class BedSettings:
    """Names of one instance's docker objects and files (subnet aside: see :func:`subnet`)."""

    name: str
    prefix: str
    network: str
    bridge: str
    state_dir: Path
    label: str
    label_value: str

    def container(self, node: str) -> str:
        """Container name of node ``node`` in this instance."""
        return f"{self.prefix}{node}"


def bed_settings(name: str = "") -> BedSettings:
    """Return the settings of instance ``name`` ("" = the default bed, exactly as before)."""
    name = bed_name(name)
    if not name:
        return BedSettings("", "", DEFAULT_NETWORK, DEFAULT_BRIDGE_NAME, STATE_ROOT, LABEL, "1")
    return BedSettings(
        name=name,
        prefix=f"{name}-",
        network=f"{DEFAULT_NETWORK}-{name}",
        bridge=f"epki-{name}",  # at most 13 characters (Linux allows 15)
        state_dir=STATE_ROOT / name,
        label=LABEL_BED,
        label_value=name,
    )


def subnet_candidates(name: str) -> list[str]:
    """Return instance ``name``'s candidate /24s: all of INSTANCE_SUBNETS, hash-rotated."""
    if not name:
        return [SUBNET]
    thirds = list(INSTANCE_SUBNETS)
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(thirds)
    return [f"172.30.{third}.0/24" for third in thirds[start:] + thirds[:start]]


def pick_subnet(name: str, used: Sequence[str]) -> str:
    """Return the first candidate of ``name`` that overlaps none of the ``used`` networks."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    for candidate in subnet_candidates(name):
        net = ipaddress.ip_network(candidate)
        if not any(net.overlaps(t) for t in taken):
            return candidate
    raise TestbedError(f"no free /24 left for test bed instance {name!r}")


BED = bed_settings(bed_name())
NETWORK = BED.network
BRIDGE_NAME = BED.bridge
STATE_DIR = BED.state_dir
"""The current instance's state dir: ``.testbed/`` or ``.testbed/NAME/``."""


def container_name(node: str) -> str:
    """Return the container of node ``node`` in the current instance (``t1-etcd-k8s-1``)."""
    return BED.container(node)


def state_dir() -> Path:
    """Return the current instance's state dir (inventories, pid files)."""
    return STATE_DIR


def bed_lock() -> contextlib.AbstractContextManager[None]:
    """Serialise changes to the current instance's containers (machine-wide, by name).

    The default bed keeps the historical ``CACHE/lock`` (so older checkouts still exclude
    each other); named instances use ``CACHE/locks/bed-NAME.lock``. Never nest it inside
    :func:`cache_lock`.
    """
    if not BED.name:
        return cache_lock()
    return file_lock(cache_dir() / "locks" / f"bed-{BED.name}.lock")


def exec_in(name: str, cmd: str | Sequence[str], *, timeout: float = 120) -> tuple[int, str]:
    """Run ``cmd`` (a shell string or an argv list) on node ``name``: (rc, stdout)."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    result = run(["docker", "exec", container_name(name), *argv], check=False, timeout=timeout)
    return result.returncode, result.stdout
