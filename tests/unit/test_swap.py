"""A certificate and its key replaced by two renames, stopped at every point: never a key
and a certificate that do not match afterwards (etcd_pki/shell.finish_swap, in the
renewal unit's ExecStopPost and in the deploy's issuance). A fake `step` reads a
"public key" as the file's first word: a matching pair shares it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from etcd_pki.commands.certs import issue_command
from etcd_pki.commands.shell import finish_swap
from etcd_pki.plan import build_plan

from .conftest import seed_hosts

FAKE_STEP = """#!/bin/sh
case "$1 $2" in
"certificate key") [ -s "$3" ] && cut -d' ' -f1 "$3" ;;
"crypto key") [ -s "$4" ] && cut -d' ' -f1 "$4" ;;
"ca certificate")
  crt=$4 key=$5; read -r _ < /dev/null
  echo "$STEP_TOKEN cert" > "$crt"; echo "$STEP_TOKEN key" > "$key" ;;
esac
"""
# The rekey unit's steps after `step ca rekey` wrote both new files.
REKEY_STEPS = ("chmod", "chown", "chmod-crt", "mv-key", "mv-crt")


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "step").write_text(FAKE_STEP)
    (d / "step").chmod(0o755)
    return d


def pair(ssl: Path) -> tuple[str, str]:
    return (ssl / "c.crt").read_text().split()[0], (ssl / "c.key").read_text().split()[0]


@pytest.mark.parametrize("stopped_after", range(len(REKEY_STEPS) + 1))
def test_a_rekey_stopped_anywhere_leaves_a_matching_pair(tmp_path, bindir, stopped_after):
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    (ssl / "c.crt").write_text("OLD cert\n")
    (ssl / "c.key").write_text("OLD key\n")
    (ssl / ".c.crt.new").write_text("NEW cert\n")  # what step ca rekey wrote
    (ssl / ".c.key.new").write_text("NEW key\n")
    for step in REKEY_STEPS[:stopped_after]:
        if step == "mv-key":
            os.replace(ssl / ".c.key.new", ssl / "c.key")
        elif step == "mv-crt":
            os.replace(ssl / ".c.crt.new", ssl / "c.crt")
    stop_post = (
        finish_swap(f"{bindir}/step", f"{ssl}/.c.crt.new", f"{ssl}/c.crt", f"{ssl}/c.key")
        + f"; rm -f {ssl}/.c.crt.new {ssl}/.c.key.new"
    )
    subprocess.run(["sh", "-c", stop_post], check=True)
    crt, key = pair(ssl)
    assert crt == key, (stopped_after, crt, key)
    assert crt == ("NEW" if stopped_after >= REKEY_STEPS.index("mv-key") + 1 else "OLD")
    assert sorted(p.name for p in ssl.iterdir()) == ["c.crt", "c.key"]


def test_a_partial_certificate_is_never_moved(tmp_path, bindir):
    """Stopped inside `step ca rekey`: the new certificate's key is not the one in place."""
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    (ssl / "c.crt").write_text("OLD cert\n")
    (ssl / "c.key").write_text("OLD key\n")
    (ssl / ".c.crt.new").write_text("")  # cut short
    finish = finish_swap(f"{bindir}/step", f"{ssl}/.c.crt.new", f"{ssl}/c.crt", f"{ssl}/c.key")
    subprocess.run(["sh", "-c", finish], check=True)
    assert pair(ssl) == ("OLD", "OLD")


def test_the_deploys_issuance_interrupted_between_the_renames(tmp_path, bindir, defaults):
    """`mv` that stops the issuing shell (TERM) right after a key's rename."""
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    (bindir / "mv").write_text(
        '#!/bin/sh\n/bin/mv "$@" || exit $?\n'
        'case "$3" in *-server.key) kill -TERM "$PPID" ;; esac\n'
    )
    (bindir / "mv").chmod(0o755)
    for tool in ("chown", "systemctl"):
        (bindir / tool).write_text("#!/bin/sh\n")
        (bindir / tool).chmod(0o755)
    data = {"bin_dir": str(bindir), "ssl_dir": str(ssl), "step_dir": str(tmp_path / "st")}
    me = build_plan(seed_hosts({**defaults, **data})).hosts["etcd-k8s-2"]
    for cert in me.certs:  # the pairs in place before
        Path(cert.crt).write_text(f"OLD-{cert.kind} cert\n")
        Path(cert.key).write_text(f"OLD-{cert.kind} key\n")
    tokens = "".join(f"NEW-{c.kind}\n" for c in me.certs)
    done = subprocess.run(
        ["sh", "-c", issue_command(me, me.certs, "https://ca")],
        input=tokens,
        env={"PATH": f"{bindir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0  # stopped
    for cert in me.certs:
        crt, key = Path(cert.crt).read_text().split()[0], Path(cert.key).read_text().split()[0]
        assert crt == key, (cert.kind, crt, key)
    peer, server, client = (Path(c.crt).read_text().split()[0] for c in me.certs)
    assert (peer, server, client) == ("NEW-peer", "NEW-server", "OLD-client")
    assert not list(ssl.glob(".issue-*"))
