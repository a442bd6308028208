"""One check per kind of setting value: ``check(name, value)`` returns the problems.

The `Settings` fields (etcd_pki/settings.py) name the check of each setting; checks that
need two or more settings stay in ``settings._check_together``. No pyinfra import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from .fields import LABEL_RE, NAME_RE
from .redundancy import recipient_problems

Check = Callable[[str, Any], list[str]]

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Paths end up in unit files and shell commands: keep them boring.
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]+$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# The TLS 1.2 suites etcd (Go) knows that are forward secret and AEAD.
AEAD_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as ``17520h`` or ``1h30m``.

    >>> parse_duration("1h0m0s")
    3600.0
    """
    text = str(text).strip()
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration like 17520h, 90m or 1h30m")
    return total


def version(name: str, value: Any) -> list[str]:
    if not re.fullmatch(r"\d+\.\d+\.\d+", str(value)):
        return [f"`{name}` = {value!r} is not a version like 0.30.2"]
    return []


def sha256_pins(name: str, pins: Any) -> list[str]:
    if not isinstance(pins, dict):
        return [f"`{name}` must be a dict of arch -> sha256, got {type(pins).__name__}"]
    return [
        f"`{name}[{arch!r}]` is not a sha256 (64 lowercase hex characters): "
        f"{len(str(digest))} characters"
        for arch, digest in pins.items()
        if not _SHA256_RE.match(str(digest))
    ]


def one_of(*choices: str, unknown: bool = True) -> Check:
    """A check that the value is one of ``choices`` (a message that calls any other
    value unknown, or, with ``unknown=False``, only lists the choices)."""
    said = " is unknown;" if unknown else ":"

    def check(name: str, value: Any) -> list[str]:
        if value not in choices:
            return [f"`{name}` = {value!r}{said} use one of {choices}"]
        return []

    return check


def directory(name: str, value: Any) -> list[str]:
    """An absolute, boring path at least two levels deep (the deploy owns and fills it)."""
    text = str(value)
    parts = PurePosixPath(text).parts
    if not _SAFE_PATH_RE.match(text) or ".." in parts or "." in text.split("/"):
        return [f"`{name}` = {value!r} must be an absolute path of [A-Za-z0-9._-] without '..'"]
    if len(parts) < 3:
        # "/", "/etc", "/opt": the deploy owns and fills this directory.
        return [f"`{name}` = {value!r} is too close to / to be owned by this deploy"]
    return []


def user(name: str, value: Any) -> list[str]:
    return [] if _USER_RE.match(str(value)) else [f"`{name}` = {value!r} is not a valid user name"]


def port(name: str, value: Any) -> list[str]:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        return [f"`{name}` = {value!r} must be an integer 1..65535"]
    return []


def label(name: str, value: Any) -> list[str]:
    if not LABEL_RE.match(str(value)):
        return [f"`{name}` = {value!r}: use letters, digits, space, '.', '_', '-'"]
    return []


def unit_name(name: str, value: Any) -> list[str]:
    if not NAME_RE.match(str(value)):
        return [f"`{name}` = {value!r}: use letters, digits, '.', '_', '-' (no space)"]
    return []


def duration(name: str, value: Any) -> list[str]:
    try:
        parse_duration(value)
    except ValueError as e:
        return [f"`{name}`: {e}"]
    return []


def lifetime(name: str, value: Any) -> list[str]:
    """A duration longer than zero."""
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        return [f"`{name}`: {e}"]
    return [f"`{name}` = {value!r} must be longer than zero"] if seconds <= 0 else []


def ca_lifetime(name: str, value: Any) -> list[str]:
    """A root's or an intermediate's lifetime: a day or more, in hours like step's."""
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        return [f"`{name}`: {e}"]
    return [f"`{name}` = {value!r} must be 24h or more"] if seconds < 86400 else []


def crl_duration(name: str, value: Any) -> list[str]:
    """A duration of an hour or more."""
    try:
        if parse_duration(value) < 3600:
            return [f"`{name}` = {value!r} must be 1h or more"]
    except ValueError as e:
        return [f"`{name}`: {e}"]
    return []


def cipher_suites(name: str, suites: Any) -> list[str]:
    if not isinstance(suites, list | tuple) or not suites:
        return [f"`{name}` must be a non-empty list of cipher suite names"]
    return [
        f"`{name}` entry {suite!r} is not a forward secret AEAD suite "
        f"etcd knows; use some of {', '.join(AEAD_SUITES)}"
        for suite in suites
        if suite not in AEAD_SUITES
    ]


def percent(name: str, value: Any) -> list[str]:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 99:
        return [f"`{name}` = {value!r} must be an integer 1..99"]
    return []


def calendar(name: str, value: Any) -> list[str]:
    if not re.fullmatch(r"[0-9A-Za-z*:,./~ -]+", str(value)):
        return [f"`{name}` = {value!r} is not an OnCalendar spec"]
    return []


def shell_line(name: str, value: Any) -> list[str]:
    """One line of shell, or None."""
    if value is not None and (
        not isinstance(value, str)
        or not value.strip()
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        return [f"`{name}` must be one line of shell without control characters, or None"]
    return []


def boolean(name: str, value: Any) -> list[str]:
    return [] if isinstance(value, bool) else [f"`{name}` must be True or False, got {value!r}"]


def sans(name: str, value: Any) -> list[str]:
    return (
        [] if isinstance(value, list | tuple) else [f"`{name}` must be a list of DNS names / IPs"]
    )


def domain(name: str, value: Any) -> list[str]:
    """A DNS name, or empty for none."""
    if value and not is_dns_name(str(value)):
        return [f"`{name}` = {value!r} is not a valid DNS name"]
    return []


def age_recipients(name: str, value: Any) -> list[str]:
    return recipient_problems(value)


def controller_dir(name: str, value: Any) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return [f"`{name}` must name a directory on the controller"]
    return []


def controller_file(name: str, value: Any) -> list[str]:
    """A path on the controller, or '' for none."""
    return [] if isinstance(value, str) else [f"`{name}` must be a path on the controller, or ''"]


def is_dns_name(name: str) -> bool:
    """RFC 1123 host name (no wildcard): labels of letters, digits and inner hyphens."""
    if len(name) > 253 or not name:
        return False
    label = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
    labels = name.rstrip(".").split(".")
    return all(label.match(part) for part in labels) and not labels[-1].isdigit()
