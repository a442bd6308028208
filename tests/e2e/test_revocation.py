"""Revocation that etcd enforces, on a fresh 4-host bed: the CRL on every member,
revoke.py, remove_node.py for a reachable client and for a dead member, bad CRLs, a CA
that is down, a CRL deleted by hand, and an older cluster upgraded without losing quorum.

The tests run in file order and build on each other. Every check reads results back
from the containers (openssl, etcdctl, stat, systemctl, journalctl), and certificates
are tried for real against every member, copies of them kept aside by the test.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import testbed as tb

from .conftest import ALL_HOSTS, ETCD_HOSTS, SSL, deploy, https, read_cert, sh

pytestmark = pytest.mark.e2e

CA = "/etc/step-ca"
CRL = f"{SSL}/crl.der"
SAVED = "/root/saved"
NEW = "etcd-k8s-4"


@pytest.fixture(scope="module")
def bed(testbed):
    bed = tb.up(fresh=True)
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    return bed


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


# --- the CRL on every member -------------------------------------------------------


def test_step_ca_publishes_a_crl(bed):
    config = json.loads(sh("etcd-k8s-1", f"cat {CA}/config/ca.json"))
    assert config["crl"] == {
        "enabled": True,
        "generateOnRevoke": True,
        "cacheDuration": "24h0m0s",
    }
    der = sh(
        "app-server",
        f"curl -fsS --cacert {SSL}/root_ca.crt "
        f"https://{bed.ip('etcd-k8s-1')}:9000/1.0/crl | base64 -w0",
    )
    assert x509.load_der_x509_crl(base64.b64decode(der)).next_update_utc is not None


def test_every_member_enforces_a_crl_signed_by_the_ca(bed):
    intermediate = sh("etcd-k8s-1", f"cat {CA}/certs/intermediate_ca.crt")
    for host in ETCD_HOSTS:
        assert sh(host, f"stat -c '%U %a' {CRL}").split() == ["root", "644"]
        sh(
            host,
            f"cat {SSL}/root_ca.crt > /tmp/chain.pem && echo '{intermediate}' >> /tmp/chain.pem",
        )
        verify = sh(
            host, f"openssl crl -inform DER -in {CRL} -noout -CAfile /tmp/chain.pem -verify 2>&1"
        )
        assert "verify OK" in verify, host
        environ = sh(
            host, "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value etcd)/environ"
        )
        assert f"ETCD_CLIENT_CRL_FILE={CRL}" in environ and f"ETCD_PEER_CRL_FILE={CRL}" in environ
        state = sh(host, "systemctl show -p UnitFileState,ActiveState etcd-pki-crl.timer")
        assert sorted(state.split()) == ["ActiveState=active", "UnitFileState=enabled"], host
    assert sh("app-server", "ls /etc/systemd/system | grep etcd-pki-crl || true").strip() == ""


def test_the_ledger_lists_every_certificate_issued(bed):
    issued = {(row[2], int(row[1])) for row in ledger() if row[0] == "issued"}
    for host in ALL_HOSTS:
        kinds = ("peer", "server", "client") if host in ETCD_HOSTS else ("client",)
        for kind in kinds:
            cert = read_cert(host, f"{SSL}/{host}-{kind}.crt")
            subject = host if kind == "peer" else f"{host}-{kind}"
            assert (subject, cert.serial_number) in issued


def test_a_second_run_changes_nothing(bed):
    run = deploy(bed.inventory_docker)
    assert run.rc == 0 and run.changed == 0, run.changed_operations()


# --- remove_node.py: a reachable client ----------------------------------------------


def test_a_removed_clients_certificate_is_refused_by_every_member(bed):
    crt, key = save("app-server", "app-server-client", "app-server")
    serial = read_cert("app-server", crt).serial_number
    works_everywhere("app-server", crt, key)
    log = watch("app-server", crt, key, "etcd-k8s-2", "held")
    wait_for(
        lambda: (
            as_member("etcd-k8s-1", "put", "held", "before")[0] == 0
            and events("app-server", log, "held") == ["before"]
        ),
        "the watch saw nothing",
    )

    run = ssh(bed, "remove_node.py", "--limit", "app-server")
    assert run.rc == 0, run.output[-4000:]
    assert "restarted" in run.output and "no connection of a revoked certificate" in run.output

    refused_everywhere("app-server", crt, key)
    for member in ETCD_HOSTS:
        assert serial in crl_serials(member), member
    # The watch opened before the removal gets nothing written after it.
    assert as_member("etcd-k8s-1", "put", "held", "after")[0] == 0
    assert events("app-server", log, "held") == ["before"]
    assert (
        sh(
            "app-server",
            f"ls {SSL}/app-server-client.crt /etc/systemd/system/step-renew-* 2>/dev/null || true",
        ).strip()
        == ""
    )
    revoked = [row for row in ledger() if row[0] == "revoked"]
    assert [(r[1], r[2], r[4]) for r in revoked] == [
        (str(serial), "app-server-client", "member removed")
    ]


def test_the_removed_client_comes_back_with_a_new_certificate(bed):
    run = ssh(bed, "deploy.py", "--limit", "app-server")
    assert run.rc == 0, run.output[-4000:]
    works_everywhere("app-server", f"{SSL}/app-server-client.crt", f"{SSL}/app-server-client.key")


# --- revoke.py -----------------------------------------------------------------------


def public(host: str, path: str) -> bytes:
    return (
        read_cert(host, path)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_revoke_replaces_every_key_of_a_member_and_ends_its_connections(bed):
    host = "etcd-k8s-3"
    old = {k: read_cert(host, f"{SSL}/{host}-{k}.crt") for k in ("peer", "server", "client")}
    old_keys = {k: public(host, f"{SSL}/{host}-{k}.crt") for k in old}
    crt, key = save(host, f"{host}-client", "k3-client")
    log = watch(host, crt, key, "etcd-k8s-1", "k3")
    wait_for(
        lambda: (
            as_member("etcd-k8s-2", "put", "k3", "before")[0] == 0
            and events(host, log, "k3") == ["before"]
        ),
        "the watch saw nothing",
    )

    # Every process's command line, read in a loop on the host and on the CA while the
    # tokens are minted, used for issuance and for revocation: none may hold a JWT.
    spies = {h: spy_on_command_lines(h) for h in (host, "etcd-k8s-1")}
    run = ssh(bed, "revoke.py", "--limit", host)
    for h, spy in spies.items():
        seen = stop_spying(h, spy)
        assert len(seen.splitlines()) > 100, f"{h}: the loop did not run"
        assert not JWT.search(seen), f"{h}: a token on a command line"
    assert run.rc == 0, run.output[-4000:]
    for kind, cert in old.items():
        assert public(host, f"{SSL}/{host}-{kind}.crt") != old_keys[kind], kind
        for member in ETCD_HOSTS:
            assert cert.serial_number in crl_serials(member), (kind, member)
    refused_everywhere(host, crt, key)
    works_everywhere(host, f"{SSL}/{host}-client.crt", f"{SSL}/{host}-client.key")
    rc, health = as_member("etcd-k8s-1", "endpoint", "health")
    assert rc == 0 and health.count("is healthy") == 3, health
    assert as_member("etcd-k8s-2", "put", "k3", "after")[0] == 0
    assert events(host, log, "k3") == ["before"]


def test_revoke_kinds_replaces_only_those(bed):
    host = "etcd-k8s-2"
    before = {
        k: read_cert(host, f"{SSL}/{host}-{k}.crt").serial_number
        for k in ("peer", "server", "client")
    }
    run = ssh(bed, "revoke.py", "--limit", host, "--data", "revoke_kinds=client")
    assert run.rc == 0, run.output[-4000:]
    after = {k: read_cert(host, f"{SSL}/{host}-{k}.crt").serial_number for k in before}
    assert after["peer"] == before["peer"] and after["server"] == before["server"]
    assert after["client"] != before["client"]
    assert before["client"] in crl_serials("etcd-k8s-1")
    assert before["peer"] not in crl_serials("etcd-k8s-1")


def test_after_revocations_a_deploy_changes_nothing(bed):
    run = deploy(bed.inventory_docker)
    assert run.rc == 0 and run.changed == 0, run.changed_operations()


@pytest.mark.parametrize(
    "entry, args, message",
    [
        ("revoke.py", (), "revoke.py needs the host to work on: --limit HOST"),
        (
            "revoke.py",
            ("--limit", "app-server", "--data", "revoke_kinds=client,bogus"),
            "revoke_kinds: bogus is not a certificate kind",
        ),
        (
            "revoke.py",
            ("--limit", "app-server", "--data", "revoke_kinds=peer"),
            "app-server has no peer certificate (it has: client)",
        ),
        ("remove_node.py", ("--limit", "etcd-k8s-1"), "etcd-k8s-1 runs the active CA"),
        (
            "remove_node.py",
            (
                "--limit",
                "etcd",
            ),
            "works on one host at a time",
        ),
    ],
)
def test_bad_input_is_refused_before_any_host_is_touched(bed, entry, args, message):
    crls = {h: sh(h, f"sha256sum {CRL}") for h in ETCD_HOSTS}
    certs = {h: sh(h, f"sha256sum {SSL}/*.crt") for h in ALL_HOSTS}
    lines = len(ledger())
    run = ssh(bed, entry, *args)
    assert run.rc != 0 and message in run.output, run.output[-2000:]
    assert "Traceback" not in run.output
    assert {h: sh(h, f"sha256sum {CRL}") for h in ETCD_HOSTS} == crls
    assert {h: sh(h, f"sha256sum {SSL}/*.crt") for h in ALL_HOSTS} == certs
    assert len(ledger()) == lines


# --- remove_node.py: a member that is gone -----------------------------------------------


@pytest.fixture(scope="module")
def dead(bed):
    """etcd-k8s-4 joined, its peer certificate renewed once by its timer's service (that
    serial is known to the CA's log only), its files copied to app-server, then stopped."""
    tb.add(NEW, tb.GROUP_ETCD)
    run = ssh(tb.bed(), "deploy.py", "--limit", NEW)
    assert run.rc == 0, run.output[-4000:]
    first = read_cert(NEW, f"{SSL}/{NEW}-peer.crt").serial_number
    sh(
        NEW,
        "mkdir -p /run/etcd-pki && echo RENEW_AT=0% > /run/etcd-pki/renew-override && "
        f"systemctl start step-renew-{NEW}-peer.service; rm -f /run/etcd-pki/renew-override",
    )
    renewed = read_cert(NEW, f"{SSL}/{NEW}-peer.crt").serial_number
    assert renewed != first
    sh("app-server", f"mkdir -p {SAVED}")
    for kind in ("peer", "client"):
        for ext in ("crt", "key"):
            # Host to host through the test's memory: nothing private on the controller.
            data = sh(NEW, f"base64 -w0 {SSL}/{NEW}-{kind}.{ext}").strip()
            sh("app-server", f"echo {data} | base64 -d > {SAVED}/{NEW}-{kind}.{ext}")
    works_everywhere(
        "app-server", f"{SAVED}/{NEW}-client.crt", f"{SAVED}/{NEW}-client.key", (*ETCD_HOSTS, NEW)
    )
    tb.docker("stop", tb.container_name(NEW))
    run = ssh(tb.bed(), "remove_node.py", "--limit", "etcd_cert_managers", "--data", f"node={NEW}")
    return {"first": first, "renewed": renewed, "run": run}


