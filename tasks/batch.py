"""Operations that do in one command what pyinfra's `files.*`/`systemd.*` do in several.

pyinfra's own operations read their facts (File, Directory, SystemdStatus, ...) and
then act, one command each: 3 to 5 round trips per file, directory, link or unit. The
tasks already know the state from one snapshot (facts/snapshot.py) and call these only
where something differs, so they need no fact of their own and each batch is a single
command. On a fresh host that cuts most of the round trips (one `docker exec` or SSH
exchange each), which is what the deploy's time grows with as the cluster grows.

Writes are atomic (a temporary file in the same directory, then a rename). Content
travels inside the command, so only public content goes through `write_files`: unit
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


@operation()
def directories(modes: Mapping[str, str]):
    """Create each directory (and missing parents) and set its mode.

    + modes: directory -> octal mode

    .. code:: python

        batch.directories(name="Directories", modes={"/opt/bin": "755"})
    """
    if modes:
        yield " && ".join(f"install -d -m {m} {_q(p)}" for p, m in modes.items())


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
def links(targets: Mapping[str, str]):
    """Point each symlink ``path -> target`` (replacing what is at ``path``).

    + targets: symlink path -> target it points to

    .. code:: python

        batch.links(name="Links", targets={"/etc/etcd/ssl/peer-ca.crt": "root_ca.crt"})
    """
    if targets:
        yield " && ".join(f"ln -sfn {_q(t)} {_q(p)}" for p, t in sorted(targets.items()))


@operation()
def write_files(files: Sequence[tuple[str, str, str]], owner: str = "root", group: str = "root"):
    """Write each ``(dest, content, mode)``, owned by ``owner:group``; public content only.

    + files: (destination, text, octal mode) of each file
    + owner, group: owner and group of every file

    .. code:: python

        batch.write_files(
            name="Renewal units",
            files=[("/etc/systemd/system/x.timer", text, "644")],
        )
    """
    parts = []
    for dest, content, mode in files:
        tmp = _q(f"{dest}.etcd-pki-new")
        data = base64.b64encode(content.encode()).decode()
        parts.append(
            f"printf %s {data} | base64 -d > {tmp} && chown {owner}:{group} {tmp} && "
            f"chmod {mode} {tmp} && mv -f {tmp} {_q(dest)}"
        )
    if parts:
        yield "set -e; umask 077; " + "; ".join(parts)


@operation()
def units_enabled(units: Sequence[str], daemon_reload: bool = False):
    """Enable and start systemd ``units``; reload systemd's unit files first if asked.

    + units: units to enable and start (already enabled and running ones are left so)
    + daemon_reload: run `systemctl daemon-reload` first (unit files were written)

    .. code:: python

        batch.units_enabled(name="Timers", units=["x.timer"], daemon_reload=True)
    """
    commands = ["systemctl daemon-reload"] if daemon_reload else []
    if units:
        commands.append(f"systemctl enable --now {' '.join(_q(u) for u in units)}")
    if commands:
        yield " && ".join(commands)
