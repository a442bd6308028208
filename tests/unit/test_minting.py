"""tasks/certs.py: the CA-side token minting command (run by sh against a fake `step`
that records how it was called) and the parsing of its answer."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from pyinfra.api.exceptions import PyinfraError

from etcd_pki.plan import build_plan
from tasks.certs import mint_command, parse_minted

from .conftest import seed_hosts

# Laid out as `step ca init` writes it: another provisioner first, then ours with its
# key (kid) before its encryptedKey.
CA_JSON = """{
\t"authority": {
\t\t"provisioners": [
\t\t\t{
\t\t\t\t"type": "JWK",
\t\t\t\t"name": "someone-else",
\t\t\t\t"key": {
\t\t\t\t\t"kid": "OTHER"
\t\t\t\t},
\t\t\t\t"encryptedKey": "JWE-OTHER"
\t\t\t},
\t\t\t{
\t\t\t\t"type": "JWK",
\t\t\t\t"name": "etcd-provisioner",
\t\t\t\t"key": {
\t\t\t\t\t"use": "sig",
\t\t\t\t\t"kid": "KID1",
\t\t\t\t\t"crv": "P-256"
\t\t\t\t},
\t\t\t\t"encryptedKey": "JWE-OURS"
\t\t\t}
\t\t]
\t}
}
"""

# Decrypts only our JWE (to a key whose kid is $FAKE_KID); `ca token` answers
# tok-<subject>-<how it signed>, checks the key arrived on stdin, and refuses bad-*.
FAKE_STEP = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
"crypto jwe")
  [ "$(cat)" = JWE-OURS ] || exit 1
  printf '{"use":"sig","kty":"EC","kid":"%s","d":"PRIVATE-D"}\\n' "$FAKE_KID" ;;
"ca token")
  subject=$3; how=password
  for a in "$@"; do [ "$a" = --key ] && how=key; done
  if [ $how = key ]; then
    case "$(cat)" in *PRIVATE-D*) ;; *) echo "no key on stdin" >&2; exit 1 ;; esac
  fi
  case $subject in bad*) echo "the CA said no" >&2; exit 1 ;; esac
  echo "tok-$subject-$how" ;;
esac
"""


@pytest.fixture
def ca_node(tmp_path: Path, defaults):
    ca_dir, bin_dir = tmp_path / "step-ca", tmp_path / "bin"
    (ca_dir / "config").mkdir(parents=True)
    (ca_dir / "secrets").mkdir()
    bin_dir.mkdir()
    (ca_dir / "config/ca.json").write_text(CA_JSON)
    (ca_dir / "secrets/provisioner_password").write_text("pw")
    (bin_dir / "step").write_text(FAKE_STEP)
    (bin_dir / "step").chmod(0o755)
    data = {**defaults, "ca_dir": str(ca_dir), "bin_dir": str(bin_dir)}
    plan = build_plan(seed_hosts(data))
    return plan, tmp_path


def run(plan, tmp_path: Path, certs, kid: str = "KID1") -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "FAKE_LOG": str(tmp_path / "log"), "FAKE_KID": kid}
    return subprocess.run(
        ["sh", "-c", mint_command(plan.ca.settings, plan.ca_url, certs)],
        env=env,
        capture_output=True,
        text=True,
    )


def certs_of(plan, *names):
    return [plan.hosts[host].cert(kind) for host, kind in names]


def test_the_key_is_decrypted_once_and_never_shown(ca_node):
    plan, tmp = ca_node
    certs = certs_of(
        plan, ("etcd-k8s-2", "peer"), ("etcd-k8s-2", "server"), ("app-server", "client")
    )
    done = run(plan, tmp, certs)
    assert done.returncode == 0, done.stderr
    tokens = parse_minted(done.stdout, certs, "etcd-k8s-1")
    assert tokens == [f"tok-{c.subject}-key" for c in certs]
    log = (tmp / "log").read_text().splitlines()
    assert sum(line.startswith("crypto jwe decrypt") for line in log) == 1
    assert "PRIVATE-D" not in done.stdout + done.stderr + "".join(log)
    # each token is bound to its certificate's SANs
    peer_call = next(line for line in log if line.startswith(f"ca token {certs[0].subject}"))
    assert all(f"--san {n}" in peer_call for n in certs[0].sans)


def test_a_key_of_another_kid_falls_back_to_the_password_file(ca_node):
    plan, tmp = ca_node
    certs = certs_of(plan, ("etcd-k8s-3", "server"))
    done = run(plan, tmp, certs, kid="NOT-OURS")
    assert parse_minted(done.stdout, certs, "etcd-k8s-1") == [f"tok-{certs[0].subject}-password"]
    assert "--provisioner-password-file" in (tmp / "log").read_text()


def test_one_refused_token_fails_only_its_certificate(ca_node):
    plan, tmp = ca_node
    good = plan.hosts["app-server"].cert("client")
    bad = replace(good, host="bad", subject="bad-client")
    done = run(plan, tmp, [bad, good])
    results = parse_minted(done.stdout, [bad, good], "etcd-k8s-1")
    assert isinstance(results[0], PyinfraError)
    assert str(results[0]) == "could not mint a token for bad-client on etcd-k8s-1: the CA said no"
    assert results[1] == f"tok-{good.subject}-key"


def test_missing_or_garbled_answers_are_errors(ca_node):
    plan, _ = ca_node
    certs = certs_of(plan, ("etcd-k8s-2", "peer"), ("etcd-k8s-2", "server"))
    results = parse_minted("token 0 two words\nnoise\n", certs, "etcd-k8s-1")
    assert [type(r) for r in results] == [PyinfraError, PyinfraError]
    assert "no answer from the CA node" in str(results[1])


def test_tokens_minted_in_parallel_come_back_whole_and_in_their_places(ca_node):
    plan, tmp = ca_node
    certs = [c for h in plan.hosts.values() for c in h.certs]  # 10: more than the CPUs
    done = run(plan, tmp, certs)
    assert parse_minted(done.stdout, certs, "etcd-k8s-1") == [f"tok-{c.subject}-key" for c in certs]
    assert len(done.stdout.splitlines()) == len(certs)
