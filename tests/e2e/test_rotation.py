"""rotate_ca.py on a fresh bed with a standby and encrypted backups: bad input refused
before anything changes, the intermediate and then the root rotated while a client on
app-server writes and reads through every member, the root rotation killed at several
points and resumed, and what must hold afterwards.

Everything is read back from the containers (openssl, etcdctl, systemctl, sha256sum),
not through the deploy's code. The client load's longest gap and failure count are
printed (-s shows them), never asserted as timings: no acknowledged write may be lost.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import testbed as tb
from tests.agekeys import generate, write_identity

from .conftest import (
    ALL_HOSTS,
    ETCD_HOSTS,
    SSL,
    Run,
    deploy,
    force_renew,
    openssl_fingerprint,
    sh,
)

pytestmark = pytest.mark.e2e

ACTIVE, STANDBY = "etcd-k8s-1", "etcd-k8s-2"
CA = "/etc/step-ca"
STATE = f"{CA}/rotation/state"


@dataclass
class Rot:
    bed: tb.Bed
    inv: Path
    identity_file: Path
    backup_dir: Path
    data: dict  # the inventory's data, for its SSH twin
    roots: dict[str, str] = field(default_factory=dict)  # "old"/"new" -> PEM
    intermediates: dict[str, str] = field(default_factory=dict)
    backups: dict[str, Path] = field(default_factory=dict)
    # app-server's client pair from before the root rotation, kept here (on the host,
    # the audit run after each kill would rightly call it a stray key): "crt", "key"
    old_client: dict[str, str] = field(default_factory=dict)


def rotate(rot: Rot, kind: str, *extra: str, inv: Path | None = None) -> Run:
    args = ("--data", f"rotate={kind}", "--data", f"rotate_identity_file={rot.identity_file}")
    return deploy(inv or rot.inv, *args, *extra, deploy_file="rotate_ca.py")


def rotate_killed(rot: Rot, kind: str, *patterns: str, delay: float = 0.0) -> str:
    """rotate_ca.py, SIGKILLed (with everything it started on the controller) ``delay``
    seconds after lines matching each of ``patterns`` in turn appear; the output."""
    pyinfra = tb.REPO_ROOT / ".venv" / "bin" / "pyinfra"
    cmd = [str(pyinfra), "-y", str(rot.inv), "rotate_ca.py", "--data", f"rotate={kind}",
           "--data", f"rotate_identity_file={rot.identity_file}"]  # fmt: skip
    env = {**os.environ, **tb.AWS_ISOLATION, "PYTHONUNBUFFERED": "1"}  # lines as they come
    proc = subprocess.Popen(
        cmd, cwd=tb.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    waiting = list(patterns)
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if waiting and re.search(waiting[0], line):
            waiting.pop(0)
        if not waiting:
            time.sleep(delay)
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    output = "".join(lines)
    assert not waiting, f"never reached {waiting[0]!r}:\n{output[-3000:]}"
    return output


def state() -> str:
    return sh(ACTIVE, f"cat {STATE} 2>/dev/null || true").strip()


def pem_of(host: str, path: str) -> str:
    return sh(host, f"cat {path}")


def first_body_line(pem: str) -> str:
    """A line of the certificate's base64 that grep can look for in any bundle."""
    return pem.strip().splitlines()[5]


def verifies(host: str, ca_pem: str, untrusted_pem: str, leaf: str) -> bool:
    rc, _ = tb.exec_in(
        host,
        f"d=$(mktemp -d); printf '%s' '{ca_pem}' > $d/ca; printf '%s' '{untrusted_pem}' "
        f"> $d/u; openssl verify -CAfile $d/ca -untrusted $d/u {leaf}; rc=$?; rm -rf $d; "
        "exit $rc",
    )
    return rc == 0


