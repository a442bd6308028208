"""Read, with one command, the state of everything a task manages, before it runs.

Each `files.directory/file/link/template` operation loads 1-3 facts and each
`systemd.service` 2, one command (one round trip) each, even when there is nothing to
do. A task reads a `Snapshot` of its paths and units once, at prepare time, and emits
only the operations whose state differs; the operations themselves are unchanged.
Public material only: no file's content or checksum is read unless it is listed in
`contents`/`sha1`, and those are for public files (certificates, units, configs).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyinfra.api import FactBase

# pyinfra's own definitions (pyinfra.facts.systemd.SystemdStatus / SystemdEnabled).
RUNNING_STATES = ("running", "waiting", "exited", "listening", "mounted")
ENABLED_STATES = ("enabled", "static")


@dataclass(frozen=True)
class Want:
    """What to read on one host."""

    stat: frozenset[str] = frozenset()  # type, owner, group, mode
    sha1: frozenset[str] = frozenset()  # checksum (public files only)
    links: frozenset[str] = frozenset()  # symlink target
    contents: frozenset[str] = frozenset()  # full text (public files only)
    units: frozenset[str] = frozenset()  # systemd SubState / UnitFileState
    finds: frozenset[tuple[str, str]] = frozenset()  # (directory, name glob), depth 1
    users: frozenset[str] = frozenset()  # /etc/passwd entry (gid, home, shell)
    groups: frozenset[str] = frozenset()  # /etc/group entry (gid)
    packages: frozenset[str] = frozenset()  # Debian packages (installed or not)
    commands: frozenset[tuple[str, str]] = frozenset()  # (key, read-only command): output

    @classmethod
    def of(cls, **paths: Iterable) -> Want:
        """``Want.of(stat=[...], units={...})``: any iterables, frozen."""
        return cls(**{k: frozenset(v) for k, v in paths.items()})

    def __or__(self, other: Want) -> Want:
        return Want(**{k: v | getattr(other, k) for k, v in vars(self).items()})

    def covers(self, other: Want) -> bool:
        """Everything ``other`` asks for is read by this one too."""
        return all(v <= getattr(self, k) for k, v in vars(other).items())

    def __str__(self) -> str:  # pyinfra prints fact arguments in its log
        counts = {k: len(v) for k, v in vars(self).items() if v}
        return "Want(" + ", ".join(f"{k}={n}" for k, n in counts.items()) + ")"

    __repr__ = __str__


@dataclass(frozen=True)
class PathInfo:
    kind: str  # stat %F: "regular file", "regular empty file", "directory", "symbolic link"
    user: str
    group: str
    mode: int  # octal digits as an int (644), as in pyinfra's File/Directory facts


@dataclass
class Snapshot:
    """A host's paths and units as they were before the run.

    Each check answers "would this operation change nothing?" with pyinfra's own rules.
    Anything that was not asked for in the `Want` answers False: the caller then emits
    the operation, which checks for itself.
    """

    want: Want = field(default_factory=Want)
    paths: dict[str, PathInfo] = field(default_factory=dict)
    sha1: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    contents: dict[str, str | None] = field(default_factory=dict)
    running: dict[str, bool] = field(default_factory=dict)
    enabled: dict[str, bool] = field(default_factory=dict)
    load_state: dict[str, str] = field(default_factory=dict)  # systemd LoadState
    found: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # regular files
    found_dirs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    passwd: dict[str, list[str]] = field(default_factory=dict)  # name -> passwd fields
    group_ids: dict[str, str] = field(default_factory=dict)  # group name -> gid
    installed: set[str] = field(default_factory=set)  # Debian packages installed
    outputs: dict[str, list[str]] = field(default_factory=dict)  # key -> output lines
    complete: bool = False  # the output reached its end marker

    def _info(self, path: str) -> PathInfo | None:
        return self.paths.get(path) if path in self.want.stat else None

    @staticmethod
    def _owned(info: PathInfo, user, group, mode) -> bool:
        return (
            (mode is None or info.mode == int(str(mode), 10))
            and (user is None or info.user == user)
            and (group is None or info.group == group)
        )

    def is_directory(self, path: str, user=None, group=None, mode=None) -> bool:
        """`files.directory(path, user=, group=, mode=)` would change nothing."""
        info = self._info(path)
        return bool(info and info.kind == "directory" and self._owned(info, user, group, mode))

    def is_file(self, path: str, user=None, group=None, mode=None) -> bool:
        """`files.file(path, user=, group=, mode=, touch=False)` would change nothing."""
        info = self._info(path)
        return bool(
            info and info.kind.startswith("regular") and self._owned(info, user, group, mode)
        )

    def has_content(self, path: str, sha1: str, mode=None) -> bool:
        """`files.put/template` of content with this sha1 (and mode) would change nothing."""
        return (
            path in self.want.sha1 and self.sha1.get(path) == sha1 and self.is_file(path, mode=mode)
        )

    def has_text(self, path: str, text: str, mode=None) -> bool:
        """Writing ``text`` to ``path`` (with ``mode``) would change nothing."""
        return self.has_content(path, hashlib.sha1(text.encode()).hexdigest(), mode=mode)

    def is_absent(self, path: str) -> bool:
        """``path`` did not exist (False when that is not known for certain)."""
        return self.complete and path in self.want.stat and path not in self.paths

    def is_link(self, path: str, target: str) -> bool:
        """`files.link(path, target)` would change nothing."""
        info = self._info(path)
        return bool(
            path in self.want.links
            and info
            and info.kind == "symbolic link"
            and self.links.get(path) == target
        )

    def has_group(self, group: str) -> bool:
        """`server.group(group)` (no gid) would change nothing."""
        return group in self.want.groups and group in self.group_ids

    def has_user(self, user: str, group: str, home: str, shell: str) -> bool:
        """`server.user(user, group=, home=, shell=)` (no other groups, comment, password,
        keys or home creation) would change nothing."""
        fields = self.passwd.get(user) if user in self.want.users else None
        return bool(
            fields
            and group in self.want.groups
            and fields[3] == self.group_ids.get(group)
            and fields[5] == home
            and fields[6] == shell
        )

    def has_package(self, package: str) -> bool:
        """Debian package ``package`` is installed (as pyinfra's DebPackages lists it)."""
        return package in self.want.packages and package in self.installed

    def unit_is(self, unit: str, running: bool, enabled: bool) -> bool:
        """`systemd.service(unit, running=, enabled=)` would change nothing."""
        if unit not in self.want.units or unit not in self.running:
            return False
        return self.running[unit] == running and self.enabled.get(unit, False) == enabled

    def unit_running(self, unit: str) -> bool:
        """systemd had ``unit`` active (running), enabled or not."""
        return unit in self.want.units and self.running.get(unit) is True

    def unit_not_loaded(self, unit: str) -> bool:
        """systemd had no ``unit`` loaded (LoadState not-found): a unit file written for it
        now is read when the unit is first used, with no daemon-reload."""
        return unit in self.want.units and self.load_state.get(unit) == "not-found"


class HostSnapshot(FactBase):
    """The raw output for a `Want`; `parse(output, want)` turns it into a `Snapshot`.

    .. code:: python

        parse(host.get_fact(HostSnapshot, want=want), want)
    """

    default = list

    def command(self, want: Want) -> str:
        q = shlex.quote
        parts = []
        if want.stat:
            paths = " ".join(q(p) for p in sorted(want.stat))
            parts += ["echo '==> stat'", f"stat --printf '%F|%U|%G|%a|%n\\n' {paths} 2>/dev/null"]
        if want.sha1:
            paths = " ".join(q(p) for p in sorted(want.sha1))
            parts += ["echo '==> sha1'", f"sha1sum {paths} 2>/dev/null"]
        for path in sorted(want.links):
            parts += [f"echo {q('==> link ' + path)}", f"readlink {q(path)}"]
        for path in sorted(want.contents):
            parts += [
                f"echo {q('==> content ' + path)}",
                f"[ -f {q(path)} ] && base64 -w0 {q(path)}; echo",
            ]
        for directory, pattern in sorted(want.finds):
            parts += [
                f"echo {q(f'==> find {directory} {pattern}')}",
                f"find {q(directory)} -mindepth 1 -maxdepth 1 -name {q(pattern)} "
                "\\( -type f -o -type d \\) -printf '%y %p\\n'",
            ]
        for kind, names in (("passwd", want.users), ("group", want.groups)):
            if names:
                pattern = "^(" + "|".join(re.escape(n) for n in sorted(names)) + "):"
                parts += [f"echo '==> {kind}'", f"grep -E {q(pattern)} /etc/{kind}"]
        if want.packages:
            names = " ".join(q(p) for p in sorted(want.packages))
            parts += [
                "echo '==> packages'",
                f"dpkg-query -W -f '${{db:Status-Abbrev}}|${{Package}}\\n' {names} 2>/dev/null",
            ]
        if want.units:
            units = " ".join(q(u) for u in sorted(want.units))
            parts += [
                "echo '==> units'",
                "command -v systemctl >/dev/null && systemctl show --all --property Id "
                f"--property LoadState --property SubState --property UnitFileState {units}",
            ]
        for key, command in sorted(want.commands):
            # A subshell: an `exit` in the command ends only its own part. Captured, so
            # output without a final newline (a file's `cat`) still ends its line; each
            # line marked with "|", so output that looks like a header is not one.
            parts += [
                f"echo {q('==> command ' + key)}",
                f"o=$( ( {command} ) 2>/dev/null ); "
                f"[ -z \"$o\" ] || printf '%s\\n' \"$o\" | sed 's/^/|/'",
            ]
        # A part fails when a path is missing: go on, and succeed as a whole. The end
        # marker tells a complete answer from one cut short.
        parts.append("echo '==> end'")
        return "; ".join(f"{{ {p}; }}" for p in parts) + "; true"

    def process(self, output: list[str]) -> list[str]:
        return list(output)


def parse(output: Iterable[str], want: Want) -> Snapshot:
    """The `Snapshot` in the output of `HostSnapshot.command(want)`."""
    snap = Snapshot(want=want)
    snap.contents = dict.fromkeys(want.contents)
    snap.found = {key: [] for key in want.finds}
    snap.found_dirs = {key: [] for key in want.finds}
    sections: list[tuple[str, str, list[str]]] = []
    for line in output:
        if line.startswith("==> "):
            kind, _, arg = line[4:].partition(" ")
            sections.append((kind, arg, []))
        elif sections:
            sections[-1][2].append(line)
    for kind, arg, lines in sections:
        if kind == "stat":
            for line in lines:
                ftype, user, group, mode, name = line.split("|", 4)
                snap.paths[name] = PathInfo(ftype, user, group, int(mode))
        elif kind == "sha1":
            for line in lines:
                digest, _, name = line.partition("  ")
                snap.sha1[name] = digest
        elif kind == "link" and lines:
            snap.links[arg] = lines[0]
        elif kind == "content":
            text = base64.b64decode("".join(lines)).decode() if "".join(lines) else ""
            # The text pyinfra's line-based facts return (facts.pki.PublicFile).
            snap.contents[arg] = (text if text.endswith("\n") else text + "\n") if text else None
        elif kind == "find":
            directory, _, pattern = arg.partition(" ")
            for line in lines:
                kind, _, path = line.partition(" ")
                found = {"f": snap.found, "d": snap.found_dirs}.get(kind)
                if found is not None and path:
                    found.setdefault((directory, pattern), []).append(path)
        elif kind == "passwd":  # name:x:uid:gid:comment:home:shell, as pyinfra's Users
            for line in lines:
                fields = line.split(":")
                if len(fields) == 7:
                    snap.passwd[fields[0]] = fields
        elif kind == "group":
            for line in lines:
                fields = line.split(":")
                if len(fields) >= 3:
                    snap.group_ids[fields[0]] = fields[2]
        elif kind == "end":
            snap.complete = True
        elif kind == "command":
            snap.outputs[arg] = [line[1:] for line in lines if line.startswith("|")]
        elif kind == "packages":
            for line in lines:
                status, _, name = line.partition("|")
                if status.startswith("ii"):
                    snap.installed.add(name.partition(":")[0])
        elif kind == "units":
            # One block of KEY=VALUE lines per unit, blocks separated by a blank line.
            block: dict[str, str] = {}
            for line in [*lines, ""]:
                if line.strip():
                    key, _, value = line.strip().partition("=")
                    block[key] = value
                elif "Id" in block:
                    unit = block["Id"]
                    snap.running[unit] = block.get("SubState") in RUNNING_STATES
                    snap.enabled[unit] = block.get("UnitFileState") in ENABLED_STATES
                    snap.load_state[unit] = block.get("LoadState", "")
                    block = {}
    return snap
