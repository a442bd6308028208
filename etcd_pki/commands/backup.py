"""The CA material between nodes and backups: digests (only hashes leave), age encryption
on the CA node, install on a standby or a restored node with CA_FILES' owners and modes,
and the restore of a backup. Temporary files live in /run (a tmpfs) and are removed on
exit, also when the shell is interrupted."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from .shell import on_exit

# Temporary directories on the nodes live in /run: a tmpfs, so an identity or a
# decrypted archive never reaches a disk there either.
NODE_TMP = "/run"
# Marker line separating the identity from the backup on the restore's stdin.
STDIN_SEPARATOR = "--"


def digest_command(ca_dir: str, paths: Sequence[str]) -> str:
    """Print `material <sha256>` over the names and contents of ``paths`` (below
    ``ca_dir``), `root <sha256 of certs/root_ca.crt | none>`, and `retired <sha256>` for
    each root a root rotation retired (retired/root_ca.*.crt). Only hashes leave."""
    files = " ".join(shlex.quote(p) for p in paths)
    d = shlex.quote(ca_dir)
    return (
        f"if cd {d} 2>/dev/null; then "
        f'm=$(for f in {files}; do if [ -f "$f" ]; then sha256sum "$f"; '
        'else echo "missing $f"; fi; done | sha256sum | cut -c1-64); '
        "if [ -f certs/root_ca.crt ]; then r=$(sha256sum certs/root_ca.crt | cut -c1-64); "
        'else r=none; fi; echo "material $m"; echo "root $r"; '
        'for f in retired/root_ca.*.crt; do [ -f "$f" ] && '
        'echo "retired $(sha256sum "$f" | cut -c1-64)"; done; true; '
        "else echo 'material none'; echo 'root none'; fi"
    )


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
    mirrored: Sequence[str] = (),
) -> str:
    """Shell fragment: install the decrypted material from ``$t/m`` into ``ca_dir``.

    ``files``/``dirs`` are (path, owner, group, mode) with real user names. Every file
    but the ``optional`` ones must be in the archive; each one is installed with its
    owner and mode under a temporary name, then renamed into place. An optional file the
    archive lacks is kept, unless it is ``mirrored`` (a rotation's files): then it goes.
    Prints ``unchanged`` when every file was already as in the archive (nothing is
    touched then), else ``installed``.
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
    if mirrored:  # a file the archive lacks but the node holds: not the same either
        lines.insert(
            -1,
            'for f in {}; do [ -f "$t/m/$f" ] || [ ! -e {}/"$f" ] || same=0; done'.format(
                " ".join(shlex.quote(f) for f in mirrored), d
            ),
        )
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
        if path in mirrored:
            lines.append(f'if [ -f "$t/m/{path}" ]; then {install}; else rm -f {target}; fi')
        elif path in optional:
            lines.append(f'if [ -f "$t/m/{path}" ]; then {install}; fi')
        else:
            lines.append(install)
    lines.append("echo installed; fi")
    return "; ".join(lines)


def one_time_key_command() -> str:
    """Make an age key pair for one transfer in a new private directory under /run;
    print the directory, then the public key (the identity stays there)."""
    return (
        f"set -e; umask 077; t=$(mktemp -d {NODE_TMP}/etcd-pki-sync.XXXXXX); "
        'age-keygen -o "$t/identity" 2>/dev/null; echo "$t"; age-keygen -y "$t/identity"'
    )


def receive_material_command(tmp: str, install_script: str) -> str:
    """Decrypt the material on stdin with the one-time identity in ``tmp`` (deleted once
    used), unpack it to ``$t/m`` and run ``install_script`` (`install_material_script`)."""
    return (
        f'set -e; umask 077; t={shlex.quote(tmp)}; mkdir "$t/m"; '
        'age -d -i "$t/identity" -o "$t/m.tar"; rm -f "$t/identity"; '
        'tar -x -C "$t/m" -f "$t/m.tar" --no-same-owner; ' + install_script
    )


def retire_command(ca_dir: str) -> str:
    """Move ``ca_dir`` aside (`.retired-TIMESTAMP`, with its database) without its keys
    and passwords, and remove step-ca's unit file."""
    d = shlex.quote(ca_dir)
    return (
        f'set -e; aside={d}.retired-$(date -u +%Y%m%dT%H%M%SZ); mv {d} "$aside"; '
        'rm -rf "$aside/secrets"; rm -f /etc/systemd/system/step-ca.service'
    )


def restore_command(
    ca_dir: str, trusted: str, force: bool, install_script: str, db_script: str
) -> str:
    """Restore a backup read from stdin: the identity's lines, `STDIN_SEPARATOR`, then
    the backup in base64. Decrypted in /run; refused (a `__restore__` line says why)
    when it cannot be decrypted, when its root is not ``trusted`` (a fingerprint; ""
    accepts any) or when the node holds another CA (moved aside with ``force``).
    ``install_script`` installs the material, ``db_script`` the database. Prints
    `__restore__ installed|unchanged`, then `__backup__` and the backup's root.
    """
    d = shlex.quote(ca_dir)
    return (
        f"set -e; umask 077; t=$(mktemp -d {NODE_TMP}/etcd-pki-restore.XXXXXX); "
        + on_exit('rm -rf "$t"')
        + "; "
        f'while IFS= read -r line; do [ "$line" = {STDIN_SEPARATOR} ] && break; '
        'printf \'%s\\n\' "$line" >> "$t/identity"; done; '
        'base64 -d > "$t/backup.age"; mkdir "$t/m"; '
        'if ! age -d -i "$t/identity" -o "$t/m.tar" "$t/backup.age" 2>"$t/err"; then '
        'echo "__restore__ cannot-decrypt $(head -c 300 "$t/err" | tr "\\n" " ")"; exit 0; fi; '
        'rm -f "$t/identity"; tar -x -C "$t/m" -f "$t/m.tar" --no-same-owner; '
        # The root the cluster trusts: a backup of another CA would cut every host off.
        f"want={shlex.quote(trusted)}; "
        'if [ -n "$want" ]; then fp=$(openssl x509 -in "$t/m/certs/root_ca.crt" -noout '
        "-fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f); "
        'if [ "$fp" != "$want" ]; then echo "__restore__ foreign-root $fp"; exit 0; fi; fi; '
        f"if [ -e {d}/config/ca.json ] || [ -e {d}/certs/root_ca.crt ]; then "
        f'if ! cmp -s "$t/m/certs/root_ca.crt" {d}/certs/root_ca.crt; then '
        f"if [ {1 if force else 0} != 1 ]; then echo '__restore__ different-ca'; "
        f"echo __existing__; cat {d}/certs/root_ca.crt 2>/dev/null || true; "
        'echo __backup__; cat "$t/m/certs/root_ca.crt"; exit 0; fi; '
        "systemctl stop step-ca.service 2>/dev/null || true; "
        f'aside={d}.replaced-$(date -u +%Y%m%dT%H%M%SZ); mv {d} "$aside"; '
        'echo "__restore__ moved-aside $aside"; fi; fi; '
        f"result=$({install_script}); "
        'if [ "$result" = installed ]; then '
        "systemctl stop step-ca.service 2>/dev/null || true; fi; "
        f"{db_script}; "
        'echo "__restore__ $result"; echo __backup__; cat "$t/m/certs/root_ca.crt"'
    )
