"""Pure helpers of CA redundancy: settings, identity parsing, and the shell fragments
run against real files (sh, awk, sed, tar, sha256sum of this machine)."""

from __future__ import annotations

import grp
import hashlib
import io
import json
import os
import pwd
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from etcd_pki.commands.backup import (
    digest_command,
    encrypt_command,
    install_material_script,
    restore_db_script,
)
from etcd_pki.commands.ca import set_ca_url_command, set_dns_names_command
from etcd_pki.plan import build_plan
from etcd_pki.redundancy import (
    backup_filename,
    defaults_ca_url,
    dns_names_fact_command,
    identity_lines,
    is_age_file,
    parse_digests,
    parse_dns_names,
    parse_retired_roots,
    recipient_problems,
)
from etcd_pki.settings import ConfigError
from tests.agekeys import generate

from .conftest import seed_hosts

# The layout step writes (Go's json.MarshalIndent with tabs); the key is not a real one.
CA_JSON = """{
\t"root": "/etc/step-ca/certs/root_ca.crt",
\t"address": ":9000",
\t"dnsNames": [
\t\t"etcd-k8s-1",
\t\t"etcd-k8s-1.local",
\t\t"10.0.1.10"
\t],
\t"authority": {
\t\t"provisioners": [
\t\t\t{
\t\t\t\t"type": "JWK",
\t\t\t\t"encryptedKey": "eyJhbGciOiJQQkVTMi1IUzI1NitBMTI4S1ciLCJlbmMiOiJBMTI4R0NNIn0.SECRET",
\t\t\t\t"options": {"x509": {"dnsNames": ["not-this-one"]}}
\t\t\t}
\t\t]
\t}
}
"""
MATERIAL = ("config/ca.json", "certs/root_ca.crt", "secrets/password")


def sh(command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=cwd)


# --- settings ---------------------------------------------------------------------


def test_recipients_are_validated_with_a_clear_message(defaults):
    _, recipient = generate()
    assert recipient_problems([recipient]) == []
    assert recipient_problems([]) == []
    problems = recipient_problems(["age1tooshort", recipient, recipient])
    assert "`backup_recipients` entry 'age1tooshort' is not an age public key" in problems[0]
    assert "same key twice" in problems[1]
    assert recipient_problems("age1...") == [
        "`backup_recipients` must be a list of age public keys (age1...)"
    ]
    # A secret key pasted by mistake is refused without being echoed in full.
    identity, _ = generate()
    (problem,) = recipient_problems([identity])
    assert "SECRET key" in problem and identity[15:] not in problem
    hosts = seed_hosts(defaults, **{"etcd-k8s-1": {"backup_recipients": ["ssh-rsa AAAA"]}})
    with pytest.raises(ConfigError, match="host etcd-k8s-1: `backup_recipients` entry"):
        build_plan(hosts)


def test_backup_dir_must_be_named(defaults):
    with pytest.raises(ConfigError, match="`backup_dir` must name a directory"):
        build_plan(seed_hosts(defaults, **{"etcd-k8s-2": {"backup_dir": " "}}))


def test_identity_lines():
    identity, _ = generate()
    text = f"# created: 2025-01-01\n# public key: age1...\n{identity}\n\n"
    assert identity_lines(text) == [identity]
    with pytest.raises(ValueError, match="no age identity"):
        identity_lines("# only a comment\n")
    with pytest.raises(ValueError, match="line 2 is neither") as error:
        identity_lines(f"{identity}\n{identity[:-3]}xyz\n")
    assert identity[:20] not in str(error.value)


