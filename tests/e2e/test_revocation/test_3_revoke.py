"""revoke.py, and bad input to it and to remove_node.py."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from ..conftest import ALL_HOSTS, ETCD_HOSTS, SSL, deploy, read_cert, sh
from .helpers import (
    CRL,
    JWT,
    as_member,
    crl_serials,
    events,
    ledger,
    refused_everywhere,
    save,
    spy_on_command_lines,
    ssh,
    stop_spying,
    wait_for,
    watch,
    works_everywhere,
)

pytestmark = pytest.mark.e2e


def public(host: str, path: str) -> bytes:
    return (
        read_cert(host, path)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_revoke_replaces_every_key_of_a_member_and_ends_its_connections(bed):
    host = "etcd-k8s-3"
    old = {k: read_cert(host, f"{SSL}/{host}-{k}.crt") for k in ("peer", "server", "client")}
    old_keys = {k: public(host, f"{SSL}/{host}-{k}.crt") for k in old}
    crt, key = save(host, f"{host}-client", "k3-client")
    log = watch(host, crt, key, "etcd-k8s-1", "k3")
    wait_for(
        lambda: (
            as_member("etcd-k8s-2", "put", "k3", "before")[0] == 0
            and events(host, log, "k3") == ["before"]
        ),
        "the watch saw nothing",
    )

    # Every process's command line, read in a loop on the host and on the CA while the
    # tokens are minted, used for issuance and for revocation: none may hold a JWT.
    spies = {h: spy_on_command_lines(h) for h in (host, "etcd-k8s-1")}
    run = ssh(bed, "revoke.py", "--limit", host)
    for h, spy in spies.items():
        seen = stop_spying(h, spy)
        assert len(seen.splitlines()) > 100, f"{h}: the loop did not run"
        assert not JWT.search(seen), f"{h}: a token on a command line"
    assert run.rc == 0, run.output[-4000:]
    for kind, cert in old.items():
        assert public(host, f"{SSL}/{host}-{kind}.crt") != old_keys[kind], kind
        for member in ETCD_HOSTS:
            assert cert.serial_number in crl_serials(member), (kind, member)
    refused_everywhere(host, crt, key)
    works_everywhere(host, f"{SSL}/{host}-client.crt", f"{SSL}/{host}-client.key")
    rc, health = as_member("etcd-k8s-1", "endpoint", "health")
    assert rc == 0 and health.count("is healthy") == 3, health
    assert as_member("etcd-k8s-2", "put", "k3", "after")[0] == 0
    assert events(host, log, "k3") == ["before"]


def test_revoke_kinds_replaces_only_those(bed):
    host = "etcd-k8s-2"
    before = {
        k: read_cert(host, f"{SSL}/{host}-{k}.crt").serial_number
        for k in ("peer", "server", "client")
    }
    run = ssh(bed, "revoke.py", "--limit", host, "--data", "revoke_kinds=client")
    assert run.rc == 0, run.output[-4000:]
    after = {k: read_cert(host, f"{SSL}/{host}-{k}.crt").serial_number for k in before}
    assert after["peer"] == before["peer"] and after["server"] == before["server"]
    assert after["client"] != before["client"]
    assert before["client"] in crl_serials("etcd-k8s-1")
    assert before["peer"] not in crl_serials("etcd-k8s-1")


def test_after_revocations_a_deploy_changes_nothing(bed):
    run = deploy(bed.inventory_docker)
    assert run.rc == 0 and run.changed == 0, run.changed_operations()


@pytest.mark.parametrize(
    "entry, args, message",
    [
        ("revoke.py", (), "revoke.py needs the host to work on: --limit HOST"),
        (
            "revoke.py",
            ("--limit", "app-server", "--data", "revoke_kinds=client,bogus"),
            "revoke_kinds: bogus is not a certificate kind",
        ),
        (
            "revoke.py",
            ("--limit", "app-server", "--data", "revoke_kinds=peer"),
            "app-server has no peer certificate (it has: client)",
        ),
        ("remove_node.py", ("--limit", "etcd-k8s-1"), "etcd-k8s-1 runs the active CA"),
        (
            "remove_node.py",
            (
                "--limit",
                "etcd",
            ),
            "works on one host at a time",
        ),
    ],
)
def test_bad_input_is_refused_before_any_host_is_touched(bed, entry, args, message):
    crls = {h: sh(h, f"sha256sum {CRL}") for h in ETCD_HOSTS}
    certs = {h: sh(h, f"sha256sum {SSL}/*.crt") for h in ALL_HOSTS}
    lines = len(ledger())
    run = ssh(bed, entry, *args)
    assert run.rc != 0 and message in run.output, run.output[-2000:]
    assert "Traceback" not in run.output
    assert {h: sh(h, f"sha256sum {CRL}") for h in ETCD_HOSTS} == crls
    assert {h: sh(h, f"sha256sum {SSL}/*.crt") for h in ALL_HOSTS} == certs
    assert len(ledger()) == lines
