"""Each task's decision, tested the pyinfra way: a host's state in, operations out.

The cases are data: tests/operations/DECISION/CASE.json (see the README there). Run
with ETCD_PKI_UPDATE_OPS=1 to write the operations a changed decision now returns into
the fixtures, then read the diff: that diff is what the change does to a real host.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pyinfra.api.exceptions import PyinfraError

from etcd_pki.commands.ca import CLAIMS, LEAF_TEMPLATE
from etcd_pki.crl import crl_block
from etcd_pki.etcd_auth import Access
from etcd_pki.plan import ClusterPlan, HostPlan
from tasks import bootstrap, ca, certs, etcd, etcd_access, renewal, standby
from tasks.ops import Op

from .operations import (
    CA,
    FIXTURES,
    NOW,
    PLANNED,
    certs_of,
    load,
    normalised,
    plan_of,
    save,
    snapshot_of,
)
from .pki_fixtures import Ca

OTHER_CA = Ca(name="another-ca")
UPDATE = os.environ.get("ETCD_PKI_UPDATE_OPS") == "1"


def _ca_facts(me: HostPlan, plan: ClusterPlan, given: dict) -> ca.CaFacts:
    """`ca.CaFacts` from a fixture; "@planned" stands for what the plan says."""
    s = me.settings
    planned = {
        "claims": {"template": LEAF_TEMPLATE, **{c: getattr(s, n) for c, n in CLAIMS.items()}},
        "dns_names": list(plan.ca_sans),
        "crl_config": crl_block(s.crl_cache_duration),
        "defaults_json": json.dumps({"ca-url": plan.ca_url}),
        "step_ca_version": s.step_ca_version,
    }
    values = {k: planned[k] if given.get(k) == PLANNED else given.get(k) for k in planned}
    if isinstance(values["claims"], dict) and values["claims"].get("template") == "@leaf":
        values["claims"] = {**values["claims"], "template": LEAF_TEMPLATE}
    return ca.CaFacts(**values)


def _root(name: str | None) -> str | None:
    return {"ca": CA.root_pem, "other": OTHER_CA.root_pem, None: None}[name]


def _access(state: dict | None) -> Access | None:
    """An `Access` from a fixture's "state" (null: etcd did not answer)."""
    if state is None:
        return None
    roles = {r: frozenset(tuple(g) for g in grants) for r, grants in state["roles"].items()}
    users = {u: frozenset(granted) for u, granted in state["users"].items()}
    return Access(state["enabled"], users, roles)


Decide = Callable[[dict, HostPlan, ClusterPlan], list[Op]]


def _before(
    fixture: dict, me: HostPlan, planned: dict[str, str], modes: dict[str, str] | None = None
):
    return snapshot_of(me, fixture.get("before", {}), planned, modes)


DECISIONS: dict[str, Decide] = {
    "renewal": lambda f, me, plan: renewal.decide(
        me, _before(f, me, renewal.planned_files(me), renewal.planned_modes(me))
    ),
    "trust": lambda f, me, plan: bootstrap.decide(
        me, plan, _before(f, me, bootstrap.planned_files(me, plan, CA.root_pem)), CA.root_pem
    ),
    "etcd": lambda f, me, plan: etcd.decide(
        me, plan, _before(f, me, etcd.planned_files(me)), f.get("cluster_exists", False)
    ),
    "ca": lambda f, me, plan: ca.decide(
        me, plan, _before(f, me, ca.planned_files(me)), _ca_facts(me, plan, f.get("facts", {}))
    ),
    "standby": lambda f, me, plan: standby.decide_standby(me, _before(f, me, {})),
    "retire": lambda f, me, plan: standby.decide_retire(
        me, plan, _root(f.get("mine")), _root(f.get("active"))
    ),
    "access": lambda f, me, plan: etcd_access.decide(plan, me.name, _access(f.get("state"))),
    "issue": lambda f, me, plan: certs.issue_ops(
        me,
        plan,
        certs.to_issue(
            me,
            certs_of(me, f.get("before", {})),
            CA.root_pem,
            revoked=frozenset(f.get("revoked", [])),
            now=NOW,
        ),
    ),
}

CASES = sorted(FIXTURES.glob("*/*.json"))


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_operations(path: Path):
    fixture = load(path)
    plan = plan_of(fixture)
    me = plan.hosts[fixture["host"]]
    try:
        result: dict = {
            "ops": normalised(
                [op.as_dict() for op in DECISIONS[path.parent.name](fixture, me, plan)]
            )
        }
    except PyinfraError as e:
        result = {"error": str(e)}
    if UPDATE:
        fixture.pop("ops", None)
        fixture.pop("error", None)
        fixture = {**fixture, **result}
        save(path, fixture)
    expected = {k: fixture[k] for k in ("ops", "error") if k in fixture}
    assert result == expected, f"{path.name}: {fixture['doc']}"


def test_every_decision_has_its_main_cases():
    cases = {p.parent.name: set() for p in CASES}
    for p in CASES:
        cases[p.parent.name].add(p.stem)
    assert set(cases) == set(DECISIONS)
    for decision, names in cases.items():
        assert {"fresh-host", "nothing-to-do"} <= names or decision == "retire", decision