def test_a_dead_member_is_removed_and_everything_it_held_is_refused(dead):
    run = dead["run"]
    assert run.rc == 0, run.output[-4000:]
    assert f"{NEW} did not answer" in run.output
    assert "its renewal timers, certificates and keys" in run.output  # what stays there
    rc, members = as_member("etcd-k8s-1", "member", "list")
    assert rc == 0 and NEW not in members and members.count(", started, ") == 3, members
    rc, health = as_member("etcd-k8s-1", "endpoint", "health")
    assert rc == 0 and health.count("is healthy") == 3, health
    for member in ETCD_HOSTS:
        listed = crl_serials(member)
        assert dead["first"] in listed and dead["renewed"] in listed, member
    refused_everywhere("app-server", f"{SAVED}/{NEW}-client.crt", f"{SAVED}/{NEW}-client.key")
    # The peer certificate carries clientAuth too: refused as well.
    refused_everywhere("app-server", f"{SAVED}/{NEW}-peer.crt", f"{SAVED}/{NEW}-peer.key")


def test_a_rerun_of_a_finished_removal_restarts_nothing(dead):
    before = pids()
    run = ssh(tb.bed(), "remove_node.py", "--limit", "etcd_cert_managers", "--data", f"node={NEW}")
    assert run.rc == 0, run.output[-4000:]
    assert "nothing to revoke" in run.output
    assert pids() == before


