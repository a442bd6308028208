"""The audit in the middle of a rotation (rotate_ca.py stopped between or inside its
phases): a host on either side of a step stopped half-way is fine, anything else is
still a finding."""

from __future__ import annotations

from dataclasses import replace

import pytest

from etcd_pki.certs import fingerprint
from etcd_pki.crl import inspect_crl
from etcd_pki.observation import CaCrl
from etcd_pki.rotation import Rotation, trust_now

from ..pki_fixtures import Ca, good_observation
from .conftest import audit

OLD, NEW = Ca(name="test-ca"), Ca(name="test-ca")
MEMBER = "etcd-k8s-2"
ROOT_FILE = "/etc/etcd/ssl/root_ca.crt"


def both() -> str:
    return OLD.root_pem + NEW.root_pem


def rules(found) -> list[tuple[str, str]]:
    return [(f.path, f.rule) for f in found]


@pytest.mark.parametrize(
    "phase, holds, certs_from, ok",
    [
        ("prepared", "old", OLD, True),
        ("prepared", "both", OLD, True),
        ("prepared", "new", OLD, False),
        ("trusted", "both", OLD, True),
        ("trusted", "old", OLD, False),
        ("switched", "both", OLD, True),  # certificates not yet re-issued
        ("switched", "both", NEW, True),
        ("switched", "new", NEW, True),
        ("switched", "old", OLD, False),
    ],
)
def test_what_a_host_may_trust_in_each_phase(plan, phase, holds, certs_from, ok):
    current = NEW if phase == "switched" else OLD
    state = Rotation("root", phase, fingerprint(NEW.root_pem))
    previous = OLD.root_pem if phase == "switched" else None
    trust = trust_now(state, current.root_pem, NEW.root_pem, previous)
    obs = good_observation(certs_from, plan.hosts[MEMBER])
    obs = replace(obs, root_pem={"old": OLD.root_pem, "new": NEW.root_pem, "both": both()}[holds])
    found = audit(plan, current, MEMBER, obs, root=trust.chain, root_choices=trust.choices)
    assert rules(found) == ([] if ok else [(ROOT_FILE, "root-mismatch")])


def test_without_choices_a_host_with_two_roots_differs_from_the_cas(plan):
    obs = replace(good_observation(OLD, plan.hosts[MEMBER]), root_pem=both())
    assert rules(audit(plan, OLD, MEMBER, obs)) == [(ROOT_FILE, "root-mismatch")]


def test_a_crl_from_the_replaced_intermediate_is_fine_while_the_rotation_runs(plan):
    """The member fetches the new CRL after its certificates: until then it holds the
    old intermediate's, which the audit accepts only when told it was just replaced."""
    ca_now = inspect_crl(NEW.crl((9,), number=3))
    obs = replace(good_observation(OLD, plan.hosts[MEMBER]), root_pem=both())
    obs = replace(obs, crl=OLD.crl((9,), number=3))
    during = CaCrl(ca_now, NEW.pem_inter, (OLD.pem_inter,))
    assert audit(plan, NEW, MEMBER, obs, root=both(), ca_crl=during, root_choices=[both()]) == []
    after = CaCrl(ca_now, NEW.pem_inter)
    found = audit(plan, NEW, MEMBER, obs, root=both(), ca_crl=after, root_choices=[both()])
    assert rules(found) == [("/etc/etcd/ssl/crl.der", "crl-invalid")]


def test_an_unrelated_crl_stays_invalid_during_a_rotation(plan):
    stranger = Ca(name="test-ca")
    obs = replace(good_observation(NEW, plan.hosts[MEMBER]), crl=stranger.crl((9,), number=3))
    during = CaCrl(inspect_crl(NEW.crl((9,), number=3)), NEW.pem_inter, (OLD.pem_inter,))
    found = audit(plan, NEW, MEMBER, obs, root=NEW.root_pem, ca_crl=during)
    assert rules(found) == [("/etc/etcd/ssl/crl.der", "crl-invalid")]
