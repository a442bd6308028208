"""What the revocation phases share: paths, and the checks that try certificates for
real against every member and read results back from the containers (openssl,
etcdctl, stat, systemctl, journalctl)."""

from __future__ import annotations

import base64
import re
import time

from cryptography import x509

from tests import testbed as tb

from ..conftest import ETCD_HOSTS, SSL, deploy, https, sh

CA = "/etc/step-ca"
CRL = f"{SSL}/crl.der"
SAVED = "/root/saved"
NEW = "etcd-k8s-4"


def ssh(bed, entry: str, *args: str):
    """An entry point through the @ssh inventory, whose host names are the production
    ones (--limit app-server, --limit etcd_cert_managers)."""
    return deploy(bed.inventory_ssh, *args, deploy_file=entry)


def use(host: str, crt: str, key: str, member: str, *args: str) -> tuple[int, str]:
    """etcdctl on ``host`` with the pair ``crt``/``key`` against ``member`` alone."""
    return tb.exec_in(
        host,
        f"etcdctl --endpoints={https(tb.bed().ip(member))} --cacert {SSL}/root_ca.crt "
        f"--cert {crt} --key {key} --dial-timeout=4s --command-timeout=6s {' '.join(args)} 2>&1",
    )


def works_everywhere(host: str, crt: str, key: str, members=ETCD_HOSTS) -> None:
    for member in members:
        rc, out = use(host, crt, key, member, "put", "probe", host)
        assert rc == 0, f"{member} refused {crt}: {out}"


def refused_everywhere(host: str, crt: str, key: str, members=ETCD_HOSTS) -> None:
    for member in members:
        rc, out = use(host, crt, key, member, "get", "probe")
        assert rc != 0, f"{member} still accepts {crt}"


def as_member(member: str, *args: str) -> tuple[int, str]:
    """etcdctl as ``member``'s own client certificate, against every member."""
    endpoints = ",".join(https(tb.bed().ip(h)) for h in ETCD_HOSTS)
    return tb.exec_in(
        member,
        f"etcdctl --endpoints={endpoints} --cacert {SSL}/root_ca.crt "
        f"--cert {SSL}/{member}-client.crt --key {SSL}/{member}-client.key "
        f"--dial-timeout=4s --command-timeout=8s {' '.join(args)} 2>&1",
    )


def crl_of(host: str) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(base64.b64decode(sh(host, f"base64 -w0 {CRL}")))


def crl_serials(host: str) -> set[int]:
    return {r.serial_number for r in crl_of(host)}


def save(host: str, name: str, tag: str) -> tuple[str, str]:
    """Copy ``name``'s certificate and key aside on ``host``; their paths."""
    crt, key = f"{SAVED}/{tag}.crt", f"{SAVED}/{tag}.key"
    sh(host, f"mkdir -p {SAVED} && cp {SSL}/{name}.crt {crt} && cp {SSL}/{name}.key {key}")
    return crt, key


def watch(host: str, crt: str, key: str, member: str, key_name: str) -> str:
    """Start `etcdctl watch KEY` on ``host`` with the pair against ``member``; its log."""
    log = f"{SAVED}/watch-{key_name}.log"
    tb.docker(
        "exec",
        "-d",
        tb.container_name(host),
        "sh",
        "-c",
        f"etcdctl --endpoints={https(tb.bed().ip(member))} --cacert {SSL}/root_ca.crt "
        f"--cert {crt} --key {key} watch {key_name} > {log} 2>&1",
    )
    return log


def events(host: str, log: str, key_name: str) -> list[str]:
    """The values the watch printed for ``key_name`` (lines after each key line)."""
    lines = sh(host, f"cat {log}").splitlines()
    return [lines[i + 1] for i, line in enumerate(lines[:-1]) if line == key_name]


def wait_for(check, what: str, seconds: float = 10) -> None:
    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline, what
        time.sleep(0.3)


def ledger(host: str = "etcd-k8s-1") -> list[list[str]]:
    return [line.split("\t") for line in sh(host, f"cat {CA}/ledger.tsv").splitlines()]


JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def spy_on_command_lines(host: str) -> str:
    """Start a loop on ``host`` that appends every process's command line to a log."""
    log = f"/root/cmdlines-{time.time_ns()}"
    tb.docker(
        "exec", "-d", tb.container_name(host), "sh", "-c",
        f"touch {log}.run; while [ -e {log}.run ]; do for f in /proc/[0-9]*/cmdline; do "
        f"tr '\\0' ' ' < $f 2>/dev/null; echo; done >> {log}; done",
    )  # fmt: skip
    return log


def stop_spying(host: str, log: str) -> str:
    sh(host, f"rm -f {log}.run; sleep 0.5")
    seen = sh(host, f"cat {log}; rm -f {log}")
    return seen


def pids() -> dict[str, str]:
    return {h: sh(h, "systemctl show -p MainPID --value etcd").strip() for h in ETCD_HOSTS}
