"""What the deploy needs on a host, checked before anything runs there.

Pure functions of what the host's one snapshot read found (``tools_command``): who runs
the commands (root, by login or with sudo), the tools each role needs, the systemd
version, and the etcd the host runs or would install. Each missing piece is one line of
one clear error, naming the host.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .plan import HostPlan

# `journalctl --cursor-file` (242), `systemctl show --timestamp=unix` (248), `systemctl
# --root=/ enable`: Debian 12 has 252, Debian 13 257.
MIN_SYSTEMD = 248
# etcd releases the deploy supports: DER CRLs, the flags it writes (docs/etcd.md).
MIN_ETCD = (3, 5)
TOOLS = ("curl", "wget", "openssl", "update-ca-certificates")


def tools_command() -> str:
    """Print the uid and user name, `has TOOL` for each of TOOLS found, and systemd's
    version line."""
    return (
        "id -u; id -un; for t in " + " ".join(TOOLS) + "; do "
        'command -v "$t" >/dev/null 2>&1 && echo "has $t"; done; '
        "systemctl --version 2>/dev/null | head -n1"
    )


@dataclass(frozen=True)
class HostTools:
    uid: str | None
    user: str | None
    tools: frozenset[str]
    systemd: int | None


def parse_tools(lines: Iterable[str]) -> HostTools:
    lines = list(lines)
    tools = frozenset(line[4:] for line in lines if line.startswith("has "))
    systemd = next(
        (int(m.group(1)) for line in lines if (m := re.match(r"systemd (\d+)", line))), None
    )
    return HostTools(
        uid=lines[0] if lines else None,
        user=lines[1] if len(lines) > 1 else None,
        tools=tools,
        systemd=systemd,
    )


def requirement_problems(me: HostPlan, found: HostTools) -> list[str]:
    """What ``me`` lacks for its part in the deploy, one line each."""
    if found.uid is None:
        return []  # not read: nothing to judge
    if found.uid != "0":
        return [
            f"commands run as user {found.user or found.uid}, not root; run pyinfra with "
            "--sudo (or set _sudo = True in group_data) for a login user that may become "
            "root with sudo"
        ]
    s = me.settings
    out = []
    downloads = s.install_source in ("github", "mirror") or (
        me.is_etcd and s.etcd_install_source == "release" and "://" in s.etcd_release_url
    )
    if (me.is_etcd or downloads) and not found.tools & {"curl", "wget"}:
        why = "fetches the CRL" if me.is_etcd else "downloads the release tarballs"
        out.append(f"neither curl nor wget is installed: the deploy {why} with one of them")
    if me.is_etcd and "openssl" not in found.tools:
        out.append("openssl is not installed: each etcd member checks its CRL with it")
    if s.install_root_in_trust_store and "update-ca-certificates" not in found.tools:
        out.append(
            "update-ca-certificates is not installed (Debian package ca-certificates), "
            "needed by install_root_in_trust_store"
        )
    if found.systemd is None:
        out.append("systemd is not running here: the deploy manages systemd units")
    elif found.systemd < MIN_SYSTEMD:
        out.append(f"systemd {found.systemd} is too old: the deploy needs {MIN_SYSTEMD} or newer")
    return out


def etcd_version(text: str | None) -> tuple[int, ...] | None:
    """(3, 5, 16) from `etcd --version`'s first line or a Debian version (3.5.16-4)."""
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(g) for g in match.groups()) if match else None


def etcd_problem(version: tuple[int, ...] | None, where: str) -> str | None:
    """Why etcd ``version`` (found as ``where`` says) cannot run this cluster, or None."""
    if version is None or version[:2] >= MIN_ETCD:
        return None
    shown = ".".join(map(str, version))
    return (
        f"{where} is etcd {shown}; the deploy supports etcd 3.5, 3.6 and 3.7 (older ones are "
        'end of life): set etcd_install_source = "release" with a current etcd_version'
    )
