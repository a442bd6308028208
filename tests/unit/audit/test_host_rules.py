"""The audit's rules on a host as deployed, past the renewal threshold, without the CA's
root, after a failed renewal run, and on a standby cert-manager."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from etcd_pki.findings import WARNING
from etcd_pki.observation import FileStat, UnitState
from etcd_pki.plan import build_plan

from ..conftest import seed_hosts
from ..pki_fixtures import NOW, Ca, good_cert, good_observation
from .conftest import audit, peer


@pytest.mark.parametrize("name", ["etcd-k8s-1", "etcd-k8s-2", "app-server"])
def test_a_host_as_deployed_has_no_findings(plan, ca, name):
    assert audit(plan, ca, name) == []


def test_past_the_threshold_is_only_a_warning(plan, ca):
    obs = good_observation(ca, plan.hosts["etcd-k8s-2"], used=0.7)
    findings = audit(plan, ca, "etcd-k8s-2", obs)
    assert {f.rule for f in findings} == {"renewal-due"}
    assert {f.severity for f in findings} == {WARNING}
    assert len(findings) == 3  # peer, server, client


def test_the_ca_may_hold_ca_keys_in_ca_dir_only(plan, ca):
    obs = good_observation(ca, plan.hosts["etcd-k8s-1"])
    obs = replace(
        obs,
        private_key_files=[*obs.private_key_files, "/etc/step-ca/.interrupted-init-1/secrets/k"],
    )
    assert audit(plan, ca, "etcd-k8s-1", obs) == []


def test_without_the_ca_root_chains_are_not_judged_and_the_ca_says_why(plan, ca):
    findings = audit(plan, ca, "etcd-k8s-1", root=None)
    assert [(f.path, f.rule) for f in findings] == [
        ("/etc/step-ca/certs/root_ca.crt", "ca-root-missing")
    ]


def test_a_failed_renewal_run_is_a_warning_naming_the_journal(plan, ca):
    obs = good_observation(ca, plan.hosts["app-server"])
    unit = "step-renew-app-server-client.service"
    ok = UnitState(unit, True, "static", "inactive", result="success")
    assert audit(plan, ca, "app-server", replace(obs, timers={**obs.timers, unit: ok})) == []
    skipped = replace(ok, result="exec-condition")  # not due yet: ExecCondition said so
    assert audit(plan, ca, "app-server", replace(obs, timers={**obs.timers, unit: skipped})) == []
    failed = replace(ok, active="failed", result="exit-code")
    findings = audit(plan, ca, "app-server", replace(obs, timers={**obs.timers, unit: failed}))
    assert [(f.path, f.rule, f.severity) for f in findings] == [
        (f"/etc/systemd/system/{unit}", "renewal-failed", WARNING)
    ]
    assert f"Result=exit-code: journalctl -u {unit}" in findings[0].detail


def test_lifetime_fixture_sanity(ca, plan):
    chain, _ = ca.leaf(peer(plan), used=0.5, lifetime=timedelta(hours=10))
    assert chain.count("BEGIN CERTIFICATE") == 2


def test_chains_to_says_no_for_another_ca_instead_of_crashing(plan, ca):
    # Regression: chains_to caught `x509.InvalidSignature`, which does not exist, so a
    # certificate from another CA raised AttributeError (in the deploy too).
    from etcd_pki.certs import chains_to, reissue_reason

    rogue = good_cert(Ca("rogue"), peer(plan))
    assert chains_to(rogue.chain_pem, ca.root_pem) is False
    assert reissue_reason(rogue, peer(plan), ca.root_pem, 66, NOW) == "not issued by this CA"


@pytest.fixture
def standby_plan(defaults):
    hosts = seed_hosts(defaults)
    hosts = [
        replace(h, groups=h.groups | {"etcd_cert_managers"}) if h.name == "etcd-k8s-2" else h
        for h in hosts
    ]
    hosts = [replace(h, data={**h.data, "active_cert_manager": "etcd-k8s-1"}) for h in hosts]
    return build_plan(hosts)


def test_a_standby_holds_the_ca_files_with_the_same_modes(standby_plan, ca):
    assert standby_plan.standbys == ("etcd-k8s-2",)
    assert audit(standby_plan, ca, "etcd-k8s-2") == []
    obs = good_observation(ca, standby_plan.hosts["etcd-k8s-2"])
    broken = replace(
        obs,
        stats={**obs.stats, "/etc/step-ca/secrets/root_ca_key": FileStat("root", "root", "644")},
    )
    assert [(f.path, f.rule) for f in audit(standby_plan, ca, "etcd-k8s-2", broken)] == [
        ("/etc/step-ca/secrets/root_ca_key", "ca-file-mode")
    ]


def test_step_ca_running_on_a_standby_is_a_violation(standby_plan, ca):
    obs = good_observation(ca, standby_plan.hosts["etcd-k8s-2"])
    running = replace(obs, ca_service=UnitState("step-ca.service", True, "enabled", "active"))
    assert [(f.path, f.rule) for f in audit(standby_plan, ca, "etcd-k8s-2", running)] == [
        ("/etc/systemd/system/step-ca.service", "standby-ca-running")
    ]
