"""CA redundancy on one bed: a standby, failover, the old active's return, an encrypted
backup and its restore onto a fresh node.

The tests run in file order and each phase builds on the one before (module-scoped
fixtures bring each phase about once). Results are read back from the containers with
openssl, sha256sum, stat, systemctl and step-ca's journal, not through the deploy's code.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests import testbed as tb
from tests.agekeys import generate

from .conftest import SSL, Run, deploy, file_digests, read_cert, sh
from .conftest import sans as cert_sans

pytestmark = pytest.mark.e2e

STARTED = time.time()
CA = "/etc/step-ca"
CM = "etcd_cert_managers"
PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{40,}")
AGE_SECRET = re.compile(rb"AGE-SECRET-KEY-1[0-9A-Z]{20,}")
# What the CA directory must hold on every cert-manager (path, owner:group, mode).
EXPECTED = {
    ".": "root:step 750",
    "config": "root:step 750",
    "certs": "root:step 755",
    "secrets": "root:step 750",
    "db": "step:step 700",
    "config/ca.json": "root:step 640",
    "config/defaults.json": "root:step 644",
    "certs/root_ca.crt": "root:root 644",
    "certs/intermediate_ca.crt": "root:root 644",
    "secrets/root_ca_key": "root:root 400",
    "secrets/intermediate_ca_key": "step:step 400",
    "secrets/password": "step:step 400",
    "secrets/provisioner_password": "root:root 400",
    "ledger.tsv": "root:root 644",
}
MATERIAL = [p for p in EXPECTED if "/" in p or p == "ledger.tsv"]
KEYS_AND_CERTS = f"{SSL}/*.crt {SSL}/*.key"
# A certificate revoked with revoke.py while etcd-k8s-1 is active (kept on app-server).
OLD_PAIR = "/root/revoked-app"
OLD_FILES = (f"{OLD_PAIR}/app-server-client.crt", f"{OLD_PAIR}/app-server-client.key")


@dataclass
class Ha:
    bed: tb.Bed
    recipient: str
    identity_file: Path
    other_identity: str
    backup_dir: Path
    data: dict
    root_fingerprint: str = ""
    passwords: list[str] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    inventories: dict[str, Path] = field(default_factory=dict)
    ssl_before: dict[str, dict[str, str]] = field(default_factory=dict)
    backup: Path | None = None
    revoked_serial: int = 0


def inventory(ha: Ha, name: str, active: str, managers: list[str], **extra) -> Path:
    """An inventory of the running containers with ``managers`` and ``active``."""
    return tb.write_inventory(
        tb.STATE_DIR / f"inventory_ha_{name}.py",
        nodes=tb.running_nodes(),
        data={**ha.data, "active_cert_manager": active, **extra},
        groups={CM: managers},
    )


def openssl_fingerprint(host: str, path: str) -> str:
    out = sh(host, f"openssl x509 -noout -fingerprint -sha256 -in {path}")
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def ca_stats(host: str) -> dict[str, str]:
    out = sh(host, f"cd {CA} && stat -c '%n %U:%G %a' {' '.join(EXPECTED)}")
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}


def material_digests(host: str) -> dict[str, str]:
    return file_digests(host, " ".join(f"{CA}/{p}" for p in MATERIAL))


def is_active(host: str, unit: str = "step-ca") -> str:
    return sh(host, f"systemctl is-active {unit} || true").strip()


def is_enabled(host: str, unit: str = "step-ca") -> str:
    return sh(host, f"systemctl is-enabled {unit} 2>/dev/null || true").strip()


def force_renew(host: str, name: str) -> tuple[int, int]:
    """Start the renewal service of ``name`` with the threshold overridden to 0 %."""
    before = read_cert(host, f"{SSL}/{name}.crt").serial_number
    rc, out = tb.exec_in(
        host,
        "mkdir -p /run/etcd-pki && echo RENEW_AT=0% > /run/etcd-pki/renew-override && "
        f"systemctl start step-renew-{name}.service; rc=$?; "
        "rm -f /run/etcd-pki/renew-override; exit $rc",
    )
    assert rc == 0, out + sh(host, f"journalctl -u step-renew-{name} --no-pager | tail -20")
    return before, read_cert(host, f"{SSL}/{name}.crt").serial_number


def renewal_refused_as_revoked(host: str, crt: str, key: str, ca: str) -> bool:
    """`step ca renew` of the pair on ``host`` fails, and step-ca on ``ca`` logged the
    refusal as a revoked certificate."""
    journal = "journalctl -u step-ca --no-pager | grep -c 'certificate has been revoked' || true"
    refusals = int(sh(ca, journal).strip())
    rc, out = tb.exec_in(
        host,
        f"STEPPATH=/etc/step /opt/bin/step ca renew --force --out {crt}.new {crt} {key} 2>&1",
    )
    return rc != 0 and int(sh(ca, journal).strip()) == refusals + 1


def ca_log_has_renewal(ca_host: str, subject: str) -> bool:
    journal = sh(ca_host, "journalctl -u step-ca --no-pager -o cat")
    return any("path=/renew" in x and f"subject={subject} " in x for x in journal.splitlines())


SKIP_PARTS = {".venv", ".git", ".testbed", "site-packages"}


def scan_controller(ha: Ha, *outputs: str) -> None:
    """No PEM private key, CA password or age identity in ``outputs`` or in files
    written to the controller's temp directories (or the backup dir) during the run."""
    secrets = [p.encode() for p in ha.passwords]
    for text in outputs:
        data = text.encode()
        assert not PEM_KEY.search(data)
        assert not AGE_SECRET.search(data)
        assert not any(s in data for s in secrets)
    roots = {Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), ha.backup_dir}
    for tmp in roots:
        for path in tmp.rglob("*") if tmp.exists() else ():
            # A checkout (with its fresh .venv: test keys of installed packages) may
            # itself live under /tmp, as in CI.
            if SKIP_PARTS & set(path.parts):
                continue
            try:
                if not path.is_file() or path.stat().st_mtime < STARTED - 60:
                    continue
                data = path.read_bytes()[:2_000_000]
            except OSError:
                continue
            assert not PEM_KEY.search(data), path
            assert not AGE_SECRET.search(data), path
            assert not any(s in data for s in secrets), path


