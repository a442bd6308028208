"""The benchmark's report from synthetic runs: every scenario gets its row."""

from __future__ import annotations

from typing import Any

from bench.measure import Run
from bench.report import report


def run(label: str, wall: float, commands: int = 2, hosts: int = 4) -> Run:
    nodes = [f"etcd-k8s-{i}" for i in range(1, hosts)] + ["app-server"]
    return Run(label, wall, 10, 0, dict.fromkeys(nodes, commands), {}, wall / 2, {})


def results(**extra: Any) -> dict[str, Any]:
    """A 4-host base run (one fresh deploy, one re-run), plus ``extra``."""
    return {
        "connector": "docker",
        "install_source": "mirror",
        "cpus": 2,
        "base": {"fresh": [run("f", 40.0, 30)], "rerun": [run("r", 5.0)]},
        "scaling": [],
        **extra,
    }


def test_rotations_are_reported_with_restarts_gap_and_host_count():
    rotations = [
        {"what": "rotate intermediate", "hosts": 4, "run": run("ri", 21.5, 12)}
        | {"restarts": 0, "gap": 0.4, "failed": 0},
        {"what": "rotate root", "hosts": 4, "run": run("rr", 63.2, 40)}
        | {"restarts": 6, "gap": 2.9, "failed": 1, "retried": 3},
    ]
    text = report(results(rotations=rotations))
    rows = [line for line in text.splitlines() if "(rotate_ca.py)" in line]
    assert len(rows) == 2
    assert rows[0].startswith(
        "| rotate intermediate (rotate_ca.py): etcd started 0 times, client's longest gap "
        "0.4 s, 0 requests failed (0 writes retried) | 4 | 1 | 21.5 s |"
    )
    assert rows[1].startswith("| rotate root (rotate_ca.py): etcd started 6 times")
    assert "longest gap 2.9 s, 1 requests failed (3 writes retried) | 4 | 1 | 63.2 s |" in rows[1]
    assert "app-server 40" in rows[1]


def test_a_report_without_rotations_still_renders():
    text = report(results())
    assert "| no-change re-run | 4 | 1 | 5.0 s |" in text and "rotate_ca.py" not in text