def test_the_replaced_node_joins_with_new_certificates(dead):
    tb.remove(NEW)
    tb.add(NEW, tb.GROUP_ETCD)
    run = ssh(tb.bed(), "deploy.py", "--limit", NEW)
    assert run.rc == 0, run.output[-4000:]
    assert read_cert(NEW, f"{SSL}/{NEW}-peer.crt").serial_number not in (
        dead["first"],
        dead["renewed"],
    )
    rc, members = as_member("etcd-k8s-1", "member", "list")
    assert rc == 0 and members.count(", started, ") == 4, members
    works_everywhere(NEW, f"{SSL}/{NEW}-client.crt", f"{SSL}/{NEW}-client.key", (*ETCD_HOSTS, NEW))
    assert crl_of(NEW).next_update_utc is not None
    run = ssh(tb.bed(), "remove_node.py", "--limit", NEW)  # leave the bed as it was
    assert run.rc == 0, run.output[-4000:]
    tb.remove(NEW)


# --- a CRL that must not be installed ----------------------------------------------------


def intermediate_key():
    """The CA's intermediate key, read from the CA node by the test (to sign CRLs that are
    genuine but expired or older)."""
    password = sh("etcd-k8s-1", f"cat {CA}/secrets/password").strip().encode()
    pem = sh("etcd-k8s-1", f"cat {CA}/secrets/intermediate_ca_key").encode()
    return serialization.load_pem_private_key(pem, password=password)


