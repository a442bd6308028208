"""The test bed's command line, ``python -m tests.testbed COMMAND`` (the Makefile's TESTBED)::

    python -m tests.testbed prepare        # engine, image, binaries, mirror tree
    python -m tests.testbed up [--clients N] [--with etcd-k8s-4 ...] [--fresh]
    python -m tests.testbed add NAME --group etcd|etcd_clients
    python -m tests.testbed remove NAME
    python -m tests.testbed serve          # (re)start the HTTP mirror only
    python -m tests.testbed etcd-release   # etcd tarball (official layout) into the mirror
    python -m tests.testbed inventory      # rewrite the inventories from the containers
    python -m tests.testbed status
    python -m tests.testbed down           # containers, network, HTTP server; keeps caches

Instances: several independent beds can run on one docker engine. ``ETCD_PKI_BED`` picks
one (unset: the default bed). With ``ETCD_PKI_BED=NAME`` (``[a-z0-9]{1,8}``):

* containers are ``NAME-etcd-k8s-1``, ... (their *hostname* stays ``etcd-k8s-1``, and the
  API and inventories' ``node_name`` keep the plain node name); they carry the label
  ``etcd-pki-testbed.bed=NAME`` (not ``etcd-pki-testbed``, so the default bed never sees them);
* network ``etcd-pki-test-NAME`` (bridge ``epki-NAME``) on a /24 in 172.30.100-199.0/24,
  picked from a hash of NAME, skipping subnets already in use, then read back from docker;
* its own HTTP mirror on that network's gateway (port 8099), and its own state dir
  ``.testbed/NAME/`` (inventories, pid and log files) and container lock;
* shared with every bed: image, binaries, mirror tree, the build lock, the SSH key.

Example: ``ETCD_PKI_BED=t1 python -m tests.testbed up`` then
``ETCD_PKI_BED=t1 .venv/bin/pytest tests/e2e`` and ``ETCD_PKI_BED=t1 python -m tests.testbed down``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import instance
from .binaries import TOOLS, binary_path, pinned_versions
from .engine import REPO_ROOT, STATE_ROOT, TestbedError, docker_ok, mirror_dir
from .etcd import etcd_release
from .hosts import (
    GROUP_CLIENTS,
    GROUP_ETCD,
    inspect_containers,
    ip_key,
    node_from_inspect,
    running_nodes,
)
from .image import IMAGE, SUITE, SUITES, image_recipe_of
from .instance import BED_ENV
from .inventories import inventory_path, write_inventories
from .lifecycle import add, down, prepare, remove, up
from .mirror import mirror_serves, serve
from .network import ensure_network, mirror_url, network_subnet
from .ssh import SUDO_USER


def status() -> str:
    """Return a human-readable summary of the bed and how to reach it."""
    current = instance.BED
    if current.name:
        lines = [
            f"bed: {current.name} ({BED_ENV}={current.name}; containers {current.prefix}*, "
            f"network {instance.NETWORK}, state {instance.STATE_DIR.relative_to(REPO_ROOT)}/)"
        ]
    else:
        lines = [f"bed: default ({BED_ENV} unset; set {BED_ENV}=NAME for a separate instance)"]
    versions = pinned_versions()
    for tool in TOOLS:
        path = binary_path(tool, versions[tool.name])
        lines.append(f"{tool.name} {versions[tool.name]}: {path if path.exists() else 'not built'}")
    if not docker_ok():
        return "\n".join([*lines, "docker engine: not running"])
    lines.append(f"image {IMAGE}: {'present' if image_recipe_of(IMAGE) else 'absent'}")
    lines.append(f"network {instance.NETWORK}: {network_subnet() or 'absent'}")
    lines.append(f"HTTP mirror {mirror_url()}: {'serving' if mirror_serves() else 'down'}")
    infos = sorted(inspect_containers(), key=lambda i: ip_key(node_from_inspect(i).ip))
    for info in infos:
        node = node_from_inspect(info)
        lines.append(
            f"  {node.container:<17} {node.ip:<14} {info['State']['Status']:<8} "
            f"{','.join(node.groups)}"
        )
    nodes = running_nodes()
    if nodes:
        key = (STATE_ROOT / "id_ed25519").relative_to(REPO_ROOT)
        docker_inventory = inventory_path("docker").relative_to(REPO_ROOT)
        lines += [
            f"shell:      docker exec -it {nodes[0].container} bash",
            f"inventory:  {docker_inventory} (hosts @docker/{instance.BED.prefix}NAME: "
            f"--limit @docker/{instance.BED.prefix}etcd-k8s-4)",
            f"            {inventory_path('ssh').relative_to(REPO_ROOT)} (ssh as root, key {key};"
            " hosts by name: --limit etcd-k8s-4)",
            f"            {inventory_path('sudo').relative_to(REPO_ROOT)} (ssh as {SUDO_USER}, "
            "run pyinfra with --sudo)",
            f"ssh:        ssh -i {key} -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null root@{nodes[0].ip}",
            f"etcd:       docker exec {nodes[0].container} systemctl status etcd",
            f"pyinfra:    .venv/bin/pyinfra {docker_inventory} deploy.py",
            f"mirror:     {mirror_url()}/ (serves {mirror_dir()})",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="docker engine, node image, binaries, mirror tree")
    p_up = sub.add_parser("up", help="prepare and start the containers")
    p_up.add_argument("--clients", type=int, default=0, help="extra app-client-N hosts")
    p_up.add_argument("--with", dest="with_", action="append", default=[], metavar="NAME")
    p_up.add_argument("--fresh", action="store_true", help="recreate every container")
    p_add = sub.add_parser("add", help="start one more host")
    p_add.add_argument("name")
    p_add.add_argument("--group", required=True, choices=[GROUP_ETCD, GROUP_CLIENTS])
    p_add.add_argument("--suite", default=SUITE, choices=SUITES, help="its Debian release")
    p_remove = sub.add_parser("remove", help="remove one host")
    p_remove.add_argument("name")
    sub.add_parser("serve", help="(re)start the HTTP mirror")
    sub.add_parser("inventory", help="rewrite the inventories from the running containers")
    sub.add_parser("etcd-release", help="make the release-format etcd tarball in the mirror")
    sub.add_parser("status", help="show the bed")
    sub.add_parser("down", help="remove containers, network, HTTP server (keeps caches)")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            prepare()
        elif args.command == "up":
            up(args.clients, args.with_, fresh=args.fresh)
            print(status())
        elif args.command == "add":
            add(args.name, args.group, args.suite)
            print(status())
        elif args.command == "remove":
            remove(args.name)
            print(status())
        elif args.command == "serve":
            prepare()
            ensure_network()
            serve()
        elif args.command == "etcd-release":
            release = etcd_release()
            print(f"etcd {release.version} sha256 {release.sha256}\n{release.tarball}")
        elif args.command == "inventory":
            print("\n".join(str(p) for p in write_inventories()))
        elif args.command == "status":
            print(status())
        elif args.command == "down":
            down()
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0