def etcd_member_remove(via: str, name: str) -> None:
    """What the operator does for a lost member: remove it, from a surviving one."""
    auth = (
        f"--endpoints=https://127.0.0.1:2379 --cacert {SSL}/root_ca.crt "
        f"--cert {SSL}/{via}-client.crt --key {SSL}/{via}-client.key"
    )
    members = sh(via, f"etcdctl {auth} member list -w simple")
    member_id = next(x.split(",")[0] for x in members.splitlines() if f", {name}," in x)
    sh(via, f"etcdctl {auth} member remove {member_id}")


# --- phase 1: an active cert-manager and a standby ----------------------------------


@pytest.fixture(scope="module")
def ha(testbed):
    bed = tb.up(fresh=True)
    identity, recipient = generate()
    other_identity, _ = generate()
    identity_file = tb.STATE_DIR / "ha-backup-identity.txt"
    fd = os.open(identity_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, f"# test recipient {recipient}\n{identity}\n".encode())
    os.close(fd)
    backup_dir = tb.STATE_DIR / "ha-backups"
    shutil.rmtree(backup_dir, ignore_errors=True)
    state = Ha(
        bed=bed,
        recipient=recipient,
        identity_file=identity_file,
        other_identity=other_identity,
        backup_dir=backup_dir,
        data={"backup_recipients": [recipient], "backup_dir": str(backup_dir)},
    )
    inv = inventory(state, "start", "etcd-k8s-1", ["etcd-k8s-1", "etcd-k8s-2"])
    state.runs["first"] = deploy(inv, "-vv")
    state.inventories["start"] = inv
    yield state
    identity_file.unlink(missing_ok=True)


