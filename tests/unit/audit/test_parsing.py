"""What the audit reads from a host: systemd unit states, file stats, and which file
names are CA secrets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from etcd_pki.observation import FileStat, is_ca_secret, parse_file_stats, parse_unit_states


def test_parse_unit_states():
    lines = [
        "==> step-renew-a-peer.timer",
        "NextElapseUSecRealtime=Sun 2026-11-29 03:58:16 UTC",
        "LastTriggerUSec=@1780308000",
        "Id=step-renew-a-peer.timer",
        "LoadState=loaded",
        "ActiveState=active",
        "UnitFileState=enabled",
        "==> step-renew-a-peer.service",
        "Id=step-renew-a-peer.service",
        "LoadState=loaded",
        "ActiveState=failed",
        "Result=exit-code",
        "==> gone.timer",
        "NextElapseUSecRealtime=",
        "LoadState=not-found",
        "ActiveState=inactive",
        "UnitFileState=",
    ]
    states = parse_unit_states(lines)
    a = states["step-renew-a-peer.timer"]
    assert (a.loaded, a.enabled, a.active) == (True, "enabled", "active")
    assert a.next_run == datetime(2026, 11, 29, 3, 58, 16, tzinfo=UTC)
    assert a.last_run == datetime.fromtimestamp(1780308000, UTC)
    assert not states["gone.timer"].loaded
    assert states["step-renew-a-peer.service"].result == "exit-code"


def test_parse_file_stats():
    stats = parse_file_stats(
        ["root step 750 /etc/step-ca/secrets", "missing - - /etc/step-ca/secrets/password"]
    )
    assert stats == {
        "/etc/step-ca/secrets": FileStat("root", "step", "750"),
        "/etc/step-ca/secrets/password": None,
    }


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("/etc/step-ca/secrets/root_ca_key", True),
        ("/root/intermediate_ca_key", True),
        ("/etc/step-ca/secrets/provisioner_password", True),
        ("/etc/step-ca/secrets/password", True),
        ("/etc/etcd/ssl/etcd-k8s-1-peer.key", False),
        ("/etc/password", False),
    ],
)
def test_ca_secret_names(path, secret):
    assert is_ca_secret(path) is secret
