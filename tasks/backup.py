"""Encrypted backups of the CA (to `backup_dir` on the controller and, optionally, S3)
and their restore onto the active cert-manager.

The CA node encrypts with age to `backup_recipients`; only the ciphertext reaches the
controller, in memory. A restore streams the backup and the operator's identity to the
node on stdin, where they are used in /run (tmpfs) only.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError

from etcd_pki import s3
from etcd_pki.certs import fingerprint, pem_blocks
from etcd_pki.commands.backup import (
    STDIN_SEPARATOR,
    encrypt_command,
    restore_command,
    restore_db_script,
)
from etcd_pki.commands.ca import ledger_command
from etcd_pki.commands.crl import scan_ledger_command
from etcd_pki.redundancy import (
    ARMOR_BEGIN,
    ARMOR_END,
    MAC_SUFFIX,
    backup_filename,
    backup_mac,
    identity_lines,
    is_age_file,
    mac_key,
    mac_matches,
)
from etcd_pki.settings import Settings
from facts.snapshot import Want
from tasks.ca import ca_account
from tasks.common import call, run_on
from tasks.run import get_plan, snapshots_of, this_host
from tasks.standby import (
    CA_SERVICE,
    MATERIAL,
    OPTIONAL_MATERIAL,
    install_age,
    material_install_script,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


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
    script = restore_command(
        s.ca_dir,
        trusted,
        force,
        material_install_script(s),
        restore_db_script(s.ca_dir, s.ca_user, s.ca_user, CA_SERVICE),
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
                "off. A backup made before a root rotation (rotate_ca.py) is such a "
                "backup: restore one made after it. Re-run with --data restore_force=true "
                "only if you mean to replace the CA (every host then needs its trust and "
                "certificates anew)"
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
