"""Operations that do in one command what pyinfra's `files.*`/`systemd.*` do in several.

pyinfra's own operations read their facts (File, Directory, SystemdStatus, ...) and
then act, one command each: 3 to 5 round trips per file, directory, link or unit. The
tasks already know the state from one snapshot (facts/snapshot.py) and call these only
where something differs, so they need no fact of their own and each batch is a single
command. On a fresh host that cuts most of the round trips (one `docker exec` or SSH
exchange each), which is what the deploy's time grows with as the cluster grows.

Writes are atomic (a temporary file in the same directory, then a rename). Content
travels inside the command, so only public content goes through `write_files_command`: unit
files and certificates, never keys or passwords.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence

from pyinfra.api import operation
from pyinfra.api.command import FileUploadCommand


def _q(path: str) -> str:
    return shlex.quote(path)


Entry = tuple[str, str, str, str]  # (path, user, group, octal mode)


# --- command builders: one shell command each, combined by `steps` ----------------


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


# --- operations ---------------------------------------------------------------------


@operation()
def steps(commands: Sequence[str]):
    """Run the non-empty ``commands`` (from the builders above) in order, as one command
    that stops at the first failure.

    + commands: shell commands, e.g. ``write_files_command(...)``

    .. code:: python

        batch.steps(
            name="step-ca unit, enabled and running",
            commands=[
                batch.write_files_command([(UNIT_PATH, text, "644")]),
                batch.units_enabled_command(["step-ca.service"], daemon_reload=True),
            ],
        )
    """
    parts = [c for c in commands if c]
    if parts:
        yield " && ".join(parts)


@operation()
def directories(modes: Mapping[str, str]):
    """Create each directory (and missing parents) and set its mode.

    + modes: directory -> octal mode

    .. code:: python

        batch.directories(name="Directories", modes={"/opt/bin": "755"})
    """
    if modes:
        yield directories_command(modes)


@operation()
def ownership(dirs: Sequence[Entry] = (), files: Sequence[Entry] = ()):
    """Owner, group and mode of each ``(path, user, group, mode)``: directories are made
    when missing, files are never created (a missing one is left to whoever makes it).

    + dirs: directories (created with missing parents)
    + files: existing files

    .. code:: python

        batch.ownership(
            name="CA permissions",
            dirs=[("/etc/step-ca/db", "step", "step", "700")],
            files=[("/etc/step-ca/secrets/password", "step", "step", "400")],
        )
    """
    if dirs or files:
        yield ownership_command(dirs, files)


@operation()
def upload(src: str, dest: str):
    """Copy the controller's file ``src`` to ``dest`` (one transfer, no checks: the
    caller verifies the content, as the installs do with sha256).

    + src: file on the controller
    + dest: path on the host

    .. code:: python

        batch.upload(name="Upload", src="cache/step.tar.gz", dest="/var/cache/x.tar.gz")
    """
    yield FileUploadCommand(src, dest)


@operation()
def units_enabled(units: Sequence[str], daemon_reload: bool = False):
    """Enable and start systemd ``units``; reload systemd's unit files first if asked.

    + units: units to enable and start (already enabled and running ones are left so)
    + daemon_reload: unit files were written: reload them (enabling does it anyway)

    .. code:: python

        batch.units_enabled(name="Timers", units=["x.timer"], daemon_reload=True)
    """
    command = units_enabled_command(units, daemon_reload)
    if command:
        yield command
