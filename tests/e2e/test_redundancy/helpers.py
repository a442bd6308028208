"""What the redundancy phases share: the scenario's state and constants, and the checks
that read results back from the containers (openssl, sha256sum, stat, systemctl and
step-ca's journal), not through the deploy's code."""

from __future__ import annotations

import base64
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from tests import testbed as tb

from ..conftest import SSL, Run, file_digests, sh

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
    # The root key's own password, age-encrypted (the scenario has backup_recipients).
    "secrets/root_ca_key.password.age": "root:root 400",
    "ledger.tsv": "root:root 644",
}
MATERIAL = [p for p in EXPECTED if "/" in p or p == "ledger.tsv"]
KEYS_AND_CERTS = f"{SSL}/*.crt {SSL}/*.key"
# A certificate revoked with revoke.py while etcd-k8s-1 is active (kept on app-server).
OLD_PAIR = "/root/revoked-app"
OLD_FILES = (f"{OLD_PAIR}/app-server-client.crt", f"{OLD_PAIR}/app-server-client.key")
# A certificate revoked before the backup (kept on etcd-k8s-3): still refused after
# the restore.
REVOKED = "/root/revoked-before-backup"


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


def ca_stats(host: str) -> dict[str, str]:
    out = sh(host, f"cd {CA} && stat -c '%n %U:%G %a' {' '.join(EXPECTED)}")
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}


def material_digests(host: str) -> dict[str, str]:
    return file_digests(host, " ".join(f"{CA}/{p}" for p in MATERIAL))


def is_active(host: str, unit: str = "step-ca") -> str:
    return sh(host, f"systemctl is-active {unit} || true").strip()


def is_enabled(host: str, unit: str = "step-ca") -> str:
    return sh(host, f"systemctl is-enabled {unit} 2>/dev/null || true").strip()


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
