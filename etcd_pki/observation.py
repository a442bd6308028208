"""What the audit and the status report read from a host, as data: observations and the
parsers of the read-only facts that gather them (tasks/audit.py, facts/audit.py)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .certs import CertOnHost
from .crl import CrlInfo

# File names of CA secrets as step-ca lays them out ($STEPPATH/secrets/...).
_SECRET_GLOBS = ("*_ca_key", "*/provisioner_password", "*/secrets/password")


@dataclass(frozen=True)
class FileStat:
    owner: str
    group: str
    mode: str  # octal digits as `stat -c %a` prints them


@dataclass(frozen=True)
class UnitState:
    """What `systemctl show` says about one unit."""

    unit: str
    loaded: bool
    enabled: str  # UnitFileState: enabled, disabled, static, "" (no unit file)
    active: str  # ActiveState: active, inactive, failed, ...
    next_run: datetime | None = None
    last_run: datetime | None = None
    result: str = ""  # Result of the last run: success, exit-code, timeout, ...


@dataclass(frozen=True)
class ExpectedFile:
    path: str
    owner: str
    group: str
    mode: str
    optional: bool = False  # only its owner and mode are checked, when it exists


@dataclass
class HostObservation:
    """Everything the audit read from one host (public material and metadata only)."""

    certs: Mapping[str, CertOnHost] = field(default_factory=dict)
    timers: Mapping[str, UnitState] = field(default_factory=dict)
    root_pem: str | None = None  # ssl_dir/root_ca.crt as found on the host
    stats: Mapping[str, FileStat | None] = field(default_factory=dict)
    ca_service: UnitState | None = None
    secret_files: Sequence[str] = ()
    private_key_files: Sequence[str] = ()
    crl: bytes | None = None  # an etcd member's installed CRL (DER)
    error: str | None = None  # facts could not be read at all


@dataclass(frozen=True)
class CaCrl:
    """The active CA's current CRL and the intermediate that signs it; ``previous`` the
    intermediate a rotation under way replaced (a member's CRL from it is still fine)."""

    crl: CrlInfo | None
    intermediate: str | None
    previous: tuple[str, ...] = ()


def parse_file_stats(lines: Iterable[str]) -> dict[str, FileStat | None]:
    """``stat -c '%U %G %a %n'`` lines (or ``missing - - PATH``) -> {path: FileStat|None}."""
    result: dict[str, FileStat | None] = {}
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) != 4:
            continue
        owner, group, mode, path = parts
        result[path] = None if owner == "missing" else FileStat(owner, group, mode)
    return result


def _timestamp(value: str) -> datetime | None:
    """A `systemctl show` time (run with TZ=UTC: ``Sun 2026-11-29 03:58:16 UTC``, or
    ``@1732768365`` with --timestamp=unix) -> aware datetime; empty or n/a -> None."""
    value = value.strip()
    try:
        if value.startswith("@"):
            return datetime.fromtimestamp(int(value[1:]), UTC)
        if value.endswith(" UTC"):
            return datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def parse_unit_states(lines: Iterable[str]) -> dict[str, UnitState]:
    """Sections ``==> UNIT`` followed by `systemctl show` KEY=VALUE lines."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in lines:
        if line.startswith("==> "):
            current = sections.setdefault(line[4:].strip(), {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return {
        unit: UnitState(
            unit=unit,
            loaded=props.get("LoadState") == "loaded",
            enabled=props.get("UnitFileState", ""),
            active=props.get("ActiveState", ""),
            next_run=_timestamp(props.get("NextElapseUSecRealtime", "")),
            last_run=_timestamp(props.get("LastTriggerUSec", "")),
            result=props.get("Result", ""),
        )
        for unit, props in sections.items()
    }


def secret_find_expression() -> str:
    """The `find` predicate matching CA secret file names (see :func:`is_ca_secret`)."""
    return (
        r"\( -name '*_ca_key' -o -name provisioner_password "
        r"-o -path '*/secrets/password' \)"
    )


def is_ca_secret(path: str) -> bool:
    """True for paths named like a step-ca key or password."""
    return any(fnmatch.fnmatch(path, g) for g in _SECRET_GLOBS)