def leaves(host: str) -> list[str]:
    """The host's own certificates (not the root or its links)."""
    found = sh(
        host, f"ls {SSL}/*-peer.crt {SSL}/*-server.crt {SSL}/*-client.crt 2>/dev/null || true"
    ).split()
    assert found, f"{host} has no certificates"
    return found


def etcd_started(host: str) -> str:
    return sh(host, "systemctl show -p ActiveEnterTimestampMonotonic --value etcd").strip()


def audit_clean(rot: Rot) -> None:
    """The audit passes, and names the CA's current root and intermediate."""
    run = deploy(rot.inv, deploy_file="audit.py")
    assert run.rc == 0 and "audit passed: 0 violation(s)" in run.output, run.output[-3000:]
    for kind in ("root", "intermediate"):
        fp = openssl_fingerprint(ACTIVE, f"{CA}/certs/{kind}_ca.crt")
        assert re.search(rf"  {kind}: .*, valid until \d{{4}}-.*fingerprint {fp[:16]}", run.output)


# --- client load -------------------------------------------------------------------


def start_load(rot: Rot) -> None:
    tb.start_load([rot.bed.ip(h) for h in ETCD_HOSTS])


def stop_load(rot: Rot, label: str) -> None:
    """Stop the client load: no acknowledged write may be lost; print what it saw."""
    result = tb.stop_load(rot.bed.ip(ACTIVE))
    print(f"\n[rotation load] {label}: {result.line()}")
    assert result.acked > 10, f"{label}: the client load barely ran"
    assert not result.lost, f"{label}: acknowledged writes lost: {result.lost[:20]}"


# --- the bed -------------------------------------------------------------------------


def inventory(flavour: str, data: dict) -> Path:
    return tb.write_inventory(
        tb.STATE_DIR / f"inventory_rotation_{flavour}.py",
        flavour,
        nodes=tb.running_nodes(),
        data=data,
        groups={"etcd_cert_managers": [ACTIVE, STANDBY]},
    )


@pytest.fixture(scope="module")
def rot(testbed):
    """A fresh bed: etcd-k8s-1 active, etcd-k8s-2 its standby, backups encrypted to an
    age recipient (so the root key has its own password), deployed once."""
    bed = tb.up(fresh=True)
    identity, recipient = generate()
    identity_file = write_identity(tb.STATE_DIR / "rotation-identity.txt", identity)
    backup_dir = tb.STATE_DIR / "rotation-backups"
    shutil.rmtree(backup_dir, ignore_errors=True)
    data = {
        "active_cert_manager": ACTIVE,
        "backup_recipients": [recipient],
        "backup_dir": str(backup_dir),
        "install_root_in_trust_store": True,  # the system store moves too
    }
    inv = inventory("docker", data)
    run = deploy(inv)
    assert run.rc == 0, run.output[-4000:]
    state = Rot(bed, inv, identity_file, backup_dir, data)
    state.roots["old"] = pem_of(ACTIVE, f"{CA}/certs/root_ca.crt")
    state.intermediates["old"] = pem_of(ACTIVE, f"{CA}/certs/intermediate_ca.crt")
    yield state
    identity_file.unlink(missing_ok=True)


# --- bad input -------------------------------------------------------------------------


def refused(run: Run, *texts: str) -> None:
    assert run.rc != 0, run.output[-3000:]
    for text in texts:
        assert text in run.output, f"{text!r} not in:\n{run.output[-3000:]}"
    assert "Traceback" not in run.output, run.output[-3000:]
    assert "Beginning operation run" not in run.output, run.output[-3000:]
    assert state() == "", "a refused rotation left a state file"


