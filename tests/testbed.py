"""Docker test bed for the etcd PKI deploy: node image, real step binaries, containers.

Usable as a module (the e2e fixtures call :func:`up`) and as a CLI::

    python -m tests.testbed prepare        # engine, image, binaries, mirror tree
    python -m tests.testbed up [--clients N] [--with etcd-k8s-4 ...] [--fresh]
    python -m tests.testbed add NAME --group etcd|etcd_clients
    python -m tests.testbed remove NAME
    python -m tests.testbed serve          # (re)start the HTTP mirror only
    python -m tests.testbed etcd-release   # etcd tarball (official layout) into the mirror
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

Nothing here talks to an address that is not one of the test bed's own containers or
its network's gateway, except the package registries (Debian, the Go module proxy).
The docker state is the source of truth: containers carry labels with their groups,
and the inventories in ``.testbed/`` are rewritten from it on every change.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import ipaddress
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_ROOT = REPO_ROOT / ".testbed"
BED_ENV = "ETCD_PKI_BED"
BED_NAME_RE = re.compile(r"[a-z0-9]{1,8}")
VERSIONS_FILE = REPO_ROOT / "group_data" / "all.py"

SUITE = "trixie"  # every node's Debian, unless it is started with another (`add --suite`)
SUITES = ("trixie", "bookworm")
IMAGE = f"etcd-pki-node:{SUITE}"


def image_of(suite: str = SUITE) -> str:
    """The node image of Debian ``suite``."""
    return f"etcd-pki-node:{suite}"


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

GROUP_ETCD = "etcd"
GROUP_CLIENTS = "etcd_clients"
GROUP_CERT_MANAGERS = "etcd_cert_managers"
GROUPS = (GROUP_ETCD, GROUP_CLIENTS, GROUP_CERT_MANAGERS)
DEFAULT_NODES = ("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3", "app-server")

# Go toolchain fetched through the module proxy when the local `go` is too old.
GO_TOOLCHAIN = "1.25.8"
BOOT_TIMEOUT = 180
PYINFRA_TIMEOUT = 900


class TestbedError(RuntimeError):
    """Raised when the test bed cannot be brought into the requested state."""


# ---------------------------------------------------------------------------
# Instances (ETCD_PKI_BED)
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------


def log(message: str) -> None:
    """Print a progress line (to stderr, so command output stays clean)."""
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Return the cache directory (``$ETCD_PKI_CACHE`` or ``~/.cache/etcd-pki-testbed``)."""
    path = Path(os.environ.get("ETCD_PKI_CACHE") or Path.home() / ".cache" / "etcd-pki-testbed")
    path.mkdir(parents=True, exist_ok=True)
    return path


def mirror_dir() -> Path:
    """Return the release tree laid out like GitHub releases (``CACHE/mirror``)."""
    return cache_dir() / "mirror"


def mirror_url() -> str:
    """Return the base URL under which this instance's HTTP mirror serves :func:`mirror_dir`."""
    return f"http://{gateway()}:{MIRROR_PORT}"


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: str | bytes | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; raise :class:`TestbedError` on failure."""
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        list(cmd),
        input=data,
        capture_output=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        check=False,
    )
    result = subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
    )
    if check and result.returncode != 0:
        raise TestbedError(
            f"command failed ({result.returncode}): {' '.join(cmd)}\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result


def run_logged(
    cmd: Sequence[str],
    logfile: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = False,
) -> None:
    """Run a long command with its output going to ``logfile``; raise with the log tail."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("a" if append else "w") as out:
        rc = subprocess.run(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False
        ).returncode
    if rc != 0:
        tail = logfile.read_text(errors="replace")[-3000:]
        raise TestbedError(f"command failed ({rc}): {' '.join(cmd)}\n--- {logfile}:\n{tail}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed). Not re-entrant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_lock() -> contextlib.AbstractContextManager[None]:
    """Serialise builds of the shared caches (image, binaries, mirror tree) between processes."""
    return file_lock(cache_dir() / "lock")


def bed_lock() -> contextlib.AbstractContextManager[None]:
    """Serialise changes to the current instance's containers (machine-wide, by name).

    The default bed keeps the historical ``CACHE/lock`` (so older checkouts still exclude
    each other); named instances use ``CACHE/locks/bed-NAME.lock``. Never nest it inside
    :func:`cache_lock`.
    """
    if not BED.name:
        return cache_lock()
    return file_lock(cache_dir() / "locks" / f"bed-{BED.name}.lock")


_apt_updated = False


def apt_install(*packages: str) -> None:
    """Install Debian packages on the controller (runs ``apt-get update`` once)."""
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        log("apt-get update")
        run(["apt-get", "update"], env=env, timeout=600)
        _apt_updated = True
    log(f"apt-get install {' '.join(packages)}")
    run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env, timeout=1200)


def go_arch() -> str:
    """Return the Go/Debian architecture name of the controller (``amd64``, ``arm64``)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


# ---------------------------------------------------------------------------
# Docker engine
# ---------------------------------------------------------------------------


def docker(*args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI."""
    return run(["docker", *args], check=check, **kwargs)


def docker_ok() -> bool:
    """Return True when the docker engine answers."""
    if not shutil.which("docker"):
        return False
    return run(["docker", "info"], check=False, timeout=30).returncode == 0


