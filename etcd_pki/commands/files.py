"""Files, directories, links and units in one command each (tasks/batch.py runs them).

Writes are atomic (a temporary file in the same directory, then a rename). Content
travels inside the command, so only public content goes through `write_files_command`:
unit files and certificates, never keys or passwords.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence


def _q(path: str) -> str:
    return shlex.quote(path)


Entry = tuple[str, str, str, str]  # (path, user, group, octal mode)


def directories_command(modes: Mapping[str, str]) -> str:
    """Each directory (made with its parents when missing) owned by root, with its mode:
    an existing one of another owner or mode is set right too."""
    return " && ".join(f"install -d -o root -g root -m {m} {_q(p)}" for p, m in modes.items())


def ownership_command(dirs: Sequence[Entry] = (), files: Sequence[Entry] = ()) -> str:
    parts = [f"install -d -o {u} -g {g} -m {m} {_q(p)}" for p, u, g, m in dirs]
    parts += [
        f"if [ -e {_q(p)} ]; then chown {u}:{g} {_q(p)} && chmod {m} {_q(p)}; fi"
        for p, u, g, m in files
    ]
    return " && ".join(parts)


def links_command(targets: Mapping[str, str]) -> str:
    return " && ".join(f"ln -sfn {_q(t)} {_q(p)}" for p, t in sorted(targets.items()))


def write_files_command(
    files: Sequence[tuple[str, str, str]], owner: str = "root", group: str = "root"
) -> str:
    parts = []
    for dest, content, mode in files:
        tmp = _q(f"{dest}.etcd-pki-new")
        data = base64.b64encode(content.encode()).decode()
        parts.append(
            f"printf %s {data} | base64 -d > {tmp} && chown {owner}:{group} {tmp} && "
            f"chmod {mode} {tmp} && mv -f {tmp} {_q(dest)}"
        )
    # A subshell: the umask applies to these writes only.
    return f"( umask 077 && {' && '.join(parts)} )" if parts else ""


def units_enabled_command(units: Sequence[str], daemon_reload: bool = False) -> str:
    if units:
        # `systemctl enable` reloads the manager's configuration itself before --now
        # starts anything (systemctl(1)); a second reload would only cost time.
        return f"systemctl enable --now {' '.join(_q(u) for u in units)}"
    return "systemctl daemon-reload" if daemon_reload else ""


def timers_enabled_command(timers: Sequence[str]) -> str:
    """Enable and start ``timers`` whose unit files systemd has not loaded (new) or has
    loaded as they are, without the daemon-reload of `systemctl enable` (it reruns every
    generator and re-reads every unit: ~0.25 s of CPU per host).

    `--root=/` makes the [Install] links on the file system without asking systemd
    (which would reload, or else mark every unit NeedDaemonReload); `start` then reads a
    new unit file. systemd learns of the links at its next reload or boot: until then
    timers.target does not list these timers, which only matters when it starts (boot).
    An older systemd that does not read a new unit file on `start`: the usual way.
    """
    names = " ".join(_q(t) for t in timers)
    return (
        f"{{ systemctl --root=/ enable {names} && systemctl start {names}; }} "
        f"|| systemctl enable --now {names}"
    )
