"""The current bed's docker network: its subnet (picked once, then read back from docker),
gateway, the HTTP mirror's URL on it, creation and removal.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time

from . import instance
from .engine import TestbedError, cache_dir, docker, docker_ok, file_lock, log, run
from .instance import MIRROR_PORT, SUBNET, pick_subnet, subnet_candidates

# This instance's subnet once known (a named instance's is read back from docker).
_subnet: str | None = None


def network_subnet() -> str | None:
    """Return the subnet of this instance's docker network, or None when it does not exist."""
    result = docker("network", "inspect", instance.NETWORK, check=False)
    if result.returncode != 0:
        return None
    config = json.loads(result.stdout)[0]["IPAM"]["Config"]
    return config[0].get("Subnet") if config else None


def used_subnets() -> list[str]:
    """Return the subnets of every docker network and of this machine's non-default routes."""
    used = []
    ids = docker("network", "ls", "-q").stdout.split()
    for net in json.loads(docker("network", "inspect", *ids).stdout) if ids else []:
        used += [c["Subnet"] for c in (net.get("IPAM") or {}).get("Config") or [] if "Subnet" in c]
    for line in run(["ip", "-4", "route", "show"], check=False).stdout.splitlines():
        dest = line.split()[0] if line.strip() else "default"
        if dest != "default" and re.fullmatch(r"[\d.]+(/\d+)?", dest):
            used.append(dest)
    return used


def subnet() -> str:
    """Return this instance's subnet: fixed for the default bed; for a named instance the
    subnet of its network when it exists, else the first free candidate (not yet reserved).
    """
    global _subnet
    if not instance.BED.name:
        return SUBNET
    if _subnet is not None:
        return _subnet
    if not docker_ok():
        return subnet_candidates(instance.BED.name)[0]
    _subnet = network_subnet()
    return _subnet or pick_subnet(instance.BED.name, used_subnets())


def gateway() -> str:
    """Return the gateway IP of this instance's network (where its HTTP mirror listens)."""
    return str(next(ipaddress.ip_network(subnet()).hosts()))


def mirror_url() -> str:
    """Return the base URL under which this instance's HTTP mirror serves :func:`mirror_dir`."""
    return f"http://{gateway()}:{MIRROR_PORT}"


def ensure_network() -> None:
    """Create the test network on its own subnet, refusing to clash with another one."""
    global _subnet
    existing = network_subnet()
    if (
        existing is not None
        or docker("network", "inspect", instance.NETWORK, check=False).returncode == 0
    ):
        if instance.BED.name and existing:
            _subnet = existing
            return
        if existing == SUBNET:
            return
        raise TestbedError(f"network {instance.NETWORK} exists with another subnet: {existing}")
    # One process at a time picks and reserves a subnet (instances created in parallel).
    with file_lock(cache_dir() / "locks" / "network.lock"):
        if not instance.BED.name:
            wanted = ipaddress.ip_network(SUBNET)
            for used in used_subnets():
                if ipaddress.ip_network(used, strict=False).overlaps(wanted):
                    raise TestbedError(f"{SUBNET} is already used on this machine ({used})")
            chosen = SUBNET
        else:
            chosen = pick_subnet(instance.BED.name, used_subnets())
        gateway_ip = str(next(ipaddress.ip_network(chosen).hosts()))
        log(f"creating network {instance.NETWORK} ({chosen})")
        docker(
            "network", "create", "--driver", "bridge", "--subnet", chosen, "--gateway", gateway_ip,
            "--label", f"{instance.BED.label}={instance.BED.label_value}",
            "-o", f"com.docker.network.bridge.name={instance.BRIDGE_NAME}", instance.NETWORK,
        )  # fmt: skip
        _subnet = chosen if instance.BED.name else None


def remove_network(timeout: float = 30) -> None:
    """Remove the bed's network if it exists.

    After many containers are removed at once, dockerd may list endpoints of removed
    containers for a while ("has active endpoints"): retry. dockerd can also keep such an
    endpoint for good (its store lost a race); the network is then left, with a warning,
    and the next `up` reuses it. Other errors raise.
    """
    deadline = time.monotonic() + timeout
    while docker("network", "inspect", instance.NETWORK, check=False).returncode == 0:
        result = docker("network", "rm", instance.NETWORK, check=False)
        if result.returncode == 0:
            return
        if "active endpoints" not in result.stderr:
            raise TestbedError(f"docker network rm {instance.NETWORK}: {result.stderr.strip()}")
        if time.monotonic() > deadline:
            log(
                f"WARNING: dockerd still lists an endpoint on {instance.NETWORK} although its "
                "containers are gone; the network is left for the next `up` (restarting "
                "dockerd clears it)"
            )
            return
        time.sleep(1)


def forget_subnet() -> None:
    """Forget the subnet read from docker (after `down`: the next network may get another)."""
    global _subnet
    _subnet = None
