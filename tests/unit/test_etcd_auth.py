"""etcd_auth: its checks, the state etcdctl prints, and the changes that reach it."""

from __future__ import annotations

import base64
import json

import pytest

from etcd_pki.etcd_auth import Access, changes, parse_state, prefix_end, problems, wanted
from etcd_pki.plan import build_plan
from etcd_pki.settings import ConfigError

from .conftest import seed_hosts

AUTH = {
    "enabled": True,
    "roles": {"app": {"/app/": "readwrite", "/config/": "read"}},
    "users": {"app-server-client": ["app"]},
}


def test_prefix_end_is_etcds():
    assert prefix_end("/app/") == "/app0"
    assert prefix_end("az") == "a{"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("on", "must be a dict"),
        ({"enabled": "yes"}, "must be True or False"),
        ({"enabled": True, "extra": 1}, "unknown keys"),
        ({"roles": {"root": {"/": "read"}}}, "not 'root'"),
        ({"roles": {"app": {"/a b/": "read"}}}, "key prefix '/a b/'"),
        ({"roles": {"app": {"/a/": "all"}}}, "one of read, write, readwrite"),
        ({"roles": {"app": {}}}, "must map key prefixes"),
        ({"users": {"x; rm": ["app"]}}, "common name"),
        ({"users": {"app-server-client": "app"}}, "must be a list of role names"),
        ({"users": {"app-server-client": ["nope"]}}, "role 'nope' is not in"),
    ],
)
def test_bad_values_are_refused_naming_the_field(value, message):
    found = problems("etcd_auth", value)
    assert any(message in p for p in found), found
    assert all("etcd_auth" in p for p in found)


def test_a_member_or_a_host_named_root_is_refused_with_it_on(defaults):
    bad = {**AUTH, "users": {"etcd-k8s-2-client": ["app"]}}
    with pytest.raises(ConfigError, match="etcd member etcd-k8s-2 has the root role"):
        build_plan(seed_hosts({**defaults, "etcd_auth": bad}))
    assert build_plan(seed_hosts({**defaults, "etcd_auth": AUTH}))


def test_it_must_be_the_same_on_every_host(defaults):
    with pytest.raises(ConfigError, match="`etcd_auth` differs between hosts"):
        build_plan(seed_hosts(defaults, **{"etcd-k8s-2": {"etcd_auth": AUTH}}))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_state_etcdctl_prints_is_read():
    role = {"perm": [{"permType": 2, "key": _b64("/app/"), "range_end": _b64("/app0")},
                     {"key": _b64("/one")}]}  # fmt: skip
    lines = [
        "status\t" + json.dumps({"header": {}, "enabled": True, "authRevision": 3}),
        "user\troot\t" + json.dumps({"roles": ["root"]}),
        "user\tapp-server-client\t" + json.dumps({"roles": ["app"]}),
        "role\tapp\t" + json.dumps(role),
        "role\troot\t" + json.dumps({"header": {}}),
    ]
    state = parse_state(lines)
    assert state == Access(
        True,
        {"root": frozenset({"root"}), "app-server-client": frozenset({"app"})},
        {"app": frozenset({("/app/", "/app0", "readwrite"), ("/one", "", "read")}),
         "root": frozenset()},
    )  # fmt: skip
    assert parse_state([]) is None  # etcd did not answer
    assert parse_state(["status\t{not json"]) is None
    assert parse_state(["status\t" + json.dumps({"header": {}})]) == Access(False, {}, {})


def test_enabling_creates_roles_then_users_then_turns_it_on():
    todo = changes(wanted(AUTH, ["etcd-k8s-1-client"]), Access(False))
    assert todo[-1] == ["auth", "enable"]
    grant = ["user", "grant-role", "app-server-client", "app"]
    assert todo.index(["role", "add", "app"]) < todo.index(grant)
    assert ["role", "grant-permission", "app", "readwrite", "/app/", "/app0"] in todo
    assert ["user", "add", "etcd-k8s-1-client", "--no-password"] in todo
    assert ["user", "grant-role", "root", "root"] in todo


def test_what_is_in_place_is_not_touched_and_extras_go():
    want = wanted(AUTH, ["etcd-k8s-1-client"])
    assert changes(want, want) == []
    have = Access(
        True,
        {**want.users, "old-client": frozenset({"app"})},
        {**want.roles, "old": frozenset({("/x/", "/x0", "read")}),
         "app": frozenset({("/app/", "/app0", "read"), ("/gone/", "/gone0", "write")})},
    )  # fmt: skip
    assert changes(want, have) == [
        ["role", "revoke-permission", "app", "/gone/", "/gone0"],
        ["role", "grant-permission", "app", "readwrite", "/app/", "/app0"],
        ["role", "grant-permission", "app", "read", "/config/", "/config0"],
        ["user", "delete", "old-client"],
        ["role", "delete", "old"],
    ]


def test_turning_it_off_only_disables_authentication():
    off = wanted({"enabled": False}, ["etcd-k8s-1-client"])
    assert changes(off, Access(True, {"root": frozenset({"root"})})) == [["auth", "disable"]]
    assert changes(off, Access(False)) == []