def forged(kind: str) -> bytes:
    now = datetime.now(UTC)
    inter = x509.load_pem_x509_certificate(
        sh("etcd-k8s-1", f"cat {CA}/certs/intermediate_ca.crt").encode()
    )
    issuer, signer = inter.subject, intermediate_key()
    this, nxt, number = now - timedelta(minutes=1), now + timedelta(hours=1), 10**6
    if kind == "wrong signature":
        signer = ec.generate_private_key(ec.SECP256R1())
    elif kind == "foreign CA":
        signer = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    elif kind == "expired":
        this, nxt = now - timedelta(days=2), now - timedelta(hours=1)
    elif kind == "older":  # what etcd-k8s-2 holds, one number back
        installed = crl_of("etcd-k8s-2")
        this = installed.last_update_utc - timedelta(hours=1)
        number = installed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number - 1
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(this)
        .next_update(nxt)
        .add_extension(x509.CRLNumber(number), critical=False)
        .sign(signer, hashes.SHA256())
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    return der[:60] if kind == "truncated" else der


@pytest.mark.parametrize("kind", ["wrong signature", "foreign CA", "expired", "truncated", "older"])
def test_a_bad_crl_is_never_installed_and_etcd_keeps_serving(bed, kind):
    """The member's own fetch script, pointed at an HTTPS server on the member that serves
    the bad CRL (with the member's server certificate, which the root trusts)."""
    host = "etcd-k8s-2"
    www = "/root/www"
    if crl_of(host).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 0:
        # step-ca makes a new CRL (the next number) at every start.
        sh("etcd-k8s-1", "systemctl restart step-ca")
        wait_for(
            lambda: tb.exec_in(host, "systemctl start etcd-pki-crl.service")[0] == 0,
            "no CRL after the restart",
            30,
        )
    sh(
        host,
        f"mkdir -p {www}/1.0 && curl -fsS --cacert {SSL}/root_ca.crt "
        f"https://{bed.ip('etcd-k8s-1')}:9000/intermediates.pem -o {www}/intermediates.pem",
    )
    data = base64.b64encode(forged(kind)).decode()
    sh(host, f"echo {data} | base64 -d > {www}/1.0/crl")
    tb.docker(
        "exec",
        "-d",
        "-w",
        www,
        tb.container_name(host),
        "openssl",
        "s_server",
        "-WWW",
        "-quiet",
        "-accept",
        "127.0.0.1:8443",
        "-cert",
        f"{SSL}/{host}-server.crt",
        "-cert_chain",
        f"{SSL}/{host}-server.crt",
        "-key",
        f"{SSL}/{host}-server.key",
    )
    try:
        url = "https://127.0.0.1:8443"
        sh(
            host,
            f"sed -e 's|^CRL_URL=.*|CRL_URL={url}/1.0/crl|' "
            f"-e 's|^INTERMEDIATES_URL=.*|INTERMEDIATES_URL={url}/intermediates.pem|' "
            "/opt/bin/etcd-pki-crl-fetch > /root/fetch-test && chmod 755 /root/fetch-test",
        )
        before = sh(host, f"sha256sum {CRL}")
        wait_for(
            lambda: (
                tb.exec_in(
                    host, f"curl -fsS --cacert {SSL}/root_ca.crt {url}/1.0/crl -o /dev/null"
                )[0]
                == 0
            ),
            "the test server did not start",
        )
        rc, out = tb.exec_in(host, "/root/fetch-test 2>&1")
        assert rc != 0 and "the installed CRL is kept" in out, out
        assert sh(host, f"sha256sum {CRL}") == before
        rc, health = as_member(host, "endpoint", "health")
        assert rc == 0 and health.count("is healthy") == 3, health
    finally:
        tb.exec_in(host, "pkill -f 's_server -WWW'; rm -f /root/fetch-test")


