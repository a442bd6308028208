"""Pure helpers for CA redundancy: standby copies, failover and encrypted backups.

Why age and not gpg: the material is encrypted to a key that exists only for one
transfer (standbys) or to an operator's offline key (backups). age does exactly that
with X25519 and ChaCha20-Poly1305, its recipients are one line (`age1...`) that fit in
group_data, it has no keyring, trust model, agent or config to manage on servers, and
Debian ships it as the small package `age` (`age`, `age-keygen`). gpg would need a
keyring per host, key import steps and options to keep it from prompting.

No pyinfra import; the shell commands are in etcd_pki/commands/backup.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shlex
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

# An age X25519 recipient: "age1" + bech32 data (58 characters for 32 bytes + checksum).
AGE_RECIPIENT_RE = re.compile(r"^age1[023456789acdefghjklmnpqrstuvwxyz]{58}$")
AGE_IDENTITY_RE = re.compile(r"^AGE-SECRET-KEY-1[023456789ACDEFGHJKLMNPQRSTUVWXYZ]{58}$")
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
BINARY_HEADER = b"age-encryption.org/v1\n"
BACKUP_SUFFIX = ".tar.age"


def recipient_problems(values: object) -> list[str]:
    """Problems with the `backup_recipients` setting (a list of age public keys)."""
    if not isinstance(values, list | tuple):
        return ["`backup_recipients` must be a list of age public keys (age1...)"]
    problems = []
    for value in values:
        text = str(value).strip()
        if isinstance(value, str) and AGE_RECIPIENT_RE.match(text):
            continue
        if text.upper().startswith("AGE-SECRET-KEY-"):
            # Never echo a secret key; tell the operator what happened instead.
            problems.append(
                "`backup_recipients` holds an age SECRET key (AGE-SECRET-KEY-...): put only "
                "public keys there (`age-keygen -y KEYFILE`) and treat that secret key as exposed"
            )
            continue
        shown = text if len(text) <= 24 else f"{text[:16]}..."
        problems.append(
            f"`backup_recipients` entry {shown!r} is not an age public key "
            "(age1 followed by 58 characters, as `age-keygen -y KEYFILE` prints it)"
        )
    if len({str(v).strip() for v in values}) != len(values):
        problems.append("`backup_recipients` lists the same key twice")
    return problems


def identity_lines(text: str) -> list[str]:
    """The `AGE-SECRET-KEY-1...` lines of an age identity file; comments are dropped.

    Raises ValueError (without quoting the file) when there is none or a line is broken.
    """
    keys = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not AGE_IDENTITY_RE.match(line):
            raise ValueError(
                f"line {number} is neither a comment nor an age identity (AGE-SECRET-KEY-1...)"
            )
        keys.append(line)
    if not keys:
        raise ValueError("no age identity (AGE-SECRET-KEY-1...) in the file")
    return keys


def is_age_file(data: bytes) -> bool:
    """True for an age file, ASCII-armored or binary (checked on the header only)."""
    return data.lstrip().startswith(ARMOR_BEGIN.encode()) or data.startswith(BINARY_HEADER)


def backup_filename(ca_name: str, node: str, when: datetime) -> str:
    """Timestamped name of a backup: ``etcd-default-ca_etcd-k8s-1_20250101T030000Z.tar.age``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", ca_name)
    return f"{safe}_{node}_{when:%Y%m%dT%H%M%SZ}{BACKUP_SUFFIX}"


def parse_digests(text: str) -> tuple[str, str]:
    """(material, root) from :func:`digest_command`'s output."""
    found = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key in ("material", "root") and value:
            found[key] = value
    if set(found) != {"material", "root"}:
        raise ValueError(f"unexpected digest output: {text.strip()[:200]!r}")
    return found["material"], found["root"]


def parse_retired_roots(text: str) -> frozenset[str]:
    """The sha256 of each root a rotation retired, from :func:`digest_command`'s output."""
    return frozenset(
        line.split()[1] for line in text.splitlines() if line.startswith("retired ") and " " in line
    )


def dns_names_fact_command(ca_json: str) -> str:
    """Print the lines of ca.json's first `dnsNames` array (nothing else of the file),
    then `__ca__`; print nothing when there is no ca.json."""
    f = shlex.quote(ca_json)
    program = (
        '!f && /"dnsNames"[ \\t]*:/ { f = 1; sub(/.*"dnsNames"[ \\t]*:[ \\t]*\\[/, "") }'
        ' f { e = index($0, "]"); if (e) { print substr($0, 1, e - 1); exit } print }'
    )
    return f"if [ -f {f} ]; then awk {shlex.quote(program)} {f}; echo __ca__; fi; true"


def parse_dns_names(lines: Iterable[str]) -> list[str] | None:
    """The names printed by :func:`dns_names_fact_command`; None when there is no ca.json."""
    lines = list(lines)
    if "__ca__" not in lines:
        return None
    text = "\n".join(line for line in lines if line != "__ca__")
    return re.findall(r'"([^"]*)"', text)


def defaults_ca_url(text: str | None) -> str | None:
    """`ca-url` in a defaults.json text (None if missing or unreadable)."""
    try:
        value = json.loads(text or "").get("ca-url")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# --- authenticated backups ------------------------------------------------------------
# Anyone who knows the public age recipient can make a backup that decrypts; a MAC with a
# key only the operator holds (`backup_mac_key_file`, on the controller) tells theirs apart.
MAC_SUFFIX = ".mac"
MAC_PREFIX = "hmac-sha256 "
MIN_MAC_KEY = 32


def mac_key(path: str) -> bytes:
    """The operator's MAC key from ``path``: the file's bytes as they are (random bytes
    may be whitespace too); ValueError (without quoting it) when it is missing, short,
    or readable by others."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        key = p.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {p}: {e.strerror}") from None
    if mode & 0o077:
        raise ValueError(f"{p} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    if len(key) < MIN_MAC_KEY:
        raise ValueError(f"{p} holds {len(key)} bytes; use {MIN_MAC_KEY} or more random bytes")
    return key


def backup_mac(key: bytes, data: bytes) -> str:
    """The line stored beside a backup: HMAC-SHA256 of its bytes under ``key``."""
    return MAC_PREFIX + hmac.new(key, data, hashlib.sha256).hexdigest() + "\n"


def mac_matches(key: bytes, data: bytes, line: str) -> bool:
    return hmac.compare_digest(backup_mac(key, data).strip(), line.strip())
