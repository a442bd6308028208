"""The scenarios: fresh deploys and re-runs at each size, adding a member, step-ca issuance."""

from __future__ import annotations

import re
import runpy
import subprocess
import time
from typing import Any

from etcd_pki.plan import CertSpec
from etcd_pki.settings import Settings
from tasks.certs import mint_command
from tests import testbed as tb

from .measure import REPO, BenchError, Run, deploy_n, inventory, limit_name, median, progress

ONE_FACT = "bench/one_fact.py"  # the floor of a re-run: one pyinfra fact per host
SETTINGS = runpy.run_path(str(REPO / "group_data" / "all.py"))
BURST_HOSTS = ("etcd-k8s-2", "etcd-k8s-3", "app-server")
NEW_MEMBER = "etcd-k8s-4"


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


def etcd_starts(bed: tb.Bed, since: float) -> int:
    """How many times etcd started on the bed's members since the epoch time ``since``."""
    total = 0
    for node in bed.group("etcd"):
        _, out = tb.exec_in(
            node.name,
            f"journalctl -u etcd --since @{int(since)} -o cat --no-pager | grep -c '^Started '",
        )
        total += int(out.strip() or 0)
    return total


def rotations(bed: tb.Bed) -> list[dict[str, Any]]:
    """rotate_ca.py on the deployed bed while app-server writes and reads through every
    member: the intermediate, the root, then the root again (a finished rotation: nothing
    to do). Every run must succeed and no acknowledged write may be lost."""
    inv, hosts = inventory(bed), len(tb.running_nodes())
    members = [n.ip for n in bed.group("etcd")]
    out = []
    for kind, again in (("intermediate", ""), ("root", ""), ("root", " again (done)")):
        progress(f"{hosts} hosts: rotate_ca.py rotate={kind}{again}, with a client load")
        label = f"rotate-{kind}{'-again' if again else ''}-{hosts}h"
        since = time.time()
        tb.start_load(members)
        try:
            (run,) = deploy_n(inv, label, 1, "--data", f"rotate={kind}",
                              deploy="rotate_ca.py", quiet_change=not again)  # fmt: skip
        finally:
            load = tb.stop_load(members[0])
        if load.lost:
            raise BenchError(f"{label}: acknowledged writes lost: {load.lost[:10]}")
        restarts = etcd_starts(bed, since)
        progress(f"  {load.line()}; etcd started {restarts} times")
        out.append(
            {"what": f"rotate {kind}{again}", "hosts": hosts, "run": run, "restarts": restarts,
             "gap": load.longest_gap, "failed": load.failed + load.reads_failed,
             "retried": load.retried}
        )  # fmt: skip
    return out


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
