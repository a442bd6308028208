"""CA redundancy: standby copies of the CA material, the failover check, encrypted
backups and their restore. Why age (not gpg): see etcd_pki/redundancy.py.

Only ciphertext and hashes cross the controller, and only in memory: the standby makes
an age key pair for one transfer (in /run, a tmpfs), the controller reads its public
key, the active CA encrypts a tar of the material to it, the controller hands the
ciphertext to the standby on stdin, the standby decrypts and installs it with the same
owners and modes as the active (CA_FILES), then deletes the key. Every remote command
here runs with its output hidden; the operations that carry them have explicit names.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import Host, deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import server, systemd

from etcd_pki import s3
from etcd_pki.certs import fingerprint, pem_blocks
from etcd_pki.plan import HostPlan
from etcd_pki.redundancy import (
    AGE_RECIPIENT_RE,
    ARMOR_BEGIN,
    ARMOR_END,
    MAC_SUFFIX,
    NODE_TMP,
    STDIN_SEPARATOR,
    backup_filename,
    backup_mac,
    digest_command,
    encrypt_command,
    identity_lines,
    install_material_script,
    is_age_file,
    mac_key,
    mac_matches,
    parse_digests,
    restore_db_script,
)
from etcd_pki.settings import Settings
from etcd_pki.shell import on_exit
from facts.pki import PublicFile
from facts.snapshot import Want
from tasks.ca import CA_DIRS, CA_FILES, ca_account, ca_permissions, ca_snapshot, ledger_command
from tasks.common import (
    call,
    get_plan,
    pyinfra_host,
    reads,
    run_on,
    snapshot,
    snapshots_of,
    this_host,
)
from tasks.crl import scan_ledger_command

REPO_ROOT = Path(__file__).resolve().parents[1]
AGE_PACKAGE = "age"
MATERIAL = tuple(path for path, *_ in CA_FILES)
# Backups made before these existed lack them; a restore keeps the node's own then, and
# a CA whose root key has no password of its own has no .age for it.
OPTIONAL_MATERIAL = ("ledger.tsv", "secrets/root_ca_key.password.age")
CA_SERVICE = "step-ca.service"


@reads
def _reads(me: HostPlan) -> Want:
    # Whether the host holds a CA: the active (a CA-less failover target), or a host
    # that is no longer a cert-manager (material to retire); age on cert-managers.
    s = me.settings
    return Want.of(stat={s.ca_json}, packages={AGE_PACKAGE} if me.is_cert_manager else ())


def _holds_ca(me: HostPlan) -> bool:
    """`config/ca.json` was on this host before the run."""
    return snapshot(_reads(me)).is_file(me.settings.ca_json)


def _real(value: str, s: Settings) -> str:
    return s.ca_user if value == "CA" else value


def _install_script(s: Settings) -> str:
    files = [(p, _real(o, s), _real(g, s), m) for p, o, g, m in CA_FILES]
    dirs = [(p, _real(o, s), _real(g, s), m) for p, o, g, m in CA_DIRS]
    return install_material_script(s.ca_dir, files, dirs, optional=OPTIONAL_MATERIAL)


def _digests(h: Host, s: Settings) -> tuple[str, str]:
    return parse_digests(run_on(h, digest_command(s.ca_dir, MATERIAL), "hashing the CA material"))


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@deploy("Install age")
def install_age() -> None:
    """Install Debian's `age` (cert-managers: encryption of the CA material).

    .. code:: python

        install_age()
    """
    if snapshot(Want.of(packages={AGE_PACKAGE})).has_package(AGE_PACKAGE):
        return
    server.shell(
        name=f"Install {AGE_PACKAGE} (encrypts the CA material for standbys and backups)",
        commands=[
            f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {AGE_PACKAGE} >/dev/null "
            "2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
            f"apt-get install -y -qq {AGE_PACKAGE}; }}"
        ],
    )


def check_ca_material() -> None:
    """Refuse, before anything runs, to create a new CA where the cluster has one.

    The active cert-manager without `config/ca.json` is either a brand-new cluster
    (``step ca init`` follows) or a failover to a host that never received the
    material; in the second case some host already trusts a root: stop there.
    """
    plan = get_plan()
    me = this_host()
    if not me.is_active_ca or _holds_ca(me):
        return
    roots: dict[str, list[str]] = {}
    # Every host's snapshot (read anyway) has its root_ca.crt: see tasks/bootstrap.py.
    paths = {name: h.settings.trusted_root for name, h in plan.hosts.items() if h.certs}
    found = snapshots_of({name: Want.of(contents={path}) for name, path in paths.items()})
    for name, snap in found.items():
        pem = snap.contents.get(paths[name])
        if pem:
            try:
                roots.setdefault(fingerprint(pem), []).append(name)
            except ValueError:
                roots.setdefault("unreadable", []).append(name)
    if not roots:
        return
    trusted = "; ".join(f"root {fp} on {', '.join(names)}" for fp, names in roots.items())
    raise PyinfraError(
        f"{me.name} is the active cert-manager but has no CA material "
        f"({me.settings.ca_json}), while the cluster already trusts a CA "
        f"({trusted}). Refusing to create a second CA. Fail over only to a standby that "
        f"received the material (group etcd_cert_managers, synced by an earlier deploy), or "
        f"restore a backup onto {me.name} first: pyinfra INVENTORY restore.py "
        "--data restore_from=BACKUP --data restore_identity_file=KEYFILE"
    )


@deploy("Retire CA material")
def retire_ca_material() -> None:
    """Retire the CA of a host that is no longer a cert-manager: its directory is moved
    aside (`ca_dir.retired-TIMESTAMP`, with its database) without its keys and
    passwords (CA keys belong on cert-managers only). Only a copy of the active CA is
    retired: a host holding a different CA is refused and left as it is, since that
    material may be the only copy.

    .. code:: python

        retire_ca_material()
    """
    plan = get_plan()
    s = this_host().settings
    if not _holds_ca(this_host()):
        return
    mine = host.get_fact(PublicFile, path=s.ca_root)
    active = pyinfra_host(plan.active_ca).get_fact(PublicFile, path=plan.ca.settings.ca_root)
    if not active:
        # Nothing to compare with (a new CA, or a failover target without material,
        # which check_ca_material refuses): leave this host's copy alone for now.
        return
    try:
        same = bool(mine) and fingerprint(mine) == fingerprint(active)
    except ValueError:
        same = False
    if not same:
        raise PyinfraError(
            f"{this_host().name} holds CA material in {s.ca_dir} but is not a cert-manager, "
            f"and it is not a copy of {plan.active_ca}'s CA: move {s.ca_dir} aside by hand "
            "(it may be the only copy of that CA), or list the host in etcd_cert_managers"
        )
    systemd.service(
        name="step-ca stopped and disabled (no longer a cert-manager)",
        service=CA_SERVICE,
        running=False,
        enabled=False,
    )
    # Its database (the certificates it issued, its revocations) is kept aside; the keys
    # and passwords go: CA keys belong on cert-managers only (the active CA has them).
    d = shlex.quote(s.ca_dir)
    server.shell(
        name=f"Move {s.ca_dir} aside without its secrets (no longer a cert-manager)",
        commands=[
            f'set -e; aside={d}.retired-$(date -u +%Y%m%dT%H%M%SZ); mv {d} "$aside"; '
            'rm -rf "$aside/secrets"; rm -f /etc/systemd/system/step-ca.service'
        ],
    )


@deploy("Standby cert-manager")
def standby_ca() -> None:
    """A standby keeps step-ca stopped and has the CA user that owns its files.

    .. code:: python

        standby_ca()
    """
    before = ca_snapshot()
    # A former active that is reachable again must not keep serving.
    if not before.unit_is(CA_SERVICE, running=False, enabled=False):
        systemd.service(
            name="step-ca stopped and disabled (standby)",
            service=CA_SERVICE,
            running=False,
            enabled=False,
        )
    ca_account(this_host().settings, before)


@deploy("CA material on standbys")
def copy_ca_material() -> None:
    """Keep an identical copy of the active CA's material on every standby.

    Call it on every cert-manager, active included, from one place: the copy is then
    one operation shared by all of them, which pyinfra runs only after every earlier
    operation of the active (its `init_ca`) has run. It does nothing on the active.

    .. code:: python

        copy_ca_material()
    """
    plan = get_plan()
    me: HostPlan = this_host()
    s = me.settings
    active = pyinfra_host(plan.active_ca)
    state: dict[str, str] = {}

    def needs_copy() -> bool:
        if me.is_active_ca:
            return False
        want, want_root = _digests(active, s)
        have, have_root = _digests(host, s)
        if want_root == "none":
            raise PyinfraError(f"the active cert-manager {plan.active_ca} has no CA material")
        if have_root not in ("none", want_root):
            raise PyinfraError(
                f"standby {me.name} holds another CA (its {s.ca_root} differs "
                f"from {plan.active_ca}'s). Refusing to overwrite it: move {s.ca_dir} aside on "
                f"{me.name} if it is not needed, or take the host out of etcd_cert_managers"
            )
        state["want"] = want
        return want != have

    def copy() -> None:
        tmp, recipient = "", ""
        made = run_on(
            host,
            f"set -e; umask 077; t=$(mktemp -d {NODE_TMP}/etcd-pki-sync.XXXXXX); "
            'age-keygen -o "$t/identity" 2>/dev/null; echo "$t"; age-keygen -y "$t/identity"',
            "making a one-time age key",
        ).split()
        if len(made) == 2:
            tmp, recipient = made
        if not tmp.startswith(f"{NODE_TMP}/etcd-pki-sync.") or not AGE_RECIPIENT_RE.match(
            recipient
        ):
            raise PyinfraError(f"unexpected answer from age-keygen on {me.name}")
        try:
            ciphertext = run_on(
                active,
                encrypt_command(s.ca_dir, MATERIAL, [recipient], optional=OPTIONAL_MATERIAL),
                f"encrypting the CA material for {me.name}",
            )
            if not (ciphertext.startswith(ARMOR_BEGIN) and ciphertext.rstrip().endswith(ARMOR_END)):
                raise PyinfraError(f"{plan.active_ca} did not return age ciphertext")
            t = shlex.quote(tmp)
            run_on(
                host,
                f'set -e; umask 077; t={t}; mkdir "$t/m"; age -d -i "$t/identity" -o "$t/m.tar"; '
                f'rm -f "$t/identity"; tar -x -C "$t/m" -f "$t/m.tar" --no-same-owner; '
                + _install_script(s),
                "installing the CA material",
                stdin=ciphertext,
            )
        finally:
            with contextlib.suppress(PyinfraError):  # best effort: it is in /run (tmpfs)
                run_on(host, f"rm -rf {shlex.quote(tmp)}", "removing the one-time key")
        have, _ = _digests(host, s)
        if have != state["want"]:
            raise PyinfraError(f"the CA material on {me.name} differs from {plan.active_ca}'s")
        logger.info(f"{host.print_prefix}CA material copied from {plan.active_ca} (age-encrypted)")

    call(
        f"Copy the CA material from {plan.active_ca} to standbys "
        "(age-encrypted to a one-time key of each)",
        copy,
        check=needs_copy,
    )
    if not me.is_active_ca:
        # The copy installs every file with these owners and modes itself; this repairs
        # what drifted before the run.
        ca_permissions(s, ca_snapshot())


def backup_dir(s: Settings) -> Path:
    path = Path(os.path.expanduser(s.backup_dir))
    return path if path.is_absolute() else REPO_ROOT / path


def _s3_upload(s: Settings) -> Callable[[Path], None] | None:
    """The upload of a written backup to `backup_s3_*`, or None when not configured.

    Credentials and the CA file are checked here, at prepare time, so a backup that
    could not be uploaded is refused before any host is touched.
    """
    if not s.backup_s3_endpoint:
        return None
    if not s3.has_credentials():
        raise PyinfraError(
            "backup_s3_endpoint is set but no AWS credentials were found on this controller "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile in ~/.aws, SSO, ...)"
        )
    ca_file = s.backup_s3_ca_file or None
    if ca_file and not Path(ca_file).expanduser().is_file():
        raise PyinfraError(f"backup_s3_ca_file: {ca_file} is not a file on the controller")

    def upload(path: Path) -> None:
        key = f"{s.backup_s3_prefix}{path.name}"
        try:
            url = s3.put_object(
                s.backup_s3_endpoint,
                s.backup_s3_bucket,
                key,
                path.read_bytes(),
                region=s.backup_s3_region,
                ca_file=str(Path(ca_file).expanduser()) if ca_file else None,
            )
        except s3.S3Error as e:
            raise PyinfraError(
                f"the backup is in {path}, but its upload to S3 failed: {e}"
            ) from None
        logger.info(f"{host.print_prefix}encrypted CA backup uploaded to {url}")

    return upload


@deploy("Encrypted CA backup")
def take_backup() -> None:
    """Archive the CA material and step-ca's database on the active cert-manager,
    encrypted there with age to `backup_recipients`; store the ciphertext in `backup_dir`
    on the controller and, when `backup_s3_endpoint` is set, upload it there too.

    step-ca is stopped while its database is archived (a second or two): renewals that
    hit that moment fail and their timers retry.

    .. code:: python

        take_backup()
    """
    me = this_host()
    s = me.settings
    if not s.backup_recipients:
        raise PyinfraError(
            "backup.py: `backup_recipients` is empty; add the age public key(s) (age1..., "
            "from `age-keygen -y KEYFILE`) the backups are encrypted to in group_data/all.py"
        )
    target = backup_dir(s)
    upload = _s3_upload(s)
    key = _mac_key(s)

    def backup() -> None:
        # The ledger up to date first: a restore of this backup can revoke by serial.
        run_on(host, f"umask 022; {ledger_command(s)} && {scan_ledger_command(s)}", "the ledger")
        ciphertext = run_on(
            host,
            encrypt_command(s.ca_dir, MATERIAL, s.backup_recipients, CA_SERVICE, OPTIONAL_MATERIAL),
            "encrypting the CA backup",
        )
        if not (ciphertext.startswith(ARMOR_BEGIN) and ciphertext.rstrip().endswith(ARMOR_END)):
            raise PyinfraError(f"{me.name} did not return age ciphertext")
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = target / backup_filename(s.ca_name, me.name, datetime.now(UTC))
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=target)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(ciphertext.rstrip("\n") + "\n")
            os.chmod(partial, 0o600)
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        written = [path]
        if key:
            mac = path.with_name(path.name + MAC_SUFFIX)
            mac.write_text(backup_mac(key, path.read_bytes()))
            mac.chmod(0o600)
            written.append(mac)
        logger.info(f"{host.print_prefix}encrypted CA backup written to {path}"
                    + (" (authenticated: .mac beside it)" if key else ""))  # fmt: skip
        if upload:
            for file in written:
                upload(file)

    install_age()
    call(
        f"Encrypted backup of the CA to {len(s.backup_recipients)} age recipient(s) "
        f"into {target}"
        + (f" and s3://{s.backup_s3_bucket}/{s.backup_s3_prefix}" if upload else ""),
        backup,
    )


def _mac_key(s: Settings) -> bytes | None:
    """The operator's backup MAC key (`backup_mac_key_file`), checked at prepare time."""
    if not s.backup_mac_key_file:
        return None
    try:
        return mac_key(s.backup_mac_key_file)
    except ValueError as e:
        raise PyinfraError(f"backup_mac_key_file: {e}") from None


