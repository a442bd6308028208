"""Read-only facts for the audit and the status report. Public material only: file
metadata, unit states and the *paths* of files that look private, never their content.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from etcd_pki.observation import (
    FileStat,
    UnitState,
    parse_file_stats,
    parse_unit_states,
    secret_find_expression,
)

# A PEM private key of any type (PKCS#8, EC, RSA, ENCRYPTED, OPENSSH, PGP) or an age key.
PRIVATE_KEY_ERE = (
    "^-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----|^AGE-SECRET-KEY-1[A-Z0-9]{20,}"
)


class FileStats(FactBase):
    """Owner, group and mode of each path (None when missing).

    .. code:: python

        host.get_fact(FileStats, paths=("/etc/step-ca/secrets/root_ca_key",))
    """

    default = dict

    def command(self, paths: tuple[str, ...]) -> str:
        parts = [
            f"if [ -e {shlex.quote(p)} ]; then stat -c '%U %G %a %n' {shlex.quote(p)}; "
            f"else echo 'missing - - '{shlex.quote(p)}; fi"
            for p in paths
        ]
        return "; ".join(parts) + "; true" if parts else "true"

    def process(self, output: list[str]) -> dict[str, FileStat | None]:
        return parse_file_stats(output)


class UnitStates(FactBase):
    """Load/enable/active state and next/last run of systemd units (timers or services).

    .. code:: python

        host.get_fact(UnitStates, units=("step-renew-x-peer.timer",))
    """

    default = dict

    def command(self, units: tuple[str, ...]) -> str:
        props = (
            "Id,LoadState,UnitFileState,ActiveState,NextElapseUSecRealtime,LastTriggerUSec,Result"
        )
        parts = [
            f"echo '==> '{shlex.quote(u)}; "
            f"TZ=UTC systemctl show -p {props} {shlex.quote(u)} 2>/dev/null"
            for u in units
        ]
        return "; ".join(parts) + "; true" if parts else "true"

    def process(self, output: list[str]) -> dict[str, UnitState]:
        return parse_unit_states(output)


class PrivateKeyFiles(FactBase):
    """Paths of text files holding a private key below ``dirs`` (content never read back).

    .. code:: python

        host.get_fact(PrivateKeyFiles, dirs=("/etc/etcd/ssl", "/tmp"))
    """

    default = list

    def command(self, dirs: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(d) for d in dirs)
        return (
            f'for d in {quoted}; do [ -d "$d" ] && grep -rlsIE '
            "--exclude-dir=.ssh --exclude-dir=.gnupg -- "
            f'{shlex.quote(PRIVATE_KEY_ERE)} "$d"; done; true'
        )

    def process(self, output: list[str]) -> list[str]:
        return sorted({line for line in output if line.startswith("/")})


class CaSecretFiles(FactBase):
    """Paths of files named like CA secrets (``*_ca_key``, ``provisioner_password``,
    ``secrets/password``) on this host's own file systems below ``roots``.

    .. code:: python

        host.get_fact(CaSecretFiles, roots=("/etc", "/root", "/var", "/opt", "/tmp"))
    """

    default = list

    def command(self, roots: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(r) for r in roots)
        return (
            f'for d in {quoted}; do [ -d "$d" ] && find "$d" -xdev '
            f"{secret_find_expression()} -type f -print 2>/dev/null; done; true"
        )

    def process(self, output: list[str]) -> list[str]:
        return sorted({line for line in output if line.startswith("/")})


class UnitExposure(FactBase):
    """`systemd-analyze security` exposure level of each unit (0 best .. 10 worst); a unit
    that cannot be analysed is absent.

    .. code:: python

        host.get_fact(UnitExposure, units=("etcd.service",))
    """

    default = dict

    def command(self, units: tuple[str, ...]) -> str:
        parts = [
            f"echo {shlex.quote(u)} $(systemd-analyze security --no-pager {shlex.quote(u)} "
            "2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \\([0-9.]*\\).*/\\1/p')"
            for u in units
        ]
        return "; ".join(parts) + "; true" if parts else "true"

    def process(self, output: list[str]) -> dict[str, float]:
        found = {}
        for line in output:
            unit, _, score = line.partition(" ")
            try:
                found[unit] = float(score)
            except ValueError:
                continue
        return found
