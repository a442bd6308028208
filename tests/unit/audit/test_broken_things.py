"""One broken thing at a time on a host otherwise as deployed: each is expected to
produce exactly its rule on its file."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from etcd_pki.certs import FileMeta
from etcd_pki.findings import ERROR, RULES
from etcd_pki.observation import FileStat, HostObservation, UnitState

from ..pki_fixtures import Ca, good_cert, good_observation, public_pem
from .conftest import audit, peer


def with_cert(obs, name, **changes):
    certs = dict(obs.certs)
    certs[name] = replace(certs[name], **changes)
    return replace(obs, certs=certs)


CASES = {
    "key mode 644": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", key_meta=FileMeta("etcd", "644")),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-mode")],
    ),
    "key owned by root on an etcd host": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-server", key_meta=FileMeta("root", "400")),
        [("/etc/etcd/ssl/etcd-k8s-2-server.key", "key-owner")],
    ),
    "certificate mode 600": (
        "app-server",
        lambda o, p, c: with_cert(o, "app-server-client", crt_meta=FileMeta("root", "600")),
        [("/etc/etcd/ssl/app-server-client.crt", "crt-mode")],
    ),
    "certificate deleted": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", chain_pem=[], crt_meta=None),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "cert-missing")],
    ),
    "key deleted": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", key_public_pem=None, key_meta=None),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-missing")],
    ),
    "key unreadable": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", key_public_pem=None),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-unreadable")],
    ),
    "key of another certificate": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(
            o,
            "etcd-k8s-2-peer",
            key_public_pem=public_pem(ec.generate_private_key(ec.SECP256R1())),
        ),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.key", "key-mismatch")],
    ),
    "issued by another CA": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", **_fields(good_cert(Ca("rogue"), peer(p)))),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "chain")],
    ),
    "a SAN missing": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(
            o,
            "etcd-k8s-2-peer",
            **_fields(good_cert(c, peer(p), sans=("etcd-k8s-2", "etcd-k8s-2.local"))),
        ),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "sans")],
    ),
    "wrong subject": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(
            o, "etcd-k8s-2-peer", **_fields(good_cert(c, peer(p), subject="etcd-k8s-9"))
        ),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "subject")],
    ),
    "peer certificate without clientAuth": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(
            o,
            "etcd-k8s-2-peer",
            **_fields(good_cert(c, peer(p), ekus=(ExtendedKeyUsageOID.SERVER_AUTH,))),
        ),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "eku")],
    ),
    "client certificate that can also serve": (
        "app-server",
        lambda o, p, c: with_cert(
            o,
            "app-server-client",
            **_fields(
                good_cert(
                    c,
                    p.hosts["app-server"].cert("client"),
                    ekus=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
                )
            ),
        ),
        [("/etc/etcd/ssl/app-server-client.crt", "eku-extra")],
    ),
    "expired": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", **_fields(good_cert(c, peer(p), used=1.2))),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "expired")],
    ),
    "renewal overdue (90% used, threshold 66%)": (
        "etcd-k8s-2",
        lambda o, p, c: with_cert(o, "etcd-k8s-2-peer", **_fields(good_cert(c, peer(p), used=0.9))),
        [("/etc/etcd/ssl/etcd-k8s-2-peer.crt", "renewal-overdue")],
    ),
    "timer disabled": (
        "etcd-k8s-3",
        lambda o, p, c: replace(
            o,
            timers={
                **o.timers,
                "step-renew-etcd-k8s-3-client.timer": UnitState(
                    "step-renew-etcd-k8s-3-client.timer", True, "disabled", "inactive"
                ),
            },
        ),
        [
            ("/etc/systemd/system/step-renew-etcd-k8s-3-client.timer", "timer-disabled"),
            ("/etc/systemd/system/step-renew-etcd-k8s-3-client.timer", "timer-inactive"),
        ],
    ),
    "timer not installed": (
        "app-server",
        lambda o, p, c: replace(
            o,
            timers={
                "step-renew-app-server-client.timer": UnitState(
                    "step-renew-app-server-client.timer", False, "", "inactive"
                )
            },
        ),
        [("/etc/systemd/system/step-renew-app-server-client.timer", "timer-missing")],
    ),
    "root certificate missing on the host": (
        "app-server",
        lambda o, p, c: replace(o, root_pem=None),
        [("/etc/etcd/ssl/root_ca.crt", "root-missing")],
    ),
    "root certificate of another CA on the host": (
        "app-server",
        lambda o, p, c: replace(o, root_pem=Ca("old").root_pem),
        [("/etc/etcd/ssl/root_ca.crt", "root-mismatch")],
    ),
    "root CA key readable by the group": (
        "etcd-k8s-1",
        lambda o, p, c: replace(
            o,
            stats={**o.stats, "/etc/step-ca/secrets/root_ca_key": FileStat("root", "root", "440")},
        ),
        [("/etc/step-ca/secrets/root_ca_key", "ca-file-mode")],
    ),
    "intermediate key owned by root": (
        "etcd-k8s-1",
        lambda o, p, c: replace(
            o,
            stats={
                **o.stats,
                "/etc/step-ca/secrets/intermediate_ca_key": FileStat("root", "root", "400"),
            },
        ),
        [("/etc/step-ca/secrets/intermediate_ca_key", "ca-file-owner")],
    ),
    "CA key missing": (
        "etcd-k8s-1",
        lambda o, p, c: replace(o, stats={**o.stats, "/etc/step-ca/secrets/root_ca_key": None}),
        [("/etc/step-ca/secrets/root_ca_key", "ca-file-missing")],
    ),
    "step-ca stopped": (
        "etcd-k8s-1",
        lambda o, p, c: replace(
            o, ca_service=UnitState("step-ca.service", True, "enabled", "failed")
        ),
        [("/etc/systemd/system/step-ca.service", "ca-service")],
    ),
    "CA key copied to a member": (
        "etcd-k8s-2",
        lambda o, p, c: replace(
            o,
            secret_files=["/root/root_ca_key"],
            private_key_files=[*o.private_key_files, "/root/root_ca_key"],
        ),
        [("/root/root_ca_key", "ca-secret-off-manager")],
    ),
    "CA password on a client": (
        "app-server",
        lambda o, p, c: replace(o, secret_files=["/etc/step-ca/secrets/password"]),
        [("/etc/step-ca/secrets/password", "ca-secret-off-manager")],
    ),
    "CA key backup left in /tmp on the CA": (
        "etcd-k8s-1",
        lambda o, p, c: replace(o, secret_files=[*o.secret_files, "/tmp/intermediate_ca_key"]),
        [("/tmp/intermediate_ca_key", "ca-secret-outside-ca-dir")],
    ),
    "an interrupted issuance left a key behind": (
        "etcd-k8s-3",
        lambda o, p, c: replace(
            o,
            private_key_files=[*o.private_key_files, "/etc/etcd/ssl/.issue-Ab12/key"],
        ),
        [("/etc/etcd/ssl/.issue-Ab12/key", "stray-private-key")],
    ),
    "facts could not be read": (
        "etcd-k8s-3",
        lambda o, p, c: HostObservation(error="facts could not be read: connection refused"),
        [("-", "unreachable")],
    ),
}


def _fields(found):
    return {
        "chain_pem": found.chain_pem,
        "key_public_pem": found.key_public_pem,
        "crt_meta": found.crt_meta,
        "key_meta": FileMeta(found.key_meta.owner, "400"),
    }


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_broken_thing_is_reported_with_host_file_and_rule(plan, ca, case):
    name, mutate, expected = CASES[case]
    obs = mutate(good_observation(ca, plan.hosts[name]), plan, ca)
    findings = audit(plan, ca, name, obs)
    assert sorted((f.path, f.rule) for f in findings) == sorted(expected), findings
    assert all(f.host == name and f.severity == ERROR for f in findings)
    assert all(f.rule in RULES for f in findings)
