"""The metrics file through node_exporter: every node's :9100/metrics, scraped from
app-server, against what openssl reads from the files on the node.

Debian's prometheus-node-exporter runs on every node of the bed (its textfile collector
reads /var/lib/prometheus/node-exporter, the default `metrics_dir`). A forced renewal
moves a certificate's not-after; one with step-ca stopped flips the failure metric and
the next good one flips it back.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from tests import testbed as tb

from .conftest import ALL_HOSTS, ETCD_HOSTS, SSL, deploy, sh, start_renewal

pytestmark = pytest.mark.e2e

PROM = "/var/lib/prometheus/node-exporter/etcd_pki.prom"
KINDS = {"etcd": ("peer", "server", "client"), "client": ("client",)}


def role(host: str) -> str:
    return "etcd" if host in ETCD_HOSTS else "client"


def scrape(host: str) -> dict[tuple[str, frozenset], float]:
    """node_exporter's samples of ``host``, fetched from app-server (names starting
    with etcd_pki_ or node_textfile_): (name, labels) -> value."""
    text = sh("app-server", f"curl -fsS --max-time 10 http://{tb.bed().ip(host)}:9100/metrics")
    out = {}
    for line in text.splitlines():
        found = re.match(r"^((?:etcd_pki|node_textfile)_\w+)(?:\{([^}]*)\})? (\S+)$", line)
        if found:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
            out[(found.group(1), labels)] = float(found.group(3))
    return out


def cert_labels(host: str, kind: str, subject: str) -> frozenset:
    return frozenset({("role", role(host)), ("kind", kind), ("subject", subject)})


def openssl_dates(host: str, path: str, crl: bool = False) -> dict[str, str]:
    """name=value lines openssl prints for a certificate (or a DER CRL) on ``host``."""
    if crl:
        cmd = f"openssl crl -inform DER -in {path} -noout -nextupdate -crlnumber"
    else:
        cmd = f"openssl x509 -in {path} -noout -startdate -enddate -subject -nameopt RFC2253"
    return dict(line.split("=", 1) for line in sh(host, cmd).splitlines())


def epoch(openssl_time: str) -> float:
    """openssl's "Dec  8 17:30:07 2026 GMT" as Unix time."""
    parsed = datetime.strptime(openssl_time.replace("  ", " "), "%b %d %H:%M:%S %Y GMT")
    return parsed.replace(tzinfo=UTC).timestamp()


def cert_value(samples: dict, metric: str, host: str, kind: str) -> float | None:
    subject = f"{host}" if kind == "peer" else f"{host}-{kind}"
    return samples.get((f"etcd_pki_certificate_{metric}", cert_labels(host, kind, subject)))