def test_deploy_with_a_standby_succeeds(ha):
    first = ha.runs["first"]
    assert first.rc == 0, first.output[-4000:]
    ha.passwords = sh("etcd-k8s-1", f"cat {CA}/secrets/password; echo; "
                      f"cat {CA}/secrets/provisioner_password").split()  # fmt: skip
    assert len(ha.passwords) == 2 and all(len(p) >= 40 for p in ha.passwords)
    ha.root_fingerprint = openssl_fingerprint("etcd-k8s-1", f"{CA}/certs/root_ca.crt")


def test_standby_holds_the_material_with_the_same_owners_and_modes(ha):
    assert ca_stats("etcd-k8s-1") == EXPECTED
    assert ca_stats("etcd-k8s-2") == EXPECTED
    active, standby = material_digests("etcd-k8s-1"), material_digests("etcd-k8s-2")
    assert list(active.values()) == list(standby.values())
    assert openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt") == ha.root_fingerprint
    # The standby's keys really are the CA's: the intermediate key matches its certificate.
    for host in ("etcd-k8s-1", "etcd-k8s-2"):
        out = sh(
            host,
            f"openssl x509 -noout -pubkey -in {CA}/certs/intermediate_ca.crt | sha256sum; "
            f"/opt/bin/step crypto key public {CA}/secrets/intermediate_ca_key "
            f"--password-file {CA}/secrets/password | sha256sum",
        )
        first, second = out.splitlines()
        assert first == second, host


