"""The audit of the controller: private material in files, the scan of the checkout and
the temp directories, and the summary's verdict."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from etcd_pki.audit import summary
from etcd_pki.controller_scan import private_material, scan_controller
from etcd_pki.findings import WARNING, Finding

from ..pki_fixtures import Ca

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def scratch():
    """A scratch directory *inside the repo's .testbed/* (not /tmp: concurrent e2e runs
    scan /tmp for private keys and must not see these test keys)."""
    path = REPO / ".testbed" / f"unit-scan-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _key_pem(encrypted: bool = False) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = (
        serialization.BestAvailableEncryption(b"pw") if encrypted else serialization.NoEncryption()
    )
    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, algorithm)


def test_private_material_kinds():
    assert private_material(_key_pem()) == "PEM PRIVATE KEY"
    assert private_material(_key_pem(encrypted=True)) == "PEM ENCRYPTED PRIVATE KEY"
    jwe = ".".join(["eyJ" + "a" * 150, "b" * 54, "c" * 16, "d" * 339, "e" * 22])
    assert private_material(f'{{"encryptedKey": "{jwe}"}}'.encode()) == "step JWK private key"
    assert private_material(b'{"encryptedKey": "eyJhbGciOiJQQkVTMi1IUzI1NiJ9.SECRET"}') is None
    assert private_material(b"AGE-SECRET-KEY-1" + b"Q" * 58) == "age secret key"
    # The words alone (docs, regexes in code) are not a key.
    # Built at run time so no tracked file carries a PEM private-key header.
    header = b"-----BEGIN " + b"PRIVATE KEY-----"
    assert private_material(b"grep '" + header + b"' file") is None
    assert private_material(Ca().root_pem.encode()) is None


def test_scan_controller_walks_the_repo_but_not_skipped_dirs(scratch):
    (scratch / "deep" / "er").mkdir(parents=True)
    (scratch / "deep" / "er" / "leaked.pem").write_bytes(_key_pem())
    (scratch / ".venv").mkdir()
    (scratch / ".venv" / "vendored-test-key.pem").write_bytes(_key_pem())
    (scratch / "notes.txt").write_text("no secrets here\n")
    (scratch / "provisioner_password").write_text("hunter2\n")
    findings = scan_controller([scratch])
    assert [(Path(f.path).relative_to(scratch).as_posix(), f.rule) for f in findings] == [
        ("deep/er/leaked.pem", "controller-private-key"),
        ("provisioner_password", "controller-private-key"),
    ]
    assert all(f.host == "controller" for f in findings)


def test_scan_controller_reads_temp_dirs_one_level_deep(scratch):
    (scratch / "tmpab12cd").write_bytes(b"xx\n" + _key_pem(encrypted=True))
    (scratch / "other-tool").mkdir()
    (scratch / "other-tool" / "its-own.key").write_bytes(_key_pem())
    findings = scan_controller([], shallow=[scratch])
    assert [Path(f.path).name for f in findings] == ["tmpab12cd"]
    assert "ENCRYPTED PRIVATE KEY" in findings[0].detail


def test_summary_names_host_file_and_rule_and_the_verdict():
    findings = [
        Finding(
            "etcd-k8s-2", "/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-mode", "mode 644, want 400"
        ),
        Finding("etcd-k8s-3", "/etc/etcd/ssl/etcd-k8s-3-peer.crt", "renewal-due", "70%", WARNING),
    ]
    text = summary(findings, ["etcd-k8s-2", "etcd-k8s-3"], [])
    assert "etcd-k8s-2  /etc/etcd/ssl/etcd-k8s-2-peer.key  key-mode" in text
    assert "[warning] 70%" in text
    assert text.splitlines()[-1].startswith("audit FAILED: 1 violation(s), 1 warning(s)")
    ok = summary(findings[1:], ["etcd-k8s-3"], [])
    assert ok.splitlines()[-1].startswith("audit passed")
    assert summary([], ["a"], ["b"]).endswith("not audited: b")
