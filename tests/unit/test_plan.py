"""The certificate plan computed from the seed's inventory."""

from __future__ import annotations

from etcd_pki.plan import build_plan

from .conftest import seed_hosts


def test_seed_cluster_roles(defaults):
    plan = build_plan(seed_hosts(defaults))
    assert plan.active_ca == "etcd-k8s-1"
    assert plan.ca_url == "https://10.0.1.10:9000"
    assert [h.name for h in plan.etcd_members] == ["etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3"]
    assert plan.standbys == ()


def test_etcd_host_gets_three_certificates_with_sans(defaults):
    plan = build_plan(seed_hosts(defaults))
    certs = {c.kind: c for c in plan.hosts["etcd-k8s-2"].certs}
    assert set(certs) == {"peer", "server", "client"}
    assert certs["peer"].subject == "etcd-k8s-2"
    assert set(certs["peer"].sans) == {"etcd-k8s-2", "etcd-k8s-2.local", "10.0.1.11"}
    assert set(certs["server"].sans) == {
        "etcd-k8s-2",
        "etcd-k8s-2.local",
        "10.0.1.11",
        "localhost",
        "127.0.0.1",
    }
    assert certs["server"].subject == "etcd-k8s-2-server"
    assert certs["client"].subject == "etcd-k8s-2-client"
    assert certs["peer"].crt == "/etc/etcd/ssl/etcd-k8s-2-peer.crt"
    assert certs["peer"].key == "/etc/etcd/ssl/etcd-k8s-2-peer.key"
    assert certs["peer"].unit == "step-renew-etcd-k8s-2-peer"
    assert {c.owner for c in certs.values()} == {"etcd"}


def test_client_host_gets_only_a_client_certificate(defaults):
    plan = build_plan(seed_hosts(defaults, **{"app-server": {"client_key_owner": "app"}}))
    (cert,) = plan.hosts["app-server"].certs
    assert cert.kind == "client"
    assert cert.owner == "app"
    assert cert.subject == "app-server-client"


def test_extra_sans_and_ca_names(defaults):
    hosts = seed_hosts(
        defaults,
        **{
            "etcd-k8s-3": {"extra_sans": ["etcd.example.com", "192.0.2.7"]},
            "etcd-k8s-1": {"ca_extra_sans": ["ca.example.com"]},
        },
    )
    plan = build_plan(hosts)
    peer = plan.hosts["etcd-k8s-3"].certs[0]
    assert "etcd.example.com" in peer.dns_names and "192.0.2.7" in peer.ips
    assert set(plan.ca_sans) >= {"etcd-k8s-1", "etcd-k8s-1.local", "10.0.1.10", "ca.example.com"}


def test_named_active_cert_manager_with_standby(defaults):
    hosts = seed_hosts(defaults)
    hosts[1] = hosts[1].__class__(
        hosts[1].name, hosts[1].groups | {"etcd_cert_managers"}, hosts[1].data
    )
    for i, h in enumerate(hosts):
        hosts[i] = h.__class__(h.name, h.groups, {**h.data, "active_cert_manager": "etcd-k8s-2"})
    plan = build_plan(hosts)
    assert plan.active_ca == "etcd-k8s-2"
    assert plan.standbys == ("etcd-k8s-1",)
    assert plan.ca_url == "https://10.0.1.11:9000"


def test_address_falls_back_to_ip_ssh_hostname(defaults):
    hosts = seed_hosts(defaults)
    data = {k: v for k, v in hosts[3].data.items() if k != "address"}
    hosts[3] = hosts[3].__class__(
        "app-server", hosts[3].groups, {**data, "ssh_hostname": "10.9.9.9"}
    )
    assert build_plan(hosts).hosts["app-server"].address == "10.9.9.9"