def test_is_age_file_and_backup_name():
    assert is_age_file(b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl")
    assert is_age_file(b"age-encryption.org/v1\n-> X25519 abc\n")
    assert not is_age_file(b"-----BEGIN " + b"PRIVATE KEY-----\n")
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert backup_filename("etcd default ca", "etcd-k8s-2", when) == (
        "etcd-default-ca_etcd-k8s-2_20250304T050607Z.tar.age"
    )


# --- ca.json and defaults.json edits ----------------------------------------------


def test_dns_names_are_rewritten_in_place_keeping_everything_else(tmp_path):
    ca_json = tmp_path / "ca.json"
    ca_json.write_text(CA_JSON)
    ca_json.chmod(0o640)
    names = ["etcd-k8s-2", "etcd-k8s-2.local", "10.0.1.11", "localhost", "127.0.0.1"]
    result = sh(set_dns_names_command(str(ca_json), names))
    assert result.returncode == 0, result.stderr
    data = json.loads(ca_json.read_text())
    assert data["dnsNames"] == names
    # Only the top-level array changed; the rest is byte-identical.
    before, after = json.loads(CA_JSON), data
    before.pop("dnsNames"), after.pop("dnsNames")
    assert before == after
    assert oct(ca_json.stat().st_mode & 0o777) == "0o640"
    assert not list(tmp_path.glob("ca.json.*")), "temporary file left behind"


def test_dns_names_one_line_form_and_missing_array(tmp_path):
    ca_json = tmp_path / "ca.json"
    ca_json.write_text('{"address": ":9000", "dnsNames": ["a", "b"], "x": 1}\n')
    assert sh(set_dns_names_command(str(ca_json), ["c"])).returncode == 0
    assert json.loads(ca_json.read_text()) == {"address": ":9000", "dnsNames": ["c"], "x": 1}
    ca_json.write_text('{"address": ":9000"}\n')
    result = sh(set_dns_names_command(str(ca_json), ["c"]))
    assert result.returncode == 3
    assert ca_json.read_text() == '{"address": ":9000"}\n'
    with pytest.raises(ValueError):
        set_dns_names_command(str(ca_json), ['x"; rm -rf /'])


def test_dns_names_fact_reads_only_that_array(tmp_path):
    ca_json = tmp_path / "ca.json"
    ca_json.write_text(CA_JSON)
    out = sh(dns_names_fact_command(str(ca_json))).stdout
    assert "SECRET" not in out and "encryptedKey" not in out
    assert parse_dns_names(out.splitlines()) == ["etcd-k8s-1", "etcd-k8s-1.local", "10.0.1.10"]
    missing = sh(dns_names_fact_command(str(tmp_path / "none.json"))).stdout
    assert parse_dns_names(missing.splitlines()) is None


def test_ca_url_is_rewritten(tmp_path):
    defaults = tmp_path / "defaults.json"
    defaults.write_text(
        '{\n\t"ca-url": "https://10.0.1.10:9000",\n\t"fingerprint": "ab",\n'
        '\t"root": "/etc/step-ca/certs/root_ca.crt"\n}'
    )
    result = sh(set_ca_url_command(str(defaults), "https://10.0.1.11:9000"))
    assert result.returncode == 0, result.stderr
    assert defaults_ca_url(defaults.read_text()) == "https://10.0.1.11:9000"
    assert json.loads(defaults.read_text())["fingerprint"] == "ab"
    assert defaults_ca_url("not json") is None and defaults_ca_url(None) is None


# --- material: hashes, archive, install ------------------------------------------


def _material(root: Path, password: str = "pw") -> None:
    for path, text in zip(MATERIAL, ("{}", "ROOT", password), strict=True):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def test_digests_compare_names_and_contents(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _material(a)
    _material(b)
    digest_a = parse_digests(sh(digest_command(str(a), MATERIAL)).stdout)
    assert digest_a == parse_digests(sh(digest_command(str(b), MATERIAL)).stdout)
    (b / "secrets/password").write_text("other")
    digest_b = parse_digests(sh(digest_command(str(b), MATERIAL)).stdout)
    assert digest_b[0] != digest_a[0] and digest_b[1] == digest_a[1]
    (b / "secrets/password").unlink()
    assert parse_digests(sh(digest_command(str(b), MATERIAL)).stdout)[0] not in digest_a
    assert parse_digests(sh(digest_command(str(tmp_path / "none"), MATERIAL)).stdout) == (
        "none",
        "none",
    )
    # Only hashes come out, never the contents.
    assert "pw" not in sh(digest_command(str(a), MATERIAL)).stdout


def test_digests_name_the_roots_a_rotation_retired(tmp_path):
    a = tmp_path / "a"
    _material(a)
    assert parse_retired_roots(sh(digest_command(str(a), MATERIAL)).stdout) == frozenset()
    (a / "retired").mkdir()
    (a / "retired/root_ca.20260101T000000Z.crt").write_text("OLD ROOT")
    (a / "retired/intermediate_ca.20260101T000000Z.crt").write_text("OLD INTERMEDIATE")
    out = sh(digest_command(str(a), MATERIAL)).stdout
    assert parse_retired_roots(out) == {hashlib.sha256(b"OLD ROOT").hexdigest()}
    assert parse_digests(out)[1] == hashlib.sha256(b"ROOT").hexdigest()


def _fake_age(tmp_path: Path) -> dict[str, str]:
    """An `age` that passes the plaintext through, to test the tar and error handling."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "age").write_text("#!/bin/sh\ncat\n")
    (bin_dir / "age").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_encrypt_command_archives_exactly_the_material(tmp_path, monkeypatch):
    ca = tmp_path / "ca"
    _material(ca)
    (ca / "db").mkdir()
    (ca / "db" / "badger").write_text("per instance")
    env = _fake_age(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    cmd = encrypt_command(str(ca), MATERIAL, ["age1x"]).replace("/run/", f"{tmp_path}/")
    result = subprocess.run(["sh", "-c", cmd], capture_output=True, env=env)
    assert result.returncode == 0, result.stderr
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        assert sorted(tar.getnames()) == sorted(MATERIAL)
    (ca / "secrets/password").unlink()
    result = subprocess.run(["sh", "-c", cmd], capture_output=True, env=env, text=True)
    assert result.returncode == 3
    assert "secrets/password is missing" in result.stderr


def test_optional_material_goes_in_only_when_it_exists(tmp_path, monkeypatch):
    ca = tmp_path / "ca"
    _material(ca)
    env = _fake_age(tmp_path)
    optional = "secrets/root_ca_key.password.age"
    cmd = encrypt_command(str(ca), [*MATERIAL, optional], ["age1x"], optional=[optional])
    cmd = cmd.replace("/run/", f"{tmp_path}/")
    for present in (False, True):
        if present:
            (ca / optional).write_text("ciphertext")
        result = subprocess.run(["sh", "-c", cmd], capture_output=True, env=env)
        assert result.returncode == 0, result.stderr
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
            assert sorted(tar.getnames()) == sorted([*MATERIAL, *([optional] if present else [])])


def _fake_systemctl(tmp_path, active: bool, unloaded: bool = False) -> Path:
    """A `systemctl` on PATH that logs its arguments (is-active answers ``active``;
    ``unloaded``: reset-failed fails, as for a unit systemd unloaded once stopped)."""
    log = tmp_path / "systemctl.log"
    script = tmp_path / "bin" / "systemctl"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\n[ "$1" != is-active ] || exit {0 if active else 3}\n'
        f'[ "$1" != reset-failed ] || exit {1 if unloaded else 0}\n'
    )
    script.chmod(0o755)
    return log


def test_backup_archives_the_database_with_step_ca_stopped_meanwhile(tmp_path, monkeypatch):
    ca = tmp_path / "ca"
    _material(ca)
    (ca / "db").mkdir()
    (ca / "db" / "000000.vlog").write_text("revocations")
    env = _fake_age(tmp_path)
    log = _fake_systemctl(tmp_path, active=True)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    cmd = encrypt_command(str(ca), MATERIAL, ["age1x"], db_service="step-ca.service")
    cmd = cmd.replace("/run/", f"{tmp_path}/")
    result = subprocess.run(["sh", "-c", cmd], capture_output=True, env=env)
    assert result.returncode == 0, result.stderr
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        assert sorted(tar.getnames()) == sorted([*MATERIAL, "db", "db/000000.vlog"])
    assert log.read_text().splitlines() == [
        "is-active --quiet step-ca.service",
        "stop step-ca.service",
        "reset-failed step-ca.service",  # deliberate: not counted as a crash loop
        "start step-ca.service",
    ]
    # age fails after the stop: step-ca is started again all the same.
    log.unlink()
    (tmp_path / "bin" / "age").write_text("#!/bin/sh\ncat >/dev/null; exit 1\n")
    result = subprocess.run(["sh", "-c", cmd], capture_output=True, env=env)
    assert result.returncode != 0
    assert log.read_text().splitlines()[-1] == "start step-ca.service"


def test_backup_starts_step_ca_again_when_systemd_unloaded_it(tmp_path, monkeypatch):
    ca = tmp_path / "ca"
    _material(ca)
    (ca / "db").mkdir()
    env = _fake_age(tmp_path)
    log = _fake_systemctl(tmp_path, active=True, unloaded=True)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    cmd = encrypt_command(str(ca), MATERIAL, ["age1x"], db_service="step-ca.service")
    result = subprocess.run(["sh", "-c", cmd.replace("/run/", f"{tmp_path}/")], env=env)
    assert result.returncode == 0
    assert log.read_text().splitlines()[-2:] == [
        "reset-failed step-ca.service",
        "start step-ca.service",
    ]


def test_backup_of_a_stopped_ca_leaves_it_stopped(tmp_path, monkeypatch):
    ca = tmp_path / "ca"
    _material(ca)
    (ca / "db").mkdir()
    env = _fake_age(tmp_path)
    log = _fake_systemctl(tmp_path, active=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    cmd = encrypt_command(str(ca), MATERIAL, ["age1x"], db_service="step-ca.service")
    result = subprocess.run(["sh", "-c", cmd.replace("/run/", f"{tmp_path}/")], env=env)
    assert result.returncode == 0
    assert log.read_text().splitlines() == ["is-active --quiet step-ca.service"]


@pytest.mark.parametrize(
    ("existing", "expected"), [(None, "restored"), ("", "restored"), ("records", "kept")]
)
def test_restore_installs_the_database_only_over_an_empty_one(tmp_path, existing, expected):
    (tmp_path / "t" / "m" / "db").mkdir(parents=True)
    (tmp_path / "t" / "m" / "db" / "000000.vlog").write_text("from the backup")
    ca = tmp_path / "ca"
    ca.mkdir()
    if existing is not None:
        (ca / "db").mkdir()
        if existing:
            (ca / "db" / "000000.vlog").write_text(existing)
    _fake_systemctl(tmp_path, active=False)
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    script = f"set -e; t={tmp_path}/t; " + restore_db_script(str(ca), user, group, "step-ca")
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"__restoredb__ {expected}"
    content = (ca / "db" / "000000.vlog").read_text()
    assert content == ("from the backup" if expected == "restored" else existing)
    if expected == "restored":
        assert oct((ca / "db").stat().st_mode & 0o777) == "0o700"
        assert oct((ca / "db" / "000000.vlog").stat().st_mode & 0o777) == "0o600"
    assert not (ca / "db.restore-new").exists()


def test_restore_of_an_archive_without_database_says_so(tmp_path):
    (tmp_path / "t" / "m").mkdir(parents=True)
    script = f"t={tmp_path}/t; " + restore_db_script(str(tmp_path), "root", "root", "step-ca")
    assert sh(script).stdout.strip() == "__restoredb__ absent"


def test_install_script_sets_owner_and_mode_and_is_atomic(tmp_path):
    source, ca = tmp_path / "t" / "m", tmp_path / "ca"
    _material(source, password="new")
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    files = [(p, user, group, m) for p, m in zip(MATERIAL, ("640", "644", "400"), strict=True)]
    dirs = [("", user, group, "750")] + [
        (d, user, group, "750") for d in ("config", "certs", "secrets", "db")
    ]
    script = f"set -e; t={tmp_path}/t; " + install_material_script(str(ca), files, dirs)
    result = sh(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "installed"
    assert (ca / "secrets/password").read_text() == "new"
    assert oct((ca / "secrets/password").stat().st_mode & 0o777) == "0o400"
    assert oct((ca / "config/ca.json").stat().st_mode & 0o777) == "0o640"
    assert oct(ca.stat().st_mode & 0o777) == "0o750" and (ca / "db").is_dir()
    assert not list(ca.rglob("*.restore-new"))
    assert sh(script).stdout.strip() == "unchanged"
    (source / "certs/root_ca.crt").unlink()
    result = sh(script)
    assert result.returncode == 4 and "the archive lacks certs/root_ca.crt" in result.stderr


def test_mirrored_files_the_archive_lacks_go(tmp_path):
    """A rotation's files: a standby holds exactly what the active holds."""
    source, ca = tmp_path / "t" / "m", tmp_path / "ca"
    _material(source, password="pw")
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    files = [(p, user, group, m) for p, m in zip(MATERIAL, ("640", "644", "400"), strict=True)]
    files.append(("rotation/state", user, group, "644"))
    dirs = [("", user, group, "750")] + [
        (d, user, group, "750") for d in ("config", "certs", "secrets", "db", "rotation")
    ]
    script = f"set -e; t={tmp_path}/t; " + install_material_script(
        str(ca), files, dirs, optional=("rotation/state",), mirrored=("rotation/state",)
    )
    (source / "rotation").mkdir()
    (source / "rotation/state").write_text("root prepared x\n")
    assert sh(script).stdout.strip() == "installed"
    assert (ca / "rotation/state").read_text() == "root prepared x\n"
    assert sh(script).stdout.strip() == "unchanged"
    (source / "rotation/state").unlink()  # the active finished its rotation
    assert sh(script).stdout.strip() == "installed"
    assert not (ca / "rotation/state").exists()
    assert sh(script).stdout.strip() == "unchanged"


def test_backup_mac(tmp_path):
    from etcd_pki.redundancy import backup_mac, mac_key, mac_matches

    key_file = tmp_path / "mac.key"
    # Random bytes may begin or end with whitespace: every byte is part of the key.
    key_file.write_bytes(b"\n" + os.urandom(30) + b" ")
    key_file.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        mac_key(str(key_file))
    key_file.chmod(0o600)
    key = mac_key(str(key_file))
    assert key == key_file.read_bytes() and len(key) == 32
    line = backup_mac(key, b"ciphertext")
    assert line.startswith("hmac-sha256 ") and mac_matches(key, b"ciphertext", line)
    assert not mac_matches(key, b"ciphertexT", line)
    assert not mac_matches(os.urandom(32), b"ciphertext", line)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 10)
    short.chmod(0o600)
    with pytest.raises(ValueError, match="holds 10 bytes"):
        mac_key(str(short))
