"""etcd_pki/crl.py: the CRL checks, the revocations a CA must make again, the ledger, and
ca.json's crl block (its shell run against real files)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from etcd_pki.commands.ca import set_crl_command
from etcd_pki.commands.crl import ledger_scan_program
from etcd_pki.crl import (
    LedgerEntry,
    crl_block,
    crl_config_fact_command,
    crl_config_matches,
    crl_problem,
    fetch_reason,
    inspect_crl,
    live_certificates,
    live_revocations,
    parse_crl_config,
    parse_ledger,
    reapply,
    revoked_line,
)

from .pki_fixtures import Ca

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def ca() -> Ca:
    return Ca()


def test_a_good_crl_passes(ca):
    der = ca.crl((5, 7), number=3)
    assert crl_problem(der, ca.pem_inter, ca.root_pem) is None
    info = inspect_crl(der)
    assert info.number == 3 and info.serials == {5, 7}


@pytest.mark.parametrize(
    "case, problem",
    [
        ("missing", "missing"),
        ("truncated", "unreadable"),
        ("pem", "unreadable"),
        ("other key", "signature"),
        ("foreign issuer", "not by this CA"),
        ("expired", "has passed"),
        ("intermediate of another root", "does not chain to the root"),
    ],
)
def test_a_bad_crl_is_refused(ca, case, problem):
    other = Ca(name="other")
    der = ca.crl((5,))
    inter, root = ca.pem_inter, ca.root_pem
    if case == "missing":
        der = None
    elif case == "truncated":
        der = der[: len(der) // 2]
    elif case == "pem":
        der = b"-----BEGIN X509 CRL-----\n" + der + b"\n-----END X509 CRL-----\n"
    elif case == "other key":
        der = ca.crl((5,), signer=ec.generate_private_key(ec.SECP256R1()))
    elif case == "foreign issuer":
        der = other.crl((5,))
    elif case == "expired":
        der = ca.crl(
            (5,), this_update=NOW - timedelta(days=2), next_update=NOW - timedelta(hours=1)
        )
    elif case == "intermediate of another root":
        root = other.root_pem
    found = crl_problem(der, inter, root)
    assert found is not None and problem in found, found


def test_fetch_reason(ca):
    der = ca.crl((5, 7))
    assert fetch_reason(der, ca.pem_inter, ca.root_pem, frozenset({5})) is None
    assert "lacks 1" in fetch_reason(der, ca.pem_inter, ca.root_pem, frozenset({5, 9}))
    assert "missing" in fetch_reason(None, ca.pem_inter, ca.root_pem, frozenset())


def entry(kind, serial, subject="etcd-k8s-4", days=30, detail="/sign", time=""):
    expires = (NOW + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return LedgerEntry(kind, serial, subject, expires, detail, time)


def test_reapply_takes_the_ledger_and_newer_member_crls(ca):
    current = inspect_crl(ca.crl((1,), number=2))  # a CA re-established: numbers anew
    ledger = {3: entry("revoked", 3, detail="member removed")}
    newer = inspect_crl(ca.crl((1, 4), number=9))  # what members held from the old CA
    behind = inspect_crl(ca.crl((6,), number=1))  # merely older: not a source
    again = reapply(current, ledger, [newer, behind])
    assert [r.serial for r in again] == [3, 4]
    assert again[0].subject == "etcd-k8s-4" and again[1].subject == ""
    assert reapply(None, ledger, [])[0].serial == 3  # a CA with no CRL yet


def test_live_certificates_and_revocations():
    entries = [
        entry("issued", 1),
        entry("issued", 2, days=-1),  # expired
        entry("issued", 3),
        entry("issued", 4, subject="app-server-client"),
        entry("revoked", 3, detail="member removed"),
        entry("revoked", 7, subject="x", days=-5),  # its certificate has expired
    ]
    live = live_certificates(entries, {"etcd-k8s-4"})
    assert [i.serial for i in live] == [1]
    assert set(live_revocations(entries)) == {3}


def test_ledger_lines_round_trip():
    line = revoked_line(42, "etcd-k8s-4", None, "member removed", NOW)
    (parsed,) = parse_ledger(line + "\nbroken line\nissued\tnot-a-serial\tx\t-\t/sign\n")
    assert (parsed.kind, parsed.serial, parsed.expires, parsed.detail) == (
        "revoked",
        42,
        "-",
        "member removed",
    )
    assert parsed.time and parsed.line() == line


# Lines as step-ca logs them (logrus text, keys sorted; shortened certificate and token).
STEP_CA_LOG = [
    'time="2026-12-07T13:45:49Z" level=info certificate="MIIC+/=" duration=2.2ms '
    'issuer="etcd-default-ca Intermediate CA" method=POST name=ca ott=eyJ.x.y path=/sign '
    'provisioner=etcd-provisioner public-key="ECDSA P-256" remote-address=10.0.1.11 '
    'sans="[etcd-k8s-2 10.0.1.11]" serial=296344462386897616389250083663743184955 size=1470 '
    'status=201 subject=etcd-k8s-2 user-agent="Smallstep CLI/0.30.6 (linux/amd64)" '
    'valid-from="2026-12-07T13:44:49Z" valid-to="2028-12-06T13:45:49Z"',
    'time="2026-12-08T03:12:00Z" level=info certificate="MIIC" path=/1.0/renew '
    "serial=7 status=201 subject=app-server-client valid-to=2028-12-07T03:12:00Z",
    'time="2026-12-08T03:13:00Z" level=info path=/health status=200',
    'time="2026-12-08T03:14:00Z" level=info path=/revoke serial=7 status=200',
]


def test_the_ledger_scan_reads_step_ca_log():
    out = subprocess.run(
        ["awk", ledger_scan_program()],
        input="\n".join(STEP_CA_LOG) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    entries = parse_ledger(out)
    assert [(e.serial, e.subject, e.detail) for e in entries] == [
        (296344462386897616389250083663743184955, "etcd-k8s-2", "/sign"),
        (7, "app-server-client", "/1.0/renew"),
    ]
    assert entries[0].not_after == datetime(2028, 12, 6, 13, 45, 49, tzinfo=UTC)
    assert entries[1].expires == "2028-12-07T03:12:00Z"


CA_JSON = {
    "root": "/etc/step-ca/certs/root_ca.crt",
    "dnsNames": ["etcd-k8s-1", "10.0.1.10"],
    "db": {"type": "badgerv2", "dataSource": "/etc/step-ca/db"},
    "authority": {"provisioners": [{"type": "JWK", "name": "p", "encryptedKey": "eyJ.SECRET"}]},
}


@pytest.mark.parametrize(
    "layout",
    [
        "no crl",
        "crl last",
        "crl first",
        "crl on one line",
    ],
)
def test_the_crl_block_is_set_in_any_layout_step_writes(tmp_path: Path, layout):
    data = dict(CA_JSON)
    if layout == "crl last":
        data["crl"] = {"enabled": False, "cacheDuration": "1h0m0s"}
    elif layout == "crl first":
        data = {"crl": {"enabled": True}, **data}
    text = json.dumps(data, indent="\t") + "\n"
    if layout == "crl on one line":
        text = text.replace('\t"root"', '\t"crl": {"enabled": false},\n\t"root"', 1)
    ca_json = tmp_path / "ca.json"
    ca_json.write_text(text)
    block = crl_block("24h")
    run = subprocess.run(
        ["sh", "-c", f"set -e; tmp={tmp_path}/out; {set_crl_command(str(ca_json), block)}"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "out").read_text())
    assert result.pop("crl") == block
    assert result == {k: v for k, v in data.items() if k != "crl"}
    fact = subprocess.run(
        ["sh", "-c", crl_config_fact_command(str(tmp_path / "out"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert crl_config_matches(parse_crl_config(fact), "24h0m0s")
    assert "SECRET" not in "\n".join(fact)  # only the crl object is read


def test_a_file_laid_out_otherwise_is_left_alone(tmp_path: Path):
    ca_json = tmp_path / "ca.json"
    ca_json.write_text('{"root": "x"}\n')  # one line: not step's layout
    run = subprocess.run(
        ["sh", "-c", f"tmp={tmp_path}/out; {set_crl_command(str(ca_json), crl_block('24h'))}"],
        capture_output=True,
    )
    assert run.returncode == 3


def test_the_crl_config_fact():
    assert parse_crl_config([]) is None  # no ca.json
    assert parse_crl_config(["__ca__"]) == {}  # ca.json without crl
    assert not crl_config_matches({}, "24h")
    assert not crl_config_matches(
        {"enabled": True, "generateOnRevoke": False, "cacheDuration": "24h0m0s"}, "24h"
    )
    assert not crl_config_matches(
        {"enabled": True, "generateOnRevoke": True, "cacheDuration": "12h"}, "24h"
    )