def _authenticated(source: Path, key: bytes | None) -> None:
    """With a MAC key: ``source`` must carry a valid MAC (FILE.mac beside it)."""
    if key is None:
        return
    mac = source.with_name(source.name + MAC_SUFFIX)
    try:
        line = mac.read_text()
    except OSError:
        raise PyinfraError(
            f"restore_from: {source.name} is not authenticated: {mac.name} is missing "
            "(backup_mac_key_file is set: only backups it signed are restored)"
        ) from None
    if not mac_matches(key, source.read_bytes(), line):
        raise PyinfraError(
            f"restore_from: {source.name} does not match {mac.name}: it was not made with "
            "this backup_mac_key_file, or it was changed since. Refusing to restore it"
        )


def _restore_inputs(data) -> tuple[Path, Path, bool]:
    """Check `restore_from` and `restore_identity_file` on the controller (the identity is
    read and validated, never printed)."""
    source, identity = data.get("restore_from"), data.get("restore_identity_file")
    if not source or not identity:
        raise PyinfraError(
            "restore.py needs --data restore_from=BACKUP_FILE and "
            "--data restore_identity_file=AGE_IDENTITY_FILE (both on this controller)"
        )
    source_path, identity_path = Path(str(source)).expanduser(), Path(str(identity)).expanduser()
    try:
        head = source_path.read_bytes()[:64]
    except OSError as e:
        raise PyinfraError(f"restore_from: cannot read {source_path}: {e.strerror}") from None
    if not is_age_file(head):
        raise PyinfraError(f"restore_from: {source_path} is not an age file (see backup.py)")
    try:
        identity_lines(identity_path.read_text())
    except OSError as e:
        raise PyinfraError(
            f"restore_identity_file: cannot read {identity_path}: {e.strerror}"
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise PyinfraError(f"restore_identity_file {identity_path}: {e}") from None
    return source_path, identity_path, _truthy(data.get("restore_force", False))


def _trusted_root() -> str:
    """The fingerprint of the root every host of the cluster trusts ("" when none does
    yet: a new cluster); PyinfraError when hosts trust different roots."""
    plan = get_plan()
    paths = {name: h.settings.trusted_root for name, h in plan.hosts.items() if h.certs}
    found = snapshots_of({name: Want.of(contents={path}) for name, path in paths.items()})
    roots = {fingerprint(pem) for n, snap in found.items() if (pem := snap.contents.get(paths[n]))}
    if len(roots) > 1:
        raise PyinfraError(
            f"hosts trust different roots ({', '.join(sorted(roots))}): restore with "
            "--data restore_force=true to choose this backup's"
        )
    return roots.pop() if roots else ""


@deploy("Restore the CA from a backup")
def restore_ca() -> None:
    """Put the CA material of an encrypted backup onto the active cert-manager.

    The identity is read on the controller and streamed to the node on stdin; the node
    decrypts in /run (tmpfs) and installs with CA_FILES' owners and modes. A different
    CA already on the node is refused unless `restore_force` (it is then moved aside).
    The backup's database (revocations) is installed where the node has none or an
    empty one; a database with records is kept. step-ca is left stopped: `deploy.py`
    starts it and re-points every host.

    .. code:: python

        restore_ca()
    """
    me = this_host()
    s = me.settings
    source, identity, force = _restore_inputs(host.data)
    _authenticated(source, _mac_key(s))
    trusted = "" if force else _trusted_root()
    d = shlex.quote(s.ca_dir)

    script = (
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
        f"want={trusted}; "
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
        f"result=$({_install_script(s)}); "
        'if [ "$result" = installed ]; then '
        "systemctl stop step-ca.service 2>/dev/null || true; fi; "
        f"{restore_db_script(s.ca_dir, s.ca_user, s.ca_user, CA_SERVICE)}; "
        'echo "__restore__ $result"; echo __backup__; cat "$t/m/certs/root_ca.crt"'
    )

    def restore() -> None:
        keys = identity_lines(identity.read_text())
        payload = base64.encodebytes(source.read_bytes()).decode()
        out = run_on(
            host,
            script,
            f"restoring {source.name}",
            stdin="\n".join([*keys, STDIN_SEPARATOR, payload]),
        )
        results = [x.split(" ", 2)[1:] for x in out.splitlines() if x.startswith("__restore__ ")]
        status = results[-1] if results else []
        backup_root = out.partition("__backup__")[2]
        roots = pem_blocks(backup_root, "CERTIFICATE")
        fp = fingerprint(roots[0]) if roots else "?"
        if not status:
            raise PyinfraError(f"restore on {me.name} gave no result")
        if status[0] == "cannot-decrypt":
            raise PyinfraError(
                f"{source.name} cannot be decrypted with the identity in {identity.name}: "
                f"{' '.join(status[1:]).strip()}"
            )
        if status[0] == "foreign-root":
            raise PyinfraError(
                f"{source.name} holds another CA (root fingerprint {status[1].strip()}) than "
                f"the one the cluster trusts ({trusted}): restoring it would cut every host "
                "off. Re-run with --data restore_force=true only if you mean to replace the "
                "CA (every host then needs its trust and certificates anew)"
            )
        if status[0] == "different-ca":
            existing = pem_blocks(
                out.partition("__existing__")[2].partition("__backup__")[0], "CERTIFICATE"
            )
            have = fingerprint(existing[0]) if existing else "unknown (no root_ca.crt)"
            raise PyinfraError(
                f"{me.name} already holds a different CA in {s.ca_dir} (root fingerprint "
                f"{have}; the backup's root is {fp}). Refusing to overwrite it. Re-run with "
                f"--data restore_force=true to move it aside to {s.ca_dir}.replaced-TIMESTAMP"
            )
        for line in out.splitlines():
            if line.startswith("__restore__ moved-aside "):
                logger.warning(f"{host.print_prefix}existing CA moved aside to {line.split()[-1]}")
            if line == "__restoredb__ kept":
                logger.warning(
                    f"{host.print_prefix}kept the CA database already in {s.ca_dir}/db (it has "
                    "records, maybe newer than the backup's); the backup's database is not used"
                )
            if line == "__restoredb__ absent":
                logger.warning(
                    f"{host.print_prefix}{source.name} has no CA database (an older backup): "
                    "revocations recorded before it are not restored"
                )
        logger.info(
            f"{host.print_prefix}CA restored from {source.name} ({status[-1]}; root fingerprint "
            f"{fp}); now run deploy.py to start it and re-point every host"
        )

    install_age()
    ca_account(s)
    call(
        f"Restore the CA from {source.name} (decrypted on {me.name}"
        + (", force" if force else "")
        + ")",
        restore,
    )