def test_bad_input_is_refused_before_anything_changes(rot):
    ca_files = sh(ACTIVE, f"sha256sum {CA}/certs/* {CA}/secrets/*")
    refused(
        deploy(rot.inv, "--data", "rotate=everything", deploy_file="rotate_ca.py"),
        "--data rotate='everything'",
        "rotate=intermediate",
        "rotate=root",
    )
    refused(deploy(rot.inv, deploy_file="rotate_ca.py"), "--data rotate=None")
    limited = rotate(rot, "root", "--limit", f"@docker/{tb.container_name('etcd-k8s-3')}")
    refused(limited, "needs every host", ACTIVE)
    sh("etcd-k8s-3", "systemctl stop etcd")
    try:
        refused(rotate(rot, "root"), "etcd on etcd-k8s-3 is not healthy", "nothing was changed")
    finally:
        sh("etcd-k8s-3", "systemctl start etcd")
    # A standby that cannot be reached (its sshd stopped; the docker connector would
    # start a stopped container instead of failing).
    ssh_inv = inventory("ssh", rot.data)
    sh(STANDBY, "systemctl stop ssh.socket ssh.service 2>/dev/null; true")
    try:
        refused(rotate(rot, "intermediate", inv=ssh_inv), "needs every host", STANDBY)
    finally:
        sh(STANDBY, "systemctl start ssh.socket 2>/dev/null || systemctl start ssh.service")
    assert sh(ACTIVE, f"sha256sum {CA}/certs/* {CA}/secrets/*") == ca_files


def test_intermediate_rotation_needs_the_root_password_identity(rot):
    run = deploy(rot.inv, "--data", "rotate=intermediate", deploy_file="rotate_ca.py")
    assert run.rc != 0 and "rotate_identity_file" in run.output, run.output[-3000:]
    assert "Traceback" not in run.output
    assert pem_of(ACTIVE, f"{CA}/certs/intermediate_ca.crt") == rot.intermediates["old"]


# --- the intermediate ----------------------------------------------------------------


def test_intermediate_rotation_under_load(rot):
    started = {h: etcd_started(h) for h in ETCD_HOSTS}
    start_load(rot)
    # killed once the new intermediate is in place, while certificates are re-issued
    rotate_killed(rot, "intermediate", r"Starting operation: Issue certificates", delay=1)
    assert state().startswith("intermediate switched "), state()
    audit_clean(rot)  # some certificates and CRLs from the old intermediate, some new
    run = rotate(rot, "intermediate")
    stop_load(rot, "intermediate rotation, killed once and resumed")
    assert run.rc == 0, run.output[-4000:]
    new = pem_of(ACTIVE, f"{CA}/certs/intermediate_ca.crt")
    assert new != rot.intermediates["old"]
    rot.intermediates["new"] = new
    assert pem_of(ACTIVE, f"{CA}/certs/root_ca.crt") == rot.roots["old"]
    assert pem_of(STANDBY, f"{CA}/certs/intermediate_ca.crt") == new
    for host in ALL_HOSTS:
        for leaf in leaves(host):
            assert verifies(host, rot.roots["old"], new, leaf), f"{host}:{leaf}"
            assert not verifies(host, rot.roots["old"], rot.intermediates["old"], leaf)
    # etcd reads its certificates on every handshake: no member was restarted, and a
    # member serves the new chain.
    assert {h: etcd_started(h) for h in ETCD_HOSTS} == started
    served = sh(
        "app-server",
        f"openssl s_client -connect {rot.bed.ip('etcd-k8s-3')}:2379 "
        f"-cert {SSL}/app-server-client.crt -key {SSL}/app-server-client.key "
        "-CAfile /etc/etcd/ssl/root_ca.crt -showcerts </dev/null 2>/dev/null; true",
    )
    assert first_body_line(new) in served
    assert state().startswith("intermediate done ")


def rerun_changes_nothing(rot: Rot, kind: str) -> None:
    """A finished rotation run again, then deploy.py: no change; the audit passes."""
    run = rotate(rot, kind)
    assert run.rc == 0 and "is done: nothing to do" in run.output, run.output[-3000:]
    assert run.changed == 0, run.changed_operations()
    run = deploy(rot.inv)
    assert run.rc == 0 and run.changed == 0, run.changed_operations()
    audit_clean(rot)


