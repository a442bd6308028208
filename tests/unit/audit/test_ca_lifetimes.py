"""The audit's warnings that the CA itself needs rotating (rotate_ca.py)."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from etcd_pki.audit import evaluate_ca_lifetimes
from etcd_pki.findings import WARNING

from ..pki_fixtures import NOW, Ca, good_observation, pem


def _reissued(ca: Ca, cert, days_left: int) -> str:
    """``cert`` re-signed by the root with ``days_left`` of validity from NOW."""
    builder = (  # the subject, key and extensions kept; only the dates change
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(ca.root.subject)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number + 1)
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=days_left))
    )
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    return pem(builder.sign(ca.root_key, hashes.SHA256()))


def rules(findings):
    return sorted((f.host, f.rule) for f in findings)


def test_a_ca_far_from_expiry_gives_no_warning(plan, ca):
    hp = plan.hosts[plan.active_ca]
    found = evaluate_ca_lifetimes(hp, good_observation(ca, hp), ca.root_pem, ca.pem_inter, NOW)
    assert found == []


def test_an_intermediate_expiring_within_a_year_is_named_on_the_active_ca(plan, ca):
    inter = _reissued(ca, ca.inter, 200)
    for name, hp in plan.hosts.items():
        found = evaluate_ca_lifetimes(hp, good_observation(ca, hp), ca.root_pem, inter, NOW)
        ca_rules = [f for f in found if f.rule == "ca-expiring"]
        if hp.is_active_ca:
            (finding,) = ca_rules
            assert finding.severity == WARNING and finding.path == hp.settings.ca_intermediate
            assert "200 days" in finding.detail and "rotate=intermediate" in finding.detail
        else:
            assert ca_rules == [], name


def test_a_root_expiring_within_a_year_is_named(plan, ca):
    hp = plan.hosts[plan.active_ca]
    root = _reissued(ca, ca.root, 30)
    found = evaluate_ca_lifetimes(hp, good_observation(ca, hp), root, ca.pem_inter, NOW)
    assert [(f.rule, f.path) for f in found] == [("ca-expiring", hp.settings.ca_root)]
    assert "rotate=root" in found[0].detail


def test_a_certificate_valid_past_its_intermediate_is_named_on_its_host(plan, ca):
    # The leaves live two years; an intermediate ending in 100 days is outlived by all.
    inter = _reissued(ca, ca.inter, 100)
    hp = plan.hosts["app-server"]
    found = evaluate_ca_lifetimes(hp, good_observation(ca, hp), ca.root_pem, inter, NOW)
    assert rules(found) == [("app-server", "leaf-outlives-issuer")] * len(hp.certs)
    assert all(f.severity == WARNING for f in found)


def test_no_intermediate_read_means_no_leaf_judgement(plan, ca):
    hp = plan.hosts["app-server"]
    assert evaluate_ca_lifetimes(hp, good_observation(ca, hp), ca.root_pem, None, NOW) == []