def ensure_docker() -> None:
    """Make sure a docker engine runs: install docker.io and start dockerd if needed."""
    if docker_ok():
        return
    if not shutil.which("dockerd") or not shutil.which("docker"):
        apt_install("docker.io")
    logfile = cache_dir() / "dockerd.log"
    log(f"starting dockerd in the background (log: {logfile})")
    with logfile.open("a") as out:
        subprocess.Popen(
            ["dockerd"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if docker_ok():
            log("dockerd is up")
            return
        time.sleep(1)
    raise TestbedError(f"dockerd did not answer within 90 s, see {logfile}")


# ---------------------------------------------------------------------------
# Node image
# ---------------------------------------------------------------------------


def image_recipe_hash(suite: str = SUITE) -> str:
    """Return a short hash of everything that defines the node image of ``suite``."""
    recipe = json.dumps(
        [suite, IMAGE_PACKAGES, MASKED_UNITS, IMAGE_RECIPE_REVISION], separators=(",", ":")
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


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
        import_rootfs(root, image_of(suite))
    finally:
        remove_tree(root)
    save_image(save_to, suite)
    log(f"image ready in {time.monotonic() - started:.0f} s")


def save_image(save_to: Path, suite: str = SUITE) -> None:
    """``docker save`` the node image into the cache, replacing older recipes' tarballs."""
    log(f"saving {image_of(suite)} to {save_to}")
    save_to.parent.mkdir(parents=True, exist_ok=True)
    for old in save_to.parent.glob(f"etcd-pki-node_{suite}-*.tar"):
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


def import_rootfs(root: Path, image: str) -> None:
    """``tar`` the root filesystem into ``docker import`` with systemd as the command."""
    log(f"docker import {image}")
    changes = [
        'CMD ["/sbin/init"]',
        "ENV container=docker",
        f"LABEL {LABEL}.recipe={image_recipe_hash()}",
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


# ---------------------------------------------------------------------------
# step / step-ca binaries and the release tree
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One smallstep binary: where its module lives and how its release is named."""

    name: str  # binary name, also the tarball's prefix
    module: str  # Go package to `go install`
    repo: str  # GitHub repository name under smallstep/ (cli, certificates)
    version_key: str  # key in group_data/all.py


TOOLS = (
    Tool("step", "github.com/smallstep/cli/cmd/step", "cli", "step_version"),
    Tool(
        "step-ca",
        "github.com/smallstep/certificates/cmd/step-ca",
        "certificates",
        "step_ca_version",
    ),
)


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Return ``{"step": v, "step-ca": v}`` from ``group_data/all.py`` (plain assignments)."""
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return {tool.name: str(namespace[tool.version_key]) for tool in TOOLS}


def binary_path(tool: Tool, version: str) -> Path:
    """Return where the built binary of ``tool`` at ``version`` is cached."""
    return cache_dir() / "bin" / f"{tool.name}-{version}" / tool.name


def go_version(go: str) -> tuple[int, int]:
    """Return (major, minor) of a go binary."""
    out = run([go, "env", "GOVERSION"]).stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", out)
    if not match:
        raise TestbedError(f"cannot parse the go version {out!r}")
    return int(match.group(1)), int(match.group(2))


def find_go() -> tuple[str, dict[str, str]]:
    """Return a go binary able to build the tools and the environment to use with it.

    Installs Debian's Go if none is found. A Go of 1.21 or later fetches the toolchain
    the modules ask for by itself (``GOTOOLCHAIN=auto``); an older one is only used to
    download ``golang.org/toolchain`` from the module proxy.
    """
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "auto", "GOFLAGS": "-buildvcs=false"}
    go = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(p).exists()), None
    )
    if go is None:
        apt_install("golang-go")
        go = shutil.which("go") or "/usr/lib/go/bin/go"
    if go_version(go) >= (1, 21):
        return go, env
    return download_toolchain(go, env), env


def download_toolchain(go: str, env: Mapping[str, str]) -> str:
    """Fetch Go :data:`GO_TOOLCHAIN` as the ``golang.org/toolchain`` module; return its go.

    This is what ``GOTOOLCHAIN`` does by itself in Go >= 1.21, done by hand for older ones.
    """
    module = f"golang.org/toolchain@v0.0.1-go{GO_TOOLCHAIN}.linux-{go_arch()}"
    log(f"local go is too old, downloading {module} from the module proxy")
    cmd = [go, "mod", "download", "-json", module]
    root = Path(json.loads(run(cmd, env=env, timeout=1200).stdout)["Dir"])
    # Module zips carry no permissions: make the toolchain's commands executable.
    for tool_dir in (root / "bin", root / "pkg" / "tool" / f"linux_{go_arch()}"):
        for tool in tool_dir.iterdir():
            tool.chmod(0o555)
    return str(root / "bin" / "go")


def go_install(module: str, version: str, target: Path, ldflags: str = "-s -w") -> None:
    """``go install MODULE@vVERSION`` into ``target``'s directory unless it exists."""
    if target.exists():
        return
    go, env = find_go()
    env["GOBIN"] = str(target.parent)
    logfile = cache_dir() / "logs" / f"go-install-{target.name}-{version}.log"
    log(f"building {target.name} {version} from {module} (a few minutes; log: {logfile})")
    started = time.monotonic()
    cmd = [go, "install", "-trimpath", "-ldflags", ldflags, f"{module}@v{version}"]
    run_logged(cmd, logfile, env=env)
    log(f"built {target.name} in {time.monotonic() - started:.0f} s")


def ensure_binary(tool: Tool, version: str) -> Path:
    """Build ``tool`` at ``version`` with ``go install`` unless cached; verify its version."""
    target = binary_path(tool, version)
    go_install(tool.module, version, target, f"-s -w -X main.Version={version}")
    out = run([str(target), "version"]).stdout
    if version not in out:
        raise TestbedError(f"{target} reports {out.strip()!r}, expected version {version}")
    return target


def release_dir(tool: Tool, version: str) -> Path:
    """Return the GitHub-like release directory of ``tool`` in the mirror tree."""
    return mirror_dir() / tool.repo / "releases" / "download" / f"v{version}"


def tarball_name(tool: Tool, version: str, arch: str | None = None) -> str:
    """Return the release tarball name, e.g. ``step_linux_0.30.6_amd64.tar.gz``."""
    return f"{tool.name}_linux_{version}_{arch or go_arch()}.tar.gz"


def release_tarball(tool: Tool, version: str) -> Path:
    """Return the path of the release tarball in the mirror tree."""
    return release_dir(tool, version) / tarball_name(tool, version)


def mirror_data() -> dict[str, Any]:
    """Host data that makes hosts download step and step-ca from this bed's HTTP mirror,
    pinned (a plain-http mirror is refused without pins)."""
    versions, arch = pinned_versions(), go_arch()
    pins = {
        tool.name: {arch: sha256_file(release_tarball(tool, versions[tool.name]))} for tool in TOOLS
    }
    return {
        "install_source": "mirror",
        "install_mirror_url": mirror_url(),
        "step_sha256": pins["step"],
        "step_ca_sha256": pins["step-ca"],
    }


def make_tarball(binary: Path, top: str) -> bytes:
    """Return a reproducible .tar.gz holding ``{top}/bin/{binary.name}``."""
    return reproducible_tarball(top, [(f"bin/{binary.name}", binary.read_bytes())])


def reproducible_tarball(top: str, members: Sequence[tuple[str, bytes]]) -> bytes:
    """Return a .tar.gz of executable ``members`` (path below ``top``, content) under
    ``{top}/``: root-owned, mtime 0, no gzip name or time, so equal input gives equal bytes.
    """

    def info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.type, entry.mode, entry.size = kind, mode, size
        entry.mtime, entry.uid, entry.gid, entry.uname, entry.gname = 0, 0, 0, "root", "root"
        return entry

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info(f"{top}/", tarfile.DIRTYPE, 0o755))
        made = {""}
        for path, data in members:
            parts = path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    tar.addfile(info(f"{top}/{directory}/", tarfile.DIRTYPE, 0o755))
                    made.add(directory)
            entry = info(f"{top}/{path}", tarfile.REGTYPE, 0o755, len(data))
            tar.addfile(entry, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def ensure_release(tool: Tool, version: str, binary: Path) -> Path:
    """Write the tarball and its ``checksums.txt`` into the mirror tree if out of date."""
    tarball = release_tarball(tool, version)
    checksums = tarball.parent / "checksums.txt"
    fresh = (
        tarball.exists()
        and checksums.exists()
        and tarball.stat().st_mtime >= binary.stat().st_mtime
        and checksums.read_text() == f"{sha256_file(tarball)}  {tarball.name}\n"
    )
    if not fresh:
        log(f"writing {tarball.relative_to(mirror_dir())}")
        data = make_tarball(binary, f"{tool.name}_{version}")
        write_atomic(tarball, data)
        digest = hashlib.sha256(data).hexdigest()
        write_atomic(checksums, f"{digest}  {tarball.name}\n".encode())
    return tarball


def ensure_binaries() -> dict[str, Path]:
    """Build (or reuse) step and step-ca at the pinned versions and fill the mirror tree."""
    versions = pinned_versions()
    binaries = {}
    for tool in TOOLS:
        binaries[tool.name] = ensure_binary(tool, versions[tool.name])
        ensure_release(tool, versions[tool.name], binaries[tool.name])
    return binaries


# ---------------------------------------------------------------------------
# etcd release tarball (official layout) made from Debian's etcd binaries
# ---------------------------------------------------------------------------

# Path of etcd's releases below the mirror root, as on GitHub: a deploy's
# `etcd_release_url` is ``{mirror}/ETCD_RELEASE_PATH`` (or the same below mirror_dir()).
ETCD_RELEASE_PATH = "etcd-io/etcd/releases/download"
ETCD_DEBS = ("etcd-server", "etcd-client")
# The tarball's binaries, in the official order; etcdutl is in etcd-server since 3.5.
ETCD_BINARIES = ("etcd", "etcdctl", "etcdutl")


@dataclass(frozen=True)
class EtcdRelease:
    """The release-format etcd tarball in the mirror tree (see :func:`etcd_release`)."""

    version: str
    sha256: str
    tarball: Path
    arch: str

    def release_url(self, source: str = "mirror") -> str:
        """``etcd_release_url`` for this bed: the HTTP mirror (``mirror``, each host
        downloads) or the mirror tree on the controller (``controller``, uploaded)."""
        if source == "mirror":
            return f"{mirror_url()}/{ETCD_RELEASE_PATH}"
        if source == "controller":
            return str(mirror_dir() / ETCD_RELEASE_PATH)
        raise ValueError(f"unknown etcd release source {source!r}")

    def inventory_data(self, source: str = "mirror") -> dict[str, Any]:
        """Host data that makes the deploy install etcd from this tarball."""
        return {
            "etcd_install_source": "release",
            "etcd_version": self.version,
            "etcd_release_url": self.release_url(source),
            "etcd_sha256": {self.arch: self.sha256},
        }


def etcd_tarball_path(version: str, arch: str | None = None) -> Path:
    """Where the tarball of etcd ``version`` lives in the mirror tree."""
    name = f"etcd-v{version}-linux-{arch or go_arch()}.tar.gz"
    return mirror_dir() / ETCD_RELEASE_PATH / f"v{version}" / name


def download_etcd_debs() -> list[Path]:
    """Return Debian's etcd-server and etcd-client .debs (suite :data:`SUITE`) in
    ``CACHE/debs``, fetched with ``apt-get download`` on the controller if missing.

    apt runs with its own sources list and state in ``CACHE/apt-SUITE`` (the node
    image's suite, which may not be the controller's), so the system's apt is untouched.
    """
    debs_dir = cache_dir() / "debs"
    arch = go_arch()
    found = [sorted(debs_dir.glob(f"{name}_*_{arch}.deb")) for name in ETCD_DEBS]
    if all(found):
        return [paths[-1] for paths in found]
    apt_dir = cache_dir() / f"apt-{SUITE}"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    sources = apt_dir / "sources.list"
    sources.write_text(f"deb {DEBIAN_MIRROR} {SUITE} main\n")
    options = [
        "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", f"APT::Architecture={arch}", "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip
    log(f"apt-get download {' '.join(ETCD_DEBS)} ({SUITE}) into {debs_dir}")
    run(["apt-get", *options, "update"], timeout=600)
    debs_dir.mkdir(parents=True, exist_ok=True)
    run(["apt-get", *options, "download", *ETCD_DEBS], cwd=debs_dir, timeout=600)
    return [sorted(debs_dir.glob(f"{name}_*_{arch}.deb"))[-1] for name in ETCD_DEBS]


def upstream_version(deb: Path) -> str:
    """The upstream part of a .deb's version: ``3.5.16-4`` -> ``3.5.16``."""
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
    return version.split(":", 1)[-1].rsplit("-", 1)[0].split("+", 1)[0]


def ensure_etcd_release() -> EtcdRelease:
    """Write ``etcd-v{ver}-linux-{arch}.tar.gz`` (top dir ``etcd-v{ver}-linux-{arch}/``
    with etcd, etcdctl, etcdutl, as upstream ships it) from Debian's binaries into the
    mirror tree, with a ``SHA256SUMS`` beside it; reuse it when up to date.

    Call without :func:`cache_lock` held (use :func:`etcd_release`).
    """
    debs = download_etcd_debs()
    versions = {upstream_version(deb) for deb in debs}
    if len(versions) != 1:
        raise TestbedError(f"etcd .debs of different versions: {[d.name for d in debs]}")
    version = versions.pop()
    arch = go_arch()
    tarball = etcd_tarball_path(version, arch)
    sums = tarball.parent / "SHA256SUMS"
    newest_deb = max(deb.stat().st_mtime for deb in debs)
    if (
        tarball.exists()
        and sums.exists()
        and tarball.stat().st_mtime >= newest_deb
        and sums.read_text() == f"{sha256_file(tarball)}  {tarball.name}\n"
    ):
        return EtcdRelease(version, sha256_file(tarball), tarball, arch)
    tmp_parent = cache_dir() / "tmp"
    tmp_parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="etcd-debs-", dir=tmp_parent) as tmp:
        for deb in debs:
            run(["dpkg-deb", "-x", str(deb), tmp])
        bins = Path(tmp) / "usr" / "bin"
        reported = run([str(bins / "etcd"), "--version"]).stdout
        if f"etcd Version: {version}" not in reported:
            raise TestbedError(f"Debian's etcd reports {reported!r}, expected {version}")
        members = [(b, (bins / b).read_bytes()) for b in ETCD_BINARIES if (bins / b).exists()]
    if [m[0] for m in members][:2] != ["etcd", "etcdctl"]:
        raise TestbedError(f"etcd or etcdctl missing from {[d.name for d in debs]}")
    data = reproducible_tarball(tarball.name.removesuffix(".tar.gz"), members)
    log(f"writing {tarball.relative_to(mirror_dir())} (Debian's etcd {version})")
    write_atomic(tarball, data)
    digest = hashlib.sha256(data).hexdigest()
    write_atomic(sums, f"{digest}  {tarball.name}\n".encode())
    return EtcdRelease(version, digest, tarball, arch)


def etcd_release() -> EtcdRelease:
    """The release-format etcd tarball in the shared mirror tree (made once, cached):
    version (Debian's, e.g. 3.5.16), sha256, path. Served by every bed's HTTP mirror."""
    with cache_lock():
        return ensure_etcd_release()


# Current upstream etcd, built from its Go modules (pinned): the e2e suite runs the core
# flow on each besides Debian's 3.5 (tests/e2e/test_etcd_current.py).
UPSTREAM_ETCD_VERSIONS = ("3.6.16", "3.7.3")
UPSTREAM_ETCD_VERSION = UPSTREAM_ETCD_VERSIONS[0]
# The modules of one etcd release: each go.mod has replace directives for its siblings,
# so `go install module@version` refuses them; a wrapper module requiring all of them
# at the same version builds the three binaries.
ETCD_MODULES = ("api", "client/pkg", "client", "pkg", "server", "etcdctl", "etcdutl")
ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def upstream_etcd_binaries(version: str = UPSTREAM_ETCD_VERSION) -> Path:
    """The directory with etcd, etcdctl and etcdutl ``version`` built from go.etcd.io
    modules (cached; a few minutes the first time)."""
    target = cache_dir() / "bin" / f"etcd-{version}"
    if all((target / b).exists() for b in ETCD_BINARIES):
        return target
    go, env = find_go()
    tmp_parent = cache_dir() / "tmp"
    tmp_parent.mkdir(parents=True, exist_ok=True)
    logfile = cache_dir() / "logs" / f"go-build-etcd-{version}.log"
    log(f"building etcd {version} from go.etcd.io modules (a few minutes; log: {logfile})")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="etcd-build-", dir=tmp_parent) as tmp:
        work = Path(tmp)
        requires = "\n".join(f"\tgo.etcd.io/etcd/{m}/v3 v{version}" for m in ETCD_MODULES)
        (work / "go.mod").write_text(
            f"module etcdpki.test/etcd\n\ngo 1.24\n\nrequire (\n{requires}\n)\n"
        )
        (work / "cmd" / "etcd").mkdir(parents=True)
        (work / "cmd" / "etcd" / "main.go").write_text(ETCD_MAIN)
        (work / "tools.go").write_text(
            "//go:build tools\n\npackage tools\n\nimport (\n"
            '\t_ "go.etcd.io/etcd/etcdctl/v3"\n\t_ "go.etcd.io/etcd/etcdutl/v3"\n)\n'
        )
        out = work / "out"
        run_logged([go, "mod", "tidy"], logfile, env=env, cwd=work)
        ldflags = "-s -w"
        for name, package in (
            ("etcd", "./cmd/etcd"),
            ("etcdctl", "go.etcd.io/etcd/etcdctl/v3"),
            ("etcdutl", "go.etcd.io/etcd/etcdutl/v3"),
        ):
            cmd = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out / name), package]
            run_logged(cmd, logfile, env=env, cwd=work, append=True)
        reported = run([str(out / "etcd"), "--version"]).stdout
        if f"etcd Version: {version}" not in reported:
            raise TestbedError(f"the etcd built reports {reported!r}, expected {version}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(out, target)
    log(f"built etcd {version} in {time.monotonic() - started:.0f} s")
    return target


def upstream_etcd_release(version: str = UPSTREAM_ETCD_VERSION) -> EtcdRelease:
    """The release-format tarball of upstream etcd ``version`` in the mirror tree."""
    with cache_lock():
        binaries = upstream_etcd_binaries(version)
        arch = go_arch()
        tarball = etcd_tarball_path(version, arch)
        sums = tarball.parent / "SHA256SUMS"
        if not (tarball.exists() and sums.exists()):
            members = [(b, (binaries / b).read_bytes()) for b in ETCD_BINARIES]
            data = reproducible_tarball(tarball.name.removesuffix(".tar.gz"), members)
            log(f"writing {tarball.relative_to(mirror_dir())} (etcd {version} from source)")
            write_atomic(tarball, data)
            write_atomic(sums, f"{hashlib.sha256(data).hexdigest()}  {tarball.name}\n".encode())
        return EtcdRelease(version, sha256_file(tarball), tarball, arch)


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


# ---------------------------------------------------------------------------
# Hosts, network, containers
# ---------------------------------------------------------------------------


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


_subnet: str | None = None


def network_subnet() -> str | None:
    """Return the subnet of this instance's docker network, or None when it does not exist."""
    result = docker("network", "inspect", NETWORK, check=False)
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
    if not BED.name:
        return SUBNET
    if _subnet is not None:
        return _subnet
    if not docker_ok():
        return subnet_candidates(BED.name)[0]
    _subnet = network_subnet()
    return _subnet or pick_subnet(BED.name, used_subnets())


def gateway() -> str:
    """Return the gateway IP of this instance's network (where its HTTP mirror listens)."""
    return str(next(ipaddress.ip_network(subnet()).hosts()))


def ensure_network() -> None:
    """Create the test network on its own subnet, refusing to clash with another one."""
    global _subnet
    existing = network_subnet()
    if existing is not None or docker("network", "inspect", NETWORK, check=False).returncode == 0:
        if BED.name and existing:
            _subnet = existing
            return
        if existing == SUBNET:
            return
        raise TestbedError(f"network {NETWORK} exists with another subnet: {existing}")
    # One process at a time picks and reserves a subnet (instances created in parallel).
    with file_lock(cache_dir() / "locks" / "network.lock"):
        if not BED.name:
            wanted = ipaddress.ip_network(SUBNET)
            for used in used_subnets():
                if ipaddress.ip_network(used, strict=False).overlaps(wanted):
                    raise TestbedError(f"{SUBNET} is already used on this machine ({used})")
            chosen = SUBNET
        else:
            chosen = pick_subnet(BED.name, used_subnets())
        gateway_ip = str(next(ipaddress.ip_network(chosen).hosts()))
        log(f"creating network {NETWORK} ({chosen})")
        docker(
            "network", "create", "--driver", "bridge", "--subnet", chosen, "--gateway", gateway_ip,
            "--label", f"{BED.label}={BED.label_value}",
            "-o", f"com.docker.network.bridge.name={BRIDGE_NAME}", NETWORK,
        )  # fmt: skip
        _subnet = chosen if BED.name else None


def inspect_containers() -> list[dict[str, Any]]:
    """Return ``docker inspect`` of every container of the current instance.

    Default-bed containers carry ``etcd-pki-testbed=1``; a named instance's carry
    ``etcd-pki-testbed.bed=NAME`` only (so code that predates instances ignores them).
    """
    label = f"{BED.label}={BED.label_value}" if BED.name else LABEL
    ids = docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
    infos = json.loads(docker("inspect", *ids).stdout) if ids else []
    return [i for i in infos if (i["Config"].get("Labels") or {}).get(LABEL_BED, "") == BED.name]


def node_from_inspect(info: dict[str, Any]) -> Node:
    """Build a :class:`Node` from a container's ``docker inspect`` entry (name = hostname)."""
    name = info["Config"].get("Hostname") or info["Name"].lstrip("/").removeprefix(BED.prefix)
    groups = tuple(filter(None, info["Config"]["Labels"].get(LABEL_GROUPS, "").split(",")))
    network = info["NetworkSettings"]["Networks"].get(NETWORK) or {}
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
        "--network", NETWORK, "--ip", node.ip,
        "--label", f"{BED.label}={BED.label_value}",
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


def ssh_key() -> Path:
    """Return the test beds' throwaway ed25519 key (``.testbed/id_ed25519``), made once."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_file = STATE_ROOT / "id_ed25519"  # shared by every instance
    pub_file = key_file.with_suffix(".pub")
    if key_file.exists() and pub_file.exists():
        return key_file
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    write_atomic(key_file, private, 0o600)
    write_atomic(pub_file, public + b" etcd-pki-testbed\n")
    return key_file


# The login user of the sudo inventory: not root, may become root with sudo (no password).
SUDO_USER = "deployer"
# Another login user whose sudo asks for its password (pyinfra's _sudo_password).
SUDO_PASSWORD_USER = "deployerpw"
SUDO_PASSWORD = "testbed-sudo-password"


def authorize_ssh(name: str, key_file: Path) -> None:
    """Authorize the test bed key for root and for :data:`SUDO_USER` (made here, with
    passwordless sudo) in ``name`` and check sshd answers."""
    public = key_file.with_suffix(".pub").read_text().strip()
    home = f"/home/{SUDO_USER}"
    # Append (not replace): several checkouts on one machine share the containers.
    pw_user, pw_home = SUDO_PASSWORD_USER, f"/home/{SUDO_PASSWORD_USER}"
    script = (
        f"id {SUDO_USER} >/dev/null 2>&1 || useradd -m -s /bin/sh {SUDO_USER}; "
        f"id {pw_user} >/dev/null 2>&1 || useradd -m -s /bin/sh {pw_user}; "
        f"echo '{pw_user}:{SUDO_PASSWORD}' | chpasswd && "
        f"echo '{SUDO_USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{SUDO_USER} && "
        f"echo '{pw_user} ALL=(ALL) ALL' > /etc/sudoers.d/{pw_user} && "
        f"chmod 440 /etc/sudoers.d/{SUDO_USER} /etc/sudoers.d/{pw_user} && key=$(cat) && "
        f"for d in /root {home} {pw_home}; do (umask 077 && mkdir -p $d/.ssh && "
        "touch $d/.ssh/authorized_keys && "
        '(grep -qxF "$key" $d/.ssh/authorized_keys || echo "$key" >> $d/.ssh/authorized_keys))'
        " || exit 1; done; "
        f"chown -R {SUDO_USER}: {home}/.ssh && chown -R {pw_user}: {pw_home}/.ssh"
    )
    docker("exec", "-i", container_name(name), "sh", "-c", script, input=public)
    rc, out = exec_in(name, "systemctl is-active ssh.service")
    if out.strip() != "active":
        raise TestbedError(f"{name}: sshd is not running ({out.strip()})")


def wait_for_port(ip: str, port: int, timeout: float = 30) -> bytes:
    """Connect to ``ip:port`` until it answers; return the first bytes it sends."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, port), timeout=5) as conn:
                return conn.recv(64)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


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


# ---------------------------------------------------------------------------
# HTTP mirror
# ---------------------------------------------------------------------------


def mirror_pid_file() -> Path:
    """Return the pid file of the HTTP mirror server."""
    return STATE_DIR / "mirror-http.pid"


def mirror_pid() -> int | None:
    """Return the pid of our running HTTP mirror server, or None."""
    try:
        pid = int(mirror_pid_file().read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return pid if b"http.server" in cmdline else None


def probe_path() -> str:
    """Return the mirror-relative path of the step checksums file (used for checks)."""
    tool, version = TOOLS[0], pinned_versions()[TOOLS[0].name]
    return str((release_dir(tool, version) / "checksums.txt").relative_to(mirror_dir()))


def mirror_serves() -> bool:
    """True when something at :func:`mirror_url` serves our current checksums file."""
    path = probe_path()
    # No proxy: the request must go to our own gateway address and nowhere else.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{mirror_url()}/{path}", timeout=5) as response:
            return response.read() == (mirror_dir() / path).read_bytes()
    except OSError:
        return False


def serve() -> None:
    """Serve ``CACHE/mirror`` on the instance's gateway IP, detached (pid in its state dir)."""
    if mirror_serves():
        return
    stop_mirror()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    logfile = STATE_DIR / "mirror-http.log"
    log(f"serving {mirror_dir()} at {mirror_url()}")
    with logfile.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(MIRROR_PORT), "--bind", gateway(),
             "--directory", str(mirror_dir())],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    mirror_pid_file().write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 15
    while not mirror_serves():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TestbedError(f"HTTP mirror did not start, see {logfile}")
        time.sleep(0.2)


def stop_mirror() -> None:
    """Stop the HTTP mirror server started from this checkout (by its pid file)."""
    pid = mirror_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    mirror_pid_file().unlink(missing_ok=True)


def check_mirror_from(name: str) -> None:
    """Fetch the checksums file with curl from inside container ``name``."""
    path = probe_path()
    url = f"{mirror_url()}/{path}"
    rc, out = exec_in(name, f"curl -fsS --max-time 10 {url}")
    if rc != 0 or out != (mirror_dir() / path).read_text():
        raise TestbedError(f"{name} cannot fetch {url}: rc={rc} {out!r}")


# ---------------------------------------------------------------------------
# Inventories
# ---------------------------------------------------------------------------


class _Unset:
    """Marker type of :data:`UNSET`."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Use as a value in :func:`write_inventory` extra data to drop a default key."""


FLAVOURS = ("docker", "ssh", "sudo")


def inventory_path(flavour: str) -> Path:
    """Return the default inventory path of ``flavour`` (one of :data:`FLAVOURS`)."""
    return STATE_DIR / f"inventory_{flavour}.py"


def host_name(node: Node, flavour: str) -> str:
    """Return the inventory host name of ``node`` for ``flavour``."""
    if flavour == "docker":
        return f"@docker/{node.container}"
    if flavour in ("ssh", "sudo"):
        return node.name
    raise ValueError(f"unknown inventory flavour {flavour!r}")


def base_host_data(node: Node, flavour: str) -> dict[str, Any]:
    """Return the host data every test-bed host carries."""
    data: dict[str, Any] = {
        "address": node.ip,
        "node_name": node.name,
        "install_source": "controller",
        "install_controller_dir": str(mirror_dir()),
    }
    if flavour in ("ssh", "sudo"):
        data.update(
            ssh_hostname=node.ip,
            ssh_user="root" if flavour == "ssh" else SUDO_USER,
            ssh_key=str(ssh_key()),
            ssh_known_hosts_file="/dev/null",
            ssh_strict_host_key_checking="no",
            ssh_config_file="/dev/null",
            ssh_allow_agent=False,
            ssh_look_for_keys=False,
        )
    return data


def group_members(nodes: Sequence[Node], groups: Mapping[str, Sequence[str]] | None) -> dict:
    """Return ``{group: [names]}``: the labels' groups with ``groups`` replacing entries."""
    members: dict[str, list[str]] = {g: [] for g in GROUPS}
    for node in nodes:
        for group in node.groups:
            members.setdefault(group, []).append(node.name)
    for group, names in (groups or {}).items():
        members[group] = list(names)
    return members


def merge_data(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Update ``target`` with ``extra``; values equal to :data:`UNSET` remove the key."""
    for key, value in extra.items():
        if value is UNSET:
            target.pop(key, None)
        else:
            target[key] = value


def write_inventory(
    path: Path | str | None = None,
    flavour: str = "docker",
    *,
    nodes: Sequence[Node] | None = None,
    data: Mapping[str, Any] | None = None,
    group_data: Mapping[str, Mapping[str, Any]] | None = None,
    host_data: Mapping[str, Mapping[str, Any]] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Write a pyinfra inventory of the running test bed and return its path.

    ``flavour`` is ``docker`` (hosts ``@docker/CONTAINER``, host data ``node_name``) or ``ssh``
    (hosts ``NAME`` reached by SSH at the container IP). Every host gets :func:`base_host_data`;
    then ``data`` (all hosts), ``group_data`` (per group, applied to the members) and
    ``host_data`` (per plain host name) are merged in, in that order, as *host* data, so they
    win over ``group_data/*.py`` files. A value of :data:`UNSET` removes a key. ``groups``
    replaces the membership of the named groups (e.g. ``{"etcd_cert_managers": ["etcd-k8s-1",
    "etcd-k8s-2"]}``) or adds new groups. Values must be Python literals (``repr``-able).
    """
    nodes = list(running_nodes() if nodes is None else nodes)
    target = Path(path) if path else inventory_path(flavour)
    by_name = {node.name: node for node in nodes}
    members = group_members(nodes, groups)
    unknown = {n for names in members.values() for n in names} - by_name.keys()
    if unknown:
        raise TestbedError(f"groups name hosts that are not in the bed: {sorted(unknown)}")
    lines = [
        f'"""pyinfra inventory of the test bed ({flavour} flavour).',
        "",
        'Generated by tests/testbed.py; rewritten on every "testbed up/add/remove"."""',
        "",
    ]
    written: set[str] = set()
    for group, names in members.items():
        lines.append(f"{group} = [")
        for name in names:
            node = by_name[name]
            if name in written:
                lines.append(f"    {host_name(node, flavour)!r},")
                continue
            written.add(name)
            host = base_host_data(node, flavour)
            merge_data(host, data or {})
            for group_name, extra in (group_data or {}).items():
                if name in members.get(group_name, ()):
                    merge_data(host, extra)
            merge_data(host, (host_data or {}).get(name, {}))
            lines.append(f"    ({host_name(node, flavour)!r}, {{")
            lines += [f"        {key!r}: {value!r}," for key, value in host.items()]
            lines.append("    }),")
        lines.append("]")
    missing = [node for node in nodes if node.name not in written]
    if missing:
        # Hosts in no group still belong in the inventory.
        lines.append("ungrouped = [")
        for node in missing:
            lines.append(f"    ({host_name(node, flavour)!r}, {base_host_data(node, flavour)!r}),")
        lines.append("]")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, ("\n".join(lines) + "\n").encode())
    return target


def write_inventories() -> tuple[Path, ...]:
    """Rewrite the default inventories (one per :data:`FLAVOURS`) from the containers.

    ``sudo``: like ``ssh`` (production host names) but logged in as :data:`SUDO_USER`;
    run pyinfra with ``--sudo`` (or give the hosts ``_sudo`` data) to become root."""
    nodes = running_nodes()
    return tuple(write_inventory(None, flavour, nodes=nodes) for flavour in FLAVOURS)


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


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
        instance=BED.name,
        state_dir=STATE_DIR,
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
        if BED.name:
            shutil.rmtree(STATE_DIR, ignore_errors=True)
    global _subnet
    _subnet = None


# ---------------------------------------------------------------------------
# S3-compatible object store for the backup upload: Versity S3 Gateway
# ---------------------------------------------------------------------------

OBJECT_STORE_MODULE = "github.com/versity/versitygw/cmd/versitygw"
OBJECT_STORE_VERSION = "1.8.0"
OBJECT_STORE_PORT = 7070
# The posix backend serves ROOT/BUCKET/KEY as objects: tests read uploads there.
OBJECT_STORE_ROOT = "/srv/s3"
# Auxiliary containers (not hosts: never in an inventory) carry this label only.
LABEL_AUX = f"{LABEL}.aux"


@dataclass(frozen=True)
class ObjectStore:
    """A running S3 server on the bed's network (TLS, SigV4 checked, one root user)."""

    container: str
    endpoint: str
    ca_file: Path  # the CA that signed the server's certificate (for backup_s3_ca_file)


def write_object_store_tls(directory: Path, ip: str) -> Path:
    """A one-off CA and a server certificate for ``ip`` in ``directory`` (cert.pem,
    key.pem, ca.pem); return ca.pem."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test object store CA"))
        .issuer_name(name("test object store CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(name("objstore")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    write_atomic(directory / "cert.pem", cert.public_bytes(pem))
    write_atomic(directory / "ca.pem", ca.public_bytes(pem))
    key_bytes = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Read by versitygw inside its container (as root): 0600 is enough.
    write_atomic(directory / "key.pem", key_bytes, mode=0o600)
    return directory / "ca.pem"


def object_store_binary() -> Path:
    """Build (or reuse) versitygw at the pinned version; return its path."""
    target = cache_dir() / "bin" / f"versitygw-{OBJECT_STORE_VERSION}" / "versitygw"
    go_install(OBJECT_STORE_MODULE, OBJECT_STORE_VERSION, target)
    return target


def start_object_store(access_key: str, secret_key: str, buckets: Sequence[str]) -> ObjectStore:
    """Run versitygw in a container at .250 of the bed's network, serving https with a
    certificate of a one-off CA; ``buckets`` exist empty. Replaces an earlier one."""
    binary = object_store_binary()
    container = f"{BED.prefix}objstore" if BED.name else "etcd-pki-objstore"
    ip = f"{subnet().rsplit('.', 1)[0]}.250"
    tls_dir = STATE_DIR / "objstore-tls"
    ca_file = write_object_store_tls(tls_dir, ip)
    docker("rm", "-f", container, check=False)
    dirs = " ".join(shlex.quote(f"{OBJECT_STORE_ROOT}/{b}") for b in buckets)
    log(
        f"starting {container} (versitygw {OBJECT_STORE_VERSION}, https://{ip}:{OBJECT_STORE_PORT})"
    )
    docker(
        "run", "-d", "--name", container, "--network", NETWORK, "--ip", ip,
        "--label", f"{LABEL_AUX}={BED.name or 'default'}",
        "-e", f"ROOT_ACCESS_KEY={access_key}", "-e", f"ROOT_SECRET_KEY={secret_key}",
        "-v", f"{binary}:/usr/local/bin/versitygw:ro", "-v", f"{tls_dir}:/tls:ro",
        "--entrypoint", "/bin/sh", IMAGE, "-c",
        f"mkdir -p {dirs} && exec versitygw --quiet --port :{OBJECT_STORE_PORT} "
        f"--cert /tls/cert.pem --key /tls/key.pem posix {OBJECT_STORE_ROOT}",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((ip, OBJECT_STORE_PORT), timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                logs = docker("logs", container, check=False)
                raise TestbedError(f"{container} did not listen: {logs.stderr[-500:]}") from None
            time.sleep(0.3)
    return ObjectStore(container, f"https://{ip}:{OBJECT_STORE_PORT}", ca_file)


def remove_network(timeout: float = 30) -> None:
    """Remove the bed's network if it exists.

    After many containers are removed at once, dockerd may list endpoints of removed
    containers for a while ("has active endpoints"): retry. dockerd can also keep such an
    endpoint for good (its store lost a race); the network is then left, with a warning,
    and the next `up` reuses it. Other errors raise.
    """
    deadline = time.monotonic() + timeout
    while docker("network", "inspect", NETWORK, check=False).returncode == 0:
        result = docker("network", "rm", NETWORK, check=False)
        if result.returncode == 0:
            return
        if "active endpoints" not in result.stderr:
            raise TestbedError(f"docker network rm {NETWORK}: {result.stderr.strip()}")
        if time.monotonic() > deadline:
            log(
                f"WARNING: dockerd still lists an endpoint on {NETWORK} although its "
                "containers are gone; the network is left for the next `up` (restarting "
                "dockerd clears it)"
            )
            return
        time.sleep(1)


def remove_aux_containers() -> None:
    """Remove this instance's auxiliary containers (the object store)."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL_AUX}={BED.name or 'default'}").stdout
    if ids.split():
        docker("rm", "-f", *ids.split())


def exec_in(name: str, cmd: str | Sequence[str], *, timeout: float = 120) -> tuple[int, str]:
    """Run ``cmd`` (a shell string or an argv list) on node ``name``: (rc, stdout)."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    result = run(["docker", "exec", container_name(name), *argv], check=False, timeout=timeout)
    return result.returncode, result.stdout


def run_pyinfra(
    inventory: Path | str,
    deploy_file: str,
    *args: str,
    timeout: float = PYINFRA_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``pyinfra -y INVENTORY DEPLOY_FILE ARGS...`` from the repo root, capturing output.

    ``deploy_file`` may also be a pyinfra operation word, e.g.
    ``run_pyinfra(inv, "exec", "--", "hostname")`` or ``run_pyinfra(inv, "fact", "...")``.
    """
    pyinfra = REPO_ROOT / ".venv" / "bin" / "pyinfra"
    if not pyinfra.exists():
        pyinfra = Path(sys.executable).parent / "pyinfra"
    cmd = [str(pyinfra), "-y", str(inventory), deploy_file, *args]
    return subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **AWS_ISOLATION, **(env or {})},
        check=False,
    )


