"""A host's certificates and trust: issuance with the key made on the host, the root in
the system trust store, step's defaults (what `step ca bootstrap` writes)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

from ..certs import fingerprint
from ..plan import CertSpec, HostPlan
from .files import directories_command, write_files_command
from .shell import finish_swap, on_exit

KEY_FLAGS = {
    "EC": "--kty EC --curve P-256",
    "RSA": "--kty RSA --size 2048",
    "OKP": "--kty OKP --curve Ed25519",
}


def issue_command(me: HostPlan, certs: Sequence[CertSpec], ca_url: str) -> str:
    """Issue ``certs`` in order, one token each from stdin (one per line), in one command:
    each key and certificate is written to a temp dir, then renamed into place.

    A failed earlier run of a certificate's renewal service is moot once it is
    re-issued: its failed state is cleared (the audit warns about it until then).
    """
    s = me.settings
    step = f"{s.bin_dir}/step"
    # Stopped between a key's rename and its certificate's: the certificate follows.
    finish = finish_swap(step, '"$tmp/crt"', '"$crt"', '"$key"')
    parts = [
        f"set -e; umask 077; tmp=$(mktemp -d {s.ssl_dir}/.issue-XXXXXX); crt=; key=; "
        + on_exit(f'[ -z "$crt" ] || {{ {finish}; }}; rm -rf "$tmp"')
    ]
    for cert in certs:
        parts.append(
            # `step` gets /dev/null: the remaining lines of stdin are the next tokens.
            # The token reaches step in its environment, never on a command line.
            "read -r token; "
            f'STEP_TOKEN="$token" STEPPATH={s.step_dir} {s.bin_dir}/step ca certificate '
            f'{shlex.quote(cert.subject)} "$tmp/crt" "$tmp/key" --not-after {s.cert_lifetime} '
            f"{KEY_FLAGS[s.key_type]} --ca-url {ca_url} --root {s.trusted_root} --force "
            ">/dev/null </dev/null; "
            f'chown {cert.owner}: "$tmp/key"; chmod 400 "$tmp/key"; chmod 644 "$tmp/crt"; '
            f"crt={shlex.quote(cert.crt)}; key={shlex.quote(cert.key)}; "
            'mv -f "$tmp/key" "$key"; mv -f "$tmp/crt" "$crt"; crt=; '
            f"systemctl reset-failed {cert.unit}.service >/dev/null 2>&1 || true"
        )
    return "; ".join(parts)


# Debian's local trust anchors: `update-ca-certificates` adds each *.crt here to
# /etc/ssl/certs, and drops the links of files that are gone.
SYSTEM_TRUST_FILE = "/usr/local/share/ca-certificates/etcd-pki-root_ca.crt"


def step_root_path(step_dir: str) -> str:
    """step's own copy of the root, where `step ca bootstrap` puts it."""
    return f"{step_dir}/certs/root_ca.crt"


def step_dirs(step_dir: str) -> dict[str, str]:
    """step's directories, root's alone (as `step ca bootstrap` makes them)."""
    return {d: "700" for d in (step_dir, f"{step_dir}/certs", f"{step_dir}/config")}


def system_trust_command(root: str | None) -> str:
    """Put ``root`` into the system trust store (Debian's `update-ca-certificates`), or
    take the deploy's root out of it (None)."""
    update = (
        "{ command -v update-ca-certificates >/dev/null || { echo 'install_root_in_trust_store:"
        " update-ca-certificates not found (Debian package ca-certificates)' >&2; false; }; } "
        "&& update-ca-certificates >/dev/null"
    )
    if root is None:
        return f"rm -f {SYSTEM_TRUST_FILE} && {update}"
    write = write_files_command([(SYSTEM_TRUST_FILE, root, "644")])
    anchors = {SYSTEM_TRUST_FILE.rsplit("/", 1)[0]: "755"}
    return f"{directories_command(anchors)} && {write} && {update}"


def step_files(step_dir: str, ca_url: str, root: str) -> list[tuple[str, str, str]]:
    """(path, text, mode) of what `step ca bootstrap` writes: $STEPPATH's root and
    defaults.json (the CA's URL and the root's fingerprint)."""
    defaults = {
        "ca-url": ca_url,
        "fingerprint": fingerprint(root),
        "root": step_root_path(step_dir),
    }
    return [
        (defaults["root"], root, "600"),
        (f"{step_dir}/config/defaults.json", json.dumps(defaults, indent=2) + "\n", "644"),
    ]


def step_config_command(step_dir: str, ca_url: str, root: str) -> str:
    """Write what `step ca bootstrap` would (`step_files`, same modes) without asking the
    CA: the root came from the CA node itself, so the host saves a `step` process and a
    TLS round trip to the CA."""
    files = step_files(step_dir, ca_url, root)
    return f"{directories_command(step_dirs(step_dir))} && {write_files_command(files)}"
