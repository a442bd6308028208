"""Benchmark the deploy on the Docker test bed: `make bench [BENCH_ARGS="--quick ..."]`, or

    .venv/bin/python bench/bench.py [--quick] [--json FILE] [--keep] [--connector ssh]
                                    [--install-source controller]
                                    [--fresh-runs N] [--reruns N] [--issuance-runs N]

What it measures (wall time of the whole `pyinfra -y INVENTORY deploy.py` process, from
start to exit; docker connector as the e2e tests run it, unless `--connector ssh`; each
host downloads step/step-ca from the bed's HTTP mirror, as hosts download from GitHub
with the default `install_source`, unless `--install-source controller` uploads them):

* fresh deploy of the 4-host cluster (3 etcd members, one of them the CA, 1 client) on
  brand-new containers: CA, certificates, renewal units, etcd;
* no-change re-run of it: wall time, and the commands pyinfra executed on each host;
* adding one etcd member: `testbed add etcd-k8s-4`, then the deploy with
  `--limit @docker/<container>` (commands on other hosts, e.g. token minting on the CA,
  are counted for those hosts);
* scaling: 3 etcd members plus 8 and 24 client hosts (11 and 27 hosts; the 1-client case
  is the 4-host cluster): fresh deploy and re-run, and the ratio to the 4-host case,
  each run against a 4-host run made just before it (the machine's speed drifts);
* the floor of a re-run at those sizes: `bench/one_fact.py`, a deploy file that reads one
  of pyinfra's own facts on each host and does nothing else, paired the same way. A
  deploy that checks each host runs at least that, so its ratio bounds the re-run's;
* step-ca issuance rate: from 3 hosts at once, 20 token+certificate requests each. The
  tokens are minted on the CA node as the deploy mints them (`tasks.certs.mint_command`,
  one command per host) and piped straight into `step ca certificate` on the requesting host
  (docker exec | docker exec): no password, key or token is written or printed outside
  the containers. Also measured: minting alone (tokens discarded inside the CA).

`--connector ssh` runs every deploy over SSH (inventory_ssh.py, the same containers)
instead of one `docker exec` per command: the per-command cost differs a lot.

Counting commands: every deploy runs through bench/pyinfra_timed.py, which is the
pyinfra CLI plus a log of every call of pyinfra's host API (`run_shell_command`,
`put_file`, `get_file`), with the operation and fact it belongs to and its duration.
All connectors go through that API, so the count does not depend on log formats.
The same log gives the "where the time goes" breakdown printed after the table.

The bed instance is `$ETCD_PKI_BED`, or `bench` when unset (never the default bed: the
benchmark recreates containers). Containers are removed at the end unless `--keep`.
Logs of every run: .testbed/bench-logs/<instance>/. Timings are for this machine and load;
they belong here, never in tests.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import runpy
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ETCD_PKI_BED", "bench")
sys.path.insert(0, str(REPO))

from etcd_pki.plan import CertSpec  # noqa: E402
from etcd_pki.settings import Settings  # noqa: E402
from tasks.certs import mint_command  # noqa: E402
from tests import testbed as tb  # noqa: E402  (needs ETCD_PKI_BED set first)

PYTHON = sys.executable
RUNNER = REPO / "bench" / "pyinfra_timed.py"
DEPLOY = "deploy.py"
ONE_FACT = "bench/one_fact.py"  # the floor of a re-run: one pyinfra fact per host
SETTINGS = runpy.run_path(str(REPO / "group_data" / "all.py"))
BURST_HOSTS = ("etcd-k8s-2", "etcd-k8s-3", "app-server")
BASE_NODES = ("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3", "app-server")  # the 4-host cluster
NEW_MEMBER = "etcd-k8s-4"
CA_NODE = "etcd-k8s-1"  # the test bed's active cert-manager
# Targets from issue 8 (this 2-core machine).
TARGET_FRESH_4 = 60.0
TARGET_RERUN_4 = 10.0
TARGET_SCALE_RATIO = 2.0
TARGET_COMMANDS = 30
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


# ---------------------------------------------------------------------------
# One pyinfra run
# ---------------------------------------------------------------------------


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


def run_deploy(inventory: Path, label: str, *args: str, deploy: str = DEPLOY) -> Run:
    """Run the deploy (or another deploy file) once through the counting runner; raise
    if it fails."""
    logs = log_dir()
    cmd_log = logs / f"{label}.jsonl"
    cmd_log.unlink(missing_ok=True)
    cmd = [PYTHON, str(RUNNER), str(cmd_log), "-y", str(inventory), deploy, *args]
    places_before, children = cpu_by_place(), _children_cpu()
    start, busy = time.monotonic(), busy_seconds()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall, cpu = time.monotonic() - start, busy_seconds() - busy
    controller = _children_cpu() - children
    places = {k: round(v - places_before.get(k, 0.0), 3) for k, v in cpu_by_place().items()}
    places[" controller"] = round(controller, 3)
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


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------


def fresh_and_reruns(clients: int, fresh_runs: int, reruns: int) -> dict[str, Any]:
    """`clients` extra app-client hosts besides app-server; fresh deploys, then re-runs.

    With clients, every run is paired with a 4-host run made just before it (a fresh
    deploy on new containers; a re-run of the base hosts alone on the same bed): the
    ratio to 4 hosts then compares runs made under the same machine conditions (this
    VM's speed drifts by tens of percent within minutes)."""
    hosts = 4 + clients
    fresh, fresh_ref = [], []
    for i in range(1, fresh_runs + 1):
        if clients:
            progress(f"{hosts} hosts: 4-host reference first ({i}/{fresh_runs})")
            bed = new_bed(0)
            fresh_ref += deploy_n(
                inventory(bed), f"ref-fresh-4h-{hosts}h-{i}", 1, quiet_change=True
            )
        progress(f"{hosts} hosts: new containers ({i}/{fresh_runs})")
        bed = new_bed(clients)
        progress(f"{hosts} hosts: fresh deploy ({i}/{fresh_runs})")
        fresh += deploy_n(inventory(bed), f"fresh-{hosts}h-{i}", 1, quiet_change=True)
    progress(f"{hosts} hosts: no-change re-runs")
    again, again_ref = [], []
    for i in range(1, reruns + 1):
        if clients:
            again_ref += deploy_n(inventory(bed, only_base=True), f"ref-rerun-4h-{hosts}h-{i}", 1)
        again += deploy_n(inventory(bed), f"rerun-{hosts}h-{i}", 1)
    floor, floor_ref = [], []
    if clients:
        progress(f"{hosts} hosts: the floor, one pyinfra fact per host ({ONE_FACT})")
        base, full = inventory(bed, only_base=True), inventory(bed)
        for i in range(1, reruns + 1):
            floor_ref += deploy_n(base, f"ref-floor-4h-{hosts}h-{i}", 1, deploy=ONE_FACT)
            floor += deploy_n(full, f"floor-{hosts}h-{i}", 1, deploy=ONE_FACT)
    return {
        "hosts": hosts,
        "fresh": fresh,
        "rerun": again,
        "fresh_ref": fresh_ref,
        "rerun_ref": again_ref,
        "floor": floor,
        "floor_ref": floor_ref,
    }


def paired_ratio(runs: list[Run], refs: list[Run]) -> float:
    """Median over pairs of (run's wall time / its 4-host reference's wall time)."""
    return median([run.wall / ref.wall for run, ref in zip(runs, refs, strict=True)])


def new_bed(clients: int) -> tb.Bed:
    """Fresh containers; one retry (a node booting on a loaded machine can time out)."""
    try:
        return tb.up(clients=clients, fresh=True)
    except tb.TestbedError as e:
        progress(f"test bed not up ({str(e)[:200]}); retrying once")
        return tb.up(clients=clients, fresh=True)


def add_member(bed: tb.Bed) -> Run:
    progress(f"add {NEW_MEMBER}: new container")
    bed = tb.add(NEW_MEMBER, "etcd")
    limit = limit_name(bed, NEW_MEMBER)
    progress(f"add {NEW_MEMBER}: deploy --limit {limit}")
    return deploy_n(inventory(bed), "add-member", 1, "--limit", limit, quiet_change=True)[0]


def _sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def issuance_burst(bed: tb.Bed, per_host: int, mint_only: bool) -> dict[str, Any]:
    """Mint `per_host` tokens per host on the CA and redeem them on BURST_HOSTS at once.

    Each host gets one pipeline `docker exec CA mint | docker exec -i HOST issue`, the
    minting done as the deploy does it (`tasks.certs.mint_command`: one command for the
    host's tokens); all pipelines start together. Returns elapsed seconds and
    certificates (or, with ``mint_only``, tokens) per second.
    """
    s = SETTINGS
    ca = Settings.from_data(s)
    ca_node = bed.group(tb.GROUP_CERT_MANAGERS)[0].name
    ca_url = f"https://{bed.ip(ca_node)}:{s['ca_port']}"
    tag = f"bench{int(time.time())}"
    procs = []
    start = time.monotonic()
    for host in BURST_HOSTS:
        prefix = f"{tag}-{host}"
        certs = [
            CertSpec(prefix, str(i), f"{prefix}-{i}", (f"{prefix}-{i}",), (), "root", "/tmp")
            for i in range(per_host)
        ]
        mint = mint_command(ca, ca_url, certs)
        if mint_only:  # the tokens stay in the CA container: only their count comes out
            mint = f"( {mint} ) | grep -c '^token '"
        minter = subprocess.Popen(
            ["docker", "exec", bed.container(ca_node), *_sh(mint)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        redeemer = None
        if not mint_only:
            issue = (
                "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; i=0; "
                "while read -r kind n token; do "
                '[ "$kind" = token ] || { echo "$kind $n $token" >&2; exit 1; }; i=$((i+1)); '
                f"STEPPATH={s['step_dir']} {s['bin_dir']}/step ca certificate {prefix}-$n "
                f'"$d/$n.crt" "$d/$n.key" --token "$token" --kty EC --curve P-256 '
                f"--ca-url {ca_url} --root {s['ssl_dir']}/root_ca.crt --force >/dev/null; "
                'done; echo "issued $i"'
            )
            redeemer = subprocess.Popen(
                ["docker", "exec", "-i", bed.container(host), *_sh(issue)],
                stdin=minter.stdout,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            minter.stdout.close()  # the pipe now belongs to the redeemer only
        procs.append((host, minter, redeemer))
    done = 0
    problems = []
    for host, minter, redeemer in procs:
        if redeemer is not None:
            out, err = redeemer.communicate(timeout=600)
            match = re.search(rb"issued (\d+)", out)
            done += int(match.group(1)) if match else 0
            if redeemer.returncode != 0:
                problems.append(f"{host}: step ca certificate failed: {err.decode()[-300:]}")
            _, err = minter.communicate(timeout=600)
        else:
            out, err = minter.communicate(timeout=600)
            done += int(out.strip() or 0)
        if minter.returncode != 0:
            problems.append(f"{host}: minting failed: {err.decode()[-300:]}")
    elapsed = time.monotonic() - start
    if problems:
        raise BenchError("issuance burst: " + "; ".join(problems))
    count = per_host * len(BURST_HOSTS)
    if done != count:
        raise BenchError(
            f"issuance burst: {done} of {count} {'tokens' if mint_only else 'certificates'}"
        )
    return {"count": count, "seconds": elapsed, "per_second": count / elapsed}


def issuance(bed: tb.Bed, runs: int, per_host: int) -> dict[str, Any]:
    bursts, mints = [], []
    for i in range(1, runs + 1):
        mint = issuance_burst(bed, per_host, mint_only=True)
        burst = issuance_burst(bed, per_host, mint_only=False)
        progress(
            f"  burst {i}/{runs}: {burst['count']} token+certificate in {burst['seconds']:.1f} s "
            f"= {burst['per_second']:.1f}/s (minting alone {mint['per_second']:.1f} tokens/s)"
        )
        bursts.append(burst)
        mints.append(mint)
    return {
        "hosts": list(BURST_HOSTS),
        "per_host": per_host,
        "bursts": bursts,
        "mint_only": mints,
        "per_second": median([b["per_second"] for b in bursts]),
        "mint_per_second": median([m["per_second"] for m in mints]),
    }


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def commands_text(run: Run) -> str:
    counts = run.commands
    if len(counts) <= 5:
        return ", ".join(f"{n} {c}" for n, c in counts.items())
    values = sorted(counts.values())
    top = max(counts, key=counts.get)
    return f"max {values[-1]} ({top}), median {median(values):.0f}, min {values[0]}"


def cpu_text(run: Run) -> str:
    """The machine's busy CPU time during ``run``, and its share of what the cores had."""
    share = run.cpu / (run.wall * (os.cpu_count() or 1))
    return f"{run.cpu:.1f} core-s ({share:.0%})"


def places_text(run: Run) -> str:
    """Where the machine's busy CPU time went: controller, docker daemons, nodes by role."""
    p = dict(run.places)
    controller = p.pop(" controller", 0.0)
    parts = [f"controller (pyinfra and the docker or ssh processes it ran) {controller:.1f} s"]
    parts.append(f"docker daemons {p.pop(' docker daemons', 0.0):.1f} s")
    ca = p.pop(CA_NODE, None)
    if ca is not None:
        parts.append(f"CA node {ca:.1f} s")
    members = [v for k, v in p.items() if k.startswith("etcd-")]
    clients = [v for k, v in p.items() if not k.startswith("etcd-")]
    for role, values in (("other members", members), ("clients", clients)):
        if values:
            parts.append(
                f"{len(values)} {role} {sum(values):.1f} s ({sum(values) / len(values):.2f} each)"
            )
    rest = run.cpu - sum(run.places.values())
    parts.append(f"rest (runc, kernel, other processes) {rest:.1f} s")
    return ", ".join(parts)


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def where_time_goes(run: Run, top: int = 8) -> list[str]:
    """Stage split, slowest operations, and command time by fact/operation for one run."""
    lines = [f"  machine CPU busy: {cpu_text(run)} of the cores' time"]
    if run.places:
        lines.append(f"  CPU by place: {places_text(run)}")
    st = run.stages
    if {"Prepare", "Execute", "Disconnect"} <= st.keys():
        prepare, execute = st["Execute"] - st["Prepare"], st["Disconnect"] - st["Execute"]
        lines.append(
            f"  stages: start-up+connect {st['Prepare']:.1f} s, prepare {prepare:.1f} s, "
            f"execute {execute:.1f} s"
        )
    ops = sorted((r for r in run.records if r["k"] == "op"), key=lambda r: -r["d"])
    lines.append(f"  slowest operations (wall, all hosts; {len(ops)} operations):")
    for r in ops[:top]:
        name = r["op"].split(", ")[0]
        lines.append(f"    {r['d']:6.2f} s  {name[:90]}")
    by_kind: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for r in run.records:
        if r["k"] in ("cmd", "put", "get"):
            what = f"fact {r['fact']}" if r["fact"] else "operation command"
            by_kind[(r["stage"], what)].append(r["d"])
    lines.append("  host commands by kind (count, summed time over hosts):")
    for (stage, what), ds in sorted(by_kind.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"    {len(ds):4d}  {sum(ds):6.2f} s  {stage:8s} {what}")
    return lines


def report(results: dict[str, Any]) -> str:
    base = results["base"]
    f4 = median([r.wall for r in base["fresh"]])
    r4 = median([r.wall for r in base["rerun"]])
    rows = [
        "| Scenario | Hosts | Runs | Wall time (median) | vs 4 hosts | Commands per host "
        "| Machine CPU, last run | Target |",
        "|---|---|---|---|---|---|---|---|",
        f"| fresh deploy | 4 | {len(base['fresh'])} | {f4:.1f} s | 1.00 | "
        f"{commands_text(base['fresh'][-1])} | {cpu_text(base['fresh'][-1])} "
        f"| < {TARGET_FRESH_4:.0f} s {mark(f4 < TARGET_FRESH_4)} |",
    ]
    last = base["rerun"][-1]
    most = max(max(r.commands.values()) for r in base["rerun"])
    rows.append(
        f"| no-change re-run | 4 | {len(base['rerun'])} | {r4:.1f} s | 1.00 | "
        f"{commands_text(last)} | {cpu_text(last)} "
        f"| < {TARGET_RERUN_4:.0f} s {mark(r4 < TARGET_RERUN_4)}, "
        f"<= {TARGET_COMMANDS} cmds {mark(most <= TARGET_COMMANDS)} |"
    )
    if results.get("add"):
        add = results["add"]
        rows.append(
            f"| add {NEW_MEMBER} (--limit) | 1 of 5 | 1 | {add.wall:.1f} s | - | "
            f"{commands_text(add)} | {cpu_text(add)} | - |"
        )
    for scale in results["scaling"]:
        hosts = scale["hosts"]
        fs = median([r.wall for r in scale["fresh"]])
        rs = median([r.wall for r in scale["rerun"]])
        fx = paired_ratio(scale["fresh"], scale["fresh_ref"])
        rx = paired_ratio(scale["rerun"], scale["rerun_ref"])
        f_ref = median([r.wall for r in scale["fresh_ref"]])
        r_ref = median([r.wall for r in scale["rerun_ref"]])
        most = max(max(r.commands.values()) for r in scale["rerun"])
        rows.append(
            f"| fresh deploy | {hosts} | {len(scale['fresh'])} | {fs:.1f} s (4 hosts "
            f"{f_ref:.1f} s) | {fx:.2f} | {commands_text(scale['fresh'][-1])} | "
            f"{cpu_text(scale['fresh'][-1])} | "
            f"<= {TARGET_SCALE_RATIO:.0f}x {mark(fx <= TARGET_SCALE_RATIO)} |"
        )
        rows.append(
            f"| no-change re-run | {hosts} | {len(scale['rerun'])} | {rs:.1f} s (4 hosts "
            f"{r_ref:.1f} s) | {rx:.2f} | {commands_text(scale['rerun'][-1])} | "
            f"{cpu_text(scale['rerun'][-1])} | "
            f"<= {TARGET_SCALE_RATIO:.0f}x {mark(rx <= TARGET_SCALE_RATIO)}, "
            f"<= {TARGET_COMMANDS} cmds {mark(most <= TARGET_COMMANDS)} |"
        )
        if scale.get("floor"):
            rows.append(
                f"| floor: one pyinfra fact per host, nothing else | {hosts} | "
                f"{len(scale['floor'])} | {median([r.wall for r in scale['floor']]):.1f} s "
                f"(4 hosts {median([r.wall for r in scale['floor_ref']]):.1f} s) | "
                f"{paired_ratio(scale['floor'], scale['floor_ref']):.2f} | 1 | "
                f"{cpu_text(scale['floor'][-1])} | - |"
            )
    if results.get("issuance"):
        iss = results["issuance"]
        per = iss["per_host"]
        rows.append(
            f"| step-ca issuance: {per} token+cert per host, {len(iss['hosts'])} hosts at once | "
            f"{len(iss['hosts'])} | {len(iss['bursts'])} | {iss['per_second']:.1f} cert/s "
            f"(tokens alone {iss['mint_per_second']:.1f}/s) | - | - | - | - |"
        )
    head = (
        f"Connector: {results['connector']}; install source: {results['install_source']}; "
        f"{results['cpus']} CPUs."
    )
    out = ["", head, "", *rows, "", "Where the time goes, last no-change re-run of 4 hosts:"]
    out += where_time_goes(last)
    out.append("Where the time goes, last fresh deploy of 4 hosts:")
    out += where_time_goes(base["fresh"][-1])
    if results["scaling"]:
        big = results["scaling"][-1]
        for kind in ("fresh", "rerun"):
            what = "fresh deploy" if kind == "fresh" else "no-change re-run"
            out.append(f"Where the time goes, last {what} of {big['hosts']} hosts:")
            out += where_time_goes(big[kind][-1])
    return "\n".join(out)


def to_json(results: dict[str, Any]) -> dict[str, Any]:
    def conv(value):
        if isinstance(value, Run):
            return value.summary()
        if isinstance(value, dict):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, list):
            return [conv(v) for v in value]
        return value

    return conv(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    if argv is None:  # `make bench BENCH_ARGS="--quick --json out.json"`
        argv = sys.argv[1:] + shlex.split(os.environ.get("BENCH_ARGS", ""))
    args = parser.parse_args(argv)
    global CONNECTOR, INSTALL_SOURCE
    CONNECTOR, INSTALL_SOURCE = args.connector, args.install_source
    quick = args.quick
    fresh_runs = args.fresh_runs or (1 if quick else 3)
    reruns = args.reruns or (3 if quick else 5)
    scale_reruns = max(1, min(reruns, 2 if quick else 5))
    issuance_runs = args.issuance_runs or (1 if quick else 3)
    client_counts = (7,) if quick else (7, 23)  # + app-server: 8 and 24 clients

    progress(
        f"instance {tb.BED.name!r} (containers {tb.BED.prefix}...), logs in {log_dir()}; "
        f"{'quick' if quick else 'full'} run, {CONNECTOR} connector, "
        f"install source {INSTALL_SOURCE}"
    )
    results: dict[str, Any] = {
        "instance": tb.BED.name,
        "quick": quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "connector": CONNECTOR,
        "install_source": INSTALL_SOURCE,
        "load_before": os.getloadavg(),
        "scaling": [],
    }
    try:
        results["base"] = fresh_and_reruns(0, fresh_runs, reruns)
        progress(
            f"issuance: {args.per_host} token+certificate per host from {len(BURST_HOSTS)} hosts"
        )
        results["issuance"] = issuance(tb.bed(), issuance_runs, args.per_host)
        results["add"] = add_member(tb.bed())
        for clients in client_counts:
            results["scaling"].append(fresh_and_reruns(clients, args.scale_runs, scale_reruns))
    finally:
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
    print(report(results))
    print(
        f"\nload average before {results['load_before'][0]:.1f}, after "
        f"{results['load_after'][0]:.1f} on {results['cpus']} CPUs"
    )
    return 0


if __name__ == "__main__":
    # Killed (SIGTERM): unwind normally, so --json still gets what was measured.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except (BenchError, tb.TestbedError) as e:
        progress(f"FAILED: {e}")
        sys.exit(1)
