"""The bed's HTTP mirror (``python -m http.server`` on the network's gateway, serving the
mirror tree) and the pinned host data that points hosts at it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import instance
from .binaries import TOOLS, pinned_versions, release_dir, release_tarball
from .engine import TestbedError, go_arch, log, mirror_dir, sha256_file
from .instance import MIRROR_PORT, exec_in
from .network import gateway, mirror_url


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


def mirror_pid_file() -> Path:
    """Return the pid file of the HTTP mirror server."""
    return instance.STATE_DIR / "mirror-http.pid"


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
    instance.STATE_DIR.mkdir(parents=True, exist_ok=True)
    logfile = instance.STATE_DIR / "mirror-http.log"
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
