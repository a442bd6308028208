"""A client load on a bed host: etcd's own client writing and reading without pause,
for the tests and the benchmark of operations that must not interrupt service.

:func:`start_load` starts, on ``client`` (app-server), a loop that puts a new key every
~0.1 s through all members at once (etcdctl's balancer; a put that fails is tried again
twice, 0.5 s apart, as a client would, and counted as retried) and records each
acknowledged write with its time, then gets it back through one member in turn.
:func:`stop_load` stops it and reads every acknowledged key back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .engine import TestbedError
from .instance import exec_in

SSL = "/etc/etcd/ssl"
DIR = "/root/etcd-pki-load"
PREFIX = "etcd-pki-load/"


@dataclass
class LoadResult:
    """What the client saw: writes acknowledged, failed (after its own retries) and
    retried (that needed more than one try), reads failed, the longest time between two acknowledged
    writes, and acknowledged writes not found afterwards."""

    acked: int
    failed: int
    reads_failed: int
    longest_gap: float
    lost: list[str] = field(default_factory=list)
    retried: int = 0

    def line(self) -> str:
        return (
            f"{self.acked} writes acknowledged, {self.failed} failed, {self.retried} "
            f"retried, {self.reads_failed} reads failed, longest gap between acknowledged "
            f"writes {self.longest_gap:.1f} s, {len(self.lost)} acknowledged writes lost"
        )


def _tls(client: str) -> str:
    return (
        f"--cacert {SSL}/root_ca.crt --cert {SSL}/{client}-client.crt "
        f"--key {SSL}/{client}-client.key"
    )


def _sh(host: str, command: str) -> str:
    rc, out = exec_in(host, command)
    if rc != 0:
        raise TestbedError(f"{host}: `{command[:120]}` exited {rc}: {out[-500:]}")
    return out


def start_load(member_ips: Sequence[str], client: str = "app-server") -> None:
    """Start the load on ``client`` against the members at ``member_ips``."""
    ips = list(member_ips)
    every = ",".join(f"https://{ip}:2379" for ip in ips)
    tls = f"{_tls(client)} --dial-timeout=2s --command-timeout=3s"
    turn = " ".join(f"{i}) e={ip};;" for i, ip in enumerate(ips[:-1])) + f" *) e={ips[-1]};;"
    script = f"""set -u
cd {DIR}; rm -f stop acked failed retried reads-failed errors; i=0
while [ ! -e stop ]; do
  i=$((i+1))
  ok=; try=0
  while [ $try -lt 3 ]; do
    try=$((try+1))
    if etcdctl --endpoints={every} {tls} put {PREFIX}$i v$i >/dev/null 2>>errors; then
      ok=1; break
    fi
    sleep 0.5
  done
  now=$(date +%s.%N)
  [ $try -gt 1 ] && echo "$now $i" >> retried
  if [ -n "$ok" ]; then echo "$now $i" >> acked; else echo "$now $i" >> failed; fi
  case $((i % {len(ips)})) in {turn} esac
  etcdctl --endpoints=https://$e:2379 {tls} get {PREFIX}$i >/dev/null 2>>errors \\
    || echo "$(date +%s.%N) $e" >> reads-failed
  sleep 0.1
done
"""
    _sh(client, f"mkdir -p {DIR} && cat > {DIR}/load.sh <<'EOF'\n{script}EOF")
    _sh(client, f"setsid nohup sh {DIR}/load.sh > /dev/null 2>&1 < /dev/null &")
    time.sleep(2)


def stop_load(member_ip: str, client: str = "app-server") -> LoadResult:
    """Stop the load on ``client``; read every acknowledged key back through
    ``member_ip``, then delete them."""
    _sh(client, f"touch {DIR}/stop; sleep 1.5")

    def lines_of(name: str) -> list[str]:
        return [x for x in _sh(client, f"cat {DIR}/{name} 2>/dev/null || true").splitlines() if x]

    acked = [line.split() for line in lines_of("acked")]
    times = [float(t) for t, _ in acked]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    endpoint = f"--endpoints=https://{member_ip}:2379 {_tls(client)}"
    out = _sh(client, f"etcdctl {endpoint} get {PREFIX} --prefix -w simple")
    lines = out.splitlines()
    stored = dict(zip(lines[::2], lines[1::2], strict=False))
    lost = [i for _, i in acked if stored.get(f"{PREFIX}{i}") != f"v{i}"]
    _sh(client, f"etcdctl {endpoint} del {PREFIX} --prefix >/dev/null")
    failed, reads = len(lines_of("failed")), len(lines_of("reads-failed"))
    retried = len(lines_of("retried"))
    return LoadResult(len(acked), failed, reads, max(gaps, default=0.0), lost, retried)
