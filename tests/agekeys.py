"""age X25519 key pairs made in Python, for tests (the controller need not have age).

An age identity is the bech32 encoding (HRP ``AGE-SECRET-KEY-``, upper case) of an
X25519 private key; its recipient is the bech32 encoding (HRP ``age``) of the public
key, as in https://age-encryption.org/v1. The e2e tests check these with the real
`age` on the nodes.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GEN):
            chk ^= gen if (top >> i) & 1 else 0
    return chk


def _convert_bits(data: bytes) -> list[int]:
    acc, bits, out = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def bech32(hrp: str, data: bytes) -> str:
    """Plain bech32 (not bech32m), without the 90-character limit, as age uses it."""
    hrp = hrp.lower()
    words = _convert_bits(data)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _polymod(expanded + words + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def generate() -> tuple[str, str]:
    """(identity ``AGE-SECRET-KEY-1...``, recipient ``age1...``) of a new X25519 key."""
    key = X25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return bech32("AGE-SECRET-KEY-", private).upper(), bech32("age", public)


def write_identity(path: Path, identity: str, comment: str = "") -> Path:
    """Write ``identity`` to ``path``, mode 0600 from the start (as age-keygen does)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# {comment}\n{identity}\n" if comment else f"{identity}\n")
    return path
