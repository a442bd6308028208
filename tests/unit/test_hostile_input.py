"""Every string a user gives (a setting, host data) meets shell metacharacters here,
through the real validation: each is refused, naming its field, unless the field is free
text by design, in which case its use is checked to take it as one literal word.

The settings are read from the `Settings` dataclass itself: a new setting is covered the
day it is added (a free-text one must be listed in FREE with where it is made safe).
"""

from __future__ import annotations

import dataclasses
import shlex
import typing

import pytest

from etcd_pki.commands.ca import init_command
from etcd_pki.fields import systemd_quoted
from etcd_pki.plan import build_plan
from etcd_pki.settings import ConfigError, Settings

from .conftest import seed_hosts

NASTY = (
    ";touch CANARY",
    "$(touch CANARY)",
    "`touch CANARY`",
    "a'b",
    'a"b',
    "a\nb",
    "a b",
    "100%n",
    "a\\b",
    "ünï",
    "-x",
)
# Free text by design, and where each is made safe.
FREE = {
    "ca_name": "letters, digits, space ._- only; shlex-quoted in `step ca init` (below)",
    "renew_post_command": "shell by design; systemd_quoted in its unit (below; e2e "
    "test_renewal checks it arrives unchanged)",
    "install_controller_dir": "a controller path, read by Python only",
    "backup_dir": "a controller path, read by Python only",
    "backup_s3_ca_file": "a controller path, read by Python only",
    "backup_mac_key_file": "a controller path, read by Python only",
    "backup_s3_region": "a word of the request signature, on the controller only",
}
# Fields that take some of these characters (a calendar spec has letters, spaces and
# dashes: `Mon..Fri *-*-* 03:00`): whatever they accept must hold none of the dangerous.
DANGEROUS = set(";$`'\"\\%\n")
INERT = ("renew_on_calendar", "crl_fetch_on_calendar")
# What a field needs around it to be checked at all.
CONTEXT = {
    "install_mirror_url": {"install_source": "mirror"},
    "etcd_version": {"etcd_install_source": "release", "etcd_sha256": {"amd64": "a" * 64}},
    "etcd_release_url": {"etcd_install_source": "release", "etcd_sha256": {"amd64": "a" * 64}},
    "backup_s3_bucket": {"backup_s3_endpoint": "https://s3.example"},
    "backup_s3_prefix": {"backup_s3_endpoint": "https://s3.example", "backup_s3_bucket": "b"},
    "backup_s3_region": {"backup_s3_endpoint": "https://s3.example", "backup_s3_bucket": "b"},
}


def _stringy(tp) -> str | None:
    """ "str", "list" or "dict" for a field that holds user text, else None."""
    text = str(tp)
    if text.startswith(("list[str]", "tuple[str")):
        return "list"
    if text.startswith("dict[str, str]"):
        return "dict"
    if "str" in text:
        return "str"
    return None


HINTS = typing.get_type_hints(Settings)
FIELDS = {
    f.name: kind
    for f in dataclasses.fields(Settings)
    if f.name != "extra" and (kind := _stringy(HINTS[f.name]))
}


def test_every_text_setting_is_covered():
    assert len(FIELDS) > 30
    assert set(FREE) <= set(FIELDS), set(FREE) - set(FIELDS)


@pytest.mark.parametrize("field", sorted(set(FIELDS) - set(FREE)))
@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_a_nasty_value_is_refused_naming_its_field(defaults, field, value):
    kind = FIELDS[field]
    given = {"list": [value], "dict": {"amd64": value}}.get(kind, value)
    data = {**CONTEXT.get(field, {}), field: given}
    hosts = seed_hosts(defaults)
    hosts = [dataclasses.replace(h, data={**h.data, **data}) for h in hosts]
    if field == "active_cert_manager":
        pytest.skip("must name a cert-manager: any other value is refused (test_validation)")
    if field in INERT:
        try:
            build_plan(hosts)
        except ConfigError as e:
            assert f"`{field}" in str(e)
        else:
            assert not DANGEROUS & set(value), f"{field} took {value!r}"
        return
    with pytest.raises(ConfigError) as e:
        build_plan(hosts)
    assert f"`{field}" in str(e.value), str(e.value)  # `step_sha256['amd64']` too


@pytest.mark.parametrize("field", ["address", "extra_sans", "name"])
@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_a_nasty_host_field_is_refused(defaults, field, value):
    hosts = seed_hosts(defaults)
    target = hosts[1]
    if field == "name":
        changed = dataclasses.replace(target, name=value)
    else:
        given = [value] if field == "extra_sans" else value
        changed = dataclasses.replace(target, data={**target.data, field: given})
    with pytest.raises(ConfigError) as e:
        build_plan([hosts[0], changed, *hosts[2:]])
    assert "host " in str(e.value)


def test_an_ipv6_zone_is_not_an_address(defaults):
    hosts = seed_hosts(defaults)
    hosts[1] = dataclasses.replace(hosts[1], data={**hosts[1].data, "address": "fe80::1%eth0"})
    with pytest.raises(ConfigError, match="no usable IP address"):
        build_plan(hosts)


def test_a_ca_name_with_a_space_is_one_word_of_step_ca_init(defaults):
    plan = build_plan(seed_hosts({**defaults, "ca_name": "Acme etcd CA"}))
    words = shlex.split(init_command(plan, plan.ca.settings))
    assert "--name=Acme etcd CA" in words


@pytest.mark.parametrize("value", [v for v in NASTY if "\n" not in v])
def test_the_post_command_reaches_the_shell_unchanged(value):
    """systemd's Exec line unquoting (quotes, backslashes), then its `%%`/`$$`."""
    quoted = systemd_quoted(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    inner = quoted[1:-1]
    out, i = [], 0
    while i < len(inner):  # what systemd makes of it: C escapes, then %% and $$
        c = inner[i]
        if c == "\\":
            out.append(inner[i + 1])
            i += 2
        elif c in "%$" and inner[i + 1 : i + 2] == c:
            out.append(c)
            i += 2
        else:
            assert c not in '"%$', f"unescaped {c!r} in {quoted}"
            out.append(c)
            i += 1
    assert "".join(out) == value
    with pytest.raises(ValueError):
        systemd_quoted("a\nb")