def test_a_ca_that_is_down_fails_the_fetch_visibly_and_changes_nothing(bed):
    host = "etcd-k8s-3"
    before = sh(host, f"sha256sum {CRL}")
    sh("etcd-k8s-1", "systemctl stop step-ca")
    try:
        rc, _ = tb.exec_in(host, "systemctl start etcd-pki-crl.service")
        assert rc != 0
        assert (
            sh(host, "systemctl show -p Result --value etcd-pki-crl.service").strip() == "exit-code"
        )
        journal = sh(host, "journalctl -u etcd-pki-crl -o cat --no-pager | tail -5")
        assert "cannot fetch" in journal and "the installed CRL is kept" in journal
        assert sh(host, f"sha256sum {CRL}") == before
        rc, health = as_member(host, "endpoint", "health")
        assert rc == 0 and health.count("is healthy") == 3, health
        audit = deploy(bed.inventory_docker, deploy_file="audit.py")
        assert audit.rc != 0  # step-ca down is a violation; the failed fetch a warning
        assert re.search(
            rf"{host}\s+/etc/systemd/system/etcd-pki-crl.service\s+crl-fetch-failed", audit.output
        )
    finally:
        sh("etcd-k8s-1", "systemctl start step-ca")
    wait_for(
        lambda: tb.exec_in(host, "systemctl start etcd-pki-crl.service")[0] == 0,
        "the fetch did not succeed once step-ca was back",
        30,
    )


def test_a_crl_deleted_by_hand_comes_back_before_anything_restarts_etcd(bed):
    host = "etcd-k8s-3"
    before = pids()
    sh(host, f"rm {CRL}")
    rc, out = use(host, f"{SSL}/{host}-client.crt", f"{SSL}/{host}-client.key", host, "get", "x")
    assert rc != 0, "etcd without its CRL must refuse every connection"
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-4000:]
    assert run.changed_operations() == [
        "CRL on this member | CRL fetch on this member: fetch now (CRL missing)"
    ]
    assert pids() == before
    works_everywhere(host, f"{SSL}/{host}-client.crt", f"{SSL}/{host}-client.key")


