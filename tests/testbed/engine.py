"""The bottom layer: paths, errors, logging, the cache, processes, locks, the docker engine.

Nothing here knows about beds, hosts or images; every other module builds on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_ROOT = REPO_ROOT / ".testbed"


class TestbedError(RuntimeError):
    """Raised when the test bed cannot be brought into the requested state."""


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


def ensure_promtool() -> str:
    """The path of `promtool` (checks and tests monitoring/etcd-pki.rules.yml), from
    Debian's `prometheus` package, installed on the controller when missing. Only the
    tests need it: the deploy never does."""
    found = shutil.which("promtool")
    if not found:
        apt_install("prometheus")
        found = shutil.which("promtool")
    if not found:
        raise TestbedError("promtool is not on PATH after installing Debian's prometheus")
    return found


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
