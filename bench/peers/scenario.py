"""The paired comparison: at each size, our deploy and the peer on fresh containers.

Each side gets new containers of the same bed, prepared the same way before the clock
starts (``prepare_hosts``: Python 3 from Debian, which Ansible needs on every host and
our deploy does not use, and the pinned ``step``/``step-ca`` binaries from the bed's
cache), then a timed fresh run, the check that it did the job (``verify``), and timed
no-change re-runs. The two sides of a pair run one after the other, the order
alternating from pair to pair (this machine's speed drifts).
"""

from __future__ import annotations

import fcntl
import runpy
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from etcd_pki.plan import ClusterPlan, HostInput, build_plan
from tests import testbed as tb

from ..measure import REPO, BenchError, Run, deploy_n, inventory, log_dir, progress
from ..scenarios import new_bed
from .ansible import generate, runner
from .verify import verify_issued

OURS = "bench/peers/ours_pki.py"
DEFAULTS = {
    k: v
    for k, v in runpy.run_path(str(REPO / "group_data" / "all.py")).items()
    if not k.startswith("__")
}
PY_DEBS_SCRIPT = (
    "apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "
    "--download-only python3 >/dev/null && cp /var/cache/apt/archives/*.deb /out/"
)


def python_debs() -> Path:
    """Debian's python3 packages for the node image's release, fetched once into the
    bed's cache (from Debian, by apt in a throwaway container of the node image)."""
    target = tb.cache_dir() / "peers" / f"python3-debs-{tb.SUITE}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not any(target.glob("python3_*.deb")):
            progress(f"fetching Debian's python3 packages for {tb.SUITE} into {target}")
            target.mkdir(exist_ok=True)
            tb.ensure_image()
            tb.docker(
                "run", "--rm", "--network", "bridge", "-v", f"{target}:/out",
                "--entrypoint", "sh", tb.IMAGE, "-c", PY_DEBS_SCRIPT,
                timeout=600,
            )  # fmt: skip
    return target


def _prepare_one(
    node: tb.Node, debs: Path, paths: dict[str, str], versions: dict[str, str]
) -> None:
    container = node.container
    tools = [t for t in tb.TOOLS if t.name == "step" or tb.GROUP_CERT_MANAGERS in node.groups]
    dirs = sorted({str(Path(p).parent) for p in paths.values()})
    tb.docker("exec", container, "mkdir", "-p", "/var/lib/bench-pydebs", *dirs)
    tb.docker("cp", f"{debs}/.", f"{container}:/var/lib/bench-pydebs/", timeout=300)
    for tool in tools:
        src = tb.binary_path(tool, versions[tool.name])
        tb.docker("cp", str(src), f"{container}:{paths[tool.name]}", timeout=300)
    script = (
        "set -e; apt-get install -y -q --no-install-recommends /var/lib/bench-pydebs/*.deb "
        ">/dev/null 2>&1; rm -rf /var/lib/bench-pydebs; "
        f"chown root:root {' '.join(paths[t.name] for t in tools)}; "
        f"chmod 755 {' '.join(dirs)} {' '.join(paths[t.name] for t in tools)}"
    )
    tb.docker("exec", container, "sh", "-c", script, timeout=600)


def prepare_hosts(bed: tb.Bed, paths: dict[str, str]) -> None:
    """Before the clock: python3 on every host, step (and step-ca on cert-managers)
    at ``paths`` ({"step": path, "step-ca": path}), owned by root, 0755."""
    debs = python_debs()
    versions = tb.pinned_versions()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(_prepare_one, n, debs, paths, versions) for n in bed.nodes]:
            future.result()


def bed_plan(bed: tb.Bed) -> ClusterPlan:
    """Our plan for the bed's hosts with the defaults of group_data/all.py: what our
    deploy issues there, and so what the peer is asked to issue."""
    return build_plan(
        HostInput(node.name, frozenset(node.groups), {**DEFAULTS, "address": node.ip})
        for node in bed.nodes
    )


def targets(bed: tb.Bed, connection: str) -> dict[str, generate.Target]:
    if connection == "docker":
        return {n.name: generate.Target("docker", n.container) for n in bed.nodes}
    return {n.name: generate.Target("ssh", n.ip, str(bed.ssh_key)) for n in bed.nodes}


