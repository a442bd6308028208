"""The metrics file: names and labels (etcd_pki/metrics.py), and the host's writer
(etcd_pki/commands/metrics.py) run for real (sh, openssl, awk, date) against
certificates, a root and a CRL made by a test CA, with a fake `systemctl` and `curl`."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from etcd_pki import metrics as m
from etcd_pki.commands.metrics import metrics_script
from etcd_pki.plan import HostPlan, build_plan

from .conftest import seed_hosts
from .pki_fixtures import Ca

NEXT_RUN = "Tue 2026-12-08 03:21:09 UTC"
NEXT_RUN_EPOCH = int(datetime(2026, 12, 8, 3, 21, 9, tzinfo=UTC).timestamp())


def test_names_follow_prometheus_conventions():
    assert m.problems() == []
    assert all(x.name.startswith("etcd_pki_") for x in m.METRICS)
    assert all(x.labels == m.CERT_LABELS for x in m.CERT_METRICS)
    assert "serial" not in {label for x in m.METRICS for label in x.labels}


def test_convention_checks_can_fail():
    bad = [
        m.Metric("etcd_pki_expiry_timestamp", "no unit"),
        m.Metric("other_metric_seconds", "no prefix"),
        m.Metric("etcd_pki_runs_total", "a counter suffix"),
        m.Metric("etcd_pki_x", "bad label", ("__name",)),
    ]
    assert len(m.problems(bad)) == 4


def test_labels_are_escaped_and_parsed_back():
    text = m.labels({"subject": 'a"b\\c\nd', "kind": "peer"})
    assert text == '{subject="a\\"b\\\\c\\nd",kind="peer"}'
    parsed = m.parse(f"x{text} 1.5\n# HELP x y\n")
    assert parsed == {("x", (("kind", "peer"), ("subject", 'a"b\\c\nd'))): 1.5}


class Host:
    """A host's files in a temporary directory, its plan, and its writer script."""

    def __init__(self, tmp: Path, defaults: dict, name: str = "etcd-k8s-1") -> None:
        self.tmp = tmp
        ssl, self.out_dir, self.state = tmp / "ssl", tmp / "prom" / "textfile", tmp / "state"
        ssl.mkdir()
        data = {"ssl_dir": str(ssl), "bin_dir": str(tmp / "bin"), "metrics_dir": str(self.out_dir)}
        plan = build_plan(seed_hosts({**defaults, **data}))
        self.me: HostPlan = plan.hosts[name]
        self.ca = Ca()
        self.certs: dict[str, x509.Certificate] = {}
        for i, spec in enumerate(self.me.certs):
            chain, _ = self.ca.leaf(spec, used=0.1 * (i + 1))
            Path(spec.crt).write_text(chain)
            self.certs[spec.kind] = x509.load_pem_x509_certificate(chain.encode())
        Path(self.me.settings.trusted_root).write_text(self.ca.root_pem)
        self.next_update = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=20)
        Path(self.me.settings.crl_file).write_bytes(
            self.ca.crl(number=7, next_update=self.next_update)
        )
        fake = tmp / "fake"
        fake.mkdir()
        (fake / "systemctl").write_text(
            '#!/bin/sh\n[ "$1 $2 $3" = "show -P NextElapseUSecRealtime" ] || exit 1\n'
            f'case $4 in *-peer.timer) echo "{NEXT_RUN}" ;; *) echo ;; esac\n'
        )
        (fake / "curl").write_text('#!/bin/sh\ncat "$CURL_ANSWER"\n')
        for f in fake.iterdir():
            f.chmod(0o755)
        self.answer = tmp / "curl-answer"
        self.answer.write_text('{"status":"ok"}')
        self.path = f"{fake}:{os.environ['PATH']}"
        self.script = tmp / "etcd-pki-metrics"

    def write_script(self, health: str | None = None) -> None:
        self.script.write_text(metrics_script(self.me, health, state_dir=str(self.state)))
        self.script.chmod(0o755)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        if not self.script.exists():
            self.write_script()
        environ = {"PATH": self.path, "CURL_ANSWER": str(self.answer), **env}
        return subprocess.run(
            ["sh", str(self.script), *args], env=environ, capture_output=True, text=True
        )

    @property
    def output(self) -> Path:
        return self.out_dir / m.FILE_NAME

    def samples(self) -> dict:
        return m.parse(self.output.read_text())

    def value(self, metric: m.Metric, **labels: str) -> float | None:
        return self.samples().get((metric.name, tuple(sorted(labels.items()))))

    def cert_value(self, metric: m.Metric, kind: str) -> float | None:
        spec = self.me.cert(kind)
        role = "etcd" if self.me.is_etcd else "client"
        return self.value(metric, role=role, kind=kind, subject=spec.subject)


@pytest.fixture
def member(tmp_path, defaults) -> Host:
    return Host(tmp_path, defaults)


