"""The deploy run the way production hosts are reached: SSH as an ordinary user
(`deployer`) that becomes root with sudo, through the bed's sudo inventory, for every
entry point. Results are read back from the containers as root (docker exec).
"""

from __future__ import annotations

import re

import pytest

from tests import testbed as tb

from .conftest import ALL_HOSTS, ETCD_HOSTS, SSL, deploy, etcdctl, https, read_cert, sh

pytestmark = pytest.mark.e2e

NEW = "etcd-k8s-4"
PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


@pytest.fixture(scope="module")
def bed(testbed):
    return tb.up(fresh=True)


def sudo(entry: str, *args: str, inventory=None):
    """An entry point through the sudo inventory, with pyinfra's --sudo."""
    return deploy(inventory or tb.bed().inventory_sudo, "--sudo", *args, deploy_file=entry)


def healthy(members=ETCD_HOSTS) -> None:
    endpoints = ",".join(https(tb.bed().ip(h)) for h in members)
    rc, out = etcdctl("app-server", "app-server-client", "endpoint", "health", endpoints=endpoints)
    assert rc == 0 and out.count("is healthy") == len(members), out


def test_without_root_or_sudo_the_deploy_stops_with_one_clear_error(bed):
    run = deploy(bed.inventory_sudo)
    assert run.rc != 0
    assert "commands run as user deployer, not root; run pyinfra with --sudo" in run.output
    assert "Traceback" not in run.output
    for host in ALL_HOSTS:
        assert sh(host, "ls /opt/bin /etc/step-ca /etc/etcd/ssl 2>/dev/null || true").strip() == ""


def test_a_fresh_deploy_through_sudo(bed):
    run = sudo("deploy.py")
    assert run.rc == 0, run.output[-4000:]
    healthy()
    for host in ETCD_HOSTS:
        for kind in ("peer", "server", "client"):
            crt = f"{SSL}/{host}-{kind}.crt"
            assert sh(host, f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
            assert sh(host, f"stat -c '%U %a' {SSL}/{host}-{kind}.key").split() == ["etcd", "400"]


def test_nothing_private_reached_the_login_users_files(bed):
    """Tokens and the CA's material travel on stdin: nothing lands where deployer (or
    anyone) can read it: its home, /tmp, /var/tmp."""
    for host in ALL_HOSTS:
        found = sh(
            host,
            "grep -rlsIE -e '-----BEGIN [A-Z ]*PRIVATE KEY-----' -e 'eyJ[A-Za-z0-9_-]+\\.' "
            f"/home/{tb.SUDO_USER} /tmp /var/tmp || true",
        )
        assert found.strip() == "", f"{host}: {found}"


def test_a_second_run_changes_nothing(bed):
    run = sudo("deploy.py")
    assert run.rc == 0 and run.changed == 0, run.changed_operations()


def test_dry_run_shows_what_would_change_and_changes_nothing(bed):
    sh("app-server", f"rm {SSL}/app-server-client.crt")
    pyinfra = str(tb.REPO_ROOT / ".venv" / "bin" / "pyinfra")
    dry = tb.run(  # without -y: with it pyinfra skips showing the changes
        [pyinfra, "--sudo", "--dry", str(bed.inventory_sudo), "deploy.py"],
        cwd=tb.REPO_ROOT,
        check=False,
    )
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    assert "Detected changes" in output
    # Hosts that share an operation share its row: app-server must be on it.
    assert re.search(r"Issue certificates \| Issue or repair certificates.*app-server", output)
    assert sh("app-server", f"ls {SSL}/app-server-client.crt 2>/dev/null || true").strip() == ""
    run = sudo("deploy.py")
    assert run.rc == 0, run.output[-3000:]
    assert read_cert("app-server", f"{SSL}/app-server-client.crt")


def test_run_from_another_directory(bed, tmp_path):
    """From elsewhere pyinfra reads group_data/ and templates/ from the wrong place: the
    deploy says how to run it; with --chdir it runs."""
    pyinfra = str(tb.REPO_ROOT / ".venv" / "bin" / "pyinfra")
    inventory, entry = str(bed.inventory_sudo), str(tb.REPO_ROOT / "deploy.py")
    run = tb.run([pyinfra, "-y", "--sudo", inventory, entry], cwd=tmp_path, check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in output
    assert f"run pyinfra from the project directory {tb.REPO_ROOT}" in output
    assert f"--chdir {tb.REPO_ROOT}" in output
    run = tb.run(
        [pyinfra, "-y", "--sudo", "--chdir", str(tb.REPO_ROOT), inventory, "deploy.py"],
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]


def test_sudo_set_in_host_data_instead_of_the_command_line(bed):
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_sudo_data.py", "sudo", data={"_sudo": True}
    )
    run = deploy(inventory)
    assert run.rc == 0 and run.changed == 0, run.output[-3000:]


def test_sudo_that_asks_for_a_password(bed):
    """A login user whose sudo asks for its password: pyinfra's _sudo_password, used by
    the deploy's own commands on other hosts too (a status report reads every host)."""
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_sudo_password.py",
        "sudo",
        data={
            "ssh_user": tb.SUDO_PASSWORD_USER,
            "_sudo": True,
            "_sudo_password": tb.SUDO_PASSWORD,
        },
    )
    run = deploy(inventory)
    assert run.rc == 0 and run.changed == 0, run.output[-3000:]
    run = deploy(inventory, "--limit", "app-server", deploy_file="revoke.py")
    assert run.rc == 0, run.output[-3000:]
    assert tb.SUDO_PASSWORD not in run.output


