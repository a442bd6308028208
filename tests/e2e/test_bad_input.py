"""The bad-input catalogue end to end: each malformed inventory or data set is run
through the real `pyinfra INVENTORY deploy.py` against a deployed bed. Each must exit
non-zero with a clear message naming the host and the field, before any operation
starts, and leave every host exactly as it was.

The bed is deployed once first (so the hosts are in a known, converged state); then a
marker file is touched on each host and, after every case, nothing below the
directories the deploy writes to may be newer than the marker.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests import testbed as tb

from .conftest import ALL_HOSTS, deploy, sh

pytestmark = pytest.mark.e2e

MARKER = "/run/etcd-pki-bad-input-marker"
# Everything the deploy writes to (and a few places it must not).
WATCHED = "/etc /opt /usr/local /var/lib/etcd /var/cache/etcd-pki /root /var/tmp /tmp"
# etcd's own raft log and snapshots: etcd writes them by itself after a fresh start
# (cluster version, leader elections on a busy machine). The member directory itself
# is still watched through its parent, so a deploy that replaced it would show.
ETCD_OWN = "/var/lib/etcd/*/member"


@dataclass(frozen=True)
class Case:
    """One malformed input: how to write it, and what the error must say."""

    expect: tuple[str, ...]  # every one of these must appear in the output
    data: dict[str, Any] = field(default_factory=dict)  # on every host
    host_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    cli: tuple[str, ...] = ()  # extra pyinfra arguments (--data ...)
    pattern: str | None = None  # a regex the output must match as well


def gateway_port_1() -> str:
    """A URL in this instance's own subnet where nothing listens: the gateway, port 1."""
    return f"https://{tb.gateway()}:1"


