"""The bed as a whole: prepare the shared caches, bring it up, add and remove hosts, down."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from . import instance
from .binaries import ensure_binaries, pinned_versions
from .engine import (
    STATE_ROOT,
    TestbedError,
    cache_lock,
    docker,
    docker_ok,
    ensure_docker,
    log,
    mirror_dir,
)
from .hosts import (
    GROUP_CLIENTS,
    GROUP_ETCD,
    Bed,
    Node,
    allocate_ip,
    converge,
    current_names,
    default_groups,
    inspect_containers,
    requested_nodes,
    running_nodes,
)
from .image import SUITE, SUITES, ensure_image
from .instance import bed_lock, container_name
from .inventories import inventory_path, write_inventories
from .mirror import check_mirror_from, serve, stop_mirror
from .network import ensure_network, forget_subnet, mirror_url, remove_network
from .s3 import remove_aux_containers

# Every container's systemd takes inotify instances from the host's per-user pool
# (default 128): with a few beds up, path units fail at boot and systemd says
# "degraded". Raise the limits (never lower them).
INOTIFY_LIMITS = {"max_user_instances": 8192, "max_user_watches": 1048576}


def raise_inotify_limits() -> None:
    """Raise fs.inotify limits on the host so many systemd containers can boot."""
    for name, wanted in INOTIFY_LIMITS.items():
        path = Path("/proc/sys/fs/inotify") / name
        try:
            if int(path.read_text()) < wanted:
                path.write_text(str(wanted))
        except OSError as e:
            log(f"cannot raise fs.inotify.{name} ({e}); containers may boot degraded")


def prepare() -> None:
    """Everything but containers: docker engine, node image, binaries, release tree."""
    with cache_lock():
        raise_inotify_limits()
        ensure_docker()
        ensure_binaries()
        ensure_image()


def bed() -> Bed:
    """Describe the running test bed (no changes made)."""
    return Bed(
        nodes=running_nodes(),
        inventory_docker=inventory_path("docker"),
        inventory_ssh=inventory_path("ssh"),
        inventory_sudo=inventory_path("sudo"),
        ssh_key=STATE_ROOT / "id_ed25519",
        mirror_dir=mirror_dir(),
        mirror_url=mirror_url(),
        versions=pinned_versions(),
        instance=instance.BED.name,
        state_dir=instance.STATE_DIR,
    )


def up(clients: int = 0, with_: Sequence[str] = (), *, fresh: bool = False) -> Bed:
    """Prepare, then converge the bed to the default hosts + ``with_`` + ``clients``.

    Running containers that match are kept (so a second call is quick); test-bed
    containers that were not requested are removed; ``fresh`` recreates every container.
    """
    started = time.monotonic()
    prepare()
    with bed_lock():
        if fresh:
            remove_containers()
        ensure_network()
        nodes = requested_nodes(clients, with_)
        converge(nodes, prune=True)
        serve()
        check_mirror_from(nodes[0].name)
        write_inventories()
    log(f"test bed up in {time.monotonic() - started:.0f} s: {', '.join(n.name for n in nodes)}")
    return bed()


def add(name: str, group: str, suite: str = SUITE) -> Bed:
    """Start one more host ``name`` in ``group`` (etcd or etcd_clients), on Debian ``suite``,
    and rewrite inventories. A host of that name on another suite is replaced."""
    if group not in (GROUP_ETCD, GROUP_CLIENTS):
        raise TestbedError(f"group must be {GROUP_ETCD} or {GROUP_CLIENTS}, not {group!r}")
    if suite not in SUITES:
        raise TestbedError(f"suite must be one of {SUITES}, not {suite!r}")
    prepare()
    with bed_lock():
        ensure_network()
        nodes = running_nodes()
        found = next((n for n in nodes if n.name == name), None)
        if found is None or found.suite != suite:
            nodes = [n for n in nodes if n.name != name]
            ip = found.ip if found else allocate_ip(name, {n.ip for n in nodes})
            groups = default_groups(name) if group in default_groups(name) else (group,)
            nodes.append(Node(name, ip, groups, suite))
        converge(nodes, prune=False)
        serve()
        write_inventories()
    return bed()


def remove(name: str) -> Bed:
    """Remove host ``name`` and rewrite the inventories."""
    with bed_lock():
        if name not in current_names():
            raise TestbedError(f"{name} is not a test-bed container")
        docker("rm", "-f", container_name(name))
        write_inventories()
    return bed()


def remove_containers() -> None:
    """Remove every container of the current instance."""
    names = sorted(i["Name"].lstrip("/") for i in inspect_containers())
    if names:
        log(f"removing containers {', '.join(names)}")
        docker("rm", "-f", *names)


def down() -> None:
    """Remove this instance's containers, network and HTTP server; keep caches and the key."""
    with bed_lock():
        if docker_ok():
            remove_containers()
            remove_aux_containers()
            remove_network()
        stop_mirror()
        for flavour in ("docker", "ssh"):
            inventory_path(flavour).unlink(missing_ok=True)
        if instance.BED.name:
            shutil.rmtree(instance.STATE_DIR, ignore_errors=True)
    forget_subnet()
