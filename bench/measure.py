"""The bench's settings and one timed pyinfra run: wall time, commands per host (from the
pyinfra_timed.py log), and where the machine's CPU time went.
"""

from __future__ import annotations

import collections
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests import testbed as tb

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RUNNER = REPO / "bench" / "pyinfra_timed.py"
DEPLOY = "deploy.py"
BASE_NODES = ("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3", "app-server")  # the 4-host cluster
# "docker": @docker/CONTAINER hosts (docker exec per command, as the e2e tests run);
# "ssh": the same containers over SSH (one connection per host). Set by --connector.
CONNECTOR = "docker"
# "mirror": hosts download step/step-ca from the bed's HTTP mirror, as they download from
# GitHub by default; "controller": uploaded (the bed's own inventories, air-gapped
# sites). Set by --install-source.
INSTALL_SOURCE = "mirror"

_t0 = time.monotonic()


class BenchError(RuntimeError):
    pass


def progress(message: str) -> None:
    elapsed = int(time.monotonic() - _t0)
    print(f"[bench {elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def log_dir() -> Path:
    """.testbed/bench-logs/<instance>/: outside the instance's state dir, which `down`
    removes (not a valid instance name, so no bed ever uses it)."""
    path = tb.STATE_ROOT / "bench-logs" / (tb.BED.name or "default")
    path.mkdir(parents=True, exist_ok=True)
    return path


def node_of(host_name: str) -> str:
    """`@docker/bench-etcd-k8s-1` -> `etcd-k8s-1`."""
    name = host_name.rsplit("/", 1)[-1]
    prefix = tb.BED.prefix
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


@dataclass
class Run:
    label: str
    wall: float
    operations: int
    changed: int
    commands: dict[str, int]  # node -> commands (shell commands + uploads + downloads)
    stages: dict[str, float]  # stage -> seconds since start
    cpu: float  # CPU seconds the whole machine was busy during the run (all cores)
    # CPU seconds by place: each container (node name), " docker daemons", " controller"
    # (pyinfra with the docker/ssh processes it ran)
    places: dict[str, float] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("records")
        return data


def inventory(bed: tb.Bed, only_base: bool = False) -> Path:
    """The bed's inventory for CONNECTOR; with INSTALL_SOURCE "mirror", a copy whose hosts
    download the tarballs from the bed's HTTP mirror. ``only_base``: the 4 hosts of the
    base cluster alone (a 4-host re-run on a larger bed)."""
    if INSTALL_SOURCE == "controller" and not only_base:
        return bed.inventory_ssh if CONNECTOR == "ssh" else bed.inventory_docker
    data = {}
    if INSTALL_SOURCE == "mirror":
        data = tb.mirror_data()  # pinned: a plain-http mirror is refused without
    nodes = [n for n in tb.running_nodes() if not only_base or n.name in BASE_NODES]
    name = f"inventory_bench_{CONNECTOR}{'_base' if only_base else ''}.py"
    return tb.write_inventory(tb.STATE_DIR / name, CONNECTOR, nodes=nodes, data=data)


def limit_name(bed: tb.Bed, node: str) -> str:
    """The inventory name of ``node`` for --limit."""
    return node if CONNECTOR == "ssh" else f"@docker/{bed.container(node)}"


def _totals(output: str) -> tuple[int, int, int]:
    match = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if not match:
        raise BenchError(f"no summary in pyinfra output:\n{output[-3000:]}")
    ops, changed, errors, _ = (0 if v == "-" else int(v) for v in match.groups())
    return ops, changed, errors


def _cgroup_cpu(container_id: str) -> float | None:
    """CPU seconds a container has used (cgroup v1 cpuacct or v2 cpu.stat), None if unknown."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage")
    if v1.is_file():
        return int(v1.read_text()) / 1e9
    for v2 in (
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
        Path(f"/sys/fs/cgroup/docker/{container_id}/cpu.stat"),
    ):
        if v2.is_file():
            for line in v2.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
    return None


DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")


def cpu_by_place() -> dict[str, float]:
    """CPU seconds used so far by each of the bed's containers (by node name) and by the
    docker daemons themselves (not their children: a shim reaps the processes of each
    `docker exec`, which the container's cgroup has counted already)."""
    out = subprocess.run(
        ["docker", "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    places: dict[str, float] = {}
    for line in out.splitlines():
        cid, _, name = line.partition(" ")
        if tb.BED.prefix and name.startswith(tb.BED.prefix):
            used = _cgroup_cpu(cid)
            if used is not None:
                places[node_of(name)] = used
    tick = os.sysconf("SC_CLK_TCK")
    daemons = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if comm.split("(", 1)[-1] in DAEMONS:
            f = rest.split()
            daemons += (int(f[11]) + int(f[12])) / tick  # utime, stime
    places[" docker daemons"] = daemons
    return places


def busy_seconds() -> float:
    """CPU seconds the machine has spent busy so far, summed over cores (/proc/stat):
    the containers, dockerd and the controller alike."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float, float, dict[str, float]]:
    """Run ``cmd`` to its end: (process, wall seconds, the machine's busy CPU seconds,
    CPU seconds by place: containers, docker daemons, " controller" = ``cmd`` with its
    children)."""
    places_before, children = cpu_by_place(), _children_cpu()
    start, busy = time.monotonic(), busy_seconds()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.monotonic() - start, busy_seconds() - busy
    controller = _children_cpu() - children
    places = {k: round(v - places_before.get(k, 0.0), 3) for k, v in cpu_by_place().items()}
    places[" controller"] = round(controller, 3)
    return proc, wall, cpu, places


def run_deploy(inventory: Path, label: str, *args: str, deploy: str = DEPLOY) -> Run:
    """Run the deploy (or another deploy file) once through the counting runner; raise
    if it fails."""
    logs = log_dir()
    cmd_log = logs / f"{label}.jsonl"
    cmd_log.unlink(missing_ok=True)
    cmd = [PYTHON, str(RUNNER), str(cmd_log), "-y", str(inventory), deploy, *args]
    proc, wall, cpu, places = timed(cmd, REPO)
    output = proc.stdout + proc.stderr
    (logs / f"{label}.log").write_text(output)
    if proc.returncode != 0:
        raise BenchError(f"{label}: pyinfra exited {proc.returncode}; see {logs / label}.log")
    ops, changed, errors = _totals(output)
    if errors:
        raise BenchError(f"{label}: {errors} operation errors; see {logs / label}.log")
    records = [json.loads(line) for line in cmd_log.read_text().splitlines() if line]
    commands = collections.Counter(
        node_of(r["host"]) for r in records if r["k"] in ("cmd", "put", "get")
    )
    stage_times = [r for r in records if r["k"] == "stage"]
    t0 = stage_times[0]["t"] if stage_times else 0.0
    stages = {r["stage"]: round(r["t"] - t0, 2) for r in stage_times}
    return Run(
        label, wall, ops, changed, dict(sorted(commands.items())), stages, cpu, places, records
    )


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the pyinfra runs, with theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def deploy_n(
    inventory: Path,
    label: str,
    n: int,
    *args: str,
    quiet_change: bool = False,
    deploy: str = DEPLOY,
) -> list[Run]:
    runs = []
    for i in range(1, n + 1):
        run = run_deploy(inventory, f"{label}-{i}", *args, deploy=deploy)
        note = "" if quiet_change or run.changed == 0 else f", {run.changed} CHANGED"
        progress(
            f"  {label} {i}/{n}: {run.wall:.1f} s, {run.operations} operations{note}, "
            f"max {max(run.commands.values())} commands/host"
        )
        runs.append(run)
    return runs
