"""Hosts: the node model, names, groups and IPs, and the containers that run them
(docker labels are the source of truth; :func:`converge` starts what is missing).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import instance
from .engine import STATE_ROOT, TestbedError, docker, log
from .image import SUITE, ensure_image, image_of
from .instance import LABEL, LABEL_BED, LABEL_GROUPS, LABEL_SUITE, container_name, exec_in
from .network import subnet
from .ssh import authorize_ssh, ssh_key, wait_for_port

GROUP_ETCD = "etcd"
GROUP_CLIENTS = "etcd_clients"
GROUP_CERT_MANAGERS = "etcd_cert_managers"
GROUPS = (GROUP_ETCD, GROUP_CLIENTS, GROUP_CERT_MANAGERS)
DEFAULT_NODES = ("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3", "app-server")


BOOT_TIMEOUT = 180


@dataclass(frozen=True)
class Node:
    """One test-bed host: node name (= hostname = ssh inventory name), IP and groups."""

    name: str
    ip: str
    groups: tuple[str, ...]
    suite: str = SUITE  # its Debian release

    @property
    def container(self) -> str:
        """The container's name in the current instance (``name`` in the default bed)."""
        return container_name(self.name)


@dataclass
class Bed:
    """What :func:`up` returns: the running hosts and where everything is."""

    nodes: list[Node]
    inventory_docker: Path
    inventory_ssh: Path
    inventory_sudo: Path
    ssh_key: Path
    mirror_dir: Path
    mirror_url: str
    versions: dict[str, str] = field(default_factory=dict)
    instance: str = ""
    state_dir: Path = STATE_ROOT

    @property
    def names(self) -> list[str]:
        """Names of all hosts."""
        return [node.name for node in self.nodes]

    def group(self, group: str) -> list[Node]:
        """Hosts in ``group``."""
        return [node for node in self.nodes if group in node.groups]

    def ip(self, name: str) -> str:
        """IP address of host ``name``."""
        return next(node.ip for node in self.nodes if node.name == name)

    def container(self, name: str) -> str:
        """Container name of host ``name``."""
        return container_name(name)


def default_groups(name: str) -> tuple[str, ...]:
    """Return the groups a host gets from its name alone (``()`` if the name says none)."""
    if re.fullmatch(r"etcd-k8s-\d+", name):
        return (GROUP_ETCD, GROUP_CERT_MANAGERS) if name == "etcd-k8s-1" else (GROUP_ETCD,)
    if name == "app-server" or re.fullmatch(r"app-client-\d+", name):
        return (GROUP_CLIENTS,)
    return ()


def default_ip(name: str) -> str | None:
    """Return the fixed IP of a host named by the bed's rules (etcd-k8s-N, app-*)."""
    base = subnet().rsplit(".", 1)[0]
    if match := re.fullmatch(r"etcd-k8s-(\d+)", name):
        number = int(match.group(1))
        return f"{base}.{10 + number}" if 1 <= number <= 39 else None
    if name == "app-server":
        return f"{base}.50"
    if match := re.fullmatch(r"app-client-(\d+)", name):
        number = int(match.group(1))
        return f"{base}.{100 + number}" if 1 <= number <= 99 else None
    return None


def allocate_ip(name: str, taken: set[str]) -> str:
    """Return the rule-based IP of ``name`` or a free one in .200-.249."""
    wanted = default_ip(name)
    if wanted:
        return wanted
    base = subnet().rsplit(".", 1)[0]
    for last in range(200, 250):
        if f"{base}.{last}" not in taken:
            return f"{base}.{last}"
    raise TestbedError("no free address left in the test subnet")


def inspect_containers() -> list[dict[str, Any]]:
    """Return ``docker inspect`` of every container of the current instance.

    Default-bed containers carry ``etcd-pki-testbed=1``; a named instance's carry
    ``etcd-pki-testbed.bed=NAME`` only (so code that predates instances ignores them).
    """
    label = f"{instance.BED.label}={instance.BED.label_value}" if instance.BED.name else LABEL
    ids = docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
    infos = json.loads(docker("inspect", *ids).stdout) if ids else []
    return [
        i
        for i in infos
        if (i["Config"].get("Labels") or {}).get(LABEL_BED, "") == instance.BED.name
    ]


def node_from_inspect(info: dict[str, Any]) -> Node:
    """Build a :class:`Node` from a container's ``docker inspect`` entry (name = hostname)."""
    name = info["Config"].get("Hostname") or info["Name"].lstrip("/").removeprefix(
        instance.BED.prefix
    )
    groups = tuple(filter(None, info["Config"]["Labels"].get(LABEL_GROUPS, "").split(",")))
    network = info["NetworkSettings"]["Networks"].get(instance.NETWORK) or {}
    ip = (network.get("IPAMConfig") or {}).get("IPv4Address") or network.get("IPAddress", "")
    suite = info["Config"]["Labels"].get(LABEL_SUITE, SUITE)
    return Node(name, ip, groups, suite)


def running_nodes() -> list[Node]:
    """Return the test-bed hosts whose containers are running, in a stable order."""
    nodes = [node_from_inspect(i) for i in inspect_containers() if i["State"]["Running"]]
    return sorted(nodes, key=lambda n: ip_key(n.ip))


