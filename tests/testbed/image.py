"""The node image: Debian (debootstrap) with systemd, sshd and Debian's etcd, imported
into docker and cached as a ``docker save`` tarball keyed by its recipe.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .engine import TestbedError, apt_install, cache_dir, docker, log, run, run_logged
from .instance import LABEL

SUITE = "trixie"  # every node's Debian, unless it is started with another (`add --suite`)
SUITES = ("trixie", "bookworm")


DEBIAN_MIRROR = "http://deb.debian.org/debian"
IMAGE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "ca-certificates",
    "iproute2",
    "procps",
    "etcd-server",
    "etcd-client",
    "openssl",
    "curl",
    "sudo",
    # The metrics' reader (tests/e2e/test_metrics.py): enabled by its package, it serves
    # :9100 with the textfile collector on /var/lib/prometheus/node-exporter.
    "prometheus-node-exporter",
)
# Units masked in the image because they cannot work in an unprivileged container.
# None are needed with the run flags below: booting the image on this machine kind
# (docker 20.10, cgroup v1, `--cgroupns=host`, ENV container=docker) reaches `running`
# with no failed unit (checked with `systemctl --failed`). List unit names here if a
# host ever shows one. Debian's etcd.service is deliberately NOT touched in the image
# (enabled as shipped: on etcd members the deploy has to deal with it). A client host
# boots with it masked (see init_args): an application host runs no etcd server,
# and 24 idle ones would load the machine the bench measures. All containers share the
# image's /etc/machine-id; nothing in the bed depends on it being unique.
MASKED_UNITS: tuple[str, ...] = ()
# Bump when the image customisation below changes (part of the image's recipe hash).
IMAGE_RECIPE_REVISION = 2


def image_recipe_hash(suite: str = SUITE) -> str:
    """Return a short hash of everything that defines the node image of ``suite``."""
    recipe = json.dumps(
        [suite, IMAGE_PACKAGES, MASKED_UNITS, IMAGE_RECIPE_REVISION], separators=(",", ":")
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def image_of(suite: str = SUITE) -> str:
    """The node image of Debian ``suite``, tagged with its recipe: worktrees with another
    recipe (a branch that changes the image) keep images of their own instead of
    replacing each other's in turn."""
    return f"etcd-pki-node:{suite}-{image_recipe_hash(suite)}"


IMAGE = image_of(SUITE)


def image_cache_file(suite: str = SUITE) -> Path:
    """Return the path of the ``docker save`` tarball for the current recipe."""
    return cache_dir() / "images" / f"etcd-pki-node_{suite}-{image_recipe_hash(suite)}.tar"


def image_recipe_of(image: str) -> str | None:
    """Return the recipe label of a local image, or None when the image is absent."""
    result = docker("image", "inspect", image, check=False)
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0]["Config"].get("Labels") or {}
    return labels.get(f"{LABEL}.recipe", "")


def ensure_image(suite: str = SUITE) -> None:
    """Make sure the image of ``suite`` exists for the current recipe: load or build it."""
    image = image_of(suite)
    wanted = image_recipe_hash(suite)
    cached = image_cache_file(suite)
    if image_recipe_of(image) == wanted:
        if not cached.exists():
            save_image(cached, suite)
        return
    if cached.exists():
        log(f"loading {image} from {cached}")
        docker("load", "-i", str(cached), timeout=600)
        if image_recipe_of(image) == wanted:
            return
        log("cached image has another recipe, rebuilding")
    build_image(cached, suite)


def build_image(save_to: Path, suite: str = SUITE) -> None:
    """Debootstrap the node root filesystem, import it as the image and save it."""
    if not shutil.which("debootstrap"):
        apt_install("debootstrap")
    tmp_parent = cache_dir() / "tmp"
    tmp_parent.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tmp_parent))
    logfile = cache_dir() / "logs" / f"debootstrap-{suite}.log"
    started = time.monotonic()
    try:
        log(f"debootstrap {suite} (about 70 s or more; log: {logfile})")
        run_logged(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(IMAGE_PACKAGES)}",
                suite,
                str(root),
                DEBIAN_MIRROR,
            ],
            logfile,
        )
        log(f"debootstrap done in {time.monotonic() - started:.0f} s")
        customise_rootfs(root)
        import_rootfs(root, image_of(suite), suite)
    finally:
        remove_tree(root)
    save_image(save_to, suite)
    log(f"image ready in {time.monotonic() - started:.0f} s")


def save_image(save_to: Path, suite: str = SUITE) -> None:
    """``docker save`` the node image into the cache; another recipe's tarball goes once
    it is unused for a week (another worktree may still load it)."""
    log(f"saving {image_of(suite)} to {save_to}")
    save_to.parent.mkdir(parents=True, exist_ok=True)
    week_ago = time.time() - 7 * 86400
    for old in save_to.parent.glob(f"etcd-pki-node_{suite}-*.tar"):
        if old != save_to and old.stat().st_atime < week_ago:
            old.unlink()
    tmp = save_to.with_name(f".{save_to.name}.tmp")
    docker("save", "-o", str(tmp), image_of(suite), timeout=600)
    tmp.replace(save_to)


def customise_rootfs(root: Path) -> None:
    """Adjust the debootstrapped tree for running as a systemd container."""
    for unit in MASKED_UNITS:
        link = root / "etc" / "systemd" / "system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # Docker bind-mounts its own resolv.conf/hosts/hostname; drop the build host's copy.
    (root / "etc" / "resolv.conf").unlink(missing_ok=True)
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)


def import_rootfs(root: Path, image: str, suite: str = SUITE) -> None:
    """``tar`` the root filesystem into ``docker import`` with systemd as the command."""
    log(f"docker import {image}")
    changes = [
        'CMD ["/sbin/init"]',
        "ENV container=docker",
        f"LABEL {LABEL}.recipe={image_recipe_hash(suite)}",
    ]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
    )
    cmd = ["docker", "import"]
    for change in changes:
        cmd += ["-c", change]
    result = subprocess.run(
        [*cmd, "-", image], stdin=tar.stdout, capture_output=True, text=True, check=False
    )
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0 or result.returncode != 0:
        raise TestbedError(f"docker import failed: {result.stderr}")


def remove_tree(root: Path) -> None:
    """Remove a chroot tree, unmounting anything debootstrap left mounted inside it."""
    prefix = str(root.resolve())
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix + "/")), reverse=True):
        run(["umount", "-l", mount], check=False)
    shutil.rmtree(root, ignore_errors=True)
