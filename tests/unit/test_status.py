"""The status report built from observations: rows, terminal table, JSON and HTML."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from etcd_pki.observation import HostObservation
from etcd_pki.plan import build_plan
from etcd_pki.status import (
    host_rows,
    left_text,
    render_ca,
    render_html,
    render_table,
    report_data,
    root_info,
)

from .conftest import seed_hosts
from .pki_fixtures import NOW, Ca, good_observation


@pytest.fixture(scope="module")
def ca():
    return Ca()


@pytest.fixture
def plan(defaults):
    return build_plan(seed_hosts(defaults))


def rows_for(plan, ca, **by_host):
    rows = []
    for name, hp in plan.hosts.items():
        obs = by_host.get(name) or good_observation(ca, hp)
        rows += host_rows(hp, obs, ca.root_pem, NOW)
    return rows


def test_rows_carry_everything_the_report_shows(plan, ca):
    rows = rows_for(plan, ca)
    assert len(rows) == 10  # 3 etcd hosts x 3 + 1 client
    peer = next(r for r in rows if r.name == "etcd-k8s-2-peer")
    assert peer.subject == "etcd-k8s-2"
    assert peer.sans == ["etcd-k8s-2", "etcd-k8s-2.local", "10.0.1.11"]  # names, then IPs
    assert re.fullmatch(r"[0-9a-f]+", peer.serial)
    assert peer.used_percent == pytest.approx(10, abs=0.01)
    assert peer.days_left == pytest.approx(17520 / 24 * 0.9, abs=0.01)
    assert peer.next_run is not None and peer.timer == "enabled, active"
    assert peer.state == "ok" and peer.problems == []


def test_states_due_expired_missing(plan, ca):
    hp2, hp3 = plan.hosts["etcd-k8s-2"], plan.hosts["etcd-k8s-3"]
    obs3 = good_observation(ca, hp3)
    certs = dict(obs3.certs)
    del certs["etcd-k8s-3-client"]
    rows = rows_for(
        plan,
        ca,
        **{
            "etcd-k8s-2": good_observation(ca, hp2, used=0.7),
            "etcd-k8s-3": replace(obs3, certs=certs),
            "app-server": good_observation(ca, plan.hosts["app-server"], used=1.5),
        },
    )
    by_name = {r.name: r for r in rows}
    assert by_name["etcd-k8s-2-peer"].state == "due"
    assert by_name["app-server-client"].state == "expired"
    assert by_name["app-server-client"].days_left < 0
    missing = by_name["etcd-k8s-3-client"]
    assert missing.state == "missing" and missing.serial is None
    assert any(p.startswith("cert-missing") for p in missing.problems)


def test_terminal_table(plan, ca):
    rows = rows_for(plan, ca)
    text = render_table(plan, rows, {})
    lines = text.splitlines()
    assert lines[0] == "etcd-k8s-1 (etcd, CA, 10.0.1.10)"
    header = lines[1].split()
    assert header[:3] == ["CERT", "SUBJECT", "SERIAL"] and header[-1] == "STATE"
    assert "SANs: etcd-k8s-1, etcd-k8s-1.local, localhost, 10.0.1.10, 127.0.0.1" in text
    assert "app-server (client, 10.0.2.50)" in text
    assert lines[-1] == "10 certificate(s): 10 ok"
    assert max(len(line) for line in lines) <= 160


def test_unreachable_host_is_shown(plan, ca):
    rows = [r for r in rows_for(plan, ca) if r.host != "etcd-k8s-3"]
    text = render_table(plan, rows, {"etcd-k8s-3": "facts could not be read: gone"})
    assert "etcd-k8s-3 (etcd, 10.0.1.12)\n  not read: facts could not be read: gone" in text
    data = report_data(plan, rows, {"etcd-k8s-3": "gone"}, NOW)
    assert data["state"] == "unknown"


def test_json_document(plan, ca):
    rows = rows_for(plan, ca)
    data = json.loads(json.dumps(report_data(plan, rows, {}, NOW, root_info(ca.root_pem))))
    assert data["state"] == "ok" and data["counts"]["ok"] == 10
    assert data["generated_at"] == "2026-06-01T12:00:00+00:00"
    assert data["root"]["subject"] == "CN=test-ca Root CA"
    host = next(h for h in data["hosts"] if h["name"] == "etcd-k8s-2")
    cert = host["certificates"][0]
    assert set(cert) >= {
        "subject",
        "sans",
        "serial",
        "not_after",
        "days_left",
        "used_percent",
        "next_run",
        "state",
    }
    assert cert["not_after"].endswith("+00:00")


def test_html_is_self_contained_and_has_a_bar_per_certificate(plan, ca):
    obs = good_observation(ca, plan.hosts["app-server"], used=0.8)
    rows = rows_for(plan, ca, **{"app-server": obs})
    html = render_html(report_data(plan, rows, {}, NOW, root_info(ca.root_pem)))
    assert html.count('class="bar"') == 10
    assert 'style="width: 80.0%; min-width: 3px"' in html and 'style="left: 66%"' in html
    assert not re.search(r"<(script|link|img)\b", html)
    assert not re.search(r"(src|href)=", html)
    assert "url(" not in html
    assert "<style>" in html and "etcd-k8s-2.local" in html


def test_html_escapes_what_it_shows(plan, ca):
    rows = rows_for(plan, ca)
    html = render_html(report_data(plan, rows, {"etcd-k8s-3": "<b>boom</b>"}, NOW))
    assert "&lt;b&gt;boom" in html
    assert "<b>boom</b>" not in html


@pytest.mark.parametrize(
    ("days", "text"),
    [(None, "-"), (-1, "expired"), (730.4, "730 d"), (1.5, "36.0 h"), (0.01, "14 min")],
)
def test_left_text(days, text):
    assert left_text(days) == text


def test_no_observation_at_all(plan, ca):
    rows = host_rows(plan.hosts["app-server"], HostObservation(), ca.root_pem, NOW)
    assert [r.state for r in rows] == ["missing"]
    assert rows[0].timer == "missing"


def test_ca_lines_show_both_and_mark_one_expiring_within_a_year(ca):
    root, inter = root_info(ca.root_pem), root_info(ca.pem_inter)
    text = render_ca(root, inter, NOW)
    assert "root: CN=test-ca Root CA, valid until 2035-" in text
    assert "intermediate: CN=test-ca Intermediate CA" in text and "rotate_ca.py" not in text
    late = NOW.replace(year=2035)  # the fixture CA ends in May 2035
    marked = render_ca(root, inter, late)
    assert "rotate=root" in marked and "rotate=intermediate" in marked
    assert "intermediate: could not be read" in render_ca(root, None, NOW)


def test_the_json_document_names_the_intermediate(plan, ca):
    data = report_data(plan, [], {}, NOW, root_info(ca.root_pem), root_info(ca.pem_inter))
    assert data["intermediate"]["fingerprint"] != data["root"]["fingerprint"]
    assert "intermediate valid until" in render_html(data)
