"""monitoring/etcd-pki.rules.yml: `promtool check rules`, its unit tests (`promtool test
rules`, series in, alerts out: monitoring/etcd-pki.rules.test.yml), and that the rules
use only metrics the hosts write, with thresholds from group_data/all.py's defaults.
promtool comes from Debian's `prometheus` package (installed on the controller when
missing, like the test bed's other tools)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from etcd_pki import metrics as m
from tests import testbed as tb

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "etcd-pki.rules.yml"
TESTS = MONITORING / "etcd-pki.rules.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    return tb.ensure_promtool()


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False)


def test_promtool_checks_the_rules(promtool):
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_promtool_rule_tests_pass(promtool):
    result = run(promtool, "test", "rules", str(TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("< 7 * 86400", "< 8 * 86400"),  # the 8-day certificate would alert
        (
            "etcd_pki_certificate_last_renewal_success == 0",
            "etcd_pki_certificate_last_renewal_success == 1",
        ),
        ("etcd_pki_step_ca_up == 0", "etcd_pki_step_ca_up < 0"),
    ],
)
def test_the_rule_tests_fail_when_a_rule_changes(promtool, tmp_path, old, new):
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = run(promtool, "test", "rules", str(tmp_path / TESTS.name))
    assert result.returncode != 0, result.stdout


def test_rules_use_only_metrics_the_hosts_write():
    used = set(re.findall(r"\betcd_pki_[a-z_]+", RULES.read_text()))
    written = {metric.name for metric in m.METRICS}
    assert used <= written, used - written
    # every alert-worthy metric has a rule
    assert {
        m.CERT_NOT_AFTER.name,
        m.CERT_RENEWAL_THRESHOLD.name,
        m.CERT_LAST_RENEWAL_RESULT.name,
        m.WRITTEN.name,
        m.CRL_NEXT_UPDATE.name,
        m.CA_NOT_AFTER.name,
        m.STEP_CA_UP.name,
    } <= used


def test_labels_in_annotations_exist_on_their_metrics():
    for block in RULES.read_text().split("- alert: ")[1:]:
        names = set(re.findall(r"\betcd_pki_[a-z_]+", block))
        labels = {"instance", "job"} | {
            label for metric in m.METRICS if metric.name in names for label in metric.labels
        }
        used = set(re.findall(r"\$labels\.([a-z_]+)", block))
        assert used <= labels, (block.splitlines()[0], used - labels)


def test_thresholds_match_the_defaults(defaults):
    text = RULES.read_text()
    # Renewal timers run daily: two missed runs are overdue, two days without a rewrite stale.
    assert defaults["renew_on_calendar"] == "*-*-* 03:00:00"
    assert "renewal_threshold_timestamp_seconds > 2 * 86400" in text
    assert "etcd_pki_metrics_written_timestamp_seconds > 2 * 86400" in text
    # The CRL's nextUpdate is crl_cache_duration ahead, refreshed at 2/3 of it, fetched hourly.
    assert defaults["crl_fetch_on_calendar"] == "hourly"
    assert "etcd_pki_crl_next_update_timestamp_seconds < time()" in text
