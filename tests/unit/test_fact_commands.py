"""facts/pki.py: the shell side of StepVersions and CertStates, run by sh against fake
binaries that record each call."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from etcd_pki.plan import build_plan
from facts.pki import CertStates, StepVersions, version_marker_command

from .conftest import seed_hosts

FAKE_STEP = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
[ "$1" = version ] && echo "Smallstep CLI/$FAKE_VERSION (linux/amd64)"
"""


def sh(command: str, tmp: Path, **env: str) -> str:
    base = {"PATH": "/usr/bin:/bin", "FAKE_LOG": str(tmp / "log"), **env}
    done = subprocess.run(["sh", "-c", command], env=base, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "step").write_text(FAKE_STEP)
    (d / "step").chmod(0o755)
    return d


def versions(bin_dir: Path, tmp: Path, version: str = "0.30.6") -> dict[str, str]:
    out = sh(StepVersions().command(bin_dir=str(bin_dir)), tmp, FAKE_VERSION=version)
    return StepVersions().process(out.splitlines())


def calls(tmp: Path) -> int:
    log = tmp / "log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_without_a_marker_the_binary_is_asked(bin_dir, tmp_path):
    assert versions(bin_dir, tmp_path) == {"step": "0.30.6"}
    assert calls(tmp_path) == 1


def test_the_marker_answers_while_the_binary_is_the_same_file(bin_dir, tmp_path):
    sh(version_marker_command(str(bin_dir), "step"), tmp_path, FAKE_VERSION="0.30.6")
    before = calls(tmp_path)
    assert versions(bin_dir, tmp_path, version="9.9.9") == {"step": "0.30.6"}
    assert calls(tmp_path) == before  # answered from the marker


def test_a_replaced_binary_is_asked_again(bin_dir, tmp_path):
    sh(version_marker_command(str(bin_dir), "step"), tmp_path, FAKE_VERSION="0.30.6")
    new = bin_dir / "step.new"
    new.write_text(FAKE_STEP)
    new.chmod(0o755)
    os.replace(new, bin_dir / "step")  # another inode, as an upgrade by hand would be
    assert versions(bin_dir, tmp_path, version="0.31.0") == {"step": "0.31.0"}


def test_a_garbled_marker_is_not_trusted(bin_dir, tmp_path):
    (bin_dir / ".step.version").write_text("garbage\n")
    assert versions(bin_dir, tmp_path) == {"step": "0.30.6"}
    assert calls(tmp_path) == 1


FAKE_KEY_TOOL = """#!/bin/sh
[ "$1 $2 $3" = "crypto key public" ] && echo "PUBLIC-FROM-STEP"
"""


def test_the_public_half_comes_from_openssl_or_else_step(tmp_path, defaults, request):
    plan = build_plan(seed_hosts({**defaults, "ssl_dir": str(tmp_path / "ssl")}))
    cert = plan.hosts["app-server"].cert("client")
    (tmp_path / "ssl").mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    request.addfinalizer(Path(cert.key).unlink)  # no private key left in the temp dirs
    Path(cert.key).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    step = tmp_path / "step"
    step.write_text(FAKE_KEY_TOOL)
    step.chmod(0o755)
    command = CertStates().command(certs=(cert,), step=str(step))
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with_openssl = sh(command, tmp_path)
    assert public.decode() in with_openssl and "PUBLIC-FROM-STEP" not in with_openssl
    bare = tmp_path / "path"  # a host without openssl: only what the command needs
    bare.mkdir()
    for tool in ("stat", "cat"):
        (bare / tool).symlink_to(
            subprocess.check_output(["sh", "-c", f"command -v {tool}"], text=True).strip()
        )
    without = subprocess.run(
        ["/bin/sh", "-c", command], env={"PATH": str(bare)}, capture_output=True, text=True
    ).stdout
    assert "PUBLIC-FROM-STEP" in without and "BEGIN PUBLIC KEY" not in without
