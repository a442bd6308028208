"""etcd_pki/shell.py: a cleanup runs when the shell is interrupted, not only on exit
(dash runs no EXIT trap on a signal by itself). The signal goes to the whole process
group, as a lost SSH session (HUP) or systemd stopping a unit (TERM) sends it."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from etcd_pki.commands.shell import on_exit


def _default_signals() -> None:
    """In the child: the signals at their defaults. A shell cannot trap a signal that
    was ignored when it started (POSIX), and a test run under nohup ignores HUP."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def dash(script: str) -> subprocess.Popen:
    """``script`` under dash in its own process group, its first line readable."""
    return subprocess.Popen(
        ["dash", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_signals,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_cleanup_runs_when_interrupted(tmp_path: Path, sig):
    work = tmp_path / "work"
    script = f"mkdir {work}; {on_exit(f'rm -rf {work}')}; echo ready; sleep 30 & wait"
    proc = dash(script)
    assert proc.stdout.readline() == "ready\n" and work.is_dir()
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=10) != 0
    assert not work.exists()


def test_without_it_dash_leaves_the_mess(tmp_path: Path):
    """What the fragment fixes: an EXIT trap alone does not run on TERM."""
    work = tmp_path / "work"
    script = f"mkdir {work}; trap 'rm -rf {work}' EXIT; echo ready; sleep 30 & wait"
    proc = dash(script)
    assert proc.stdout.readline() == "ready\n"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    assert work.exists()
