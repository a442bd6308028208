"""Renewal: the per-certificate systemd services and timers, with short lifetimes.

One bed serves the module: certificates live 10 minutes (step-ca backdates them one
minute, so 11 in all) and are due at 20 % of that, about 70 s after issuance.
"""

from __future__ import annotations

import shlex
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from tests import testbed as tb

from .conftest import ALL_HOSTS, RENEW_OVERRIDE, SSL, deploy, read_cert, sh, start_renewal

pytestmark = pytest.mark.e2e

SHORT = {
    "cert_lifetime": "10m",
    "cert_lifetime_min": "1m",
    "cert_lifetime_max": "1h",
    "renew_threshold_percent": 20,
}


@pytest.fixture(scope="module")
def short_lived(testbed):
    bed = tb.up(fresh=True)
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_short.py",
        data=SHORT,
        host_data={"etcd-k8s-3": {"renew_mode": "rekey"}},
    )
    run = deploy(inventory)
    assert run.rc == 0, run.output[-4000:]
    return bed, inventory


def start(host: str, unit: str) -> int:
    rc, _ = tb.exec_in(host, f"systemctl start {unit}.service")
    return rc


def public_key(host: str, name: str) -> bytes:
    cert = read_cert(host, f"{SSL}/{name}.crt")
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def wait_until_due(host: str, name: str) -> None:
    cert = read_cert(host, f"{SSL}/{name}.crt")
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    due = cert.not_valid_before_utc + lifetime * SHORT["renew_threshold_percent"] / 100
    delay = (due - datetime.now(UTC) + timedelta(seconds=3)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def main_pid(host: str) -> str:
    return sh(host, "systemctl show -p MainPID --value etcd.service").strip()


def served_serial(ip: str, port: int) -> str:
    return sh(
        "app-server",
        f"echo | openssl s_client -connect {ip}:{port} -cert {SSL}/app-server-client.crt "
        f"-key {SSL}/app-server-client.key -CAfile {SSL}/root_ca.crt 2>/dev/null "
        "| openssl x509 -noout -serial",
    ).strip()


def test_units_pass_systemd_analyze_and_timers_are_scheduled(short_lived):
    for host in ALL_HOSTS:
        rc, out = tb.exec_in(
            host,
            "systemd-analyze verify /etc/systemd/system/step-renew-*.service "
            "/etc/systemd/system/step-renew-*.timer 2>&1",
        )
        assert rc == 0, f"{host}: {out}"
        timers = sh(host, "systemctl list-timers --all --no-pager 'step-renew-*'")
        kinds = ("peer", "server", "client") if host.startswith("etcd") else ("client",)
        for kind in kinds:
            line = next(x for x in timers.splitlines() if f"step-renew-{host}-{kind}.timer" in x)
            assert not line.startswith("-"), f"{host}: timer without a next run: {line}"
        assert sh(host, f"systemctl is-enabled step-renew-{host}-client.timer").strip() == "enabled"
        # Enabled without a daemon-reload where none was needed: systemd has every unit
        # as on disk (no warning to reload on `systemctl status`).
        units = [f"step-renew-{host}-{k}.{sfx}" for k in kinds for sfx in ("service", "timer")]
        reload = sh(
            host, f"systemctl show -p NeedDaemonReload --value {' '.join(units)} timers.target"
        )
        assert reload.split() == ["no"] * (len(units) + 1), f"{host}: {reload}"
        # Each timer's service is loaded (what the timer starts when it elapses), not
        # left "not-found" from before its file existed.
        for kind in kinds:
            unit = f"step-renew-{host}-{kind}"
            triggers = sh(host, f"systemctl show -p Triggers --value {unit}.timer").strip()
            assert triggers == f"{unit}.service", f"{host}: {triggers}"
            state = sh(host, f"systemctl show -p LoadState --value {unit}.service").strip()
            assert state == "loaded", f"{host}: {unit}.service {state}"
        timer = sh(host, f"cat /etc/systemd/system/step-renew-{host}-client.timer")
        assert "OnCalendar=*-*-* 03:00:00" in timer and "Persistent=true" in timer


def test_not_due_is_a_clean_skip_and_leaves_the_file_alone(short_lived):
    name = "etcd-k8s-2-peer"
    before = sh("etcd-k8s-2", f"sha256sum {SSL}/{name}.crt {SSL}/{name}.key")
    assert start("etcd-k8s-2", f"step-renew-{name}") == 0
    assert sh("etcd-k8s-2", f"sha256sum {SSL}/{name}.crt {SSL}/{name}.key") == before
    journal = sh("etcd-k8s-2", f"journalctl -u step-renew-{name}.service --no-pager")
    assert "exec-condition" in journal or "Skipped" in journal, journal
    # Skipped by its condition: not a failure.
    state = sh("etcd-k8s-2", f"systemctl show -p Result -p ActiveState step-renew-{name}.service")
    assert state.split() == ["Result=exec-condition", "ActiveState=inactive"], state


def test_due_renewal_keeps_the_key_and_etcd_serves_the_new_certificate(short_lived):
    bed, _ = short_lived
    host, ip = "etcd-k8s-2", bed.ip("etcd-k8s-2")
    wait_until_due(host, f"{host}-server")
    pid = main_pid(host)
    old = {k: read_cert(host, f"{SSL}/{host}-{k}.crt").serial_number for k in ("peer", "server")}
    keys = {k: public_key(host, f"{host}-{k}") for k in ("peer", "server")}
    for kind in ("peer", "server"):
        assert start(host, f"step-renew-{host}-{kind}") == 0
        new = read_cert(host, f"{SSL}/{host}-{kind}.crt")
        assert new.serial_number != old[kind]
        assert public_key(host, f"{host}-{kind}") == keys[kind], "renew must keep the key"
        crt = f"{SSL}/{host}-{kind}.crt"
        assert sh(host, f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
        assert sh(host, f"stat -c '%U %a' {SSL}/{host}-{kind}.key").split() == ["etcd", "400"]
        assert sh(host, f"stat -c '%a' {crt}").strip() == "644"
    # etcd was not restarted or signalled, and new handshakes present the new serials.
    assert main_pid(host) == pid
    assert sh(host, "systemctl show -p NRestarts --value etcd.service").strip() == "0"
    for kind, port in (("server", 2379), ("peer", 2380)):
        want = f"serial={read_cert(host, f'{SSL}/{host}-{kind}.crt').serial_number:X}"
        assert served_serial(ip, port).lstrip("serial=").lstrip("0") == want[7:].lstrip("0")
    assert not sh(host, f"ls -A {SSL} | grep -E '\\.new$' || true").strip()


def test_rekey_mode_changes_the_key(short_lived):
    host = "etcd-k8s-3"
    name = f"{host}-client"
    wait_until_due(host, name)
    before = public_key(host, name)
    serial = read_cert(host, f"{SSL}/{name}.crt").serial_number
    assert start(host, f"step-renew-{name}") == 0
    assert read_cert(host, f"{SSL}/{name}.crt").serial_number != serial
    assert public_key(host, name) != before
    assert sh(host, f"stat -c '%U %a' {SSL}/{name}.key").split() == ["etcd", "400"]
    # The new key matches the new certificate.
    out = sh(
        host,
        f"openssl x509 -noout -pubkey -in {SSL}/{name}.crt | sha256sum; "
        f"openssl pkey -pubout -in {SSL}/{name}.key | sha256sum",
    )
    first, second = out.splitlines()
    assert first == second


def pair_digests(host: str, name: str) -> tuple[str, str]:
    """sha256 of the certificate's public key and of the key's (equal: a matching pair)."""
    out = sh(
        host,
        f"openssl x509 -noout -pubkey -in {SSL}/{name}.crt | sha256sum; "
        f"openssl pkey -pubout -in {SSL}/{name}.key | sha256sum",
    )
    first, second = out.splitlines()
    return first, second


# The rekey unit's ExecStart steps: rekey into temp files, chmod and chown the key,
# chmod the certificate, rename the key, rename the certificate.
REKEY_STEPS = 6


@pytest.mark.parametrize("after", range(1, REKEY_STEPS))
def test_a_rekey_killed_between_two_steps_leaves_a_matching_pair(short_lived, after):
    """SIGKILL between step ``after`` and the next: the unit's ExecStopPost leaves the old
    pair, or, once the new key is in place, puts the new certificate beside it."""
    host = "etcd-k8s-3"
    name = f"{host}-client"
    unit = f"step-renew-{name}.service"
    steps = [
        line
        for line in sh(host, f"cat /etc/systemd/system/{unit}").splitlines()
        if line.startswith("ExecStart=")
    ]
    assert len(steps) == REKEY_STEPS, steps
    # `$$$$` is `$$` once systemd has expanded it: the shell kills itself.
    killed = [*steps[:after], "ExecStart=/bin/sh -c 'kill -KILL $$$$'", *steps[after:]]
    dropin = f"/etc/systemd/system/{unit}.d"
    before = pair_digests(host, name)
    assert before[0] == before[1]
    sh(
        host,
        f"mkdir -p {dropin} && printf '%s\\n' '[Service]' 'ExecStart=' "
        + " ".join(shlex.quote(line) for line in killed)
        + f" > {dropin}/kill.conf && systemctl daemon-reload && mkdir -p /run/etcd-pki && "
        f"echo RENEW_AT=0% > {RENEW_OVERRIDE}",
    )
    try:
        assert start(host, f"step-renew-{name}") != 0  # killed
        result = sh(host, f"systemctl show -p Result --value {unit}").strip()
        assert result == "signal", result
    finally:
        sh(host, f"rm -rf {dropin} {RENEW_OVERRIDE}; systemctl daemon-reload; "
                 f"systemctl reset-failed {unit}")  # fmt: skip
    after_kill = pair_digests(host, name)
    assert after_kill[0] == after_kill[1], f"killed after step {after}: key and certificate differ"
    # Before the key's rename the old pair stays; after it, the new certificate follows.
    assert (after_kill == before) == (after < REKEY_STEPS - 1), after
    leftovers = sh(host, f"ls -A {SSL} | grep '^\\.{name}' || true").strip()
    assert leftovers == "", leftovers


def test_renewal_fails_visibly_while_the_ca_is_down_and_recovers(short_lived):
    host, name = "app-server", "app-server-client"
    wait_until_due(host, name)
    files = f"{SSL}/{name}.crt {SSL}/{name}.key"
    before = sh(host, f"sha256sum {files}")
    sh("etcd-k8s-1", "systemctl stop step-ca")
    try:
        assert start(host, f"step-renew-{name}") != 0
        assert sh(host, f"systemctl is-failed step-renew-{name}.service", check=False).strip() == (
            "failed"
        )
        assert sh(host, f"sha256sum {files}") == before
    finally:
        sh("etcd-k8s-1", "systemctl start step-ca && sleep 1")
    assert start(host, f"step-renew-{name}") == 0
    assert sh(host, f"sha256sum {files}") != before


def test_renew_now_entry_point(short_lived):
    _, inventory = short_lived
    host, name = "etcd-k8s-2", "etcd-k8s-2-client"
    limit = ("--limit", f"@docker/{tb.container_name(host)}")
    serial = read_cert(host, f"{SSL}/{name}.crt").serial_number
    forced = deploy(inventory, *limit, "--data", "renew_now_force=true", deploy_file="renew_now.py")
    assert forced.rc == 0, forced.output[-3000:]
    renewed = read_cert(host, f"{SSL}/{name}.crt").serial_number
    assert renewed != serial
    assert not sh(host, f"ls {RENEW_OVERRIDE} 2>/dev/null || true").strip()
    # Without force, a certificate that was just renewed is not due: nothing changes.
    run = deploy(inventory, *limit, deploy_file="renew_now.py")
    assert run.rc == 0, run.output[-3000:]
    assert read_cert(host, f"{SSL}/{name}.crt").serial_number == renewed


def test_units_follow_the_settings_and_stale_units_are_removed(short_lived):
    _, _ = short_lived
    host = "etcd-k8s-2"
    stale = "/etc/systemd/system/step-renew-gone-peer"
    sh(
        host,
        f"printf '[Service]\\nType=oneshot\\nExecStart=/bin/true\\n' > {stale}.service; "
        f"printf '[Timer]\\nOnCalendar=daily\\n[Install]\\nWantedBy=timers.target\\n' "
        f"> {stale}.timer; systemctl daemon-reload; "
        "systemctl enable --now step-renew-gone-peer.timer; "
        # A stopped timer whose unit changes: enabling it must load the new unit.
        f"systemctl stop step-renew-{host}-peer.timer",
    )
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_calendar.py",
        data={**SHORT, "renew_on_calendar": "*-*-* 04:30:00"},
        host_data={"etcd-k8s-3": {"renew_mode": "rekey"}},
    )
    run = deploy(inventory, "--limit", f"@docker/{tb.container_name(host)}")
    assert run.rc == 0, run.output[-3000:]
    assert sh(host, f"ls {stale}.service {stale}.timer 2>/dev/null || true").strip() == ""
    assert "step-renew-gone" not in sh(host, "systemctl list-timers --all --no-pager")
    for kind in ("peer", "server", "client"):
        unit = f"step-renew-{host}-{kind}.timer"
        assert "OnCalendar=*-*-* 04:30:00" in sh(host, f"cat /etc/systemd/system/{unit}")
        calendar = sh(host, f"systemctl show -p TimersCalendar --value {unit}")
        assert "04:30:00" in calendar, calendar
        assert sh(host, f"systemctl is-active {unit}").strip() == "active"
    again = deploy(inventory, "--limit", f"@docker/{tb.container_name(host)}")
    assert again.rc == 0, again.output[-3000:]
    # With 10-minute certificates the deploy may re-issue ones past the threshold by
    # now; the renewal units themselves must not change again.
    changed = again.changed_operations()
    assert not [op for op in changed if "Renewal" in op or "daemon-reload" in op], changed


# systemd expands `%` specifiers and `$` variables in unit files, and parses quotes and
# backslashes: the command must reach the shell exactly as written in the settings.
POST = "printf '%s|%s' \"$0\" '100%n $HOME ${HOME} \\\\ \"q\" ünï' > /etc/etcd/ssl/.post-check"


def test_renew_post_command_arrives_unchanged(short_lived):
    bed, _ = short_lived
    host = "app-server"
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_post.py", data={**SHORT, "renew_post_command": POST}
    )
    run = deploy(inventory, "--limit", f"@docker/{tb.container_name(host)}")
    assert run.rc == 0, run.output[-3000:]
    rc, out = start_renewal(host, "app-server-client")
    assert rc == 0, out
    assert sh(host, "cat /etc/etcd/ssl/.post-check") == '/bin/sh|100%n $HOME ${HOME} \\\\ "q" ünï'
    sh(host, "rm /etc/etcd/ssl/.post-check")
    run = deploy(tb.write_inventory(tb.STATE_DIR / "inventory_short.py", data=SHORT))
    assert run.rc == 0, run.output[-3000:]