def test_a_member_gets_every_certificate_ca_and_crl_value(member):
    before = time.time()
    result = member.run()
    assert result.returncode == 0, result.stderr
    for kind, cert in member.certs.items():
        nb = int(cert.not_valid_before_utc.timestamp())
        na = int(cert.not_valid_after_utc.timestamp())
        assert member.cert_value(m.CERT_NOT_AFTER, kind) == na
        assert member.cert_value(m.CERT_NOT_BEFORE, kind) == nb
        assert member.cert_value(m.CERT_RENEWAL_THRESHOLD, kind) == nb + (na - nb) * 66 // 100
        assert member.cert_value(m.CERT_LAST_RENEWAL_RESULT, kind) == 1  # none failed
        assert member.cert_value(m.CERT_LAST_RENEWAL_SUCCESS, kind) is None  # none ran
    assert member.cert_value(m.CERT_TIMER_NEXT_RUN, "peer") == NEXT_RUN_EPOCH
    assert member.cert_value(m.CERT_TIMER_NEXT_RUN, "server") is None  # not scheduled
    root_na = int(member.ca.root.not_valid_after_utc.timestamp())
    inter_na = int(member.ca.inter.not_valid_after_utc.timestamp())
    assert member.value(m.CA_NOT_AFTER, certificate="root") == root_na
    assert member.value(m.CA_NOT_AFTER, certificate="intermediate") == inter_na
    assert member.value(m.CRL_NEXT_UPDATE) == member.next_update.timestamp()
    assert member.value(m.CRL_NUMBER) == 7
    assert member.value(m.STEP_CA_UP) is None  # not the active CA's script
    assert before - 1 <= member.value(m.WRITTEN) <= time.time() + 1
    # readable by node_exporter's user; the temporary file and work directory are gone
    assert stat.S_IMODE(member.output.stat().st_mode) == 0o644
    assert sorted(p.name for p in member.out_dir.iterdir()) == [m.FILE_NAME]
    assert sorted(p.name for p in member.state.iterdir()) == [".lock"]


def test_every_family_has_help_and_type_once(member):
    assert member.run().returncode == 0
    text = member.output.read_text()
    for metric in m.METRICS:
        if metric is m.STEP_CA_UP:
            continue
        assert text.count(f"# TYPE {metric.name} gauge\n") == 1, metric.name
        assert text.count(f"# HELP {metric.name} ") == 1, metric.name
    # samples of a family follow its header, none elsewhere
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    order = [line.split("{")[0].split()[0] for line in text.splitlines() if line[0] != "#"]
    assert order == sorted(order, key=families.index)


def test_a_renewal_result_is_recorded_and_a_skip_is_not(member):
    unit = member.me.cert("client").unit
    assert member.run("--renewal", unit, SERVICE_RESULT="exit-code").returncode == 0
    assert member.cert_value(m.CERT_LAST_RENEWAL_RESULT, "client") == 0
    assert member.cert_value(m.CERT_LAST_RENEWAL_RESULT, "peer") == 1
    assert member.cert_value(m.CERT_LAST_RENEWAL_SUCCESS, "client") is None
    # not due: nothing tried, the failure stays
    assert member.run("--renewal", unit, SERVICE_RESULT="exec-condition").returncode == 0
    assert member.cert_value(m.CERT_LAST_RENEWAL_RESULT, "client") == 0
    before = int(time.time())
    assert member.run("--renewal", unit, SERVICE_RESULT="success").returncode == 0
    assert member.cert_value(m.CERT_LAST_RENEWAL_RESULT, "client") == 1
    assert before <= member.cert_value(m.CERT_LAST_RENEWAL_SUCCESS, "client") <= time.time()
    # a later plain refresh (the deploy, the CRL fetch) keeps both
    assert member.run().returncode == 0
    assert member.cert_value(m.CERT_LAST_RENEWAL_RESULT, "client") == 1


def test_a_bad_unit_name_is_refused(member):
    result = member.run("--renewal", "../x", SERVICE_RESULT="success")
    assert result.returncode == 2 and "bad unit name" in result.stderr
    assert not member.output.exists()


def test_a_missing_certificate_or_crl_leaves_out_only_its_samples(member):
    Path(member.me.cert("server").crt).unlink()
    Path(member.me.settings.crl_file).write_bytes(b"garbage")
    assert member.run().returncode == 0
    assert member.cert_value(m.CERT_NOT_AFTER, "server") is None
    assert member.cert_value(m.CERT_NOT_AFTER, "peer") is not None
    assert member.value(m.CRL_NEXT_UPDATE) is None and member.value(m.CRL_NUMBER) is None


def test_the_active_ca_reports_step_ca_health(member):
    member.write_script(health="https://127.0.0.1:9000/health")
    assert member.run().returncode == 0
    assert member.value(m.STEP_CA_UP) == 1
    member.answer.write_text("")  # curl fails or says something else
    assert member.run().returncode == 0
    assert member.value(m.STEP_CA_UP) == 0


def test_a_client_host_has_no_crl_and_its_role(tmp_path, defaults):
    client = Host(tmp_path, defaults, name="app-server")
    assert client.run().returncode == 0
    assert client.cert_value(m.CERT_NOT_AFTER, "client") is not None
    names = {name for name, _ in client.samples()}
    assert m.CRL_NEXT_UPDATE.name not in names and m.STEP_CA_UP.name not in names
    assert "etcd_pki_crl" not in client.output.read_text()
