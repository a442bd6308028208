"""Validators for values that reach a shell command, a unit file or an environment file.

Python's own parsers accept more than those places can take: `urllib.parse` takes
quotes, spaces and `$(...)` in a path, `ipaddress` takes an IPv6 zone (`fe80::1%eth0`).
Each value is held to the characters its field needs, here, once.
"""

from __future__ import annotations

import ipaddress
import re

# scheme://host[:port][/path]: letters, digits and `._~%+-/` in the path; no user, query
# or fragment. A host is a DNS name, an IPv4 address or a bracketed IPv6 address.
_URL_RE = re.compile(
    r"^(?P<scheme>https?)://(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:(?P<port>\d{1,5}))?"
    r"(?P<path>/[A-Za-z0-9._~%+/-]*)?$"
)
# A systemd unit (and service) name, also what the cluster's name becomes on disk.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Free text written into step's own certificates (the CA's name): no quotes, no shell.
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$")


def url_problem(value: object, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """Why ``value`` is not a plain URL of ``schemes`` (for a message), or None."""
    match = _URL_RE.match(str(value or ""))
    if not match or match.group("scheme") not in schemes:
        kinds = "http(s)://" if schemes == ("http", "https") else "/".join(schemes)
        return (
            f"must be an {kinds} URL of host[:port] and a path of letters, digits and "
            "._~%+-/ (no user, query, quotes or spaces)"
        )
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        return f"port {port} is out of range"
    host = match.group("host")
    if host.startswith("[") and plain_ip(host[1:-1]) is None:
        return f"{host} is not an IPv6 address"
    return None


def plain_ip(value: object) -> str | None:
    """``value`` as a plain IPv4 or IPv6 address (normalised), else None: no zone
    (`%eth0`), no surrounding space, nothing `ipaddress` accepts beyond the plain forms."""
    text = str(value)
    if not re.fullmatch(r"[0-9A-Fa-f.:]+", text):
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def systemd_quoted(text: str) -> str:
    """``text`` as one argument of an Exec line of a unit file, arriving unchanged: in
    double quotes, with systemd's specifiers (`%`), variables (`$`), backslashes and
    quotes escaped. ValueError for a control character (a unit file line cannot hold it).
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("a control character (a newline, a tab) cannot be in a unit file")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'
