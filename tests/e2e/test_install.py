"""Install sources of step/step-ca: controller files (the default on the test bed), a
mirror over HTTP, and refusal of a tarball whose sha256 does not match."""

from __future__ import annotations

import pytest

from tests import testbed as tb

from .conftest import SSL, deploy, sh

pytestmark = pytest.mark.e2e

HOST = "app-server"
FAKE = "#!/bin/sh\necho 'Smallstep CLI/0.0.1 (linux/amd64)'\n"


@pytest.fixture(scope="module")
def bed(testbed):
    bed = tb.up()
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-3000:]
    return bed


def limited(inventory, *args: str):
    return deploy(inventory, "--limit", f"@docker/{tb.container_name(HOST)}", *args)


def put_fake_step() -> str:
    sh(HOST, f"printf %s {FAKE!r} > /opt/bin/step && chmod 755 /opt/bin/step")
    return sh(HOST, "sha256sum /opt/bin/step")


def test_mirror_source_downloads_and_verifies(bed):
    version = bed.versions["step"]
    inventory = tb.write_inventory(
        tb.STATE_DIR / "inventory_mirror.py",
        data=tb.mirror_data(),  # a plain-http mirror needs pins
    )
    sh(HOST, "rm -f /opt/bin/step /var/cache/etcd-pki/step_* && chmod 755 /var/cache/etcd-pki")
    run = limited(inventory)
    assert run.rc == 0, run.output[-3000:]
    assert f"Download step_linux_{version}_amd64.tar.gz, install step {version}" in run.output
    # Directory, download and install are one command (the download cache is root's alone).
    assert "Directories" not in run.output, run.output[-3000:]
    assert sh(HOST, "stat -c %a /var/cache/etcd-pki").strip() == "700"
    assert sh(HOST, "ls -A /var/cache/etcd-pki").split() == [f"step_linux_{version}_amd64.tar.gz"]
    assert f"Smallstep CLI/{version} " in sh(HOST, "/opt/bin/step version")
    # Installed: a second run downloads nothing.
    again = limited(inventory)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()


def test_controller_source_sets_only_the_directory_that_is_wrong(bed):
    version = bed.versions["step"]
    sh(HOST, "rm -f /opt/bin/step && chmod 755 /var/cache/etcd-pki")
    run = limited(bed.inventory_docker)
    assert run.rc == 0, run.output[-3000:]
    # The upload needs the directory before the install command, so it is its own step.
    assert "Directories /var/cache/etcd-pki" in run.output, run.output[-3000:]
    assert "Directories /opt/bin" not in run.output
    assert f"Upload step_linux_{version}_amd64.tar.gz from the controller" in run.output
    assert sh(HOST, "stat -c %a /var/cache/etcd-pki").strip() == "700"
    assert f"Smallstep CLI/{version} " in sh(HOST, "/opt/bin/step version")


@pytest.mark.parametrize("source", ["mirror", "controller"])
def test_wrong_pinned_checksum_is_refused_and_the_old_binary_stays(bed, source):
    data = {"install_source": source, "step_sha256": {"amd64": "0" * 64}}
    if source == "mirror":
        data = {**tb.mirror_data(), **data}
    inventory = tb.write_inventory(tb.STATE_DIR / f"inventory_badsum_{source}.py", data=data)
    sh(HOST, "rm -f /var/cache/etcd-pki/step_*")
    before = put_fake_step()
    run = limited(inventory)
    assert run.rc != 0
    assert "0" * 64 in run.output and "sha256" in run.output.lower(), run.output[-3000:]
    assert sh(HOST, "sha256sum /opt/bin/step") == before
    # The right tarball from the same source then installs.
    good = {k: v for k, v in data.items() if k != "step_sha256"}
    if source == "mirror":  # a plain-http mirror needs the (right) pin
        good["step_sha256"] = tb.mirror_data()["step_sha256"]
    fixed = limited(tb.write_inventory(tb.STATE_DIR / "inventory_fixed.py", data=good))
    assert fixed.rc == 0, fixed.output[-3000:]
    assert f"Smallstep CLI/{bed.versions['step']} " in sh(HOST, "/opt/bin/step version")


def make_new_host() -> None:
    """HOST as a new machine would be: no `step`, no download, none of its certificates."""
    sh(
        HOST,
        f"rm -f /opt/bin/step /opt/bin/.step.version /var/cache/etcd-pki/step_* {SSL}/{HOST}-*",
    )


