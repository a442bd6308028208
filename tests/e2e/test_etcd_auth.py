"""etcd access control from certificate identity (`etcd_auth`), on a cluster made with
it on: the app-server's certificate reads and writes only its prefixes and cannot change
membership; members' own client certificates keep admin rights; a member added with
--limit joins; a changed role is applied; turning it off disables authentication; every
second run changes nothing. Results are read back with etcdctl, as each certificate.
"""

from __future__ import annotations

import pytest

from tests import testbed as tb

from .conftest import ETCD_HOSTS, deploy, etcdctl, https

pytestmark = pytest.mark.e2e

AUTH = {
    "enabled": True,
    "roles": {"app": {"/app/": "readwrite", "/config/": "read"}},
    "users": {"app-server-client": ["app"]},
}
NEW = "etcd-k8s-4"
DENIED = "permission denied"


def as_app(*args: str) -> tuple[int, str]:
    return etcdctl("app-server", "app-server-client", *args)


def as_member(host: str, *args: str) -> tuple[int, str]:
    return etcdctl(host, f"{host}-client", *args, endpoints=https(tb.bed().ip(host)))


@pytest.fixture(scope="module")
def cluster(testbed, tmp_path_factory):
    bed = tb.up(fresh=True)
    folder = tmp_path_factory.mktemp("auth-inventories")
    inventory = tb.write_inventory(folder / "auth.py", data={"etcd_auth": AUTH})
    run = deploy(inventory)
    assert run.rc == 0, run.output[-4000:]
    return bed, folder, inventory


def test_a_new_cluster_starts_with_authentication_on(cluster):
    rc, out = as_member("etcd-k8s-2", "auth", "status")
    assert rc == 0 and "Authentication Status: true" in out, out
    rc, out = as_member("etcd-k8s-2", "user", "get", "app-server-client")
    assert rc == 0 and "Roles: app" in out, out


def test_the_app_server_reads_and_writes_only_its_prefixes(cluster):
    assert as_app("put", "/app/key", "v1") == (0, "OK\n")
    rc, out = as_app("get", "/app/key", "--print-value-only")
    assert rc == 0 and out.strip() == "v1", out
    assert as_member("etcd-k8s-1", "put", "/config/flag", "on")[0] == 0
    rc, out = as_app("get", "/config/flag", "--print-value-only")
    assert rc == 0 and out.strip() == "on", out
    for args in (("put", "/config/flag", "off"), ("put", "/other", "x"), ("get", "/other")):
        rc, out = as_app(*args)
        assert rc != 0 and DENIED in out, (args, out)


def test_the_app_server_cannot_change_membership(cluster):
    bed, _, _ = cluster
    rc, out = as_app("member", "add", "intruder", "--peer-urls=https://172.31.255.1:2380")
    assert rc != 0 and DENIED in out, out
    rc, out = as_member("etcd-k8s-1", "member", "list", "-w", "simple")
    member_id = next(line.split(",")[0] for line in out.splitlines() if "etcd-k8s-3" in line)
    rc, out = as_app("member", "remove", member_id)
    assert rc != 0 and DENIED in out, out
    rc, out = as_member("etcd-k8s-1", "member", "list")
    assert out.count(", started, ") == 3, out


def test_members_keep_admin_rights(cluster):
    for host in ETCD_HOSTS:
        assert as_member(host, "put", f"/other/{host}", "x") == (0, "OK\n")
        rc, out = as_member(host, "user", "list")
        assert rc == 0 and "app-server-client" in out and f"{host}-client" in out, out


def test_a_second_run_changes_nothing(cluster):
    _, _, inventory = cluster
    again = deploy(inventory)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()


def test_a_member_added_with_limit_joins_with_authentication_on(cluster):
    _, folder, _ = cluster
    tb.add(NEW, tb.GROUP_ETCD)
    inventory = tb.write_inventory(folder / "auth-4.py", data={"etcd_auth": AUTH})
    run = deploy(inventory, "--limit", f"@docker/{tb.container_name(NEW)}")
    assert run.rc == 0, run.output[-4000:]
    rc, out = as_member(NEW, "user", "get", f"{NEW}-client")
    assert rc == 0 and "Roles: root" in out, out
    rc, out = as_member(NEW, "member", "list")
    assert out.count(", started, ") == 4, out
    assert as_member(NEW, "put", "/other/new", "x") == (0, "OK\n")


def test_a_changed_role_is_applied(cluster):
    _, folder, _ = cluster
    read_only = {**AUTH, "roles": {"app": {"/app/": "read"}}}
    inventory = tb.write_inventory(folder / "auth-ro.py", data={"etcd_auth": read_only})
    run = deploy(inventory)
    assert run.rc == 0, run.output[-4000:]
    assert "etcd access control" in " ".join(run.changed_operations())
    rc, out = as_app("put", "/app/key", "v2")
    assert rc != 0 and DENIED in out, out
    rc, out = as_app("get", "/config/flag")
    assert rc != 0 and DENIED in out, out
    assert as_app("get", "/app/key", "--print-value-only")[1].strip() == "v1"
    again = deploy(inventory)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()


def test_turning_it_off_disables_authentication(cluster):
    _, folder, _ = cluster
    inventory = tb.write_inventory(folder / "off.py")
    run = deploy(inventory)
    assert run.rc == 0, run.output[-4000:]
    rc, out = as_member("etcd-k8s-2", "auth", "status")
    assert "Authentication Status: false" in out, out
    assert as_app("put", "/other", "free") == (0, "OK\n")
    again = deploy(inventory)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
