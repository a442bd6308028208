"""The audit's CRL rules: each member's CRL against the CA's, the CRL timer and fetch,
and a revoked certificate still on a host."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography import x509

from etcd_pki.crl import inspect_crl
from etcd_pki.findings import ERROR, WARNING
from etcd_pki.observation import CaCrl

from ..pki_fixtures import NOW, Ca, good_observation
from .conftest import audit


def rules_of(findings) -> list[tuple[str, str, str]]:
    return [(f.path, f.rule, f.severity) for f in findings]


def test_a_member_whose_crl_matches_the_cas_has_no_findings(plan, ca):
    current = CaCrl(inspect_crl(ca.crl((9,), number=3)), ca.pem_inter)
    obs = replace(good_observation(ca, plan.hosts["etcd-k8s-2"]), crl=ca.crl((9,), number=3))
    assert audit(plan, ca, "etcd-k8s-2", obs, ca_crl=current) == []


@pytest.mark.parametrize(
    "case, rule, severity",
    [
        ("no CRL", "crl-missing", ERROR),
        ("unreadable", "crl-invalid", ERROR),
        ("another CA's", "crl-invalid", ERROR),
        ("expired", "crl-expired", ERROR),
        ("lacks a revocation", "crl-stale", ERROR),
        ("older number", "crl-behind", WARNING),
    ],
)
def test_a_member_crl_etcd_cannot_rely_on_is_a_finding(plan, ca, case, rule, severity):
    current = CaCrl(inspect_crl(ca.crl((9,), number=3)), ca.pem_inter)
    crl = {
        "no CRL": None,
        "unreadable": b"not a crl",
        "another CA's": Ca(name="other").crl((9,), number=3),
        "expired": ca.crl((9,), this_update=NOW - timedelta(days=2), next_update=NOW),
        "lacks a revocation": ca.crl((), number=3),
        "older number": ca.crl((9,), number=2),
    }[case]
    made = NOW - timedelta(hours=4)  # the CA's CRL, newer than the member's for 4 h
    current = CaCrl(inspect_crl(ca.crl((9,), number=3, this_update=made)), ca.pem_inter)
    obs = replace(good_observation(ca, plan.hosts["etcd-k8s-2"]), crl=crl)
    found = audit(plan, ca, "etcd-k8s-2", obs, ca_crl=current)
    assert rules_of(found) == [("/etc/etcd/ssl/crl.der", rule, severity)]


def test_the_crl_timer_and_a_failed_fetch(plan, ca):
    obs = good_observation(ca, plan.hosts["etcd-k8s-3"])
    timers = dict(obs.timers)
    timers["etcd-pki-crl.timer"] = replace(timers["etcd-pki-crl.timer"], active="inactive")
    timers["etcd-pki-crl.service"] = replace(timers["etcd-pki-crl.service"], result="exit-code")
    found = audit(plan, ca, "etcd-k8s-3", replace(obs, timers=timers))
    assert rules_of(found) == [
        ("/etc/systemd/system/etcd-pki-crl.service", "crl-fetch-failed", WARNING),
        ("/etc/systemd/system/etcd-pki-crl.timer", "crl-timer", ERROR),
    ]


def test_a_revoked_certificate_on_a_host_is_a_violation(plan, ca):
    hp = plan.hosts["app-server"]
    obs = good_observation(ca, hp)
    leaf = obs.certs["app-server-client"].chain_pem[0]
    serial = x509.load_pem_x509_certificate(leaf.encode()).serial_number
    current = CaCrl(inspect_crl(ca.crl((serial,))), ca.pem_inter)
    found = audit(plan, ca, "app-server", obs, ca_crl=current)
    assert rules_of(found) == [("/etc/etcd/ssl/app-server-client.crt", "cert-revoked", ERROR)]


def test_a_ca_that_serves_no_crl(plan, ca):
    found = audit(plan, ca, "etcd-k8s-1", ca_crl=CaCrl(None, ca.pem_inter))
    assert ("/etc/step-ca/config/ca.json", "ca-crl", ERROR) in rules_of(found)


def test_a_member_just_behind_a_new_crl_of_the_ca_is_fine(plan, ca):
    """step-ca makes a new CRL at every start; members fetch it within the hour."""
    current = CaCrl(inspect_crl(ca.crl((9,), number=4, this_update=NOW)), ca.pem_inter)
    obs = replace(good_observation(ca, plan.hosts["etcd-k8s-2"]), crl=ca.crl((9,), number=3))
    assert audit(plan, ca, "etcd-k8s-2", obs, ca_crl=current) == []