def mirror_inventory(**data):
    data = {**tb.mirror_data(), **data}
    name = "inventory_new_" + "_".join(sorted(data)) + ".py"
    return tb.write_inventory(tb.STATE_DIR / name, data=data)


def test_a_new_host_gets_step_in_the_command_of_its_first_certificates(bed):
    version = bed.versions["step"]
    make_new_host()
    run = limited(mirror_inventory())
    assert run.rc == 0, run.output[-3000:]
    # No install operation of its own: it is the first part of the new host's command
    # (which trusts the CA too on a host that does not yet).
    assert f"New host: install step {version}, issue {HOST}-client" in run.output, run.output[
        -3000:
    ]
    assert "Download step_linux" not in run.output
    assert f"Smallstep CLI/{version} " in sh(HOST, "/opt/bin/step version")
    assert sh(HOST, "stat -c %a /var/cache/etcd-pki").strip() == "700"
    crt = f"{SSL}/{HOST}-client.crt"
    out = sh(HOST, f"openssl verify -CAfile {SSL}/root_ca.crt -untrusted {crt} {crt}")
    assert out.strip().endswith(": OK"), out
    again = limited(mirror_inventory())
    assert again.rc == 0 and again.changed == 0, again.changed_operations()


def test_a_new_host_whose_step_fails_its_checksum_gets_no_certificate_and_a_rerun_repairs(bed):
    make_new_host()
    run = limited(mirror_inventory(step_sha256={"amd64": "0" * 64}))
    assert run.rc != 0
    assert "0" * 64 in run.output and "sha256 mismatch" in run.output, run.output[-3000:]
    # Stopped before anything was issued: no binary, no key, no certificate.
    assert (
        sh(
            HOST, f"ls /opt/bin/step {SSL}/{HOST}-client.key {SSL}/{HOST}-client.crt 2>&1; true"
        ).count("No such file")
        == 3
    )
    fixed = limited(mirror_inventory())
    assert fixed.rc == 0, fixed.output[-3000:]
    assert sh(HOST, f"stat -c '%U %a' {SSL}/{HOST}-client.key").split() == ["root", "400"]


def test_a_replaced_step_ca_binary_is_put_into_service(bed):
    """step-ca reporting another version is reinstalled at the pinned one and restarted,
    so the running process is the new binary (the CA answers through it)."""
    ca = "etcd-k8s-1"
    wrapper = (
        '#!/bin/sh\n[ "$1" = version ] && { echo "Smallstep CA/0.0.1 (linux/amd64)"; exit 0; }\n'
        'exec /opt/bin/step-ca.real "$@"\n'
    )
    sh(ca, "cp /opt/bin/step-ca /opt/bin/step-ca.real")
    # Renamed over the running binary (writing into it would be refused: text file busy).
    sh(
        ca,
        f"printf '%b' {wrapper!r} > /opt/bin/.step-ca.wrap && chmod 755 /opt/bin/.step-ca.wrap "
        "&& mv -f /opt/bin/.step-ca.wrap /opt/bin/step-ca",
    )
    assert "Smallstep CA/0.0.1" in sh(ca, "/opt/bin/step-ca version")
    sh(ca, "systemctl restart step-ca")
    old_pid = sh(ca, "systemctl show -p MainPID --value step-ca").strip()
    # The wrapper exec's the old binary: the running process shows it as argv[0]. The
    # process is "(step-ca)" until systemd exec's, then "/bin/sh" running the wrapper
    # until that exec's: poll (5 s at most) for the expected name, then print the last.
    argv0 = (
        "for i in $(seq 1 50); do a=$(tr '\\0' '\\n' < /proc/{pid}/cmdline | head -n1); "
        '[ "$a" = {want} ] && break; sleep 0.1; done; echo "$a"'
    )
    real = "/opt/bin/step-ca.real"
    assert sh(ca, argv0.format(pid=old_pid, want=real)).strip() == real
    run = deploy(bed.inventory_docker)
    assert run.rc == 0, run.output[-3000:]
    assert "Restart step-ca (binary 0.0.1 -> " in run.output
    pid = sh(ca, "systemctl show -p MainPID --value step-ca").strip()
    assert pid not in ("0", old_pid)
    assert sh(ca, argv0.format(pid=pid, want="/opt/bin/step-ca")).strip() == "/opt/bin/step-ca"
    assert bed.versions["step-ca"] in sh(ca, "/opt/bin/step-ca version")
    sh(ca, "rm -f /opt/bin/step-ca.real")
    again = deploy(bed.inventory_docker)
    assert again.rc == 0 and again.changed == 0, again.changed_operations()
