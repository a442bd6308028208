"""The CRL on every member, and the ledger of what the CA issued."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509

from ..conftest import ALL_HOSTS, ETCD_HOSTS, SSL, deploy, read_cert, sh
from .helpers import CA, CRL, ledger

pytestmark = pytest.mark.e2e


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
