"""Test-bed instances (ETCD_PKI_BED): names, subnets and network removal, without Docker."""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from tests import testbed as tb
from tests.testbed import network


def test_default_bed_is_unchanged() -> None:
    default = tb.bed_settings("")
    assert default.name == default.prefix == ""
    assert default.network == "etcd-pki-test"
    assert default.bridge == "etcdpki0"
    assert default.state_dir == tb.REPO_ROOT / ".testbed"
    assert (default.label, default.label_value) == ("etcd-pki-testbed", "1")
    assert default.container("etcd-k8s-1") == "etcd-k8s-1"
    assert tb.subnet_candidates("") == ["172.30.99.0/24"]
    assert tb.MIRROR_URL == "http://172.30.99.1:8099"


def test_named_instance() -> None:
    t1 = tb.bed_settings("t1")
    assert t1.container("etcd-k8s-1") == "t1-etcd-k8s-1"
    assert t1.network == "etcd-pki-test-t1"
    assert t1.state_dir == tb.REPO_ROOT / ".testbed" / "t1"
    assert (t1.label, t1.label_value) == ("etcd-pki-testbed.bed", "t1")


@pytest.mark.parametrize("name", ["0", "t1", "abcdefgh", "99999999"])
def test_bridge_names_are_short_and_distinct(name: str) -> None:
    bridge = tb.bed_settings(name).bridge
    assert len(bridge) <= 15
    assert bridge != tb.bed_settings("").bridge


@pytest.mark.parametrize("bad", ["T1", "t_1", "abcdefghi", "-", "a b", "../x"])
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(tb.TestbedError):
        tb.bed_name(bad)


def test_env_var_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETCD_PKI_BED", "t2")
    assert tb.bed_name() == "t2"
    monkeypatch.delenv("ETCD_PKI_BED")
    assert tb.bed_name() == ""


def test_subnet_candidates_are_deterministic_and_cover_the_range() -> None:
    first = tb.subnet_candidates("t1")
    assert first == tb.subnet_candidates("t1")
    assert len(first) == len(set(first)) == len(tb.INSTANCE_SUBNETS)
    allowed = {f"172.30.{third}.0/24" for third in tb.INSTANCE_SUBNETS}
    assert set(first) == allowed
    assert "172.30.99.0/24" not in allowed
    # Different names usually start elsewhere (the hash spreads them).
    starts = {tb.subnet_candidates(f"n{i}")[0] for i in range(20)}
    assert len(starts) > 10


def test_pick_subnet_skips_used_ones() -> None:
    first, second, third = tb.subnet_candidates("t1")[:3]
    assert tb.pick_subnet("t1", []) == first
    assert tb.pick_subnet("t1", ["172.17.0.0/16", "172.30.99.0/24"]) == first
    assert tb.pick_subnet("t1", [first]) == second
    # A wider network that covers a candidate also takes it.
    wide = ipaddress.ip_network(first).supernet(new_prefix=23)
    assert not ipaddress.ip_network(tb.pick_subnet("t1", [str(wide)])).overlaps(wide)
    assert tb.pick_subnet("t1", [first, second]) == third


def test_pick_subnet_fails_when_everything_is_used() -> None:
    with pytest.raises(tb.TestbedError):
        tb.pick_subnet("t1", ["172.30.0.0/16"])


def test_network_removal_waits_for_endpoints_dockerd_still_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Right after 27 containers are removed, dockerd can refuse `network rm` for a moment.
    answers = iter(["has active endpoints", "has active endpoints", ""])
    calls: list[tuple[str, ...]] = []

    def fake_docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        if args[:2] == ("network", "inspect"):
            return subprocess.CompletedProcess(args, 0 if len(calls) < 6 else 1, "", "")
        err = next(answers)
        return subprocess.CompletedProcess(args, 1 if err else 0, "", err)

    monkeypatch.setattr(network, "docker", fake_docker)
    monkeypatch.setattr(network.time, "sleep", lambda _: None)
    tb.remove_network()
    assert [c[:2] for c in calls].count(("network", "rm")) == 3


def test_network_kept_by_a_stale_endpoint_is_left_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = iter(range(0, 1000, 10))

    def fake_docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        rc, err = (0, "") if args[1] == "inspect" else (1, "network x has active endpoints")
        return subprocess.CompletedProcess(args, rc, "", err)

    monkeypatch.setattr(network, "docker", fake_docker)
    monkeypatch.setattr(network.time, "sleep", lambda _: None)
    monkeypatch.setattr(network.time, "monotonic", lambda: next(clock))
    tb.remove_network(timeout=30)
    assert "still lists an endpoint" in capsys.readouterr().err


def test_network_removal_reports_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        rc, err = (0, "") if args[1] == "inspect" else (1, "permission denied")
        return subprocess.CompletedProcess(args, rc, "", err)

    monkeypatch.setattr(network, "docker", fake_docker)
    with pytest.raises(tb.TestbedError, match="permission denied"):
        tb.remove_network()