def ip_key(ip: str) -> int:
    """Sort key for an IPv4 address string (an empty one sorts first)."""
    return int(ipaddress.ip_address(ip)) if ip else 0


def container_is_current(info: dict[str, Any], node: Node, image_id: str) -> bool:
    """True when an existing container runs the current image with the wanted IP/groups
    and init arguments."""
    return (
        info["State"]["Running"]
        and info["Image"] == image_id
        and node_from_inspect(info) == node
        and (info.get("Args") or []) == list(init_args(node))
    )


def init_args(node: Node) -> tuple[str, ...]:
    """systemd's arguments in ``node``'s container (for systemd in a container, PID 1's
    arguments are its kernel command line): a host outside the etcd group boots with the
    package's etcd.service masked, as an application host runs no etcd server."""
    return () if GROUP_ETCD in node.groups else ("systemd.mask=etcd.service",)


def is_degraded(container: str) -> bool:
    """True if systemd in a running container finished booting with failed units."""
    state = docker("exec", container, "systemctl", "is-system-running", check=False)
    return state.stdout.strip() == "degraded"


def start_container(node: Node) -> None:
    """``docker run`` one node with systemd as PID 1 (flags per the design notes)."""
    log(f"starting {node.container} ({node.ip})")
    docker(
        "run", "-d", "--name", node.container, "--hostname", node.name,
        "--network", instance.NETWORK, "--ip", node.ip,
        "--label", f"{instance.BED.label}={instance.BED.label_value}",
        "--label", f"{LABEL_GROUPS}={','.join(node.groups)}",
        "--label", f"{LABEL_SUITE}={node.suite}",
        "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
        "--tmpfs", "/run", "--tmpfs", "/run/lock",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host",
        image_of(node.suite), "/sbin/init", *init_args(node),
    )  # fmt: skip


def wait_for_boot(name: str) -> None:
    """Wait until systemd in ``name`` reports ``running``; report failed units otherwise.

    Right after ``docker run`` systemctl may not reach PID 1 yet (empty answer, or
    ``offline``): retry until :data:`BOOT_TIMEOUT`.
    """
    deadline = time.monotonic() + BOOT_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        remaining = max(deadline - time.monotonic(), 1)
        try:
            _, out = exec_in(name, "systemctl is-system-running --wait", timeout=remaining)
        except subprocess.TimeoutExpired:
            break
        state = out.strip()
        if state == "running":
            return
        if state in ("degraded", "maintenance", "stopping"):
            _, failed = exec_in(name, "systemctl --failed --no-legend --plain")
            raise TestbedError(f"{name}: systemd is {state!r}; failed units:\n{failed}")
        time.sleep(0.5)
    raise TestbedError(f"{name}: systemd not running after {BOOT_TIMEOUT} s (last: {state!r})")


def setup_node(name: str, key_file: Path) -> None:
    """Wait for one node's boot, then give it the SSH key and check sshd from the host."""
    wait_for_boot(name)
    authorize_ssh(name, key_file)
    ip = next(n.ip for n in running_nodes() if n.name == name)
    banner = wait_for_port(ip, 22)
    if not banner.startswith(b"SSH-"):
        raise TestbedError(f"{name}: port 22 answered {banner!r}")


def requested_nodes(clients: int = 0, with_: Sequence[str] = ()) -> list[Node]:
    """Return the default hosts plus ``with_`` hosts and ``clients`` app-client-N hosts."""
    names = [*DEFAULT_NODES, *with_, *(f"app-client-{i}" for i in range(1, clients + 1))]
    nodes = []
    for name in dict.fromkeys(names):
        groups = default_groups(name)
        ip = default_ip(name)
        if not groups or not ip:
            raise TestbedError(f"{name}: not a test-bed name (etcd-k8s-N, app-client-N); use add")
        nodes.append(Node(name, ip, groups))
    return nodes


def converge(nodes: Sequence[Node], *, prune: bool) -> None:
    """Start missing/outdated containers for ``nodes``; with ``prune`` remove all others."""
    for suite in {node.suite for node in nodes}:
        ensure_image(suite)
    image_ids = {
        suite: json.loads(docker("image", "inspect", image_of(suite)).stdout)[0]["Id"]
        for suite in {node.suite for node in nodes}
    }
    wanted = {node.name: node for node in nodes}
    kept = set()
    for info in inspect_containers():
        name = node_from_inspect(info).name
        if (
            name in wanted
            and container_is_current(info, wanted[name], image_ids[wanted[name].suite])
            and not is_degraded(info["Id"])
        ):
            kept.add(name)
        elif name in wanted or prune:
            log(f"removing container {info['Name'].lstrip('/')}")
            docker("rm", "-f", info["Id"])
    for node in nodes:
        if node.name in kept:
            continue
        if docker("container", "inspect", node.container, check=False).returncode == 0:
            raise TestbedError(f"a container named {node.container} exists outside the test bed")
        start_container(node)
    key_file = ssh_key()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: setup_node(n.name, key_file), nodes))


def current_names() -> set[str]:
    """Node names of the current instance's containers that exist now (running or not)."""
    return {node_from_inspect(i).name for i in inspect_containers()}