def test_intermediate_rotation_rerun_changes_nothing(rot):
    rerun_changes_nothing(rot, "intermediate")


# --- the root ------------------------------------------------------------------------


def test_root_rotation_killed_at_several_points_and_resumed_under_load(rot):
    """Killed at three points, the audit passing after each, then finished."""
    run = deploy(rot.inv, deploy_file="backup.py")
    assert run.rc == 0, run.output[-3000:]
    (rot.backups["before"],) = rot.backup_dir.glob("*.tar.age")
    rot.old_client = {
        ext: sh("app-server", f"cat {SSL}/app-server-client.{ext}") for ext in ("crt", "key")
    }
    start_load(rot)
    # 1. mid rolling restart, before "trusted" is recorded
    # (one member restarted, the others not yet)
    rotate_killed(rot, "root", r"Starting serial operation: etcd members restarted", r"\] Success")
    assert state().startswith("root prepared "), state()
    audit_clean(rot)  # hosts trust the old root or both; etcd runs on the old one
    # deploy.py refuses while the rotation is unfinished
    run = deploy(rot.inv)
    assert run.rc != 0 and "a root rotation is in progress" in run.output, run.output[-3000:]
    assert "Traceback" not in run.output
    # 2. while step-ca switches to the new root
    rotate_killed(rot, "root", r"Starting operation: Switch to the new root", delay=1)
    audit_clean(rot)
    # 3. while hosts drop the old root (certificates already from the new one)
    rotate_killed(rot, "root", r"Starting operation: Trust the roots", delay=1)
    assert re.match(r"root (trusted|switched) ", state()), state()
    audit_clean(rot)  # some hosts trust the new root only, others both
    # 4. to the end
    run = rotate(rot, "root")
    stop_load(rot, "root rotation, killed three times and resumed")
    assert run.rc == 0, run.output[-4000:]
    assert state().startswith("root done ")


def test_after_the_root_rotation_nothing_trusts_the_old_root(rot):
    new_root = pem_of(ACTIVE, f"{CA}/certs/root_ca.crt")
    new_int = pem_of(ACTIVE, f"{CA}/certs/intermediate_ca.crt")
    assert new_root != rot.roots["old"]
    rot.roots["new"] = new_root
    fp = openssl_fingerprint(ACTIVE, f"{CA}/certs/root_ca.crt")
    assert state() == f"root done {fp}"
    assert pem_of(STANDBY, f"{CA}/certs/root_ca.crt") == new_root
    assert pem_of(STANDBY, f"{CA}/certs/intermediate_ca.crt") == new_int
    old_line = first_body_line(rot.roots["old"])
    for host in ALL_HOSTS:
        bundle = pem_of(host, f"{SSL}/root_ca.crt")
        assert bundle.count("BEGIN CERTIFICATE") == 1 and first_body_line(new_root) in bundle
        # no trust bundle, step config or system store on the host holds the old root
        # (the CA directory keeps it, public, in retired/)
        rc, out = tb.exec_in(
            host,
            f"grep -rlF '{old_line}' /etc /usr/local/share "
            f"--exclude-dir={CA.rsplit('/', 1)[1]} 2>/dev/null",
        )
        assert rc == 1, f"{host} still holds the old root in: {out}"
        assert fp in sh(host, "cat /etc/step/config/defaults.json")
        for leaf in leaves(host):
            assert verifies(host, new_root, new_int, leaf), f"{host}:{leaf}"
            assert not verifies(host, rot.roots["old"], rot.intermediates["new"], leaf)
    # A client certificate from before the rotation is refused by every member.
    old = "/root/pre-rotation-client"  # docker cp cannot write to /run (a tmpfs)
    sh("app-server", f"install -d -m 700 {old}")
    for ext, text in rot.old_client.items():
        with tempfile.NamedTemporaryFile("w", suffix=f".{ext}") as local:  # 0600
            local.write(text)
            local.flush()
            where = f"{tb.container_name('app-server')}:{old}/c.{ext}"
            subprocess.run(["docker", "cp", local.name, where], check=True)
    try:
        for member in ETCD_HOSTS:
            rc, out = tb.exec_in(
                "app-server",
                f"etcdctl --endpoints=https://{rot.bed.ip(member)}:2379 "
                f"--cacert {SSL}/root_ca.crt --cert {old}/c.crt --key {old}/c.key "
                "--dial-timeout=3s --command-timeout=5s get x 2>&1",
            )
            assert rc != 0, f"{member} accepted a client certificate from the old root: {out}"
    finally:
        sh("app-server", f"rm -rf {old}")
    health = (
        f"etcdctl --endpoints=https://127.0.0.1:2379 --cacert {SSL}/root_ca.crt "
        f"--cert {SSL}/etcd-k8s-3-client.crt --key {SSL}/etcd-k8s-3-client.key "
        "endpoint health --cluster 2>&1"
    )
    rc, out = tb.exec_in("etcd-k8s-3", health)
    assert rc == 0 and out.count("is healthy") == 3, out


