"""tasks/bootstrap.py: step's configuration written like `step ca bootstrap`, for real."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes

from etcd_pki.commands.certs import step_config_command
from tests.unit.pki_fixtures import Ca

# The files belong to root, as `step ca bootstrap` run by root leaves them.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="writes files owned by root")

URL = "https://10.0.0.11:9000"


def mode(path) -> str:
    return oct(stat.S_IMODE(os.stat(path).st_mode))[2:]


def test_root_and_defaults_are_written_with_step_s_modes(tmp_path):
    ca = Ca()
    step = tmp_path / "step"
    assert (
        subprocess.run(["sh", "-c", step_config_command(str(step), URL, ca.root_pem)]).returncode
        == 0
    )

    assert (step / "certs" / "root_ca.crt").read_text() == ca.root_pem
    defaults = json.loads((step / "config" / "defaults.json").read_text())
    # The fingerprint `step` checks: SHA-256 of the root's DER, in hex.
    assert defaults == {
        "ca-url": URL,
        "fingerprint": ca.root.fingerprint(hashes.SHA256()).hex(),
        "root": f"{step}/certs/root_ca.crt",
    }
    assert [mode(step), mode(step / "certs"), mode(step / "config")] == ["700"] * 3
    assert mode(step / "certs" / "root_ca.crt") == "600"
    assert mode(step / "config" / "defaults.json") == "644"


def test_rewrites_another_ca_s_configuration_and_leaves_no_temp_file(tmp_path):
    old, new, step = Ca("old"), Ca("new"), tmp_path / "step"
    command = step_config_command(str(step), "https://10.0.0.12:9000", old.root_pem)
    assert subprocess.run(["sh", "-c", command]).returncode == 0
    (step / "config").chmod(0o755)

    assert (
        subprocess.run(["sh", "-c", step_config_command(str(step), URL, new.root_pem)]).returncode
        == 0
    )

    assert (step / "certs" / "root_ca.crt").read_text() == new.root_pem
    assert json.loads((step / "config" / "defaults.json").read_text())["ca-url"] == URL
    assert mode(step / "config") == "700"
    assert sorted(p.name for p in step.rglob("*")) == [
        "certs",
        "config",
        "defaults.json",
        "root_ca.crt",
    ]
