"""step and step-ca built from their Go modules at the pinned versions (cached), and the
GitHub-like release tree (``CACHE/mirror``) the hosts install them from.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import (
    REPO_ROOT,
    TestbedError,
    apt_install,
    cache_dir,
    go_arch,
    log,
    mirror_dir,
    run,
    run_logged,
    sha256_file,
    write_atomic,
)

VERSIONS_FILE = REPO_ROOT / "group_data" / "all.py"


# Go toolchain fetched through the module proxy when the local `go` is too old.
GO_TOOLCHAIN = "1.25.8"


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
