"""etcd's role-based access control from certificate identity (`etcd_auth`), as data.

With client certificate authentication, etcd takes a request's user from the common name
of the client's certificate: no password is involved. The deploy owns etcd's users and
roles while `etcd_auth` is enabled: the `root` user and every member's own client
certificate (NAME-client) have the root role (the deploy and operators on the members
administer the cluster with them); each user of `etcd_auth["users"]` has exactly its
roles; each role of `etcd_auth["roles"]` exactly its key prefixes. Users and roles not
declared are removed. Disabled again, authentication is turned off and the users and
roles are left as they are (unused).

No pyinfra import: `wanted` and `changes` are pure; etcd_pki/commands/etcd.py builds the
shell, tasks/etcd_access.py runs it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ROOT = "root"
PERMISSIONS = ("read", "write", "readwrite")
# etcd's JSON: permType omitted for READ (0).
_PERM_TYPES = {0: "read", 1: "write", 2: "readwrite"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Key prefixes reach etcdctl's command line: printable, no spaces or shell characters.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9/._:@=+-]{1,200}$")
DEFAULT = {"enabled": False, "roles": {}, "users": {}}

Grant = tuple[str, str, str]  # (key, range end, permission)


def prefix_end(prefix: str) -> str:
    """The range end that makes ``[prefix, end)`` every key starting with ``prefix``
    (etcd's own rule; our prefixes are ASCII)."""
    data = bytearray(prefix.encode())
    for i in range(len(data) - 1, -1, -1):
        if data[i] < 0xFF:
            data[i] += 1
            return bytes(data[: i + 1]).decode()
    return "\0"


def problems(name: str, value: Any) -> list[str]:
    """What is wrong with an `etcd_auth` value (the check of the setting alone)."""
    if not isinstance(value, Mapping):
        return [f"`{name}` must be a dict with 'enabled', 'roles' and 'users'"]
    out = []
    unknown = set(value) - set(DEFAULT)
    if unknown:
        out.append(f"`{name}` has unknown keys {sorted(unknown)} (known: enabled, roles, users)")
    if not isinstance(value.get("enabled", False), bool):
        out.append(f"`{name}['enabled']` must be True or False")
    roles = value.get("roles", {})
    if not isinstance(roles, Mapping):
        return [*out, f"`{name}['roles']` must map role names to {{prefix: permission}}"]
    for role, prefixes in roles.items():
        where = f"`{name}['roles'][{role!r}]`"
        if not isinstance(role, str) or not _NAME_RE.match(role) or role == ROOT:
            out.append(f"{where}: a role name of [A-Za-z0-9._-] (not 'root': members have it)")
        if not isinstance(prefixes, Mapping) or not prefixes:
            out.append(f"{where} must map key prefixes to 'read', 'write' or 'readwrite'")
            continue
        for prefix, permission in prefixes.items():
            if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
                out.append(f"{where}: key prefix {prefix!r} must be 1-200 of [A-Za-z0-9/._:@=+-]")
            if permission not in PERMISSIONS:
                out.append(f"{where}[{prefix!r}] = {permission!r}: one of {', '.join(PERMISSIONS)}")
    users = value.get("users", {})
    if not isinstance(users, Mapping):
        return [*out, f"`{name}['users']` must map certificate common names to role lists"]
    for user, granted in users.items():
        where = f"`{name}['users'][{user!r}]`"
        if not isinstance(user, str) or not _NAME_RE.match(user) or user == ROOT:
            out.append(f"{where}: a certificate common name of [A-Za-z0-9._-], not 'root'")
        if not isinstance(granted, list | tuple) or not all(isinstance(r, str) for r in granted):
            out.append(f"{where} must be a list of role names")
            continue
        for role in granted:
            if role not in roles:
                out.append(f"{where}: role {role!r} is not in `{name}['roles']`")
    return out


@dataclass(frozen=True)
class Access:
    """etcd's authentication, users and roles (wanted, or found on the cluster)."""

    enabled: bool
    users: Mapping[str, frozenset[str]] = field(default_factory=dict)  # user -> roles
    roles: Mapping[str, frozenset[Grant]] = field(default_factory=dict)  # role -> grants


def wanted(config: Mapping[str, Any], admins: Iterable[str]) -> Access:
    """What `etcd_auth` asks for; ``admins``: the members' client certificate names."""
    if not config.get("enabled"):
        return Access(enabled=False)
    roles = {
        role: frozenset((p, prefix_end(p), perm) for p, perm in prefixes.items())
        for role, prefixes in config.get("roles", {}).items()
    }
    users = {user: frozenset(granted) for user, granted in config.get("users", {}).items()}
    for admin in (ROOT, *admins):
        users[admin] = frozenset({ROOT})
    return Access(True, users, {ROOT: frozenset(), **roles})


def parse_state(lines: Iterable[str]) -> Access | None:
    """The `access_state_command` output; None when etcd did not answer."""
    enabled, users, roles, answered = False, {}, {}, False
    for line in lines:
        kind, _, rest = line.partition("\t")
        name, _, text = rest.partition("\t") if kind in ("user", "role") else ("", "", rest)
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            return None
        if kind == "status":
            answered, enabled = True, bool(data.get("enabled", False))
        elif kind == "user":
            users[name] = frozenset(data.get("roles") or ())
        elif kind == "role":
            roles[name] = frozenset(_grant(p) for p in data.get("perm") or ())
    return Access(enabled, users, roles) if answered else None


def _grant(perm: Mapping[str, Any]) -> Grant:
    def text(key: str) -> str:
        return base64.b64decode(perm.get(key) or "").decode(errors="replace")

    return text("key"), text("range_end"), _PERM_TYPES.get(perm.get("permType", 0), "?")


def changes(want: Access, have: Access) -> list[list[str]]:
    """The etcdctl argument lists that turn ``have`` into ``want``, in an order etcd
    accepts (a role before its grants, users and their roles before `auth enable`).
    With ``want`` disabled: only `auth disable`, when it is enabled."""
    if not want.enabled:
        return [["auth", "disable"]] if have.enabled else []
    out: list[list[str]] = []
    for role, grants in sorted(want.roles.items()):
        held = have.roles.get(role)
        if held is None:
            out.append(["role", "add", role])
            held = frozenset()
        for key, end, _ in sorted(held - grants):
            if (key, end) not in {(k, e) for k, e, _ in grants}:
                out.append(["role", "revoke-permission", role, key, *([end] if end else [])])
        for key, end, perm in sorted(grants - held):
            out.append(["role", "grant-permission", role, perm, key, end])
    for user, granted in sorted(want.users.items()):
        held_roles = have.users.get(user)
        if held_roles is None:
            out.append(["user", "add", user, "--no-password"])
            held_roles = frozenset()
        for role in sorted(held_roles - granted):
            out.append(["user", "revoke-role", user, role])
        for role in sorted(granted - held_roles):
            out.append(["user", "grant-role", user, role])
    for user in sorted(set(have.users) - set(want.users)):
        out.append(["user", "delete", user])
    for role in sorted(set(have.roles) - set(want.roles)):
        out.append(["role", "delete", role])
    if not have.enabled:
        out.append(["auth", "enable"])
    return out
