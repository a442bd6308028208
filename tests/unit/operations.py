"""The harness of the operation fixtures (tests/operations/DECISION/CASE.json).

A fixture describes a host's state before a run in a few words; `snapshot_of` turns it
into the `Snapshot` a real run would read, `DECISIONS` runs the task's decision on it,
and `normalised` makes the operations readable (file contents shown by size, checksum
and first line instead of base64). See tests/operations/README.md.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import operator
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from etcd_pki.certs import CertOnHost
from etcd_pki.plan import ClusterPlan, HostPlan, build_plan
from facts.snapshot import PathInfo, Snapshot, Want

from .conftest import load_defaults, seed_hosts
from .pki_fixtures import NOW, Ca, good_cert  # noqa: F401 - NOW: the fixtures' clock

FIXTURES = Path(__file__).resolve().parents[1] / "operations"
PLANNED = "@planned"  # a file with the content the task would write

# One CA for every fixture: certificates are made for each case, from it.
CA = Ca(name="fixture-ca", seed=20261207)


def plan_of(fixture: dict) -> ClusterPlan:
    """The seed's cluster with ``fixture["data"]``: {host: settings}, "all" for every
    host; ``fixture["groups"]``: {host: [groups]} where they differ from the seed's."""
    data = dict(fixture.get("data", {}))
    everyone = data.pop("all", {})
    hosts = seed_hosts({**load_defaults(), **everyone}, **data)
    groups = fixture.get("groups", {})
    return build_plan(
        replace(h, groups=frozenset(groups[h.name])) if h.name in groups else h for h in hosts
    )


def _want(me: HostPlan) -> Want:
    from tasks.reads import READS

    return functools.reduce(operator.or_, (r(me) for r in READS), Want())


def snapshot_of(
    me: HostPlan, before: dict, planned: dict[str, str], modes: dict[str, str] | None = None
) -> Snapshot:
    """The Snapshot of ``before`` (see tests/operations/README.md) on host ``me``;
    ``planned`` maps paths to the text the task writes there (for "@planned"), ``modes``
    their modes where not 644."""
    snap = Snapshot(want=_want(me), complete=True)
    snap.contents = dict.fromkeys(snap.want.contents)
    snap.found = {key: [] for key in snap.want.finds}
    snap.found_dirs = {key: [] for key in snap.want.finds}
    for path, spec in before.get("paths", {}).items():
        kind, owner, mode = spec.split()
        user, _, group = owner.partition(":")
        kinds = {"file": "regular file", "dir": "directory", "link": "symbolic link"}
        snap.paths[path] = PathInfo(kinds[kind], user, group, int(mode))
    if before.get("as_planned"):  # every file the task writes, as it writes it
        for path in planned:
            mode = int((modes or {}).get(path, "644"))
            snap.paths[path] = PathInfo("regular file", "root", "root", mode)
            before = {**before, "text": {path: PLANNED, **before.get("text", {})}}
    for path, text in before.get("text", {}).items():
        text = planned[path] if text == PLANNED else text
        snap.sha1[path] = hashlib.sha1(text.encode()).hexdigest()
        snap.contents[path] = text
    for path, target in before.get("links", {}).items():
        snap.links[path] = target
    for unit, state in before.get("units", {}).items():
        snap.running[unit] = "running" in state.split()
        snap.enabled[unit] = "enabled" in state.split()
        snap.load_state[unit] = "not-found" if state == "not-found" else "loaded"
    for key, paths in before.get("found", {}).items():
        directory, _, pattern = key.partition(" ")
        snap.found[(directory, pattern)] = list(paths)
    for key, paths in before.get("found_dirs", {}).items():
        directory, _, pattern = key.partition(" ")
        snap.found_dirs[(directory, pattern)] = list(paths)
    snap.installed = set(before.get("packages", []))
    for user in before.get("users", []):
        snap.passwd[user["name"]] = [user["name"], "x", "999", user["gid"], "", user["home"],
                                     user["shell"]]  # fmt: skip
    snap.group_ids.update(before.get("groups", {}))
    return snap


def certs_of(me: HostPlan, before: dict) -> dict[str, CertOnHost | None]:
    """``before["certs"]``: {kind: "good" | "missing" | {"used": 0.9, "sans": [...]}},
    certificates from `CA` as of `NOW`; a kind not listed is missing."""
    found: dict[str, CertOnHost | None] = {}
    for cert in me.certs:
        spec = before.get("certs", {}).get(cert.kind, "missing")
        if spec == "missing":
            found[cert.name] = None
        else:
            options = {} if spec == "good" else dict(spec)
            if "sans" in options:
                options["sans"] = tuple(options["sans"])
            found[cert.name] = good_cert(CA, cert, **options)
    return found


_B64 = re.compile(r"printf %s ([A-Za-z0-9+/=]{24,}) \| base64 -d")


def _show_b64(match: re.Match) -> str:
    data = base64.b64decode(match.group(1))
    first = data.decode(errors="replace").splitlines()[0] if data else ""
    digest = hashlib.sha1(data).hexdigest()[:10]
    return f"printf %s <{len(data)} bytes, sha1 {digest}: {first[:40]!r}> | base64 -d"


def normalised(value: Any) -> Any:
    """JSON-able ``value`` with base64 file contents shown readably."""
    if isinstance(value, str):
        return _B64.sub(_show_b64, value)
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalised(v) for v in value]
    return value


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def save(path: Path, fixture: dict) -> None:
    path.write_text(json.dumps(fixture, indent=2) + "\n")


Decision = Callable[[dict], list[dict]]