def ours(clients: int, label: str, reruns: int) -> dict[str, Any]:
    bed = new_bed(clients)
    hosts = len(bed.nodes)
    progress(f"  ours, {hosts} hosts: preparing the hosts (untimed)")
    bin_dir = DEFAULTS["bin_dir"]
    prepare_hosts(bed, {"step": f"{bin_dir}/step", "step-ca": f"{bin_dir}/step-ca"})
    inv = inventory(bed)
    fresh = deploy_n(inv, f"{label}-ours-fresh", 1, quiet_change=True, deploy=OURS)[0]
    checked = verify_issued(bed_plan(bed), "our deploy")
    progress(f"  ours: {checked} certificates verified on their hosts")
    again = deploy_n(inv, f"{label}-ours-rerun", reruns, deploy=OURS)
    return {"fresh": fresh, "rerun": again, "verified": checked}


def _peer_note(run: Run, summary: dict[str, Any]) -> str:
    changed = ", ".join(f"{n} {t}" for t, n in summary["changed_by_task"].items())
    return (
        f"{run.wall:.1f} s, {summary['tasks']} tasks, max {max(run.commands.values())} "
        f"module runs/host, {run.changed} changed{f' ({changed})' if changed else ''}"
    )


def peer(clients: int, label: str, reruns: int, connection: str) -> dict[str, Any]:
    playbook = runner.ensure_venv()
    bed = new_bed(clients)
    hosts = len(bed.nodes)
    progress(f"  ansible, {hosts} hosts: preparing the hosts (untimed)")
    prepare_hosts(bed, {"step": generate.STEP, "step-ca": generate.STEP_CA})
    plan = bed_plan(bed)
    run_dir = tb.STATE_DIR / "peer-ansible"
    passwords = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    runner.write_run_dir(run_dir, plan, targets(bed, connection), passwords)
    fresh, fresh_summary = runner.run_playbook(playbook, run_dir, f"{label}-ansible-fresh")
    progress(f"  ansible fresh: {_peer_note(fresh, fresh_summary)}")
    checked = verify_issued(plan, "the Ansible playbook")
    progress(f"  ansible: {checked} certificates verified on their hosts")
    again, summaries = [], []
    for i in range(1, reruns + 1):
        run, summary = runner.run_playbook(playbook, run_dir, f"{label}-ansible-rerun-{i}")
        progress(f"  ansible re-run {i}/{reruns}: {_peer_note(run, summary)}")
        again.append(run)
        summaries.append(summary)
    # The re-runs issued nothing new that breaks the job either.
    verify_issued(plan, "the Ansible playbook's re-runs")
    return {
        "fresh": fresh,
        "fresh_summary": fresh_summary,
        "rerun": again,
        "rerun_summaries": summaries,
        "verified": checked,
    }


def compare(
    sizes: list[int],
    pairs: int,
    reruns: int,
    connection: str,
    results: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Paired runs at each size (hosts: 4 = the base cluster, more = extra clients),
    appended to ``results`` as they are measured (a failure keeps what was)."""
    results = [] if results is None else results
    for hosts in sizes:
        if hosts < 4:
            raise BenchError(f"--peer-sizes: {hosts} hosts; the smallest cluster is 4")
        clients = hosts - 4
        size: dict[str, Any] = {"hosts": hosts, "ours": [], "peer": []}
        results.append(size)
        for i in range(1, pairs + 1):
            order = ("ours", "peer") if i % 2 else ("peer", "ours")
            progress(f"{hosts} hosts, pair {i}/{pairs}: {order[0]} first")
            for side in order:
                label = f"peers-{hosts}h-{i}"
                if side == "ours":
                    size["ours"].append(ours(clients, label, reruns))
                else:
                    size["peer"].append(peer(clients, label, reruns, connection))
    return results


def tool_versions() -> dict[str, str]:
    """The peer's versions, for the report."""
    out = subprocess.run(
        [str(runner.VENV / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found = dict(line.split("==", 1) for line in out.splitlines() if "==" in line)
    galaxy = (runner.peer_source() / "galaxy.yml").read_text()
    versions = [v for k, _, v in (s.partition(":") for s in galaxy.splitlines()) if k == "version"]
    collection = versions[0].strip() if versions else "?"
    return {
        "ansible": found.get("ansible", "?"),
        "ansible-core": found.get("ansible-core", "?"),
        "maxhoesel.smallstep": collection,
        "logs": str(log_dir()),
    }