CASES: dict[str, Case] = {
    "typo in a group name (etcd_client)": Case(
        ("group `etcd_client` looks like a typo for `etcd_clients`",),
        groups={"etcd_clients": [], "etcd_client": ["app-server"]},
    ),
    "typo in a group name (etcd_cert_manager)": Case(
        ("group `etcd_cert_manager` looks like a typo for `etcd_cert_managers`",),
        groups={"etcd_cert_managers": [], "etcd_cert_manager": ["etcd-k8s-1"]},
    ),
    "typo in a group name (Etcd)": Case(
        ("group `Etcd` looks like a typo for `etcd`",),
        groups={"etcd": ["etcd-k8s-1", "etcd-k8s-2"], "Etcd": ["etcd-k8s-3"]},
    ),
    "cert-manager that is not an etcd member (overlapping roles)": Case(
        ("host app-server: is in `etcd_cert_managers` but not in `etcd`",),
        groups={"etcd_cert_managers": ["etcd-k8s-1", "app-server"]},
        data={"active_cert_manager": "etcd-k8s-1"},
    ),
    "host in etcd and etcd_clients with conflicting key owners": Case(
        (
            "host etcd-k8s-3: is in `etcd` and `etcd_clients`",
            "etcd_user='etcd' and client_key_owner='root'",
        ),
        groups={"etcd_clients": ["app-server", "etcd-k8s-3"]},
    ),
    "two cert-managers and none named active": Case(
        ("several cert-managers (etcd-k8s-1, etcd-k8s-2)", "`active_cert_manager`"),
        groups={"etcd_cert_managers": ["etcd-k8s-1", "etcd-k8s-2"]},
    ),
    "active cert-manager outside the group": Case(
        ("`active_cert_manager` = 'etcd-k8s-3' is not in group `etcd_cert_managers`",),
        data={"active_cert_manager": "etcd-k8s-3"},
    ),
    "no cert-manager at all": Case(
        ("no cert-manager",),
        groups={"etcd_cert_managers": []},
    ),
    "empty etcd group": Case(
        ("group `etcd` is empty",),
        groups={"etcd": [], "etcd_cert_managers": [], "etcd_clients": list(ALL_HOSTS)},
    ),
    "address is not an IP (10.0.1.300)": Case(
        ("host etcd-k8s-2: no usable IP address", "address='10.0.1.300'"),
        host_data={"etcd-k8s-2": {"address": "10.0.1.300"}},
    ),
    "address is a name, not an IP": Case(
        ("host app-server: no usable IP address", "address='app-server.local'"),
        host_data={"app-server": {"address": "app-server.local"}},
    ),
    "two hosts with one address": Case(
        ("host etcd-k8s-3: address", "is also used by etcd-k8s-2"),
        host_data={"etcd-k8s-3": {"address": "ADDRESS_OF:etcd-k8s-2"}},
    ),
    "host name with underscores (not a DNS name)": Case(
        ("host etcd_k8s_2: the name is not a valid host name",),
        host_data={"etcd-k8s-2": {"node_name": "etcd_k8s_2"}},
    ),
    "host name with a dot": Case(
        ("host etcd-k8s-3.example: the name is not a valid host name",),
        host_data={"etcd-k8s-3": {"node_name": "etcd-k8s-3.example"}},
    ),
    "extra SAN that is neither a name nor an IP": Case(
        ("host etcd-k8s-3: `extra_sans` entry 'bad_name!'",),
        host_data={"etcd-k8s-3": {"extra_sans": ["etcd.example.com", "bad_name!"]}},
    ),
    "extra_sans given as a string": Case(
        ("host etcd-k8s-2: `extra_sans` must be a list",),
        host_data={"etcd-k8s-2": {"extra_sans": "etcd.example.com"}},
    ),
    "CA extra SAN with a leading hyphen": Case(
        ("`ca_extra_sans` entry '-ca.example.com'",),
        data={"ca_extra_sans": ["-ca.example.com"]},
    ),
    "lifetimes out of order (default above max)": Case(
        ("host etcd-k8s-1: lifetimes must satisfy cert_lifetime_min <= cert_lifetime",),
        data={"cert_lifetime": "30000h"},
    ),
    "lifetimes out of order (min above default)": Case(
        ("lifetimes must satisfy", "got 20000h / 17520h / 26280h"),
        data={"cert_lifetime_min": "20000h"},
    ),
    "lifetime in words": Case(
        ("`cert_lifetime`: '2 years' is not a duration",),
        data={"cert_lifetime": "2 years"},
    ),
    "zero minimum lifetime": Case(
        ("`cert_lifetime_min` = '0s' must be longer than zero",),
        data={"cert_lifetime_min": "0s"},
    ),
    "zero renewal threshold (--data)": Case(
        ("host etcd-k8s-1: `renew_threshold_percent` = 0 must be an integer 1..99",),
        cli=("--data", "renew_threshold_percent=0"),
    ),
    "negative renewal threshold": Case(
        ("host app-server: `renew_threshold_percent` = -5",),
        host_data={"app-server": {"renew_threshold_percent": -5}},
    ),
    "unknown install source": Case(
        ("`install_source` = 's3' is unknown",),
        data={"install_source": "s3"},
    ),
    "mirror URL that is not http(s)": Case(
        ("`install_mirror_url` = 'ftp://mirror.example/smallstep' must be an http(s):// URL",),
        data={"install_source": "mirror", "install_mirror_url": "ftp://mirror.example/smallstep"},
    ),
    "mirror source without a URL": Case(
        ("`install_mirror_url` = None must be an http(s):// URL",),
        data={"install_source": "mirror", "install_mirror_url": None},
    ),
    "checksum of the wrong length": Case(
        ("`step_sha256['amd64']` is not a sha256 (64 lowercase hex characters): 63 characters",),
        data={"step_sha256": {"amd64": "a" * 63}},
    ),
    "checksum that is not hex": Case(
        ("host etcd-k8s-1: `step_ca_sha256['amd64']` is not a sha256",),
        host_data={"etcd-k8s-1": {"step_ca_sha256": {"amd64": "Z" * 64}}},
    ),
    "unreachable mirror URL for a version that must be downloaded": Case(
        (": install_source: cannot fetch", ":1/cli/releases/download/v0.30.5/checksums.txt"),
        pattern=r"host (etcd-k8s-\d|app-server): install_source: cannot fetch https://",
        data={"install_source": "mirror", "install_mirror_url": "MIRROR_PORT_1"},
        cli=("--data", "step_version=0.30.5"),
    ),
    "plain-http mirror without pinned checksums": Case(
        (
            "host app-server: `install_mirror_url` is plain http (http://mirror.example): "
            "pin `step_sha256`",
            "host etcd-k8s-1: `install_mirror_url` is plain http (http://mirror.example): "
            "pin `step_sha256` and `step_ca_sha256`",
        ),
        data={"install_source": "mirror", "install_mirror_url": "http://mirror.example"},
    ),
    "version that is not a version": Case(
        ("`step_version` = 'latest' is not a version",),
        data={"step_version": "latest"},
    ),
    "unknown key type": Case(("`key_type` = 'DSA' is unknown",), data={"key_type": "DSA"}),
    "unknown renewal mode": Case(
        ("`renew_mode` = 'rotate' is unknown",), data={"renew_mode": "rotate"}
    ),
    "relative ssl_dir": Case(
        ("`ssl_dir` = 'etc/etcd/ssl' must be an absolute path",),
        data={"ssl_dir": "etc/etcd/ssl"},
    ),
    "shell in bin_dir": Case(
        ("`bin_dir` = '/opt/bin;rm -rf /' must be an absolute path",),
        data={"bin_dir": "/opt/bin;rm -rf /"},
    ),
    "port out of range": Case(("`ca_port` = 70000 must be an integer",), data={"ca_port": 70000}),
    "client and peer port equal": Case(
        ("`ca_port`, `etcd_client_port` and `etcd_peer_port` must all differ",),
        data={"etcd_peer_port": 2379},
    ),
    "cluster-wide setting that differs between hosts": Case(
        ("`ca_port` differs between hosts (9000, 9443)",),
        host_data={"etcd-k8s-2": {"ca_port": 9443}},
    ),
    "user name with a space": Case(
        ("host app-server: `client_key_owner` = 'app user' is not a valid user name",),
        host_data={"app-server": {"client_key_owner": "app user"}},
    ),
    "OnCalendar with a shell separator": Case(
        ("`renew_on_calendar` = 'daily;reboot' is not an OnCalendar spec",),
        data={"renew_on_calendar": "daily;reboot"},
    ),
    "boolean given as a string": Case(
        ("`renew_persistent` must be True or False, got 'yes'",),
        data={"renew_persistent": "yes"},
    ),
    "DNS domain with an underscore": Case(
        ("`dns_domain` = 'local_' is not a valid DNS name",),
        data={"dns_domain": "local_"},
    ),
    "no address for a host": Case(
        ("host etcd-k8s-2: no usable IP address", "address=None"),
        host_data={"etcd-k8s-2": {"address": tb.UNSET}},
    ),
}