def test_a_node_added_with_limit(bed):
    tb.add(NEW, tb.GROUP_ETCD)
    run = sudo("deploy.py", "--limit", NEW)
    assert run.rc == 0, run.output[-4000:]
    healthy((*ETCD_HOSTS, NEW))


def test_renew_now_audit_and_status(bed):
    before = read_cert("app-server", f"{SSL}/app-server-client.crt").serial_number
    run = sudo("renew_now.py", "--limit", "app-server", "--data", "renew_now_force=true")
    assert run.rc == 0, run.output[-4000:]
    assert read_cert("app-server", f"{SSL}/app-server-client.crt").serial_number != before
    audit = sudo("audit.py")
    assert audit.rc == 0, audit.output[-4000:]
    status = sudo("status.py")
    assert status.rc == 0 and "app-server-client" in status.output, status.output[-3000:]


def test_revoke_and_remove_node(bed):
    old = read_cert("app-server", f"{SSL}/app-server-client.crt").serial_number
    run = sudo("revoke.py", "--limit", "app-server")
    assert run.rc == 0, run.output[-4000:]
    assert read_cert("app-server", f"{SSL}/app-server-client.crt").serial_number != old
    run = sudo("remove_node.py", "--limit", NEW)
    assert run.rc == 0, run.output[-4000:]
    healthy()
    tb.remove(NEW)
    run = sudo("deploy.py")
    assert run.rc == 0 and run.changed == 0, run.changed_operations()


def test_backup_and_restore(bed, tmp_path):
    from tests.agekeys import generate

    identity, recipient = generate()
    key = tmp_path / "identity.txt"
    key.write_text(identity + "\n")
    key.chmod(0o600)
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_sudo_backup.py",
        "sudo",
        data={"backup_recipients": [recipient], "backup_dir": str(tmp_path / "backups")},
    )
    run = sudo("backup.py", inventory=inventory)
    assert run.rc == 0, run.output[-4000:]
    (backup,) = (tmp_path / "backups").iterdir()
    run = sudo(
        "restore.py",
        "--data",
        f"restore_from={backup}",
        "--data",
        f"restore_identity_file={key}",
        inventory=inventory,
    )
    assert run.rc == 0, run.output[-4000:]
    assert "CA restored" in run.output
    run = sudo("deploy.py", inventory=inventory)
    assert run.rc == 0, run.output[-4000:]
    healthy()
