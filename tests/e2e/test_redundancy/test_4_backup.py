"""Phase 4: an encrypted backup of the CA, and what a restore accepts."""

from __future__ import annotations

import os
import re

import pytest

from tests import testbed as tb

from ..conftest import deploy, sh
from .helpers import CA, MATERIAL, REVOKED, inventory, material_digests, scan_controller

pytestmark = pytest.mark.e2e


def test_backup_is_ciphertext_with_a_timestamped_name(failed_over):
    ha = failed_over
    # A certificate revoked before the backup must stay revoked after a restore: make
    # one on etcd-k8s-3 (which survives) with a token from the CA, and revoke it.
    ca_ip = ha.bed.ip("etcd-k8s-2")
    token = sh(
        "etcd-k8s-2",
        f"STEPPATH={CA} /opt/bin/step ca token revoked.test --provisioner etcd-provisioner "
        f"--provisioner-password-file {CA}/secrets/provisioner_password "
        f"--ca-url https://{ca_ip}:9000 --root {CA}/certs/root_ca.crt",
    ).strip()
    step = "STEPPATH=/etc/step /opt/bin/step"
    sh(
        "etcd-k8s-3",
        f"mkdir -p {REVOKED} && {step} ca certificate revoked.test {REVOKED}/c.crt "
        f"{REVOKED}/c.key --token {token} && {step} ca revoke --cert {REVOKED}/c.crt "
        f"--key {REVOKED}/c.key --reason test",
    )
    run = deploy(ha.inventories["back"], "-vv", deploy_file="backup.py")
    assert run.rc == 0, run.output[-4000:]
    (backup,) = ha.backup_dir.iterdir()
    assert re.fullmatch(r"etcd-default-ca_etcd-k8s-2_\d{8}T\d{6}Z\.tar\.age", backup.name)
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    text = backup.read_text()
    assert text.startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert text.rstrip().endswith("-----END AGE ENCRYPTED FILE-----")
    scan_controller(ha, run.output)
    ha.backup = backup


def test_backup_cannot_be_decrypted_without_the_recipients_key(failed_over):
    ha = failed_over
    assert ha.backup is not None
    blob = ha.backup.read_text()
    cmd = (
        "set -e; umask 077; t=$(mktemp -d /run/t.XXXXXX); trap 'rm -rf $t' EXIT; "
        'read -r key; echo "$key" > $t/id; cat > $t/b.age; age -d -i $t/id $t/b.age | tar -tz'
    )
    for key, ok in ((ha.other_identity, False), (ha.identity_file.read_text().split()[-1], True)):
        result = tb.run(
            ["docker", "exec", "-i", tb.container_name("etcd-k8s-1"), "sh", "-c", cmd],
            input=f"{key}\n{blob}",
            check=False,
        )
        if ok:
            assert result.returncode == 0, result.stderr
            names = {n.rstrip("/") for n in result.stdout.split()}
            # The material, and step-ca's database (its revocations).
            assert names - {n for n in names if n.startswith("db/")} == {*MATERIAL, "db"}
            assert any(n.startswith("db/") and n.endswith(".vlog") for n in names), names
        else:
            assert result.returncode != 0 and "no identity matched" in result.stderr


def test_backup_without_recipients_is_refused(failed_over):
    ha = failed_over
    inv = inventory(ha, "norecipients", "etcd-k8s-2", ["etcd-k8s-2", "etcd-k8s-1"],
                    backup_recipients=[])  # fmt: skip
    run = deploy(inv, deploy_file="backup.py")
    assert run.rc != 0 and "`backup_recipients` is empty" in run.output
    assert len(list(ha.backup_dir.iterdir())) == 1


def test_only_an_authenticated_backup_of_the_cas_own_root_restores(failed_over, tmp_path):
    """Anyone may encrypt to the public age recipient: a backup of another CA is refused
    (the cluster trusts this root), and with backup_mac_key_file one without the
    operator's MAC is refused too. Nothing changes on the CA node either way."""
    ha = failed_over
    forged = tmp_path / "forged.tar.age"
    forged.write_text(
        sh(
            "etcd-k8s-2",
            "set -e; d=$(mktemp -d); mkdir $d/certs; openssl req -x509 -newkey ec -pkeyopt "
            "ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=planted -keyout /dev/null "
            f"-out $d/certs/root_ca.crt 2>/dev/null; tar -C $d -cz certs | age -a -r "
            f"{ha.recipient}; rm -rf $d",
        )
    )

    def restore_from(inv, source):
        identity = f"restore_identity_file={ha.identity_file}"
        args = ("--data", f"restore_from={source}", "--data", identity)
        return deploy(inv, *args, deploy_file="restore.py")

    def keys_and_config() -> dict[str, str]:  # the ledger grows with every backup
        return {p: d for p, d in material_digests("etcd-k8s-2").items() if "ledger" not in p}

    before = keys_and_config()
    run = restore_from(ha.inventories["back"], forged)
    assert run.rc != 0 and "holds another CA (root fingerprint" in run.output, run.output[-2000:]
    assert ha.root_fingerprint in run.output and "Traceback" not in run.output
    key = tmp_path / "mac.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    inv = inventory(ha, "mac", "etcd-k8s-2", ["etcd-k8s-2", "etcd-k8s-1"],
                    backup_mac_key_file=str(key), backup_dir=str(tmp_path / "b"))  # fmt: skip
    run = restore_from(inv, forged)
    assert run.rc != 0 and "forged.tar.age is not authenticated" in run.output
    run = deploy(inv, deploy_file="backup.py")
    assert run.rc == 0, run.output[-3000:]
    (backup,) = (tmp_path / "b").glob("*.tar.age")
    assert (tmp_path / "b" / f"{backup.name}.mac").read_text().startswith("hmac-sha256 ")
    tampered = tmp_path / "tampered.tar.age"
    tampered.write_text(forged.read_text())
    (tmp_path / "tampered.tar.age.mac").write_text(
        (tmp_path / "b" / f"{backup.name}.mac").read_text()
    )
    run = restore_from(inv, tampered)
    assert run.rc != 0 and "does not match tampered.tar.age.mac" in run.output
    assert keys_and_config() == before
    run = restore_from(inv, backup)  # the real one: accepted (the same CA: unchanged)
    assert run.rc == 0, run.output[-3000:]
    assert keys_and_config() == before
