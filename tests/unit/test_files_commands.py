"""etcd_pki/commands/files.py: the shell each builder makes, run for real in a temp directory."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

from etcd_pki.commands.files import (
    directories_command,
    links_command,
    ownership_command,
    timers_enabled_command,
    units_enabled_command,
    write_files_command,
)

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True)


def mode(path) -> str:
    return oct(stat.S_IMODE(os.stat(path).st_mode))[2:]


def test_write_files_writes_content_and_mode_and_leaves_no_temp_file(tmp_path):
    a, b = tmp_path / "a.timer", tmp_path / "b.service"
    a.write_text("old")
    command = write_files_command(
        [(str(a), "[Timer]\nOnCalendar=daily\n", "644"), (str(b), "it's $HOME `x`\n", "600")],
        owner=USER,
        group=GROUP,
    )
    assert sh(command).returncode == 0
    assert a.read_text() == "[Timer]\nOnCalendar=daily\n" and mode(a) == "644"
    assert b.read_text() == "it's $HOME `x`\n" and mode(b) == "600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.timer", "b.service"]


def test_ownership_makes_directories_and_never_creates_files(tmp_path):
    d, f, missing = tmp_path / "x" / "db", tmp_path / "pw", tmp_path / "gone"
    f.write_text("secret")
    f.chmod(0o644)
    command = ownership_command(
        dirs=[(str(d), USER, GROUP, "700")],
        files=[(str(f), USER, GROUP, "400"), (str(missing), USER, GROUP, "400")],
    )
    assert sh(command).returncode == 0
    assert d.is_dir() and mode(d) == "700"
    assert mode(f) == "400" and not missing.exists()


def test_links_and_directories(tmp_path):
    command = " && ".join(
        [
            directories_command({str(tmp_path / "ssl"): "755"}),
            links_command({str(tmp_path / "ssl" / "peer-ca.crt"): "root_ca.crt"}),
        ]
    )
    assert sh(command).returncode == 0
    assert mode(tmp_path / "ssl") == "755"
    assert os.readlink(tmp_path / "ssl" / "peer-ca.crt") == "root_ca.crt"


def test_empty_builders_make_no_command():
    assert write_files_command([]) == ""
    assert ownership_command() == ""
    assert units_enabled_command([]) == ""
    assert units_enabled_command([], daemon_reload=True) == "systemctl daemon-reload"
    # `systemctl enable` reloads unit files itself: no second reload.
    assert (
        units_enabled_command(["a.timer", "b.timer"], daemon_reload=True)
        == "systemctl enable --now a.timer b.timer"
    )


# A fake `systemctl`: logs its arguments to $CALLS; fails `start` while $START_FAILS
# exists (as an older systemd that does not read a unit file it has not loaded).
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in start*) [ ! -e "$START_FAILS" ] || { echo "Unit $2 not found." >&2; exit 5; };; esac
"""


def run_with_fake_systemctl(tmp_path, command: str, start_fails: bool) -> tuple[int, list[str]]:
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    (bindir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bindir / "systemctl").chmod(0o755)
    calls.touch()
    if start_fails:
        (tmp_path / "start-fails").touch()
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "START_FAILS": str(tmp_path / "start-fails"),
    }
    proc = subprocess.run(["sh", "-c", command], env=env, capture_output=True, check=False)
    return proc.returncode, calls.read_text().splitlines()


def test_timers_enabled_without_reload_makes_links_then_starts(tmp_path):
    rc, calls = run_with_fake_systemctl(
        tmp_path, timers_enabled_command(["a.timer", "b.timer"]), start_fails=False
    )
    assert rc == 0
    assert calls == ["--root=/ enable a.timer b.timer", "start a.timer b.timer"]


def test_timers_enabled_falls_back_to_a_reloading_enable_when_start_fails(tmp_path):
    rc, calls = run_with_fake_systemctl(
        tmp_path, timers_enabled_command(["a.timer"]), start_fails=True
    )
    assert rc == 0
    assert calls == ["--root=/ enable a.timer", "start a.timer", "enable --now a.timer"]
