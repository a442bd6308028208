"""The bench's command line (`python -m bench`): options, the run in order, the report."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import bench
from tests import testbed as tb

from . import measure
from .measure import log_dir, progress
from .report import report, to_json
from .scenarios import BURST_HOSTS, add_member, fresh_and_reruns, issuance, rotations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=bench.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs, no 27-host case")
    parser.add_argument("--json", metavar="FILE", help="write all results as JSON to FILE")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    parser.add_argument("--fresh-runs", type=int, help="fresh 4-host deploys (3; quick 1)")
    parser.add_argument("--reruns", type=int, help="re-runs per size (5; quick 3)")
    parser.add_argument(
        "--scale-runs", type=int, default=1, help="fresh deploys of 11 and 27 hosts (1)"
    )
    parser.add_argument("--issuance-runs", type=int, help="issuance bursts (3; quick 1)")
    parser.add_argument("--per-host", type=int, default=20, help="certificates per host (20)")
    parser.add_argument(
        "--connector",
        choices=("docker", "ssh"),
        default="docker",
        help="reach the hosts with docker exec (default, as the e2e tests) or over SSH",
    )
    parser.add_argument(
        "--install-source",
        choices=("mirror", "controller"),
        default="mirror",
        help="hosts download step/step-ca over HTTP (default, like install_source "
        '"github") or get them uploaded from the controller',
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="only the comparison with the Ansible collection (bench/peers/): both on "
        "fresh containers, paired, at --peer-sizes",
    )
    parser.add_argument(
        "--peer-sizes",
        default="4,11,27",
        help="cluster sizes (hosts) of the peer comparison, comma-separated (4,11,27)",
    )
    parser.add_argument("--peer-pairs", type=int, default=1, help="pairs per size (1)")
    parser.add_argument("--peer-reruns", type=int, default=3, help="re-runs per side (3)")
    if argv is None:  # `make bench BENCH_ARGS="--quick --json out.json"`
        argv = sys.argv[1:] + shlex.split(os.environ.get("BENCH_ARGS", ""))
    args = parser.parse_args(argv)
    measure.CONNECTOR, measure.INSTALL_SOURCE = args.connector, args.install_source
    quick = args.quick
    fresh_runs = args.fresh_runs or (1 if quick else 3)
    reruns = args.reruns or (3 if quick else 5)
    scale_reruns = max(1, min(reruns, 2 if quick else 5))
    issuance_runs = args.issuance_runs or (1 if quick else 3)
    client_counts = (7,) if quick else (7, 23)  # + app-server: 8 and 24 clients

    progress(
        f"instance {tb.BED.name!r} (containers {tb.BED.prefix}...), logs in {log_dir()}; "
        f"{'quick' if quick else 'full'} run, {measure.CONNECTOR} connector, "
        f"install source {measure.INSTALL_SOURCE}"
    )
    results: dict[str, Any] = {
        "instance": tb.BED.name,
        "quick": quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "connector": measure.CONNECTOR,
        "install_source": measure.INSTALL_SOURCE,
        "load_before": os.getloadavg(),
        "scaling": [],
    }
    if args.peers:
        return peers_main(args, results)
    try:
        results["base"] = fresh_and_reruns(0, fresh_runs, reruns)
        progress(
            f"issuance: {args.per_host} token+certificate per host from {len(BURST_HOSTS)} hosts"
        )
        results["issuance"] = issuance(tb.bed(), issuance_runs, args.per_host)
        results["rotations"] = rotations(tb.bed())
        results["add"] = add_member(tb.bed())  # a member joining after the rotations
        for clients in client_counts:
            results["scaling"].append(fresh_and_reruns(clients, args.scale_runs, scale_reruns))
            if clients == client_counts[0]:
                results["rotations"] += rotations(tb.bed())
    finally:
        finish(args, results)
    return print_report(report(results), results)


def peers_main(args: argparse.Namespace, results: dict[str, Any]) -> int:
    """``--peers``: the paired comparison with the Ansible collection alone."""
    from .peers import report as peers_report_mod
    from .peers import scenario as peers

    try:
        sizes = [int(s) for s in args.peer_sizes.split(",") if s.strip()]
    except ValueError:
        raise measure.BenchError(
            f"--peer-sizes: not a list of numbers: {args.peer_sizes!r}"
        ) from None
    results["peers"] = []
    try:
        peers.compare(sizes, args.peer_pairs, args.peer_reruns, measure.CONNECTOR, results["peers"])
        results["peer_versions"] = peers.tool_versions()
    finally:
        finish(args, results)
    return print_report(peers_report_mod.peers_report(results), results)


def finish(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """After the runs, even failed ones: the JSON results, the bench bed removed."""
    results["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(results), indent=2) + "\n")
        progress(f"results written to {args.json}")
    if not args.keep:
        progress("removing the bench containers (--keep leaves them)")
        try:
            tb.down()
        except tb.TestbedError as e:  # the figures are measured: still print them
            progress(
                f"WARNING: removing the bench bed failed ({e}); try `ETCD_PKI_BED="
                f"{tb.BED.name} python -m tests.testbed down`"
            )


def print_report(text: str, results: dict[str, Any]) -> int:
    print(text)
    print(
        f"\nload average before {results['load_before'][0]:.1f}, after "
        f"{results['load_after'][0]:.1f} on {results['cpus']} CPUs"
    )
    return 0
