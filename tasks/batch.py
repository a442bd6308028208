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

from collections.abc import Mapping, Sequence

from pyinfra.api import operation
from pyinfra.api.command import FileUploadCommand

from etcd_pki.commands.files import (
    Entry,
    directories_command,
    ownership_command,
    units_enabled_command,
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
