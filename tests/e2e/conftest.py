"""Helpers for the end-to-end tests: run the deploy, read results back from containers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests import testbed as tb

SSL = "/etc/etcd/ssl"
ETCD_HOSTS = ("etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3")
ALL_HOSTS = (*ETCD_HOSTS, "app-server")


@dataclass
class Run:
    """One pyinfra run: exit code, full output, and the summary's totals."""

    rc: int
    output: str
    tmpdir: Path | None = None

    @property
    def totals(self) -> tuple[int, int, int, int]:
        """(operations, changed, errors, unchanged) from pyinfra's "Grand total" row."""
        match = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", self.output)
        assert match, f"no summary in pyinfra output:\n{self.output[-3000:]}"
        return tuple(0 if v == "-" else int(v) for v in match.groups())  # type: ignore[return-value]

    @property
    def changed(self) -> int:
        return self.totals[1]

    def changed_operations(self) -> list[str]:
        """Names of summary rows whose Success (changed) column is not '-'."""
        rows = []
        for line in self.output.splitlines():
            cells = re.split(r"\s{2,}", line.strip())
            if len(cells) == 5 and cells[2] not in ("-", "Success") and cells[0] != "Grand total":
                rows.append(cells[0])
        return rows


def deploy(inventory, *args: str, deploy_file: str = "deploy.py", env=None) -> Run:
    result = tb.run_pyinfra(inventory, deploy_file, *args, env=env)
    return Run(result.returncode, result.stdout + result.stderr)


def sh(host: str, command: str, check: bool = True) -> str:
    rc, out = tb.exec_in(host, command)
    if check:
        assert rc == 0, f"{host}: `{command}` exited {rc}: {out}"
    return out


def read_cert(host: str, path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(sh(host, f"cat {path}").encode())


def sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def file_digests(host: str, pattern: str = f"{SSL}/*") -> dict[str, str]:
    out = sh(host, f"sha256sum {pattern}")
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


RENEW_OVERRIDE = "/run/etcd-pki/renew-override"  # what renew_now.py writes to force one


def start_renewal(host: str, name: str) -> tuple[int, str]:
    """Start the renewal service of ``name`` with the threshold overridden to 0 %;
    (exit code, output)."""
    return tb.exec_in(
        host,
        f"mkdir -p /run/etcd-pki && echo RENEW_AT=0% > {RENEW_OVERRIDE} && "
        f"systemctl start step-renew-{name}.service; rc=$?; "
        f"rm -f {RENEW_OVERRIDE}; exit $rc",
    )


def force_renew(host: str, name: str) -> tuple[int, int]:
    """:func:`start_renewal`, which must succeed; the serial before and after."""
    before = read_cert(host, f"{SSL}/{name}.crt").serial_number
    rc, out = start_renewal(host, name)
    assert rc == 0, out + sh(host, f"journalctl -u step-renew-{name} --no-pager | tail -20")
    return before, read_cert(host, f"{SSL}/{name}.crt").serial_number


def openssl_fingerprint(host: str, path: str) -> str:
    """SHA-256 fingerprint (lowercase hex) of the certificate at ``path``, by openssl."""
    out = sh(host, f"openssl x509 -noout -fingerprint -sha256 -in {path}")
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def etcdctl(host: str, cert: str, *args: str, endpoints: str | None = None) -> tuple[int, str]:
    """Run etcdctl on ``host`` as the client ``cert`` (a name in /etc/etcd/ssl, or "")."""
    auth = f"--cert {SSL}/{cert}.crt --key {SSL}/{cert}.key" if cert else ""
    cmd = (
        f"etcdctl --endpoints={endpoints or https(tb.bed().ip('etcd-k8s-1'))} "
        f"--cacert {SSL}/root_ca.crt {auth} --dial-timeout=5s --command-timeout=10s "
        + " ".join(args)
    )
    return tb.exec_in(host, cmd + " 2>&1")


@pytest.fixture(scope="module")
def fresh_cluster(testbed, tmp_path_factory):
    """A brand-new bed (containers recreated) with the deploy run once at -vv.

    The controller's temp directory for that run is a fresh one (``first.tmpdir``), so
    a test can check everything pyinfra wrote there.
    """
    bed = tb.up(fresh=True)
    tmpdir = tmp_path_factory.mktemp("controller-tmp")
    first = deploy(bed.inventory_docker, "-vv", env={"TMPDIR": str(tmpdir)})
    first.tmpdir = tmpdir
    return bed, first


def https(ip: str) -> str:
    return f"https://{ip}:2379"


def purge_debian_etcd(host: str) -> None:
    """Take Debian's etcd off ``host`` (packages, user, data root), so that what runs
    afterwards can only come from the deploy."""
    sh(
        host,
        "systemctl stop etcd.service; DEBIAN_FRONTEND=noninteractive "
        "apt-get purge -y -qq etcd-server etcd-client >/dev/null; "
        "if getent passwd etcd >/dev/null; then userdel etcd; fi; "
        "if getent group etcd >/dev/null; then groupdel etcd; fi; rm -rf /var/lib/etcd",
    )
