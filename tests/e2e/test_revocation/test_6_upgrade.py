"""An existing cluster upgraded to the CRL, under load."""

from __future__ import annotations

import json

import pytest

from tests import testbed as tb

from ..conftest import ETCD_HOSTS, SSL, deploy, https, sh
from .helpers import CA, CRL, as_member, wait_for

pytestmark = pytest.mark.e2e


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
