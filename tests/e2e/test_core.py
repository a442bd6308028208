"""The core workflow on a fresh 4-host bed: CA, bootstrap, certificates, etcd.

One bring-up serves every assertion in this module; checks read results back from the
containers with openssl, etcdctl and file stats, not through the deploy's own code.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tasks.certs import provisioner_key_lookup
from tests import testbed as tb

from .conftest import (
    ALL_HOSTS,
    ETCD_HOSTS,
    SSL,
    deploy,
    etcdctl,
    file_digests,
    https,
    read_cert,
    sh,
)
from .conftest import sans as cert_sans

pytestmark = pytest.mark.e2e

STARTED = time.time()
# A PEM private key with its body (not just the words, which appear in binaries and docs).
PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{40,}")


def certs_of(host: str) -> list[str]:
    kinds = ("peer", "server", "client") if host in ETCD_HOSTS else ("client",)
    return [f"{host}-{kind}" for kind in kinds]


def test_fresh_deploy_succeeds(fresh_cluster):
    _, first = fresh_cluster
    assert first.rc == 0, first.output[-4000:]
    assert first.changed > 0


def test_units_are_enabled_active_and_need_no_reload(fresh_cluster):
    # The deploy enables units without systemd's daemon-reload where none is needed;
    # systemd must still have each of them as on disk (NeedDaemonReload=no).
    for host in ALL_HOSTS:
        units = [f"step-renew-{name}.timer" for name in certs_of(host)]
        if host in ETCD_HOSTS:
            units.append("etcd.service")
        if host == "etcd-k8s-1":
            units.append("step-ca.service")
        for unit in units:
            state = sh(host, f"systemctl show -p UnitFileState,ActiveState,NeedDaemonReload {unit}")
            assert sorted(state.split()) == [
                "ActiveState=active",
                "NeedDaemonReload=no",
                "UnitFileState=enabled",
            ], f"{host} {unit}: {state}"
        if host not in ETCD_HOSTS:  # a client runs no etcd server (the bed masks Debian's)
            assert sh(host, "systemctl is-active etcd.service", check=False).strip() == "inactive"


def test_every_chain_verifies_against_the_root_with_openssl(fresh_cluster):
    for host in ALL_HOSTS:
        for name in certs_of(host):
            crt = f"{SSL}/{name}.crt"
            out = sh(host, f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
            assert out.strip().endswith(": OK"), out


def test_sans_ekus_subjects_and_lifetime(fresh_cluster):
    bed, _ = fresh_cluster
    for host in ALL_HOSTS:
        ip = bed.ip(host)
        base = {host, f"{host}.local", ip}
        for name in certs_of(host):
            cert = read_cert(host, f"{SSL}/{name}.crt")
            kind = name.rsplit("-", 1)[1]
            want = base | {"localhost", "127.0.0.1"} if kind == "server" else base
            assert cert_sans(cert) == want, name
            ekus = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            # A client certificate cannot serve; peer and server ones act as both.
            both = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
            assert ekus == ({ExtendedKeyUsageOID.CLIENT_AUTH} if kind == "client" else both), name
            cn = cert.subject.rfc4514_string()
            assert cn == f"CN={host}" if kind == "peer" else cn == f"CN={name}"
            lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
            # 17520h as configured; step-ca backdates not-before by one minute.
            assert abs(lifetime - timedelta(hours=17520)) <= timedelta(minutes=2), lifetime


def test_owners_and_modes(fresh_cluster):
    for host in ALL_HOSTS:
        owner = "etcd" if host in ETCD_HOSTS else "root"
        for name in certs_of(host):
            assert sh(host, f"stat -c '%U %a' {SSL}/{name}.key").split() == [owner, "400"]
            assert sh(host, f"stat -c '%a' {SSL}/{name}.crt").strip() == "644"
        assert sh(host, f"stat -c '%a' {SSL}/root_ca.crt").strip() == "644"
        for link in ("peer-ca.crt", "client-ca.crt"):
            assert sh(host, f"readlink {SSL}/{link}").strip() == "root_ca.crt"
    stats = sh("etcd-k8s-1", "cd /etc/step-ca && stat -c '%n %U %a' secrets/* certs/*")
    assert "secrets/root_ca_key root 400" in stats
    assert "secrets/intermediate_ca_key step 400" in stats
    assert "secrets/password step 400" in stats
    assert "secrets/provisioner_password root 400" in stats


def test_step_on_every_host_reaches_the_ca_by_its_own_configuration(fresh_cluster):
    bed, _ = fresh_cluster
    root_fp = sh(
        "etcd-k8s-1", "/opt/bin/step certificate fingerprint /etc/step-ca/certs/root_ca.crt"
    )
    for host in ALL_HOSTS:
        # No --ca-url and no --root: what $STEPPATH holds must be enough.
        assert sh(host, "STEPPATH=/etc/step /opt/bin/step ca health").strip() == "ok", host
        defaults = json.loads(sh(host, "cat /etc/step/config/defaults.json"))
        assert defaults["ca-url"] == f"https://{bed.ip('etcd-k8s-1')}:9000", host
        assert defaults["fingerprint"] == root_fp.strip(), host
        modes = sh(host, "cd /etc/step && stat -c '%n %U %a' . certs config */*").splitlines()
        assert sorted(modes) == [
            ". root 700",
            "certs root 700",
            "certs/root_ca.crt root 600",
            "config root 700",
            "config/defaults.json root 644",
        ], host


def test_only_the_cert_manager_holds_ca_keys_and_passwords(fresh_cluster):
    find = "find / -xdev \\( -name '*_ca_key' -o -name '*password*' \\) -type f 2>/dev/null"
    for host in ALL_HOSTS:
        found = set(sh(host, find, check=False).split())
        if host == "etcd-k8s-1":
            assert {"/etc/step-ca/secrets/root_ca_key", "/etc/step-ca/secrets/password"} <= found
        else:
            assert not {f for f in found if "step" in f or f.endswith("_ca_key")}, (host, found)
        # Every private key on the host is one of its own leaf keys (or a CA key on the CA).
        keys = sh(
            host,
            "grep -rlIE '^-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' /etc /root /var /tmp /opt"
            " 2>/dev/null",
            check=False,
        )
        for path in keys.split():
            own = path.startswith(f"{SSL}/{host}-") and path.endswith(".key")
            ca = host == "etcd-k8s-1" and path.startswith("/etc/step-ca/secrets/")
            sshd = path.startswith("/etc/ssh/")
            assert own or ca or sshd, f"{host}: unexpected private key {path}"


def test_no_secret_in_output_or_on_the_controller(fresh_cluster):
    _, first = fresh_cluster
    passwords = sh(
        "etcd-k8s-1",
        "cat /etc/step-ca/secrets/password; echo; cat /etc/step-ca/secrets/provisioner_password",
    ).split()
    assert len(passwords) == 2 and all(len(p) >= 40 for p in passwords)
    for secret in passwords:
        assert secret not in first.output
    assert not PEM_KEY.search(first.output.encode())
    # One-time tokens are JWTs: base64url header starting eyJ, three dot-separated parts.
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", first.output)
    # -vv printed the commands: the token reaches step in its environment.
    assert 'STEP_TOKEN="$token"' in first.output and "--token" not in first.output
    # Nothing private was written to the controller's temp directory (TMPDIR of the run)
    # or into the repository.
    written = [p for p in first.tmpdir.rglob("*") if p.is_file()]
    repo = Path(tb.REPO_ROOT)
    written += [
        p
        for p in repo.rglob("*")
        if p.is_file()
        and not {".venv", ".git", ".testbed", "__pycache__"} & set(p.relative_to(repo).parts)
        and p.stat().st_mtime >= STARTED
    ]
    for path in written:
        text = path.read_bytes()
        assert not PEM_KEY.search(text), path
        assert not any(p.encode() in text for p in passwords), path


def test_the_provisioner_key_is_found_in_ca_json_and_never_shown(fresh_cluster):
    """Tokens are minted with the provisioner key decrypted once per batch: the real
    ca.json has it where `mint_command` looks (else minting falls back to the slow way),
    and its private part is in no output and no file on the controller."""
    _, first = fresh_cluster
    out = sh(
        "etcd-k8s-1",
        provisioner_key_lookup("/etc/step-ca/config/ca.json", "etcd-provisioner")
        + '; echo "$1"; printf %s "$2" | /opt/bin/step crypto jwe decrypt'
        " --password-file /etc/step-ca/secrets/provisioner_password",
    )
    kid, _, jwk = out.partition("\n")
    key = json.loads(jwk)
    assert kid and f'"kid":"{kid}"' in jwk  # the test mint_command makes before using it
    private = key["d"]
    assert len(private) >= 40
    assert private not in first.output
    for path in first.tmpdir.rglob("*"):
        assert not path.is_file() or private.encode() not in path.read_bytes(), path


def test_etcd_cluster_is_healthy_and_serves_app_server_on_every_member(fresh_cluster):
    bed, _ = fresh_cluster
    endpoints = ",".join(https(bed.ip(h)) for h in ETCD_HOSTS)
    rc, out = etcdctl("app-server", "app-server-client", "endpoint", "health", endpoints=endpoints)
    assert rc == 0 and out.count("is healthy") == 3, out
    rc, out = etcdctl("app-server", "app-server-client", "member", "list", endpoints=endpoints)
    assert rc == 0 and all(f"started, {h}," in out for h in ETCD_HOSTS), out
    for host in ETCD_HOSTS:
        ep = https(bed.ip(host))
        rc, out = etcdctl("app-server", "app-server-client", "put", f"k-{host}", "v", endpoints=ep)
        assert rc == 0 and "OK" in out, out
        rc, out = etcdctl("app-server", "app-server-client", "get", f"k-{host}", endpoints=ep)
        assert rc == 0 and out.split() == [f"k-{host}", "v"], out


def test_etcd_refuses_clients_without_a_certificate(fresh_cluster):
    rc, out = etcdctl("app-server", "", "get", "x")
    assert rc != 0, out


def test_etcd_refuses_a_certificate_from_another_ca(fresh_cluster):
    # A throwaway CA and client certificate made with openssl inside the container.
    sh(
        "app-server",
        "set -e; d=/tmp/rogue; rm -rf $d; mkdir $d; cd $d; "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=rogue-ca -keyout ca.key -out ca.crt 2>/dev/null; "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=rogue "
        "-keyout c.key -out c.csr 2>/dev/null; "
        "printf 'extendedKeyUsage=clientAuth\\n' > ext; "
        "openssl x509 -req -in c.csr -CA ca.crt -CAkey ca.key -days 1 -extfile ext -out c.crt "
        "2>/dev/null",
    )
    ep = https(tb.bed().ip("etcd-k8s-1"))
    rc, out = tb.exec_in(
        "app-server",
        f"etcdctl --endpoints={ep} --cacert {SSL}/root_ca.crt --cert /tmp/rogue/c.crt "
        "--key /tmp/rogue/c.key --dial-timeout=5s get x 2>&1",
    )
    sh("app-server", "rm -rf /tmp/rogue")
    assert rc != 0, out


def test_second_run_changes_nothing(fresh_cluster):
    bed, _ = fresh_cluster
    second = deploy(bed.inventory_docker)
    assert second.rc == 0, second.output[-3000:]
    assert second.changed == 0, second.changed_operations()


def test_changed_sans_reissue_exactly_that_hosts_certificates(fresh_cluster):
    bed, _ = fresh_cluster
    before = {h: file_digests(h) for h in ALL_HOSTS}
    serials = {
        n: read_cert("etcd-k8s-3", f"{SSL}/{n}.crt").serial_number for n in certs_of("etcd-k8s-3")
    }
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_extra_san.py",
        host_data={"etcd-k8s-3": {"extra_sans": ["etcd3.example.com"]}},
    )
    run = deploy(inventory)
    assert run.rc == 0, run.output[-3000:]
    for name in certs_of("etcd-k8s-3"):
        cert = read_cert("etcd-k8s-3", f"{SSL}/{name}.crt")
        assert "etcd3.example.com" in cert_sans(cert)
        assert cert.serial_number != serials[name]
    for host in ALL_HOSTS:
        if host != "etcd-k8s-3":
            assert file_digests(host) == before[host], host
    # etcd on etcd-k8s-3 serves the new server certificate on new connections.
    out = sh(
        "app-server",
        f"echo | openssl s_client -connect {bed.ip('etcd-k8s-3')}:2379 "
        f"-cert {SSL}/app-server-client.crt -key {SSL}/app-server-client.key "
        f"-CAfile {SSL}/root_ca.crt 2>/dev/null | openssl x509 -noout -ext subjectAltName",
    )
    assert "etcd3.example.com" in out
    again = deploy(inventory)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
    # Dropping the extra SAN again re-issues them without it.
    back = deploy(bed.inventory_docker)
    assert back.rc == 0, back.output[-3000:]
    for name in certs_of("etcd-k8s-3"):
        assert "etcd3.example.com" not in cert_sans(read_cert("etcd-k8s-3", f"{SSL}/{name}.crt"))


def test_a_changed_key_type_makes_new_keys_on_that_host_only(fresh_cluster):
    bed, _ = fresh_cluster
    before = {h: file_digests(h) for h in ALL_HOSTS}
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_key_type.py", host_data={"app-server": {"key_type": "OKP"}}
    )
    run = deploy(inventory)
    assert run.rc == 0, run.output[-3000:]
    key = f"{SSL}/app-server-client.key"
    assert "ED25519" in sh("app-server", f"openssl pkey -in {key} -noout -text").upper()
    crt = f"{SSL}/app-server-client.crt"
    assert "ED25519" in sh("app-server", f"openssl x509 -in {crt} -noout -text").upper()
    for host in ETCD_HOSTS:
        assert file_digests(host) == before[host], host
    rc, out = tb.exec_in(
        "app-server",
        f"etcdctl --endpoints=https://{bed.ip('etcd-k8s-1')}:2379 --cacert {SSL}/root_ca.crt "
        f"--cert {crt} --key {key} put key-type okp",
    )
    assert rc == 0, out
    again = deploy(inventory)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
    back = deploy(bed.inventory_docker)  # the default (EC) again: a new EC key
    assert back.rc == 0, back.output[-3000:]
    assert "ASN1 OID: prime256v1" in sh("app-server", f"openssl pkey -in {key} -noout -text")


def test_changed_lifetimes_update_the_ca_claims_without_reissuing(fresh_cluster):
    bed, _ = fresh_cluster
    claims = 'grep -o \'"maxTLSCertDuration": *"[^"]*"\' /etc/step-ca/config/ca.json'
    before = {h: file_digests(h) for h in ALL_HOSTS}
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_max.py", data={"cert_lifetime_max": "30000h"}
    )
    run = deploy(inventory)
    assert run.rc == 0, run.output[-3000:]
    assert "30000h0m0s" in sh("etcd-k8s-1", claims)
    assert sh("etcd-k8s-1", "systemctl is-active step-ca").strip() == "active"
    assert "ok" in sh(
        "etcd-k8s-1",
        f"/opt/bin/step ca health --ca-url https://{bed.ip('etcd-k8s-1')}:9000 "
        "--root /etc/step-ca/certs/root_ca.crt",
    )
    for host in ALL_HOSTS:
        assert file_digests(host) == before[host], host
    again = deploy(inventory)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
    back = deploy(bed.inventory_docker)
    assert back.rc == 0, back.output[-3000:]
    assert "26280h0m0s" in sh("etcd-k8s-1", claims)


def test_the_root_enters_and_leaves_the_system_trust_store_with_the_setting(fresh_cluster):
    bed, _ = fresh_cluster
    anchor = "/usr/local/share/ca-certificates/etcd-pki-root_ca.crt"
    crt = f"{SSL}/app-server-client.crt"
    # No -CAfile: openssl's default store is /etc/ssl/certs, which update-ca-certificates
    # fills from the anchors.
    verify = f"openssl verify -untrusted {crt} {crt}"
    assert ": OK" not in sh("app-server", f"{verify} 2>&1", check=False)
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_trust_store.py", data={"install_root_in_trust_store": True}
    )
    run = deploy(inventory)
    assert run.rc == 0, run.output[-3000:]
    root = sh("etcd-k8s-1", "cat /etc/step-ca/certs/root_ca.crt")
    for host in ALL_HOSTS:
        assert sh(host, f"stat -c '%U %a' {anchor}").split() == ["root", "644"], host
        assert sh(host, f"cat {anchor}") == root, host
    assert sh("app-server", verify).strip().endswith(": OK")
    again = deploy(inventory)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
    # Unset again: the root leaves the store on every host.
    back = deploy(bed.inventory_docker)
    assert back.rc == 0, back.output[-3000:]
    for host in ALL_HOSTS:
        assert sh(host, f"ls {anchor} 2>&1; true").strip().endswith("No such file or directory")
    assert ": OK" not in sh("app-server", f"{verify} 2>&1", check=False)
    settled = deploy(bed.inventory_docker)
    assert settled.rc == 0 and settled.changed == 0, settled.changed_operations()


def test_etcd_accepts_only_modern_tls(fresh_cluster):
    """TLS 1.2 or newer, forward secret AEAD suites only, on the client and peer ports."""
    bed, _ = fresh_cluster
    ip = bed.ip("etcd-k8s-2")
    client = f"{SSL}/app-server-client"
    auth = f"-CAfile {SSL}/root_ca.crt -cert {client}.crt -key {client}.key -verify_return_error"

    def handshake(port: int, options: str) -> bool:
        _, out = tb.exec_in(
            "app-server",
            f"echo | openssl s_client -connect {ip}:{port} {auth} {options} 2>&1",
        )
        return "Verify return code: 0 (ok)" in out and "Cipher is (NONE)" not in out

    for port in (2379, 2380):
        assert handshake(port, "-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256"), port
        assert handshake(port, "-tls1_3"), port
        assert not handshake(port, "-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA"), port  # CBC
        assert not handshake(port, "-tls1_1 -cipher DEFAULT@SECLEVEL=0"), port


# systemd-analyze security targets (0 best, 10 worst) for the units the deploy writes.
EXPOSURE = {
    "step-ca.service": 1.5,
    "etcd.service": 3.5,
    "etcd-pki-crl.service": 4.0,
    "step-renew-": 4.0,  # every renewal service
}


def target_of(unit: str) -> str:
    return next(k for k in EXPOSURE if unit == k or (k.endswith("-") and unit.startswith(k)))


def test_services_are_sandboxed(fresh_cluster):
    """Each service the deploy writes scores within its target in systemd-analyze."""
    seen = set()
    for host in ALL_HOSTS:
        units = [f"step-renew-{name}.service" for name in certs_of(host)]
        if host in ETCD_HOSTS:
            units += ["etcd.service", "etcd-pki-crl.service"]
        if host == "etcd-k8s-1":
            units.append("step-ca.service")
        for unit in units:
            out = sh(host, f"systemd-analyze security --no-pager {unit} | tail -n1")
            score = float(re.search(r"exposure level for \S+: ([0-9.]+)", out).group(1))
            key = target_of(unit)
            assert score <= EXPOSURE[key], f"{host} {unit}: {score} > {EXPOSURE[key]}"
            seen.add(key)
    assert seen == set(EXPOSURE)