def _resolve(value: Any, bed: tb.Bed) -> Any:
    if value == "MIRROR_PORT_1":
        return gateway_port_1()
    if isinstance(value, str) and value.startswith("ADDRESS_OF:"):
        return bed.ip(value.split(":", 1)[1])
    return value


def write_case(case: Case, bed: tb.Bed, name: str):
    host_data = {
        host: {k: _resolve(v, bed) for k, v in values.items()}
        for host, values in case.host_data.items()
    }
    path = tb.STATE_DIR / "bad_input" / f"{name}.py"
    tb.write_inventory(
        path,
        data={k: _resolve(v, bed) for k, v in case.data.items()},
        host_data=host_data,
        groups=case.groups or None,
    )
    return path


def changed_since_marker(host: str) -> list[str]:
    out = sh(
        host,
        f"find {WATCHED} -xdev -path '{ETCD_OWN}' -prune -o -newer {MARKER} -print"
        " 2>/dev/null || true",
    )
    return out.split()


@pytest.fixture(scope="module")
def deployed(testbed):
    """The bed deployed and converged, with a marker touched on every host."""
    bed = tb.up()
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    for host in ALL_HOSTS:
        sh(host, f"touch {MARKER}")
    return bed


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_bad_input_fails_clearly_and_changes_nothing(deployed, name):
    case = CASES[name]
    inventory = write_case(case, deployed, name.replace(" ", "_").replace("/", "_"))
    run = deploy(inventory, *case.cli)
    assert run.rc != 0, run.output[-3000:]
    for text in case.expect:
        assert text in run.output, f"{text!r} not in:\n{run.output[-3000:]}"
    if case.pattern:
        assert re.search(case.pattern, run.output), run.output[-3000:]
    assert "Beginning operation run" not in run.output, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    with ThreadPoolExecutor(len(ALL_HOSTS)) as pool:
        changed = dict(zip(ALL_HOSTS, pool.map(changed_since_marker, ALL_HOSTS), strict=True))
    assert not any(changed.values()), changed


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 25
    assert len({c.expect for c in CASES.values()}) == len(CASES)


def test_unreachable_mirror_is_fine_when_nothing_must_be_downloaded(deployed):
    """The mirror is only contacted for a missing binary: a converged cluster can be
    re-deployed while the mirror is down (and nothing changes)."""
    inventory = tb.write_inventory(
        tb.STATE_DIR / "bad_input" / "mirror_down_converged.py",
        data={"install_source": "mirror", "install_mirror_url": gateway_port_1()},
    )
    run = deploy(inventory)
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0, run.changed_operations()