def test_root_rotation_rerun_deploy_and_audit_change_nothing(rot):
    rerun_changes_nothing(rot, "root")


def test_renewal_after_the_rotation_comes_from_the_new_intermediate(rot):
    name = "etcd-k8s-3-peer"
    before, after = force_renew("etcd-k8s-3", name)
    assert after != before
    new_int = pem_of(ACTIVE, f"{CA}/certs/intermediate_ca.crt")
    assert verifies("etcd-k8s-3", rot.roots["new"], new_int, f"{SSL}/{name}.crt")


def test_a_host_joining_after_the_rotation_gets_the_new_root(rot):
    sh("app-server", f"rm -rf {SSL} /etc/step")
    run = deploy(rot.inv, "--limit", f"@docker/{tb.container_name('app-server')}")
    assert run.rc == 0, run.output[-3000:]
    assert pem_of("app-server", f"{SSL}/root_ca.crt") == rot.roots["new"]
    new_int = pem_of(ACTIVE, f"{CA}/certs/intermediate_ca.crt")
    assert verifies("app-server", rot.roots["new"], new_int, f"{SSL}/app-server-client.crt")
    rc, out = tb.exec_in(
        "app-server",
        f"etcdctl --endpoints=https://{rot.bed.ip(ACTIVE)}:2379 "
        f"--cacert {SSL}/root_ca.crt --cert {SSL}/app-server-client.crt "
        f"--key {SSL}/app-server-client.key put joined yes",
    )
    assert rc == 0, out


def test_backups_after_the_rotation_restore_and_older_ones_are_refused(rot):
    for old in rot.backup_dir.glob("*"):
        if old != rot.backups["before"]:
            old.unlink()
    run = deploy(rot.inv, deploy_file="backup.py")
    assert run.rc == 0, run.output[-3000:]
    (after,) = set(rot.backup_dir.glob("*.tar.age")) - {rot.backups["before"]}
    material = sh(ACTIVE, f"sha256sum {CA}/certs/* {CA}/secrets/*")

    def restore(source: Path) -> Run:
        args = (
            "--data",
            f"restore_from={source}",
            "--data",
            f"restore_identity_file={rot.identity_file}",
        )
        return deploy(rot.inv, *args, deploy_file="restore.py")

    run = restore(rot.backups["before"])
    assert run.rc != 0 and "holds another CA" in run.output, run.output[-3000:]
    assert "before a root rotation" in run.output and "restore_force=true" in run.output
    assert "Traceback" not in run.output
    run = restore(after)
    assert run.rc == 0, run.output[-3000:]
    assert sh(ACTIVE, f"sha256sum {CA}/certs/* {CA}/secrets/*") == material
