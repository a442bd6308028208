"""Docker test bed for the etcd PKI deploy: node image, real step binaries, containers.

The e2e fixtures and the benchmark use it as ``from tests import testbed as tb``
(``tb.up()``, ``tb.bed()``, ``tb.write_inventory(...)``, ``tb.exec_in(...)``); the names
below are that API. It is also a CLI, ``python -m tests.testbed up|status|down|...``:
the commands and how instances (``ETCD_PKI_BED``) work are in :mod:`tests.testbed.cli`.

Modules, from the bottom up; each imports only modules above it in this list:

* ``engine``: paths, :class:`TestbedError`, logging, the cache, ``run``/``docker``,
  file locks, starting dockerd;
* ``instance``: ``ETCD_PKI_BED`` instances: names, labels, the current bed (``BED``);
* ``network``: the bed's docker network: subnet, gateway, the HTTP mirror's URL;
* ``image``: the node image (debootstrap, ``docker import``, cached tarball);
* ``binaries``: step and step-ca built from their Go modules; the release (mirror) tree;
* ``etcd``: etcd release tarballs, from Debian's binaries or upstream built from source;
* ``mirror``: the HTTP mirror serving the release tree, and host data pinned to it;
* ``ssh``: the beds' SSH key and the sudo login users in the hosts;
* ``hosts``: nodes (names, groups, IPs) and the containers that run them;
* ``inventories``: pyinfra inventories of the running bed, and ``run_pyinfra``;
* ``s3``: the S3 object store container (backup uploads);
* ``load``: a client load on a bed host (etcdctl writes and reads, what it saw);
* ``lifecycle``: ``prepare``, ``up``, ``add``, ``remove``, ``down``, ``bed``;
* ``cli``: ``status`` and the command line.

Nothing here talks to an address that is not one of the test bed's own containers or
its network's gateway, except the package registries (Debian, the Go module proxy).
The docker state is the source of truth: containers carry labels with their groups,
and the inventories in ``.testbed/`` are rewritten from it on every change.
"""

from __future__ import annotations

from . import instance
from .binaries import (
    TOOLS,
    Tool,
    binary_path,
    ensure_binaries,
    pinned_versions,
    release_dir,
    release_tarball,
    reproducible_tarball,
    tarball_name,
)
from .cli import main, status
from .engine import (
    REPO_ROOT,
    STATE_ROOT,
    TestbedError,
    cache_dir,
    docker,
    docker_ok,
    ensure_promtool,
    log,
    mirror_dir,
    run,
    sha256_file,
)
from .etcd import (
    ETCD_RELEASE_PATH,
    UPSTREAM_ETCD_VERSION,
    UPSTREAM_ETCD_VERSIONS,
    EtcdRelease,
    etcd_release,
    upstream_etcd_release,
)
from .hosts import (
    DEFAULT_NODES,
    GROUP_CERT_MANAGERS,
    GROUP_CLIENTS,
    GROUP_ETCD,
    GROUPS,
    Bed,
    Node,
    running_nodes,
    wait_for_boot,
)
from .image import IMAGE, SUITE, SUITES, ensure_image, image_of
from .instance import (
    BED_ENV,
    GATEWAY,
    INSTANCE_SUBNETS,
    LABEL,
    MIRROR_PORT,
    MIRROR_URL,
    SUBNET,
    BedSettings,
    bed_lock,
    bed_name,
    bed_settings,
    container_name,
    exec_in,
    pick_subnet,
    state_dir,
    subnet_candidates,
)
from .inventories import (
    AWS_ISOLATION,
    FLAVOURS,
    PYINFRA_TIMEOUT,
    UNSET,
    inventory_path,
    run_pyinfra,
    write_inventories,
    write_inventory,
)
from .lifecycle import add, bed, down, prepare, remove, up
from .load import LoadResult, start_load, stop_load
from .mirror import check_mirror_from, mirror_data, serve, stop_mirror
from .network import ensure_network, gateway, mirror_url, remove_network, subnet
from .s3 import (
    OBJECT_STORE_PORT,
    OBJECT_STORE_ROOT,
    OBJECT_STORE_VERSION,
    ObjectStore,
    start_object_store,
)
from .ssh import SUDO_PASSWORD, SUDO_PASSWORD_USER, SUDO_USER, ssh_key

# The current instance lives in `instance` alone: these names are read from it on each
# access (PEP 562), never copied here.
_CURRENT = ("BED", "NETWORK", "BRIDGE_NAME", "STATE_DIR")


def __getattr__(name: str) -> object:
    """``tb.BED``, ``tb.NETWORK``, ``tb.BRIDGE_NAME``, ``tb.STATE_DIR``: the current bed's."""
    if name in _CURRENT:
        return getattr(instance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_CURRENT,
    "AWS_ISOLATION",
    "BED_ENV",
    "DEFAULT_NODES",
    "ETCD_RELEASE_PATH",
    "FLAVOURS",
    "GATEWAY",
    "GROUPS",
    "GROUP_CERT_MANAGERS",
    "GROUP_CLIENTS",
    "GROUP_ETCD",
    "IMAGE",
    "INSTANCE_SUBNETS",
    "LABEL",
    "MIRROR_PORT",
    "MIRROR_URL",
    "OBJECT_STORE_PORT",
    "OBJECT_STORE_ROOT",
    "OBJECT_STORE_VERSION",
    "PYINFRA_TIMEOUT",
    "REPO_ROOT",
    "STATE_ROOT",
    "SUBNET",
    "SUDO_PASSWORD",
    "SUDO_PASSWORD_USER",
    "SUDO_USER",
    "SUITE",
    "SUITES",
    "TOOLS",
    "UNSET",
    "UPSTREAM_ETCD_VERSION",
    "UPSTREAM_ETCD_VERSIONS",
    "Bed",
    "BedSettings",
    "EtcdRelease",
    "Node",
    "ObjectStore",
    "TestbedError",
    "Tool",
    "add",
    "bed",
    "bed_lock",
    "bed_name",
    "bed_settings",
    "binary_path",
    "cache_dir",
    "LoadResult",
    "start_load",
    "stop_load",
    "check_mirror_from",
    "container_name",
    "docker",
    "docker_ok",
    "ensure_promtool",
    "down",
    "ensure_binaries",
    "ensure_image",
    "ensure_network",
    "etcd_release",
    "exec_in",
    "gateway",
    "image_of",
    "instance",
    "inventory_path",
    "log",
    "main",
    "mirror_data",
    "mirror_dir",
    "mirror_url",
    "pick_subnet",
    "pinned_versions",
    "prepare",
    "release_dir",
    "release_tarball",
    "remove",
    "remove_network",
    "reproducible_tarball",
    "run",
    "run_pyinfra",
    "running_nodes",
    "serve",
    "sha256_file",
    "ssh_key",
    "start_object_store",
    "state_dir",
    "status",
    "stop_mirror",
    "subnet",
    "subnet_candidates",
    "tarball_name",
    "up",
    "upstream_etcd_release",
    "wait_for_boot",
    "write_inventories",
    "write_inventory",
]