@pytest.fixture(scope="module")
def deployed(testbed):
    run = deploy(testbed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    return testbed


def test_node_exporter_runs_and_reads_the_file_without_error(deployed):
    for host in ALL_HOSTS:
        samples = scrape(host)
        assert samples[("node_textfile_scrape_error", frozenset())] == 0, host
        mode = sh(host, f"stat -c '%a %U' {PROM}").split()
        assert mode == ["644", "root"], (host, mode)
        # only the file: no temporary file left where the collector reads
        assert sh(host, f"ls -A {PROM.rsplit('/', 1)[0]}").split() == ["etcd_pki.prom"]


def test_every_certificate_has_the_dates_openssl_reads(deployed):
    for host in ALL_HOSTS:
        samples = scrape(host)
        for kind in KINDS[role(host)]:
            path = f"{SSL}/{host}-{kind}.crt"
            dates = openssl_dates(host, path)
            subject = dates["subject"].removeprefix("CN=")
            labels = cert_labels(host, kind, subject)
            not_after = samples.get(("etcd_pki_certificate_not_after_timestamp_seconds", labels))
            assert not_after == epoch(dates["notAfter"]), (host, kind, sorted(samples))
            not_before = epoch(dates["notBefore"])
            assert samples[("etcd_pki_certificate_not_before_timestamp_seconds", labels)] == (
                not_before
            )
            threshold = samples[
                ("etcd_pki_certificate_renewal_threshold_timestamp_seconds", labels)
            ]
            assert threshold == not_before + (not_after - not_before) * 66 // 100
            next_run = samples[
                ("etcd_pki_certificate_renewal_timer_next_run_timestamp_seconds", labels)
            ]
            assert time.time() < next_run < time.time() + 2 * 86400, (host, kind)
            assert samples[("etcd_pki_certificate_last_renewal_success", labels)] == 1
        root = epoch(openssl_dates(host, f"{SSL}/root_ca.crt")["notAfter"])
        assert samples[("etcd_pki_ca_certificate_not_after_timestamp_seconds",
                        frozenset({("certificate", "root")}))] == root  # fmt: skip
        inter = sh(
            host,
            f"awk '/BEGIN CERT/{{n++}} n==2' {SSL}/{host}-client.crt | "
            "openssl x509 -noout -enddate",
        ).strip()
        assert samples[
            (
                "etcd_pki_ca_certificate_not_after_timestamp_seconds",
                frozenset({("certificate", "intermediate")}),
            )
        ] == epoch(  # fmt: skip
            inter.removeprefix("notAfter=")
        )
        written = samples[("etcd_pki_metrics_written_timestamp_seconds", frozenset())]
        assert time.time() - 600 < written <= time.time() + 5


def test_members_show_their_crl_and_the_active_ca_its_health(deployed):
    for host in ALL_HOSTS:
        samples = scrape(host)
        names = {name for name, _ in samples}
        if host not in ETCD_HOSTS:
            assert not any(n.startswith("etcd_pki_crl") for n in names)
            continue
        crl = openssl_dates(host, f"{SSL}/crl.der", crl=True)
        assert samples[("etcd_pki_crl_next_update_timestamp_seconds", frozenset())] == epoch(
            crl["nextUpdate"]
        )
        assert samples[("etcd_pki_crl_number", frozenset())] == int(crl["crlNumber"], 16)
        up = samples.get(("etcd_pki_step_ca_up", frozenset()))
        assert up == (1 if host == "etcd-k8s-1" else None), host


def test_a_rerun_rewrites_the_file_and_changes_nothing(deployed):
    before = scrape("app-server")[("etcd_pki_metrics_written_timestamp_seconds", frozenset())]
    time.sleep(1.1)
    run = deploy(deployed.inventory_docker)
    assert run.rc == 0 and run.changed == 0, run.changed_operations()
    after = scrape("app-server")[("etcd_pki_metrics_written_timestamp_seconds", frozenset())]
    assert after > before


def test_a_renewal_moves_not_after(deployed):
    host, kind = "app-server", "client"
    old = cert_value(scrape(host), "not_after_timestamp_seconds", host, kind)
    time.sleep(1.1)  # a new not-after differs by whole seconds
    assert start_renewal(host, f"{host}-{kind}")[0] == 0
    new = epoch(openssl_dates(host, f"{SSL}/{host}-{kind}.crt")["notAfter"])
    samples = scrape(host)
    assert new > old
    assert cert_value(samples, "not_after_timestamp_seconds", host, kind) == new
    last = cert_value(samples, "last_renewal_success_timestamp_seconds", host, kind)
    assert last is not None and time.time() - 60 < last <= time.time() + 1
    assert cert_value(samples, "last_renewal_success", host, kind) == 1


def test_a_failed_renewal_flips_the_failure_metric_and_a_good_one_back(deployed):
    host, kind, ca = "etcd-k8s-2", "peer", "etcd-k8s-1"
    sh(ca, "systemctl stop step-ca.service")
    try:
        assert start_renewal(host, f"{host}-{kind}")[0] != 0  # the CA is down: the run fails
        samples = scrape(host)
        assert cert_value(samples, "last_renewal_success", host, kind) == 0
        assert cert_value(samples, "last_renewal_success", host, "server") == 1
        # the CA node's CRL fetch (it fails too) writes its file: step-ca is down
        tb.exec_in(ca, "systemctl start etcd-pki-crl.service")
        assert scrape(ca)[("etcd_pki_step_ca_up", frozenset())] == 0
    finally:
        sh(ca, "systemctl start step-ca.service")
    for _ in range(30):  # step-ca answers within seconds
        if tb.exec_in(ca, "curl -fsk https://127.0.0.1:9000/health")[0] == 0:
            break
        time.sleep(1)
    assert start_renewal(host, f"{host}-{kind}")[0] == 0
    samples = scrape(host)
    assert cert_value(samples, "last_renewal_success", host, kind) == 1
    new = epoch(openssl_dates(host, f"{SSL}/{host}-{kind}.crt")["notAfter"])
    assert cert_value(samples, "not_after_timestamp_seconds", host, kind) == new
    sh(ca, "systemctl start etcd-pki-crl.service")
    assert scrape(ca)[("etcd_pki_step_ca_up", frozenset())] == 1