# boto3's credential chain would otherwise read the user's ~/.aws and ask the cloud
# metadata address (169.254.169.254), which is not the bed's to talk to.
AWS_ISOLATION = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


def status() -> str:
    """Return a human-readable summary of the bed and how to reach it."""
    if BED.name:
        lines = [f"bed: {BED.name} ({BED_ENV}={BED.name}; containers {BED.prefix}*, "
                 f"network {NETWORK}, state {STATE_DIR.relative_to(REPO_ROOT)}/)"]  # fmt: skip
    else:
        lines = [f"bed: default ({BED_ENV} unset; set {BED_ENV}=NAME for a separate instance)"]
    versions = pinned_versions()
    for tool in TOOLS:
        path = binary_path(tool, versions[tool.name])
        lines.append(f"{tool.name} {versions[tool.name]}: {path if path.exists() else 'not built'}")
    if not docker_ok():
        return "\n".join([*lines, "docker engine: not running"])
    lines.append(f"image {IMAGE}: {'present' if image_recipe_of(IMAGE) else 'absent'}")
    lines.append(f"network {NETWORK}: {network_subnet() or 'absent'}")
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
            f"inventory:  {docker_inventory} (hosts @docker/{BED.prefix}NAME: "
            f"--limit @docker/{BED.prefix}etcd-k8s-4)",
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


if __name__ == "__main__":
    sys.exit(main())