def test_audit_is_clean_and_status_shows_the_crls(bed):
    sh("app-server", f"rm -rf {SAVED}")
    for host in ETCD_HOSTS:
        sh(host, f"rm -rf {SAVED} /root/www /tmp/chain.pem")
        tb.exec_in(host, "pkill etcdctl; systemctl reset-failed etcd-pki-crl.service")
    tb.exec_in("app-server", "pkill etcdctl")
    audit = deploy(bed.inventory_docker, deploy_file="audit.py")
    assert audit.rc == 0, audit.output[-3000:]
    status = deploy(bed.inventory_docker, deploy_file="status.py")
    assert status.rc == 0, status.output[-3000:]
    for host in ETCD_HOSTS:
        number = crl_of(host).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert re.search(rf"  {host}: number {number}, next update .*\(ok\)", status.output), host
    serials = sorted(crl_serials("etcd-k8s-1"))
    for serial in serials:
        assert f"revoked {serial} (" in status.output


# --- an existing cluster upgraded to the CRL, under load ----------------------------------


def test_an_older_cluster_takes_the_crl_without_losing_quorum(bed):
    """A cluster as an earlier version left it (no crl block, no CRL, etcd without the
    CRL settings) is upgraded by a deploy while a client writes without pause."""
    config = json.loads(sh("etcd-k8s-1", f"cat {CA}/config/ca.json"))
    del config["crl"]
    sh(
        "etcd-k8s-1",
        f"cat > {CA}/config/ca.json <<'EOF'\n{json.dumps(config, indent=chr(9))}\nEOF\n"
        "systemctl restart step-ca",
    )
    for host in ETCD_HOSTS:
        sh(
            host,
            "systemctl disable --now etcd-pki-crl.timer; rm -f /etc/systemd/system/etcd-pki-crl.* "
            "/opt/bin/etcd-pki-crl-fetch && sed -i '/CRL/d' /etc/etcd/etcd.env && "
            "systemctl daemon-reload && "
            f"systemctl restart etcd && rm -f {CRL}",
        )
    rc, health = as_member("etcd-k8s-1", "endpoint", "health")
    assert rc == 0 and health.count("is healthy") == 3, health
    endpoints = ",".join(https(bed.ip(h)) for h in ETCD_HOSTS)
    put = (
        f"etcdctl --endpoints={endpoints} --cacert {SSL}/root_ca.crt --cert "
        f"{SSL}/app-server-client.crt --key {SSL}/app-server-client.key --dial-timeout=3s "
        "--command-timeout=10s put load $i >/dev/null 2>&1"
    )
    # A write counts as failed when three tries in a row fail (the client's own retries).
    writer = (
        "i=0; fails=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); "
        f"{put} || {put} || {put} || fails=$((fails+1)); done; echo $i $fails > /tmp/load.result"
    )
    sh("app-server", "rm -f /tmp/stop /tmp/load.result")
    tb.docker("exec", "-d", tb.container_name("app-server"), "sh", "-c", writer)
    run = deploy(bed.inventory_docker)
    sh("app-server", "touch /tmp/stop")
    assert run.rc == 0, run.output[-4000:]
    assert "Restart etcd.service (configuration changed), one member at a time" in run.output
    wait_for(
        lambda: tb.exec_in("app-server", "cat /tmp/load.result")[0] == 0,
        "the writer did not stop",
        30,
    )
    writes, fails = map(int, sh("app-server", "cat /tmp/load.result").split())
    assert writes > 5 and fails == 0, (writes, fails)
    assert json.loads(sh("etcd-k8s-1", f"cat {CA}/config/ca.json"))["crl"]["enabled"] is True
    for host in ETCD_HOSTS:
        environ = sh(
            host, "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value etcd)/environ"
        )
        assert f"ETCD_CLIENT_CRL_FILE={CRL}" in environ, host
    again = deploy(bed.inventory_docker)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
