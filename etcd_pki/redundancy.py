"""Pure helpers for CA redundancy: standby copies, failover and encrypted backups.

Why age and not gpg: the material is encrypted to a key that exists only for one
transfer (standbys) or to an operator's offline key (backups). age does exactly that
with X25519 and ChaCha20-Poly1305, its recipients are one line (`age1...`) that fit in
group_data, it has no keyring, trust model, agent or config to manage on servers, and
Debian ships it as the small package `age` (`age`, `age-keygen`). gpg would need a
keyring per host, key import steps and options to keep it from prompting.

No pyinfra import: the shell fragments are built here from plain values, and the unit
tests run them against real files.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from .shell import on_exit

# An age X25519 recipient: "age1" + bech32 data (58 characters for 32 bytes + checksum).
AGE_RECIPIENT_RE = re.compile(r"^age1[023456789acdefghjklmnpqrstuvwxyz]{58}$")
AGE_IDENTITY_RE = re.compile(r"^AGE-SECRET-KEY-1[023456789ACDEFGHJKLMNPQRSTUVWXYZ]{58}$")
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
BINARY_HEADER = b"age-encryption.org/v1\n"
# Marker line separating the identity from the backup on the restore's stdin.
STDIN_SEPARATOR = "--"
# Temporary directories on the nodes live in /run: a tmpfs, so an identity or a
# decrypted archive never reaches a disk there either.
NODE_TMP = "/run"
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


def digest_command(ca_dir: str, paths: Sequence[str]) -> str:
    """Print `material <sha256>` over the names and contents of ``paths`` (below
    ``ca_dir``), and `root <sha256 of certs/root_ca.crt | none>`. Only hashes leave."""
    files = " ".join(shlex.quote(p) for p in paths)
    d = shlex.quote(ca_dir)
    return (
        f"if cd {d} 2>/dev/null; then "
        f'm=$(for f in {files}; do if [ -f "$f" ]; then sha256sum "$f"; '
        'else echo "missing $f"; fi; done | sha256sum | cut -c1-64); '
        "if [ -f certs/root_ca.crt ]; then r=$(sha256sum certs/root_ca.crt | cut -c1-64); "
        'else r=none; fi; echo "material $m"; echo "root $r"; '
        "else echo 'material none'; echo 'root none'; fi"
    )


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


def encrypt_command(
    ca_dir: str,
    paths: Sequence[str],
    recipients: Iterable[str],
    db_service: str | None = None,
    optional: Sequence[str] = (),
) -> str:
    """tar the material below ``ca_dir`` and encrypt it with age (armored) to
    ``recipients``: only ciphertext on stdout, plaintext only inside the pipe.

    Files of ``optional`` go in when they exist. With ``db_service`` (backups) step-ca's
    database ``db/`` (issued certificates,
    revocations) is archived too; that service is stopped for the few moments the
    archive takes when it runs (a live badger database is not safe to copy) and
    started again whatever happens.
    """
    files = " ".join(shlex.quote(p) for p in paths if p not in optional)
    maybe = " ".join(shlex.quote(p) for p in paths if p in optional)
    rs = " ".join(f"-r {shlex.quote(r)}" for r in recipients)
    db, restart, start_again = "", "", ""
    if db_service:
        svc = shlex.quote(db_service)
        # On failure the trap starts it again; on success the script does, so that a
        # CA that does not come back makes the backup fail loudly. reset-failed first:
        # a deliberate restart must not count towards the unit's crash-loop start limit
        # (StartLimitBurst), or a few backups in a row leave the CA stopped. It fails for
        # a unit systemd has unloaded once stopped (nothing else references it): ignored.
        start = f"systemctl reset-failed {svc} 2>/dev/null || true; systemctl start {svc}"
        restart = f'; [ "$restart" = 0 ] || {{ {start}; }}'
        start_again = f'; if [ "$restart" = 1 ]; then restart=0; {start}; fi'
        db = (
            "if [ -d db ]; then dbs=db; "
            f"if systemctl is-active --quiet {svc}; then restart=1; systemctl stop {svc}; fi; "
            "fi; "
        )
    cleanup = 'rm -rf "$t"' + restart
    return (
        f"set -e; umask 077; t=$(mktemp -d {NODE_TMP}/etcd-pki-tar.XXXXXX); restart=0; dbs=; "
        f"{on_exit(cleanup)}; "
        f"cd {shlex.quote(ca_dir)}; "
        f'for f in {files}; do [ -f "$f" ] || {{ echo "CA material incomplete: '
        f'{ca_dir}/$f is missing" >&2; exit 3; }}; done; '
        f"{db}"
        f'opt=; for f in {maybe}; do [ ! -f "$f" ] || opt="$opt $f"; done; '
        f'{{ tar -cz --owner=0 --group=0 --numeric-owner {files} $opt $dbs; echo $? > "$t/rc"; }} '
        f'| age -a {rs}; [ "$(cat "$t/rc")" = 0 ]{start_again}'
    )


def restore_db_script(ca_dir: str, owner: str, group: str, service: str) -> str:
    """Shell fragment: install the archive's ``db/`` (in ``$t/m``) as step-ca's database
    when the node has none or an empty one; print ``__restoredb__ restored|kept|absent``.

    A database with records is kept: it may hold revocations newer than the backup.
    """
    d = shlex.quote(f"{ca_dir}/db")
    new = shlex.quote(f"{ca_dir}/db.restore-new")
    return (
        'if [ ! -d "$t/m/db" ]; then echo "__restoredb__ absent"; '
        f'elif [ -n "$(ls -A {d} 2>/dev/null)" ]; then echo "__restoredb__ kept"; else '
        f"systemctl stop {shlex.quote(service)} 2>/dev/null || true; rm -rf {new}; "
        f'cp -R "$t/m/db" {new}; chown -R {owner}:{group} {new}; chmod 700 {new}; '
        f"find {new} -type f -exec chmod 600 {{}} +; rm -rf {d}; mv {new} {d}; "
        'echo "__restoredb__ restored"; fi'
    )


def install_material_script(
    ca_dir: str,
    files: Sequence[tuple[str, str, str, str]],
    dirs: Sequence[tuple[str, str, str, str]],
    optional: Sequence[str] = (),
) -> str:
    """Shell fragment: install the decrypted material from ``$t/m`` into ``ca_dir``.

    ``files``/``dirs`` are (path, owner, group, mode) with real user names. Every file
    but the ``optional`` ones must be in the archive; each one is installed with its
    owner and mode under a temporary name, then renamed into place. Prints ``unchanged``
    when every file was already identical (nothing is touched then), else ``installed``.
    """
    d = shlex.quote(ca_dir)
    required = [f[0] for f in files if f[0] not in optional]
    lines = [
        f"for f in {' '.join(shlex.quote(f) for f in required)}; do "
        '[ -f "$t/m/$f" ] || { echo "the archive lacks $f" >&2; exit 4; }; done',
        'same=1; for f in {}; do [ -f "$t/m/$f" ] || continue; '
        'cmp -s "$t/m/$f" {}/"$f" || same=0; done'.format(
            " ".join(shlex.quote(f[0]) for f in files), d
        ),
        'if [ "$same" = 1 ]; then echo unchanged; else :',
    ]
    for path, owner, group, mode in dirs:
        full = f"{ca_dir}/{path}".rstrip("/")
        q = shlex.quote(full)
        lines.append(f"mkdir -p {q}; chown {owner}:{group} {q}; chmod {mode} {q}")
    for path, owner, group, mode in files:
        target = shlex.quote(f"{ca_dir}/{path}")
        tmp = shlex.quote(f"{ca_dir}/{path}.restore-new")
        install = (
            f'install -o {owner} -g {group} -m {mode} "$t/m/{path}" {tmp} && mv -f {tmp} {target}'
        )
        # An optional file an older archive lacks: the node's own is kept.
        lines.append(
            f'if [ -f "$t/m/{path}" ]; then {install}; fi' if path in optional else install
        )
    lines.append("echo installed; fi")
    return "; ".join(lines)


def set_dns_names_command(ca_json: str, names: Sequence[str]) -> str:
    """Replace the first (top-level) `dnsNames` array of ca.json with ``names``.

    ca.json stays on the node: awk rewrites it into a temporary file with the same
    owner and mode, which is renamed into place. Exit 3 (file untouched) when no
    `dnsNames` array is found. ``names`` are validated DNS names and IPs (no quotes).
    """
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9.:*-]+", name):
            raise ValueError(f"not a DNS name or IP: {name!r}")
    f = shlex.quote(ca_json)
    program = (
        "function emit(pre, indent, tail, multi,  i, n, parts) {"
        ' n = split(names, parts, " "); printf "%s\\"dnsNames\\": [", pre;'
        " for (i = 1; i <= n; i++) {"
        '  if (multi) printf "\\n%s\\t", indent; else if (i > 1) printf " ";'
        '  printf "\\"%s\\"%s", parts[i], (i < n ? "," : "") }'
        ' if (multi) printf "\\n%s", indent; print "]" tail }'
        ' skipping { e = index($0, "]"); if (e) { emit(pre, indent, substr($0, e + 1), 1);'
        " skipping = 0 } next }"
        ' !done && match($0, /"dnsNames"[ \\t]*:[ \\t]*\\[/) {'
        " done = 1; pre = substr($0, 1, RSTART - 1); rest = substr($0, RSTART + RLENGTH);"
        " match(pre, /^[ \\t]*/); indent = substr(pre, 1, RLENGTH);"
        ' e = index(rest, "]"); if (e) { emit(pre, indent, substr(rest, e + 1), 0); next }'
        " skipping = 1; next }"
        " { print }"
        " END { if (!done || skipping) exit 3 }"
    )
    return (
        f"set -e; tmp=$(mktemp {f}.XXXXXX); trap 'rm -f \"$tmp\"' EXIT; "
        f'awk -v names={shlex.quote(" ".join(names))} {shlex.quote(program)} {f} > "$tmp"; '
        f'chown --reference={f} "$tmp"; chmod --reference={f} "$tmp"; mv -f "$tmp" {f}; '
        "trap - EXIT"
    )


def set_ca_url_command(defaults_json: str, url: str) -> str:
    """Point `ca-url` in step's defaults.json at ``url`` (same owner and mode)."""
    if not re.fullmatch(r"https://[A-Za-z0-9.:\[\]-]+", url):
        raise ValueError(f"unexpected CA URL {url!r}")
    f = shlex.quote(defaults_json)
    expr = f's|^\\([ \\t]*"ca-url"[ \\t]*:[ \\t]*"\\)[^"]*\\("\\)|\\1{url}\\2|'
    return (
        f"set -e; grep -q '\"ca-url\"' {f}; tmp=$(mktemp {f}.XXXXXX); "
        "trap 'rm -f \"$tmp\"' EXIT; "
        f'sed {shlex.quote(expr)} {f} > "$tmp"; '
        f'chown --reference={f} "$tmp"; chmod --reference={f} "$tmp"; mv -f "$tmp" {f}; '
        "trap - EXIT"
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
    """The operator's MAC key from ``path``; ValueError (without quoting it) when it is
    missing, short, or readable by others."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        key = p.read_bytes().strip()
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
