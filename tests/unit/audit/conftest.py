"""What the audit's unit tests share: a real (test) CA, the seed's plan, and ``audit``,
which evaluates one host's observation against them."""

from __future__ import annotations

import pytest

from etcd_pki.audit import evaluate_host
from etcd_pki.plan import build_plan

from ..conftest import seed_hosts
from ..pki_fixtures import NOW, Ca, expected_ca_files, good_observation


@pytest.fixture(scope="module")
def ca():
    return Ca()


@pytest.fixture
def plan(defaults):
    return build_plan(seed_hosts(defaults))


DEFAULT = object()


def audit(plan, ca, name, obs=None, root=DEFAULT, ca_crl=None, root_choices=()):
    hp = plan.hosts[name]
    obs = obs or good_observation(ca, hp)
    ca_files = expected_ca_files(hp) if hp.is_cert_manager else []
    root = ca.root_pem if root is DEFAULT else root
    return evaluate_host(hp, obs, root, ca_files, NOW, ca_crl=ca_crl, root_choices=root_choices)


def peer(plan, host="etcd-k8s-2"):
    return plan.hosts[host].cert("peer")
