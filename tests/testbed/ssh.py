"""SSH access to the hosts: the beds' throwaway key, the sudo login users, sshd checks."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from .engine import STATE_ROOT, TestbedError, docker, write_atomic
from .instance import container_name, exec_in


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
