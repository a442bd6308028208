"""The peer comparison's table: each side's fresh run and re-run, and ours / theirs."""

from __future__ import annotations

from typing import Any

from ..measure import Run, median
from ..report import commands_text, cpu_text


def _wall(runs: list[Run]) -> float:
    return median([r.wall for r in runs])


def _cpu(runs: list[Run]) -> float:
    return median([r.cpu for r in runs])


def side_rows(hosts: int, name: str, sides: list[dict[str, Any]], unit: str) -> list[str]:
    fresh = [s["fresh"] for s in sides]
    rerun = [r for s in sides for r in s["rerun"]]
    changes = sorted({r.changed for r in rerun})
    return [
        f"| {hosts} | {name} | fresh | {len(fresh)} | {_wall(fresh):.1f} s | "
        f"{cpu_text(fresh[-1])} | {commands_text(fresh[-1])} {unit} | "
        f"{fresh[-1].changed} |",
        f"| {hosts} | {name} | no-change re-run | {len(rerun)} | {_wall(rerun):.1f} s | "
        f"{cpu_text(rerun[-1])} | {commands_text(rerun[-1])} {unit} | "
        f"{', '.join(map(str, changes))} |",
    ]


def peers_report(results: dict[str, Any]) -> str:
    rows = [
        "| Hosts | Tool | Run | Runs | Wall (median) | Machine CPU, last run "
        "| Per host, last run | Changes reported |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = [
        "| Hosts | fresh wall | re-run wall | fresh machine CPU | re-run machine CPU |",
        "|---|---|---|---|---|",
    ]
    notes = []
    for size in results["peers"]:
        hosts = size["hosts"]
        rows += side_rows(hosts, "ours (pyinfra)", size["ours"], "commands")
        rows += side_rows(hosts, "Ansible collection", size["peer"], "module runs")
        o_f = [s["fresh"] for s in size["ours"]]
        p_f = [s["fresh"] for s in size["peer"]]
        o_r = [r for s in size["ours"] for r in s["rerun"]]
        p_r = [r for s in size["peer"] for r in s["rerun"]]
        ratios.append(
            f"| {hosts} | {_wall(o_f) / _wall(p_f):.2f} | {_wall(o_r) / _wall(p_r):.2f} | "
            f"{_cpu(o_f) / _cpu(p_f):.2f} | {_cpu(o_r) / _cpu(p_r):.2f} |"
        )
        for side in size["peer"]:
            for summary in side["rerun_summaries"][-1:]:
                if summary["changed"]:
                    what = ", ".join(f"{t} x{n}" for t, n in summary["changed_by_task"].items())
                    notes.append(
                        f"{hosts} hosts: the peer's re-run reported {summary['changed']} "
                        f"changes: {what}"
                    )
    head = (
        f"Peer comparison: connector {results['connector']}; "
        f"{', '.join(f'{k} {v}' for k, v in results.get('peer_versions', {}).items())}; "
        f"{results['cpus']} CPUs. Ours = bench/peers/ours_pki.py (deploy.py up to the end "
        "of issuance). Ratios are ours / theirs (below 1: ours is faster or cheaper)."
    )
    return "\n".join(["", head, "", *rows, "", *ratios, "", *notes])
