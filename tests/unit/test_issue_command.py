"""tasks/certs.py: a host's certificates issued by one command, one token per line of
stdin (run by sh against a fake `step`, `chown` and `systemctl`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from etcd_pki.commands.certs import issue_command
from etcd_pki.plan import build_plan

from .conftest import seed_hosts

HOST = "etcd-k8s-2"

# `ca certificate SUBJECT CRT KEY ...` with the token in STEP_TOKEN (as the real step reads
# it): writes "SUBJECT T" into both files; fails for the token "refused"; anything on its
# stdin is an error (it is the next token). Its arguments go to $FAKE_LOG.
FAKE_STEP = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
subject=$3 crt=$4 key=$5 token=$STEP_TOKEN
if read -r extra; then echo "step read stdin: $extra" >&2; exit 3; fi
[ "$token" = refused ] && { echo "the CA said no" >&2; exit 1; }
echo "$subject $token" > "$crt"; echo "$subject $token" > "$key"
"""


@pytest.fixture
def node(tmp_path: Path, defaults):
    bin_dir, ssl_dir = tmp_path / "bin", tmp_path / "ssl"
    bin_dir.mkdir()
    ssl_dir.mkdir()
    for name, text in {
        "step": FAKE_STEP,
        "chown": "#!/bin/sh\n",
        "systemctl": "#!/bin/sh\n",
    }.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    data = {"bin_dir": str(bin_dir), "ssl_dir": str(ssl_dir), "step_dir": str(tmp_path / "step")}
    plan = build_plan(seed_hosts({**defaults, **data}))
    return plan.hosts[HOST], plan.ca_url, tmp_path


def run(me, ca_url: str, tmp: Path, tokens: list[str]) -> subprocess.CompletedProcess:
    env = {"PATH": f"{me.settings.bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(tmp / "log")}
    return subprocess.run(
        ["sh", "-c", issue_command(me, me.certs, ca_url)],
        input="".join(f"{t}\n" for t in tokens),
        env=env,
        capture_output=True,
        text=True,
    )


def test_each_certificate_gets_its_own_token_in_order(node):
    me, ca_url, tmp = node
    tokens = [f"tok-{cert.kind}" for cert in me.certs]
    done = run(me, ca_url, tmp, tokens)
    assert done.returncode == 0, done.stderr
    assert len(me.certs) == 3
    for cert, token in zip(me.certs, tokens, strict=True):
        assert Path(cert.crt).read_text() == f"{cert.subject} {token}\n"
        assert Path(cert.key).read_text() == f"{cert.subject} {token}\n"
        assert oct(Path(cert.key).stat().st_mode & 0o777) == "0o400"
        assert oct(Path(cert.crt).stat().st_mode & 0o777) == "0o644"
    assert len((tmp / "log").read_text().splitlines()) == 3
    # the temp directory is gone
    assert not list(Path(me.settings.ssl_dir).glob(".issue-*"))


def test_a_refused_token_stops_before_the_next_certificate(node):
    me, ca_url, tmp = node
    done = run(me, ca_url, tmp, ["tok-1", "refused", "tok-3"])
    assert done.returncode != 0
    assert "the CA said no" in done.stderr
    first, second, third = me.certs
    assert Path(first.crt).read_text() == f"{first.subject} tok-1\n"
    assert not Path(second.crt).exists() and not Path(second.key).exists()
    assert not Path(third.crt).exists()
    assert not list(Path(me.settings.ssl_dir).glob(".issue-*"))


def test_no_token_on_a_command_line(node):
    """/proc/PID/cmdline is readable by every user: the tokens travel in the environment."""
    me, ca_url, tmp = node
    tokens = [f"secret-token-{cert.kind}" for cert in me.certs]
    assert run(me, ca_url, tmp, tokens).returncode == 0
    arguments = (tmp / "log").read_text()
    assert "ca certificate" in arguments
    assert "secret-token" not in arguments and "--token" not in arguments
