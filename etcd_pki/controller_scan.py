"""The audit of the controller itself: private keys and CA secrets in the project and the
temp directories (read-only, local files only)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from etcd_pki.observation import is_ca_secret

from .findings import CONTROLLER, Finding

_PEM_PRIVATE = re.compile(
    rb"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----\r?\n"
    rb"(?:[A-Za-z0-9-]+: [^\r\n]*\r?\n)*\r?\n?[A-Za-z0-9+/=]{40,}"
)


_OTHER_PRIVATE = (
    re.compile(rb"AGE-SECRET-KEY-1[A-Z0-9]{50,}"),
    # step-ca's JWK provisioner key (ca.json): a JWE in compact form, five parts.
    re.compile(
        rb'"encryptedKey"\s*:\s*"eyJ[\w-]{20,}\.[\w-]{20,}\.[\w-]{8,}\.[\w-]{40,}\.[\w-]{8,}"'
    ),
)


SKIP_DIRS = frozenset(
    {".git", ".venv", ".testbed", "__pycache__", ".ruff_cache", ".pytest_cache", "node_modules"}
)


MAX_SCAN_BYTES = 4_000_000


def private_material(data: bytes) -> str | None:
    """What kind of private material ``data`` holds, or None."""
    match = _PEM_PRIVATE.search(data)
    if match:
        return f"PEM {match.group(0).split(b'-----')[1].decode().removeprefix('BEGIN ')}"
    for pattern in _OTHER_PRIVATE:
        if pattern.search(data):
            return "age secret key" if pattern is _OTHER_PRIVATE[0] else "step JWK private key"
    return None


def _scan_file(path: Path) -> Finding | None:
    if is_ca_secret(str(path)):
        return Finding(CONTROLLER, str(path), "controller-private-key", "named like a CA secret")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SCAN_BYTES)
    except OSError:
        return None
    kind = private_material(data)
    if kind:
        return Finding(CONTROLLER, str(path), "controller-private-key", f"holds a {kind}")
    return None


def scan_controller(
    recursive: Iterable[str | Path],
    shallow: Iterable[str | Path] = (),
    skip: frozenset[str] = SKIP_DIRS,
) -> list[Finding]:
    """Private keys and CA secrets on the controller.

    ``recursive`` directories are walked (skipping directory names in ``skip``);
    ``shallow`` ones (the temp dirs, where pyinfra and Python's ``tempfile`` put their
    files) are read one level deep only, so other tools' private work areas are not
    reported. Symlinks are not followed.
    """
    found: list[Finding] = []
    for root in recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in skip]
            for fname in filenames:
                path = Path(dirpath) / fname
                if path.is_file() and not path.is_symlink():
                    finding = _scan_file(path)
                    if finding:
                        found.append(finding)
    for root in shallow:
        try:
            entries = list(Path(root).iterdir())
        except OSError:
            continue
        for path in entries:
            if path.is_file() and not path.is_symlink():
                finding = _scan_file(path)
                if finding:
                    found.append(finding)
    return sorted(set(found))
