"""The peer comparison's table: each side's fresh run and re-run, and ours / theirs."""

from __future__ import annotations

from typing import Any

from ..measure import Run, median
from ..report import commands_text, cpu_text


def _wall(runs: list[Run]) -> float:
    return median([r.wall for r in runs])


def own_cpu(run: Run) -> float:
    """CPU seconds of the run's own processes: the controller (pyinfra or
    ansible-playbook, with the docker or ssh processes they ran), the bed's containers
    and the docker daemons. Unlike the machine's busy time, other work on a shared
    machine is not in it (but for the daemons' share of it)."""
    return sum(run.places.values())


def _cpu(runs: list[Run]) -> float:
    return median([own_cpu(r) for r in runs])


def slowest_tasks(run: Run, top: int = 6) -> list[str]:
    """The peer's slowest tasks (wall, all hosts: Ansible runs a task on every host
    before the next one starts), from its callback log."""
    starts = [r for r in run.records if r["k"] in ("task", "stats")]
    spans = sorted(
        ((b["t"] - a["t"], a["task"]) for a, b in zip(starts, starts[1:], strict=False)),
        reverse=True,
    )
    return [f"    {d:6.2f} s  {name[:90]}" for d, name in spans[:top]]


def side_rows(hosts: int, name: str, sides: list[dict[str, Any]], unit: str) -> list[str]:
    fresh = [s["fresh"] for s in sides]
    rerun = [r for s in sides for r in s["rerun"]]
    changes = sorted({r.changed for r in rerun})
    return [
        f"| {hosts} | {name} | fresh | {len(fresh)} | {_wall(fresh):.1f} s | "
        f"{_cpu(fresh):.1f} core-s | {cpu_text(fresh[-1])} | "
        f"{commands_text(fresh[-1])} {unit} | {fresh[-1].changed} |",
        f"| {hosts} | {name} | no-change re-run | {len(rerun)} | {_wall(rerun):.1f} s | "
        f"{_cpu(rerun):.1f} core-s | {cpu_text(rerun[-1])} | "
        f"{commands_text(rerun[-1])} {unit} | {', '.join(map(str, changes))} |",
    ]


def peers_report(results: dict[str, Any]) -> str:
    rows = [
        "| Hosts | Tool | Run | Runs | Wall (median) | Own CPU (median) "
        "| Machine busy, last run | Per host, last run | Changes reported |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = [
        "| Hosts | fresh wall | re-run wall | fresh own CPU | re-run own CPU |",
        "|---|---|---|---|---|",
    ]
    notes: list[str] = []
    slow: list[str] = []
    for size in results["peers"]:
        if not size["ours"] or not size["peer"]:
            continue  # cut short: a side without figures has no ratio
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
        for side in size["peer"][-1:]:
            slow.append(f"Slowest tasks of the peer's fresh run, {hosts} hosts:")
            slow += slowest_tasks(side["fresh"])
            slow.append(f"Slowest tasks of the peer's last re-run, {hosts} hosts:")
            slow += slowest_tasks(side["rerun"][-1])
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
        "of issuance). Own CPU: the controller, the bed's containers and the docker "
        "daemons; machine busy: the whole machine (/proc/stat), other work included. "
        "Ratios are ours / theirs (below 1: ours is faster or cheaper)."
    )
    return "\n".join(["", head, "", *rows, "", *ratios, "", *notes, "", *slow])
