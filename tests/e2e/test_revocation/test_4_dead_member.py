"""remove_node.py for a member that is gone, then its replacement."""

from __future__ import annotations

import pytest

from tests import testbed as tb
from tests.testbed.ssh import wait_for_port

from ..conftest import ETCD_HOSTS, SSL, force_renew, read_cert, sh
from .helpers import (
    NEW,
    SAVED,
    as_member,
    crl_of,
    crl_serials,
    pids,
    refused_everywhere,
    ssh,
    works_everywhere,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dead(bed):
    """etcd-k8s-4 joined, its peer certificate renewed once by its timer's service (that
    serial is known to the CA's log only), its files copied to app-server, then stopped."""
    tb.add(NEW, tb.GROUP_ETCD)
    run = ssh(tb.bed(), "deploy.py", "--limit", NEW)
    assert run.rc == 0, run.output[-4000:]
    first, renewed = force_renew(NEW, f"{NEW}-peer")
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


def test_the_dead_member_coming_back_as_it_was_joins_anew(dead):
    """The removed node comes back with its old data and revoked certificates; etcd
    there cannot start (the cluster removed it). `deploy.py --limit` keeps the old data
    aside, issues new certificates and joins it anew; a re-run changes nothing."""
    tb.docker("start", tb.container_name(NEW))
    wait_for_port(tb.bed().ip(NEW), 22, timeout=60)  # its sshd (the deploy goes over SSH)
    run = ssh(tb.bed(), "deploy.py", "--limit", NEW)
    assert run.rc == 0, run.output[-4000:]
    assert f"the cluster had removed {NEW}" in run.output, run.output[-4000:]
    aside = sh(NEW, "ls -d /var/lib/etcd/etcd-cluster.removed-*/member").split()
    assert len(aside) == 1, aside  # the old data, kept
    rc, members = as_member("etcd-k8s-1", "member", "list")
    assert rc == 0 and members.count(", started, ") == 4 and NEW in members, members
    for kind in ("peer", "client"):
        serial = read_cert(NEW, f"{SSL}/{NEW}-{kind}.crt").serial_number
        assert serial not in crl_serials("etcd-k8s-1"), kind
    works_everywhere(NEW, f"{SSL}/{NEW}-client.crt", f"{SSL}/{NEW}-client.key", (*ETCD_HOSTS, NEW))
    again = ssh(tb.bed(), "deploy.py", "--limit", NEW)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
    run = ssh(tb.bed(), "remove_node.py", "--limit", NEW)  # removed again, as it answers
    assert run.rc == 0, run.output[-4000:]


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
