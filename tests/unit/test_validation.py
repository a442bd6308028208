"""Bad input: each case must fail with one clear message naming the host and field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from etcd_pki.plan import build_plan
from etcd_pki.settings import ConfigError, parse_duration

from .conftest import seed_hosts


def everywhere(**data):
    """Mutation: set ``data`` on every host (as group_data/all.py would)."""

    def mutate(hosts):
        return [replace(h, data={**h.data, **data}) for h in hosts]

    return mutate


def on(name, **data):
    def mutate(hosts):
        return [replace(h, data={**h.data, **data}) if h.name == name else h for h in hosts]

    return mutate


def groups(name, *new_groups):
    def mutate(hosts):
        return [replace(h, groups=frozenset(new_groups)) if h.name == name else h for h in hosts]

    return mutate


def drop(name, key):
    def mutate(hosts):
        return [
            replace(h, data={k: v for k, v in h.data.items() if k != key}) if h.name == name else h
            for h in hosts
        ]

    return mutate


def chain(*mutations):
    def mutate(hosts):
        for m in mutations:
            hosts = m(hosts)
        return hosts

    return mutate


RELEASE = {"etcd_install_source": "release", "etcd_sha256": {"amd64": "a" * 64}}

CASES = [
    ("no cert-manager", groups("etcd-k8s-1", "etcd"), "no cert-manager"),
    (
        "two cert-managers, none named active",
        groups("etcd-k8s-2", "etcd", "etcd_cert_managers"),
        "several cert-managers (etcd-k8s-1, etcd-k8s-2)",
    ),
    (
        "two active cert-managers",
        chain(
            groups("etcd-k8s-2", "etcd", "etcd_cert_managers"),
            on("etcd-k8s-1", active_cert_manager="etcd-k8s-1"),
            on("etcd-k8s-2", active_cert_manager="etcd-k8s-2"),
        ),
        "two active cert-managers named: etcd-k8s-1, etcd-k8s-2",
    ),
    (
        "active cert-manager not in the group",
        everywhere(active_cert_manager="etcd-k8s-3"),
        "`active_cert_manager` = 'etcd-k8s-3' is not in group `etcd_cert_managers`",
    ),
    (
        "cert-manager not in etcd",
        groups("etcd-k8s-1", "etcd_cert_managers"),
        "host etcd-k8s-1: is in `etcd_cert_managers` but not in `etcd`",
    ),
    (
        "typo in a group name",
        groups("app-server", "etcd-clients"),
        "group `etcd-clients` looks like a typo for `etcd_clients`",
    ),
    ("typo: etcd_cert_manager", groups("etcd-k8s-3", "etcd", "etcd_cert_manager"), "typo"),
    (
        "no address",
        drop("etcd-k8s-2", "address"),
        "host etcd-k8s-2: no usable IP address",
    ),
    ("address not an IP", on("etcd-k8s-2", address="10.0.1.300"), "host etcd-k8s-2: no usable IP"),
    (
        "duplicate address",
        on("etcd-k8s-3", address="10.0.1.11"),
        "host etcd-k8s-3: address 10.0.1.11 is also used by etcd-k8s-2",
    ),
    (
        "bad extra SAN",
        on("etcd-k8s-2", extra_sans=["bad_name!"]),
        "host etcd-k8s-2: `extra_sans` entry 'bad_name!' is neither a plain IP address nor a "
        "DNS name",
    ),
    (
        "extra_sans not a list",
        on("etcd-k8s-2", extra_sans="etcd.example.com"),
        "`extra_sans` must be a list",
    ),
    (
        "bad CA extra SAN",
        everywhere(ca_extra_sans=["-ca.example.com"]),
        "`ca_extra_sans` entry '-ca.example.com'",
    ),
    (
        "lifetimes out of order",
        everywhere(cert_lifetime="30000h"),
        "cert_lifetime_min <= cert_lifetime <= cert_lifetime_max",
    ),
    ("unparsable lifetime", everywhere(cert_lifetime="2 years"), "`cert_lifetime`: '2 years'"),
    ("zero lifetime", everywhere(cert_lifetime_min="0s"), "`cert_lifetime_min` = '0s'"),
    ("unknown key type", everywhere(key_type="DSA"), "`key_type` = 'DSA' is unknown"),
    ("relative path", everywhere(ssl_dir="etc/etcd/ssl"), "`ssl_dir` = 'etc/etcd/ssl'"),
    ("path with ..", everywhere(ca_dir="/etc/../root"), "`ca_dir` = '/etc/../root'"),
    ("path with shell", everywhere(bin_dir="/opt/bin;rm -rf /"), "`bin_dir`"),
    ("path too close to /", everywhere(ssl_dir="/etc"), "`ssl_dir` = '/etc' is too close to /"),
    ("unknown install source", everywhere(install_source="s3"), "`install_source` = 's3'"),
    (
        "mirror URL not http(s)",
        everywhere(install_source="mirror", install_mirror_url="ftp://mirror/"),
        "`install_mirror_url` = 'ftp://mirror/' must be an http(s):// URL",
    ),
    (
        "controller source without a directory",
        everywhere(install_source="controller", install_controller_dir=None),
        "`install_controller_dir` must name a directory",
    ),
    (
        "checksum of the wrong length",
        everywhere(step_sha256={"amd64": "abc123"}),
        "`step_sha256['amd64']` is not a sha256 (64 lowercase hex characters): 6 characters",
    ),
    (
        "checksum not hex",
        everywhere(step_ca_sha256={"amd64": "z" * 64}),
        "`step_ca_sha256['amd64']`",
    ),
    ("bad version", everywhere(step_version="latest"), "`step_version` = 'latest'"),
    ("zero threshold", everywhere(renew_threshold_percent=0), "`renew_threshold_percent` = 0"),
    ("negative threshold", everywhere(renew_threshold_percent=-5), "`renew_threshold_percent`"),
    ("threshold 100", everywhere(renew_threshold_percent=100), "must be an integer 1..99"),
    ("unknown renew mode", everywhere(renew_mode="rotate"), "`renew_mode` = 'rotate'"),
    ("port out of range", everywhere(ca_port=70000), "`ca_port` = 70000"),
    ("port as string", everywhere(ca_port="9000"), "`ca_port` = '9000'"),
    ("bad user name", everywhere(etcd_user="Etcd User"), "`etcd_user` = 'Etcd User'"),
    (
        "host name not a DNS label",
        lambda hosts: [replace(hosts[0], name="etcd_k8s_1"), *hosts[1:]],
        "host etcd_k8s_1: the name is not a valid host name",
    ),
    (
        "host in etcd and etcd_clients with conflicting users",
        groups("etcd-k8s-3", "etcd", "etcd_clients"),
        "host etcd-k8s-3: is in `etcd` and `etcd_clients`; its client key cannot belong to both",
    ),
    (
        "cluster-wide setting differs per host",
        on("etcd-k8s-2", ca_port=9443),
        "`ca_port` differs between hosts",
    ),
    ("empty etcd group", lambda hosts: [h for h in hosts if h.name == "app-server"], "is empty"),
    (
        "setting missing",
        drop("etcd-k8s-2", "ssl_dir"),
        "host etcd-k8s-2: setting `ssl_dir` is missing",
    ),
    (
        "two directories are the same",
        everywhere(step_dir="/etc/step-ca"),
        "`ca_dir` and `step_dir` are the same directory (/etc/step-ca)",
    ),
    (
        "a directory inside another",
        everywhere(ssl_dir="/etc/step-ca/ssl"),
        "`ssl_dir` must not lie inside `ca_dir` (/etc/step-ca/ssl)",
    ),
    (
        "metrics written inside the certificates' directory",
        everywhere(metrics_dir="/etc/etcd/ssl/metrics"),
        "`metrics_dir` must not lie inside `ssl_dir` (/etc/etcd/ssl/metrics)",
    ),
    (
        "metrics directory with a quote",
        everywhere(metrics_dir="/var/lib/node exporter'"),
        '`metrics_dir` = "/var/lib/node exporter\'" must be an absolute path',
    ),
    ("bad dns_domain", everywhere(dns_domain="local_"), "`dns_domain` = 'local_'"),
    ("boolean as string", everywhere(renew_persistent="yes"), "`renew_persistent` must be True"),
    ("multi-line post command", everywhere(renew_post_command="a\nb"), "`renew_post_command`"),
    ("bad OnCalendar", everywhere(renew_on_calendar="daily;reboot"), "`renew_on_calendar`"),
    (
        "etcd release without a sha256 pin",
        everywhere(etcd_install_source="release"),
        "`etcd_sha256` must pin the tarball's sha256 per arch for source 'release'",
    ),
    (
        "etcd release URL neither http(s) nor a controller directory",
        everywhere(**RELEASE, etcd_release_url="ftp://mirror/etcd"),
        "`etcd_release_url` = 'ftp://mirror/etcd': must be an http(s):// URL (each host "
        "downloads the tarball) or a directory on the controller",
    ),
    (
        "etcd release URL a relative directory",
        everywhere(**RELEASE, etcd_release_url="mirror/etcd"),
        "`etcd_release_url` = 'mirror/etcd': must be an http(s):// URL",
    ),
    (
        "etcd release file:// URL with a host",
        everywhere(**RELEASE, etcd_release_url="file://mirror/etcd"),
        "a file:// URL names a directory on the controller: file:///path, no host",
    ),
    (
        "etcd version not x.y.z",
        everywhere(**RELEASE, etcd_version="v3.5"),
        "`etcd_version` = 'v3.5' is not a version like 3.5.16",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(defaults, mutate, expected):
    with pytest.raises(ConfigError) as excinfo:
        build_plan(mutate(seed_hosts(defaults)))
    assert expected in str(excinfo.value)


def test_every_problem_is_reported_at_once(defaults):
    hosts = chain(everywhere(key_type="DSA"), on("etcd-k8s-2", address="nope"))(
        seed_hosts(defaults)
    )
    with pytest.raises(ConfigError) as excinfo:
        build_plan(hosts)
    # Settings problems are reported per host before inventory problems.
    assert len(excinfo.value.problems) >= 4
    assert all("key_type" in p for p in excinfo.value.problems)


def test_the_defaults_are_valid(defaults):
    build_plan(seed_hosts(defaults))


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/etcd-io/etcd/releases/download",
        "http://172.30.99.1:8099/etcd-io/etcd/releases/download",
        "/srv/mirror/etcd-io/etcd/releases/download",
        "file:///srv/mirror/etcd-io/etcd/releases/download",
    ],
)
def test_etcd_release_urls_and_controller_directories_are_accepted(defaults, url):
    build_plan(everywhere(**RELEASE, etcd_release_url=url)(seed_hosts(defaults)))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("17520h", 17520 * 3600), ("1h0m0s", 3600), ("90m", 5400), ("1.5h", 5400), ("300ms", 0.3)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "5", "1d", "1h 30m", "-1h"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


MIRROR = {"install_source": "mirror", "install_mirror_url": "http://mirror.example"}
PIN = {"amd64": "a" * 64}


def test_a_plain_http_mirror_needs_pins(defaults):
    with pytest.raises(ConfigError) as e:
        build_plan(everywhere(**MIRROR)(seed_hosts(defaults)))
    problems = e.value.problems
    assert any(p.startswith("host app-server: `install_mirror_url` is plain http") and
               "`step_sha256`" in p and "step_ca_sha256" not in p for p in problems)  # fmt: skip
    assert any(p.startswith("host etcd-k8s-1:") and "`step_ca_sha256`" in p for p in problems)
    # Pinned, or over https: fine.
    build_plan(everywhere(**MIRROR, step_sha256=PIN, step_ca_sha256=PIN)(seed_hosts(defaults)))
    https = {**MIRROR, "install_mirror_url": "https://mirror.example"}
    build_plan(everywhere(**https)(seed_hosts(defaults)))


def test_an_etcd_older_than_3_5_is_refused(defaults):
    release = {"etcd_install_source": "release", "etcd_sha256": PIN, "etcd_version": "3.4.23"}
    with pytest.raises(ConfigError) as e:
        build_plan(everywhere(**release)(seed_hosts(defaults)))
    assert "the deploy supports etcd 3.5, 3.6 and 3.7" in str(e.value)
    build_plan(everywhere(**{**release, "etcd_version": "3.7.3"})(seed_hosts(defaults)))


def test_an_etcd_host_named_like_a_certificate_kind_is_refused(defaults):
    hosts = seed_hosts(defaults)
    hosts = [replace(h, name="db-client") if h.name == "etcd-k8s-3" else h for h in hosts]
    with pytest.raises(ConfigError, match="host db-client: an etcd host's name may not end"):
        build_plan(hosts)