def test_the_online_ca_cannot_use_the_root_key(ha):
    """The root key has its own password, stored only age-encrypted to the backup
    recipients: the CA's password (which step-ca reads) no longer opens it; an
    operator's identity does. The standby holds the same."""
    pw = f"{CA}/secrets/root_ca_key.password.age"
    for host in ("etcd-k8s-1", "etcd-k8s-2"):
        assert sh(host, f"stat -c '%U:%G %a' {pw}").strip() == "root:root 400", host
        assert sh(host, f"head -1 {pw}").startswith("-----BEGIN AGE ENCRYPTED FILE-----")
        rc, _ = tb.exec_in(
            host,
            f"/opt/bin/step crypto key public {CA}/secrets/root_ca_key "
            f"--password-file {CA}/secrets/password",
        )
        assert rc != 0, f"{host}: the CA's password opens the root key"
    identity = ha.identity_file.read_text()
    opened = tb.run(
        ["docker", "exec", "-i", tb.container_name("etcd-k8s-1"), "sh", "-c",
         "set -e; umask 077; t=$(mktemp -d /run/t.XXXXXX); trap 'rm -rf $t' EXIT; "
         f"cat > $t/id; age -d -i $t/id -o $t/pw {pw}; /opt/bin/step crypto key public "
         f"{CA}/secrets/root_ca_key --password-file $t/pw"],
        input=identity,
        check=False,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    root = x509.load_pem_x509_certificate(sh("etcd-k8s-1", f"cat {CA}/certs/root_ca.crt").encode())
    from cryptography.hazmat.primitives import serialization

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert (
        opened.stdout.strip()
        == root.public_key().public_bytes(serialization.Encoding.PEM, spki).decode().strip()
    )


def test_step_ca_is_installed_but_not_running_on_the_standby(ha):
    assert "0.30" in sh("etcd-k8s-2", "/opt/bin/step-ca version")
    assert is_active("etcd-k8s-2") != "active"
    assert is_enabled("etcd-k8s-2") != "enabled"
    assert not sh("etcd-k8s-2", "pgrep -x step-ca || true").strip()
    assert is_active("etcd-k8s-1") == "active"
    # The other hosts hold no CA material at all.
    for host in ("etcd-k8s-3", "app-server"):
        assert not sh(host, f"ls -A {CA} 2>/dev/null || true").strip(), host


def test_only_ciphertext_crossed_the_controller(ha):
    first = ha.runs["first"]
    assert "Copy the CA material from etcd-k8s-1 to standbys" in first.output
    scan_controller(ha, first.output)
    # The one-time key pair and the decrypted archive were in /run and are gone.
    for host in ("etcd-k8s-1", "etcd-k8s-2"):
        assert not sh(host, "ls -d /run/etcd-pki-* 2>/dev/null || true").strip(), host
        assert not sh(host, f"ls -A {CA} | grep -v -e config -e certs -e secrets -e db -e "
                      "templates -e ledger.tsv || true").strip()  # fmt: skip


def test_second_run_with_a_standby_changes_nothing(ha):
    again = deploy(ha.inventories["start"])
    assert again.rc == 0, again.output[-3000:]
    assert again.changed == 0, again.changed_operations()


def crl_serials_at(host: str, ca: str) -> set[int]:
    """The serials the CA on ``ca`` lists in its CRL, fetched from ``host``."""
    der = sh(host, f"curl -fsS --cacert {SSL}/root_ca.crt "
             f"https://{tb.bed().ip(ca)}:9000/1.0/crl | base64 -w0")  # fmt: skip
    return {r.serial_number for r in x509.load_der_x509_crl(base64.b64decode(der))}


def refused_by(members, crt: str, key: str) -> bool:
    for member in members:
        rc, _ = tb.exec_in(
            "app-server",
            f"etcdctl --endpoints=https://{tb.bed().ip(member)}:2379 --cacert {SSL}/root_ca.crt "
            f"--cert {crt} --key {key} --dial-timeout=4s get x",
        )
        if rc == 0:
            return False
    return True


def test_a_revocation_reaches_the_standby(ha):
    sh("app-server", f"mkdir -p {OLD_PAIR} && cp {SSL}/app-server-client.crt "
       f"{SSL}/app-server-client.key {OLD_PAIR}/")  # fmt: skip
    ha.revoked_serial = read_cert("app-server", f"{OLD_PAIR}/app-server-client.crt").serial_number
    run = deploy(ha.inventories["start"], "--limit", f"@docker/{tb.container_name('app-server')}",
                 deploy_file="revoke.py")  # fmt: skip
    assert run.rc == 0, run.output[-4000:]
    assert refused_by(("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3"), *OLD_FILES)
    run = deploy(ha.inventories["start"])  # the ledger's revocation goes to the standby
    assert run.rc == 0, run.output[-4000:]
    line = f"revoked\t{ha.revoked_serial}\tapp-server-client"
    assert line in sh("etcd-k8s-2", f"cat {CA}/ledger.tsv")


# --- phase 2: the active is lost; fail over to the standby --------------------------


@pytest.fixture(scope="module")
def one_down(ha):
    """etcd-k8s-1 stopped; the SSL files and roots of the survivors recorded first."""
    for host in ("etcd-k8s-2", "etcd-k8s-3", "app-server"):
        ha.ssl_before[host] = file_digests(host, KEYS_AND_CERTS)
    tb.docker("stop", tb.container_name("etcd-k8s-1"))
    return ha


def test_failover_to_a_host_without_material_is_refused(one_down):
    ha = one_down
    inv = inventory(ha, "bad", "etcd-k8s-3", ["etcd-k8s-3"])
    run = deploy(inv)
    assert run.rc != 0
    assert "etcd-k8s-3 is the active cert-manager but has no CA material" in run.output
    assert ha.root_fingerprint in run.output
    assert not sh("etcd-k8s-3", f"ls -A {CA} 2>/dev/null || true").strip()
    assert file_digests("etcd-k8s-3", KEYS_AND_CERTS) == ha.ssl_before["etcd-k8s-3"]


def test_two_active_cert_managers_are_refused(one_down):
    ha = one_down
    inv = tb.write_inventory(
        tb.STATE_DIR / "inventory_ha_two.py",
        nodes=tb.running_nodes(),
        data=ha.data,
        groups={CM: ["etcd-k8s-2", "etcd-k8s-3"]},
        host_data={
            "etcd-k8s-2": {"active_cert_manager": "etcd-k8s-2"},
            "etcd-k8s-3": {"active_cert_manager": "etcd-k8s-3"},
        },
    )
    run = deploy(inv)
    assert run.rc != 0 and "two active cert-managers named" in run.output


@pytest.fixture(scope="module")
def failed_over(one_down):
    ha = one_down
    inv = inventory(ha, "failover", "etcd-k8s-2", ["etcd-k8s-2"])
    ha.runs["failover"] = deploy(inv, "-vv")
    return ha


def test_failover_deploy_keeps_the_root_and_every_certificate(failed_over):
    ha = failed_over
    run = ha.runs["failover"]
    assert run.rc == 0, run.output[-4000:]
    assert is_active("etcd-k8s-2") == "active" and is_enabled("etcd-k8s-2") == "enabled"
    assert openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt") == ha.root_fingerprint
    ca_url = f"https://{ha.bed.ip('etcd-k8s-2')}:9000"
    for host in ("etcd-k8s-2", "etcd-k8s-3", "app-server"):
        # Nothing re-issued: certificates, keys and root file are byte-identical (the
        # CRL is the new CA's: it revoked again what the lost CA had revoked).
        assert file_digests(host, KEYS_AND_CERTS) == ha.ssl_before[host], host
        assert openssl_fingerprint(host, f"{SSL}/root_ca.crt") == ha.root_fingerprint
        defaults = sh(host, "cat /etc/step/config/defaults.json")
        assert ca_url in defaults and ha.root_fingerprint in defaults, host
    scan_controller(ha, run.output)


def test_revocations_survive_the_failover(failed_over):
    """The standby never held the lost CA's database: the deploy revoked again."""
    ha = failed_over
    assert ha.revoked_serial in crl_serials_at("app-server", "etcd-k8s-2")
    assert refused_by(("etcd-k8s-2", "etcd-k8s-3"), *OLD_FILES)
    assert renewal_refused_as_revoked("app-server", *OLD_FILES, ca="etcd-k8s-2")


def test_new_ca_serves_a_tls_certificate_for_its_own_name_and_address(failed_over):
    ha = failed_over
    ip = ha.bed.ip("etcd-k8s-2")
    out = sh(
        "app-server",
        f"echo | openssl s_client -connect {ip}:9000 -CAfile {SSL}/root_ca.crt "
        "-verify_return_error 2>/dev/null | openssl x509",
    )
    leaf = x509.load_pem_x509_certificate(out.encode())
    assert {"etcd-k8s-2", "etcd-k8s-2.local", ip} <= cert_sans(leaf)
    assert ha.bed.ip("etcd-k8s-1") not in cert_sans(leaf)
    rc, health = tb.exec_in("etcd-k8s-3", "STEPPATH=/etc/step /opt/bin/step ca health")
    assert rc == 0 and "ok" in health


def test_existing_certificate_renews_against_the_new_ca(failed_over):
    before, after = force_renew("etcd-k8s-3", "etcd-k8s-3-client")
    assert after != before
    crt = f"{SSL}/etcd-k8s-3-client.crt"
    assert sh("etcd-k8s-3", f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
    # etcd-k8s-1 is stopped: the renewal was served by etcd-k8s-2.
    assert ca_log_has_renewal("etcd-k8s-2", "etcd-k8s-3-client")


def test_new_node_gets_certificates_from_the_new_ca(failed_over):
    ha = failed_over
    tb.add("app-client-1", tb.GROUP_CLIENTS)
    ha.bed = tb.bed()
    inv = inventory(ha, "failover_add", "etcd-k8s-2", ["etcd-k8s-2"])
    run = deploy(inv, "--limit", f"@docker/{tb.container_name('app-client-1')}")
    assert run.rc == 0, run.output[-4000:]
    crt = f"{SSL}/app-client-1-client.crt"
    out = sh("app-client-1", f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
    assert out.strip().endswith(": OK")
    assert openssl_fingerprint("app-client-1", f"{SSL}/root_ca.crt") == ha.root_fingerprint
    journal = sh("etcd-k8s-2", "journalctl -u step-ca --no-pager -o cat")
    assert "subject=app-client-1-client" in journal


# --- phase 3: the old active comes back, listed as a standby ------------------------


def test_old_active_back_as_standby_stops_serving(failed_over):
    ha = failed_over
    tb.docker("start", tb.container_name("etcd-k8s-1"))
    tb.wait_for_boot("etcd-k8s-1")
    assert is_enabled("etcd-k8s-1") == "enabled"  # it would serve the old CA again
    inv = inventory(ha, "back", "etcd-k8s-2", ["etcd-k8s-2", "etcd-k8s-1"])
    run = deploy(inv)
    assert run.rc == 0, run.output[-4000:]
    ha.inventories["back"] = inv
    assert is_active("etcd-k8s-1") != "active" and is_enabled("etcd-k8s-1") != "enabled"
    assert list(material_digests("etcd-k8s-1").values()) == list(
        material_digests("etcd-k8s-2").values()
    )
    assert ca_stats("etcd-k8s-1") == EXPECTED
    assert f"https://{ha.bed.ip('etcd-k8s-2')}:9000" in sh(
        "etcd-k8s-1", "cat /etc/step/config/defaults.json"
    )
    again = deploy(inv)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()


# --- phase 4: encrypted backup ------------------------------------------------------


REVOKED = "/root/revoked-before-backup"


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


S3_BUCKET, S3_PREFIX = "etcd-backups", "prod/ca/"
S3_ACCESS, S3_SECRET = "etcdpkibackup", "S3-secret-of-the-test-bed-0123456789"


@pytest.fixture(scope="module")
def object_store(failed_over):
    """A real S3 server (Versity S3 Gateway: https, SigV4 checked) on the bed."""
    store = tb.start_object_store(S3_ACCESS, S3_SECRET, [S3_BUCKET])
    yield store
    tb.docker("rm", "-f", store.container, check=False)


def s3_backup(ha: Ha, store: tb.ObjectStore, env: dict[str, str], **data) -> Run:
    settings = {
        "backup_s3_endpoint": store.endpoint,
        "backup_s3_bucket": S3_BUCKET,
        "backup_s3_prefix": S3_PREFIX,
        "backup_s3_ca_file": str(store.ca_file),
        **data,
    }
    inv = inventory(ha, "s3", "etcd-k8s-2", ["etcd-k8s-2", "etcd-k8s-1"], **settings)
    return deploy(inv, "-vv", deploy_file="backup.py", env=env)


def test_backup_is_uploaded_to_s3_when_configured(failed_over, object_store):
    ha = failed_over
    before = set(ha.backup_dir.iterdir())
    env = {"AWS_ACCESS_KEY_ID": S3_ACCESS, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    run = s3_backup(ha, object_store, env)
    assert run.rc == 0, run.output[-4000:]
    (local,) = set(ha.backup_dir.iterdir()) - before
    # Read back from the server's own storage, not through our client.
    stored = f"{tb.OBJECT_STORE_ROOT}/{S3_BUCKET}/{S3_PREFIX}{local.name}"
    remote = tb.run(["docker", "exec", object_store.container, "cat", stored]).stdout
    assert remote == local.read_text() and remote.startswith("-----BEGIN AGE ENCRYPTED FILE")
    assert f"{object_store.endpoint}/{S3_BUCKET}/{S3_PREFIX}{local.name}" in run.output
    assert S3_SECRET not in run.output
    scan_controller(ha, run.output)


def test_s3_upload_problems_are_reported_clearly(failed_over, object_store):
    ha = failed_over
    count = len(list(ha.backup_dir.iterdir()))
    # No credentials: refused before any host is touched (no new backup).
    run = s3_backup(ha, object_store, {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert run.rc != 0
    assert "no AWS credentials were found on this controller" in run.output
    assert len(list(ha.backup_dir.iterdir())) == count
    # A wrong secret: the server refuses the signature; the local backup is kept.
    wrong = {"AWS_ACCESS_KEY_ID": S3_ACCESS, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    run = s3_backup(ha, object_store, wrong)
    # The server answers SignatureDoesNotMatch, or may reset the connection before the
    # body is sent: either way the upload is reported as failed.
    assert run.rc != 0 and "but its upload to S3 failed" in run.output, run.output[-4000:]
    assert "the backup is in" in run.output and "not-the-secret" not in run.output
    assert "Traceback" not in run.output  # the message alone, not pyinfra's traceback
    assert len(list(ha.backup_dir.iterdir())) == count + 1
    # The server's certificate is verified: without its CA the upload is refused.
    good = {"AWS_ACCESS_KEY_ID": S3_ACCESS, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    run = s3_backup(ha, object_store, good, backup_s3_ca_file="")
    assert run.rc != 0 and "CERTIFICATE_VERIFY_FAILED" in run.output
    assert S3_SECRET not in run.output


# --- phase 5: the CA node is destroyed; restore onto a fresh one ---------------------


@pytest.fixture(scope="module")
def fresh_ca_node(failed_over):
    """etcd-k8s-2 destroyed and rebuilt empty (same name and address), after its etcd
    member was removed from a survivor, as an operator would; a stray CA planted on it."""
    ha = failed_over
    assert ha.backup is not None
    tb.docker("rm", "-f", tb.container_name("etcd-k8s-2"))
    etcd_member_remove("etcd-k8s-1", "etcd-k8s-2")
    tb.add("etcd-k8s-2", tb.GROUP_ETCD)
    ha.bed = tb.bed()
    sh(
        "etcd-k8s-2",
        f"mkdir -p {CA}/certs {CA}/config && echo '{{}}' > {CA}/config/ca.json && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        f"-subj /CN=another-ca -keyout /dev/null -out {CA}/certs/root_ca.crt 2>/dev/null",
    )
    return ha


def restore(ha: Ha, *extra: str) -> Run:
    return deploy(
        ha.inventories["back"],
        "-vv",
        "--data",
        f"restore_from={ha.backup}",
        "--data",
        f"restore_identity_file={ha.identity_file}",
        *extra,
        deploy_file="restore.py",
    )


def test_restore_over_a_different_ca_is_refused_without_force(fresh_ca_node):
    ha = fresh_ca_node
    stray = openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt")
    run = restore(ha)
    assert run.rc != 0
    assert "etcd-k8s-2 already holds a different CA" in run.output
    assert "Traceback" not in run.output  # the refusal alone
    assert stray in run.output and "restore_force=true" in run.output
    assert openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt") == stray
    scan_controller(ha, run.output)


def test_restore_with_force_then_deploy_runs_the_same_ca(fresh_ca_node):
    ha = fresh_ca_node
    run = restore(ha, "--data", "restore_force=true")
    assert run.rc == 0, run.output[-4000:]
    scan_controller(ha, run.output)
    assert "existing CA moved aside" in run.output
    aside = sh("etcd-k8s-2", f"ls -d {CA}.replaced-*").split()
    assert len(aside) == 1
    assert ca_stats("etcd-k8s-2") == EXPECTED
    assert not sh("etcd-k8s-2", "ls -d /run/etcd-pki-* 2>/dev/null || true").strip()
    assert openssl_fingerprint("etcd-k8s-2", f"{CA}/certs/root_ca.crt") == ha.root_fingerprint
    sh("etcd-k8s-2", f"rm -rf {aside[0]}")

    run = deploy(ha.inventories["back"])
    assert run.rc == 0, run.output[-4000:]
    assert is_active("etcd-k8s-2") == "active"
    leaf = sh(
        "app-server",
        f"echo | openssl s_client -connect {ha.bed.ip('etcd-k8s-2')}:9000 "
        f"-CAfile {SSL}/root_ca.crt -verify_return_error 2>/dev/null | openssl x509",
    )
    cert = x509.load_pem_x509_certificate(leaf.encode())
    chain_root = sh("app-server", f"cat {SSL}/root_ca.crt")
    root = x509.load_pem_x509_certificate(chain_root.encode())
    assert root.fingerprint(hashes.SHA256()).hex() == ha.root_fingerprint
    assert ha.bed.ip("etcd-k8s-2") in cert_sans(cert)
    for host in ("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3", "app-server"):
        assert openssl_fingerprint(host, f"{SSL}/root_ca.crt") == ha.root_fingerprint


def test_a_certificate_revoked_before_the_backup_stays_revoked(fresh_ca_node):
    assert renewal_refused_as_revoked(
        "etcd-k8s-3", f"{REVOKED}/c.crt", f"{REVOKED}/c.key", ca="etcd-k8s-2"
    )


def test_revocations_survive_the_restore(fresh_ca_node):
    ha = fresh_ca_node
    serials = crl_serials_at("app-server", "etcd-k8s-2")
    assert ha.revoked_serial in serials
    revoked_test = read_cert("etcd-k8s-3", f"{REVOKED}/c.crt").serial_number
    assert revoked_test in serials
    assert refused_by(("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3"), *OLD_FILES)


def test_certificate_issued_before_the_backup_renews_after_the_restore(fresh_ca_node):
    # app-server-client dates from the very first deploy (CA on etcd-k8s-1).
    before, after = force_renew("app-server", "app-server-client")
    assert after != before
    assert ca_log_has_renewal("etcd-k8s-2", "app-server-client")
    rc, out = tb.exec_in(
        "app-server",
        f"etcdctl --endpoints=https://{tb.bed().ip('etcd-k8s-2')}:2379 --cacert "
        f"{SSL}/root_ca.crt --cert {SSL}/app-server-client.crt --key "
        f"{SSL}/app-server-client.key --dial-timeout=5s endpoint health 2>&1",
    )
    assert rc == 0 and "is healthy" in out, out


def test_after_the_restore_a_second_run_changes_nothing(fresh_ca_node):
    ha = fresh_ca_node
    # The renewal above is recorded in the CA's ledger, which goes to the standby.
    run = deploy(ha.inventories["back"])
    assert run.rc == 0, run.output[-3000:]
    assert set(run.changed_operations()) <= {
        "Ledger of issued certificates | Record issued certificates in /etc/step-ca/ledger.tsv",
        "CA material on standbys | Copy the CA material from etcd-k8s-2 to standbys "
        "(age-encrypted to a one-time key of each)",
    }, run.changed_operations()
    run = deploy(ha.inventories["back"])
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0, run.changed_operations()


# --- phase 6: a cert-manager is demoted ----------------------------------------------


def test_a_demoted_cert_manager_keeps_no_ca_keys(fresh_ca_node):
    ha = fresh_ca_node
    # A different CA on a host that never was a cert-manager is refused, not deleted.
    sh("etcd-k8s-3", f"mkdir -p {CA}/config {CA}/certs && echo '{{}}' > {CA}/config/ca.json")
    sh(
        "etcd-k8s-3",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        f"-subj /CN=another-ca -keyout /dev/null -out {CA}/certs/root_ca.crt 2>/dev/null",
    )
    refused = deploy(ha.inventories["back"])
    assert refused.rc != 0 and "etcd-k8s-3 holds CA material" in refused.output
    assert sh("etcd-k8s-3", f"ls {CA}/certs/root_ca.crt").strip()
    sh("etcd-k8s-3", f"rm -rf {CA}")

    inv = inventory(ha, "demoted", "etcd-k8s-2", ["etcd-k8s-2"])
    assert sh("etcd-k8s-1", f"ls {CA}/secrets").split()  # the standby's copy
    run = deploy(inv)
    assert run.rc == 0, run.output[-4000:]
    assert sh("etcd-k8s-1", f"ls -d {CA} 2>/dev/null || true").strip() == ""
    # Its database is kept aside, its keys and passwords are not.
    (aside,) = sh("etcd-k8s-1", f"ls -d {CA}.retired-*").split()
    kept = sh("etcd-k8s-1", f"ls {aside}").split()
    assert {"db", "ledger.tsv", "config"} <= set(kept) and "secrets" not in kept, kept
    assert is_enabled("etcd-k8s-1") != "enabled" and is_active("etcd-k8s-1") != "active"
    assert is_active("etcd-k8s-2") == "active"
    again = deploy(inv)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
