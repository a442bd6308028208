"""When must the deploy (re)issue a certificate? Pure checks on a real test CA."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from etcd_pki.certs import (
    FileMeta,
    fingerprint,
    parse_state_output,
    permission_problems,
    reissue_reason,
)
from etcd_pki.plan import build_plan

from .conftest import seed_hosts
from .pki_fixtures import NOW, Ca, good_cert, pem, public_pem


@pytest.fixture
def spec(defaults):
    plan = build_plan(seed_hosts(defaults))
    return plan.hosts["etcd-k8s-2"].cert("server")


@pytest.fixture(scope="module")
def ca():
    return Ca()


def reason(found, spec, ca, threshold=66):
    return reissue_reason(found, spec, ca.root_pem, threshold, NOW)


def test_a_good_certificate_is_kept(spec, ca):
    assert reason(good_cert(ca, spec), spec, ca) is None


def test_missing_files(spec, ca):
    assert reason(None, spec, ca) == "certificate missing"
    good = good_cert(ca, spec)
    assert reason(replace(good, key_public_pem=None, key_meta=None), spec, ca) == (
        "key missing or unreadable"
    )


def test_key_that_does_not_match(spec, ca):
    other = ec.generate_private_key(ec.SECP256R1())
    found = replace(good_cert(ca, spec), key_public_pem=public_pem(other))
    assert reason(found, spec, ca) == "key does not match the certificate"


def test_issued_by_another_ca(spec, ca):
    assert reason(good_cert(Ca(name="rogue"), spec), spec, ca) == "not issued by this CA"


def test_expired(spec, ca):
    assert reason(good_cert(ca, spec, used=1.5), spec, ca).startswith("expired on ")


def test_subject_and_sans_must_match_the_plan(spec, ca):
    assert "subject is 'someone-else'" in reason(
        good_cert(ca, spec, subject="someone-else"), spec, ca
    )
    found = good_cert(ca, spec, sans=(*spec.sans, "extra.example.com"))
    assert reason(found, spec, ca) == "SANs differ (missing: -; unexpected: extra.example.com)"
    found = good_cert(ca, spec, sans=spec.sans[1:])
    assert reason(found, spec, ca).startswith(f"SANs differ (missing: {spec.sans[0]}")


def test_past_the_renewal_threshold(spec, ca):
    found = good_cert(ca, spec, used=0.7)
    assert reason(found, spec, ca) == "70% of its lifetime used (renewal threshold 66%)"
    assert reason(found, spec, ca, threshold=80) is None


def test_short_lifetimes_use_the_same_rule(spec, ca):
    found = good_cert(ca, spec, used=0.25, lifetime=timedelta(minutes=10))
    assert reason(found, spec, ca, threshold=20) == (
        "25% of its lifetime used (renewal threshold 20%)"
    )


def test_permission_problems_are_repairs_not_reissues(spec, ca):
    good = good_cert(ca, spec)
    assert permission_problems(good, spec) == []
    bad = replace(good, key_meta=FileMeta("root", "644"), crt_meta=FileMeta("root", "600"))
    assert reason(bad, spec, ca) is None
    assert permission_problems(bad, spec) == [
        f"{spec.crt} has mode 600, want 644",
        f"{spec.key} is root 644, want etcd 400",
    ]


def test_parse_state_output_reads_chain_key_and_stats(spec, ca):
    chain, key = ca.leaf(spec)
    lines = [
        "==> etcd-k8s-2-server",
        "crt-stat: root 644",
        *chain.strip().splitlines(),
        "key-stat: etcd 400",
        *public_pem(key).strip().splitlines(),
        "==> etcd-k8s-2-peer",
    ]
    states = parse_state_output(lines)
    server = states["etcd-k8s-2-server"]
    assert len(server.chain_pem) == 2 and server.chain_pem[1].strip() == pem(ca.inter).strip()
    assert server.key_public_pem.strip() == public_pem(key).strip()
    assert (server.crt_meta, server.key_meta) == (FileMeta("root", "644"), FileMeta("etcd", "400"))
    assert reason(server, spec, ca) is None
    empty = states["etcd-k8s-2-peer"]
    assert empty.chain_pem == [] and empty.key_meta is None


def test_fingerprint_is_sha256_of_der(ca):
    assert fingerprint(ca.root_pem) == ca.root.fingerprint(hashes.SHA256()).hex()
    assert len(fingerprint(ca.root_pem)) == 64


def test_a_client_certificate_that_can_serve_is_issued_anew(defaults, ca):
    """Certificates from before the CA's leaf template carry serverAuth on clients too."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    client = build_plan(seed_hosts(defaults)).hosts["app-server"].cert("client")
    both = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    assert reason(good_cert(ca, client), client, ca) is None
    assert reason(good_cert(ca, client, ekus=both), client, ca) == (
        "usages clientAuth, serverAuth, want clientAuth"
    )


@pytest.mark.parametrize(
    ("key", "setting", "want"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "EC", None),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "RSA", "the key is EC, key_type is RSA"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "EC", "the key is EC secp384r1"),
        (lambda: rsa.generate_private_key(65537, 2048), "RSA", None),
        (lambda: rsa.generate_private_key(65537, 2048), "OKP", "the key is RSA, key_type is OKP"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "OKP", None),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "EC", "the key is OKP, key_type is EC"),
    ],
)
def test_a_key_of_another_type_than_the_setting_is_made_anew(spec, ca, key, setting, want):
    found = good_cert(ca, spec, key=key())
    got = reissue_reason(found, spec, ca.root_pem, 66, NOW, key_type=setting)
    assert got == want or (want is not None and got.startswith(want)), got
