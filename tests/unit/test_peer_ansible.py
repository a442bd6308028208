"""The peer benchmark's pure parts (bench/peers/): the Ansible playbook and inventory
generated from our plan, the callback log's counts, and the verification's reading of
openssl's output. No Docker, no Ansible."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench.peers.ansible import generate, runner
from bench.peers.ansible.runner import summarize
from bench.peers.verify import check_script, parse_report, problems_of
from etcd_pki.plan import build_plan
from tests.unit.conftest import seed_hosts

COLLECTION = "maxhoesel.smallstep"


@pytest.fixture
def plan(defaults):
    return build_plan(seed_hosts(defaults))


def docker_targets(plan):
    return {name: generate.Target("docker", f"bed-{name}") for name in plan.hosts}


def task(play: dict, name: str) -> dict:
    return next(t for t in play["tasks"] if t["name"] == name)


def module_args(t: dict, module: str) -> dict:
    return t[f"{COLLECTION}.{module}"]


def test_inventory_has_our_groups_hosts_and_certificates(plan):
    inv = generate.inventory(plan, docker_targets(plan))
    groups = inv["all"]["children"]
    assert set(groups["etcd"]["hosts"]) == {"etcd-k8s-1", "etcd-k8s-2", "etcd-k8s-3"}
    assert set(groups["etcd_clients"]["hosts"]) == {"app-server"}
    # The CA is named again in its second group, without its vars a second time.
    assert groups["etcd_cert_managers"]["hosts"] == {"etcd-k8s-1": {}}
    member = groups["etcd"]["hosts"]["etcd-k8s-2"]
    assert member["ansible_connection"] == "community.docker.docker"
    assert member["ansible_host"] == "bed-etcd-k8s-2"
    assert member["ansible_python_interpreter"] == "/usr/bin/python3"
    certs = {c["subject"]: c for c in member["etcd_pki_certs"]}
    assert set(certs) == {"etcd-k8s-2", "etcd-k8s-2-server", "etcd-k8s-2-client"}
    server = certs["etcd-k8s-2-server"]
    assert server["sans"] == list(plan.hosts["etcd-k8s-2"].cert("server").sans)
    assert {"localhost", "127.0.0.1", "10.0.1.11", "etcd-k8s-2.local"} <= set(server["sans"])
    assert server["crt"] == "/etc/etcd/ssl/etcd-k8s-2-server.crt"
    assert server["key"] == "/etc/etcd/ssl/etcd-k8s-2-server.key"
    assert server["owner"] == "etcd"
    client = groups["etcd_clients"]["hosts"]["app-server"]["etcd_pki_certs"]
    assert [c["subject"] for c in client] == ["app-server-client"]
    assert client[0]["owner"] == "root"


def test_inventory_over_ssh(plan):
    targets = {n: generate.Target("ssh", h.address, "/keys/bed") for n, h in plan.hosts.items()}
    host = generate.inventory(plan, targets)["all"]["children"]["etcd_clients"]["hosts"][
        "app-server"
    ]
    assert host["ansible_connection"] == "ssh"
    assert host["ansible_host"] == "10.0.2.50"
    assert host["ansible_user"] == "root"
    assert host["ansible_ssh_private_key_file"] == "/keys/bed"
    assert "StrictHostKeyChecking=no" in host["ansible_ssh_common_args"]


def test_inventory_refuses_a_host_without_target_and_unknown_connections(plan):
    targets = docker_targets(plan)
    del targets["etcd-k8s-3"]
    with pytest.raises(ValueError, match="etcd-k8s-3"):
        generate.inventory(plan, targets)
    targets = {n: generate.Target("winrm", n) for n in plan.hosts}
    with pytest.raises(ValueError, match="winrm"):
        generate.inventory(plan, targets)


def test_ca_play_runs_the_role_on_the_active_ca_without_downloads(plan):
    ca_play, hosts_play = generate.playbook(plan)
    s = plan.ca.settings
    assert ca_play["hosts"] == "etcd-k8s-1"
    assert hosts_play["hosts"] == "etcd:etcd_clients"
    (role,) = ca_play["roles"]
    assert role["role"] == f"{COLLECTION}.step_ca"
    v = role["vars"]
    assert v["step_cli_install"] is False
    assert v["step_ca_version"] == s.step_ca_version  # installed: the role skips it
    assert v["step_ca_address"] == f":{s.ca_port}"
    assert v["step_ca_dns"].split(",") == list(plan.ca_sans)
    assert (v["step_ca_user"], v["step_ca_path"], v["step_ca_name"]) == (
        s.ca_user,
        s.ca_dir,
        s.ca_name,
    )
    prov = module_args(
        task(ca_play, "JWK provisioner with our lifetimes and template"), "step_ca_provisioner"
    )
    assert prov["name"] == s.ca_provisioner
    assert (prov["x509_min_dur"], prov["x509_default_dur"], prov["x509_max_dur"]) == (
        s.cert_lifetime_min,
        s.cert_lifetime,
        s.cert_lifetime_max,
    )
    assert prov["x509_template"].startswith(s.ca_dir)
    # No password in the playbook itself: it comes from the vars file.
    assert "{{" in prov["password"]
    assert ca_play["vars_files"] == ["secrets.yml"]


def test_certificates_are_issued_with_a_token_minted_on_the_ca(plan):
    _, hosts_play = generate.playbook(plan)
    s = plan.ca.settings
    boot = hosts_play["roles"][0]
    assert boot["role"] == f"{COLLECTION}.step_bootstrap_host"
    assert boot["vars"]["step_bootstrap_install_cert"] is False  # as our default
    assert boot["vars"]["step_bootstrap_users"] == [{"user": "root", "steppath": s.step_dir}]
    assert boot["vars"]["step_bootstrap_ca_url"] == plan.ca_url
    tok = task(hosts_play, "one-time token per certificate, minted on the CA")
    assert tok["delegate_to"] == "etcd-k8s-1"
    assert tok["no_log"] is True
    assert "throttle" not in tok  # every host at once, as pyinfra works
    assert module_args(tok, "step_ca_token")["san"] == "{{ item.sans }}"
    cert = task(hosts_play, "certificate and key, the key made on the host")
    args = module_args(cert, "step_ca_certificate")
    assert cert["no_log"] is True  # its items hold the tokens
    assert "san" not in args  # step refuses --san with --token
    assert args["token"] == "{{ item.1.token | trim }}"
    assert args["not_after"] == s.cert_lifetime
    assert (args["kty"], args["curve"]) == ("EC", "P-256")
    assert args["verify_roots"] == f"{s.step_dir}/certs/root_ca.crt"
    key = task(hosts_play, "key owner and mode")["ansible.builtin.file"]
    assert (key["owner"], key["mode"]) == ("{{ item.owner }}", "0400")
    crt = task(hosts_play, "certificate owner and mode")["ansible.builtin.file"]
    assert (crt["owner"], crt["mode"]) == ("root", "0644")


def test_rendered_files_parse_and_hold_no_password(plan):
    text = generate.render(generate.playbook(plan))
    assert json.loads(text) == generate.playbook(plan)
    assert "secret-pw" not in text
    vault = generate.secrets("secret-pw", "other-pw")
    assert vault == {
        "etcd_pki_root_password": "secret-pw",
        "etcd_pki_provisioner_password": "other-pw",
    }
    for bad in ("", "a{{b", "x\ny", "p%q"):
        with pytest.raises(ValueError):
            generate.secrets(bad, "ok")


def test_ansible_cfg(tmp_path):
    cfg = generate.ansible_cfg(27, "/c", "/cb")
    assert "forks = 27" in cfg
    assert "pipelining = True" in cfg
    assert "collections_path = /c" in cfg
    assert "callbacks_enabled = bench_log" in cfg
    with pytest.raises(ValueError):
        generate.ansible_cfg(0, "/c", "/cb")


def result(host, task_name, action, status="ok", changed=False, ran_on=None):
    return {
        "k": "result",
        "host": host,
        "ran_on": ran_on or host,
        "task": task_name,
        "action": action,
        "status": status,
        "changed": changed,
        "item": False,
        "t": 0,
    }


def test_summarize_counts_module_runs_where_they_ran():
    records = [
        {"k": "task", "task": "Gathering Facts", "action": "gather_facts", "t": 0},
        result("a", "Gathering Facts", "gather_facts"),
        result("b", "Gathering Facts", "gather_facts"),
        {"k": "task", "task": "tok", "action": "maxhoesel.smallstep.step_ca_token", "t": 0},
        result("b", "tok", "maxhoesel.smallstep.step_ca_token", changed=True, ran_on="a"),
        result("b", "tok", "maxhoesel.smallstep.step_ca_token", changed=True, ran_on="a"),
        {"k": "task", "task": "fact", "action": "ansible.builtin.set_fact", "t": 0},
        result("a", "fact", "ansible.builtin.set_fact"),  # the controller's own work
        result("b", "skip", "ansible.builtin.command", status="skipped"),
        {"k": "stats", "hosts": {"a": {"changed": 0}, "b": {"changed": 1}}, "t": 0},
    ]
    s = summarize(records)
    assert s["tasks"] == 3
    assert s["module_runs"] == {"a": 3, "b": 1}
    assert s["changed"] == 2
    assert s["changed_by_task"] == {"tok": 2}
    assert s["recap_changed"] == 1
    assert s["failed"] == []


def test_summarize_lists_failures():
    s = summarize(
        [
            result("a", "init", "command", status="failed"),
            result("b", "x", "ping", status="unreachable"),
        ]
    )
    assert s["failed"] == ["a: init failed", "b: x unreachable"]


GOOD = {
    "verify": "ok",
    "subject": "subject=CN=etcd-k8s-2-server",
    "eku": "TLSWebServerAuthentication,TLSWebClientAuthentication",
    "keymatch": "yes",
    "keystat": "etcd:etcd 400",
    "crtstat": "root:root 644",
}


def good_report(cert):
    sans = ",".join(("IPAddress:" if n[0].isdigit() else "DNS:") + n for n in cert.sans)
    return {**GOOD, "subject": f"subject=CN={cert.subject}", "sans": sans}


def test_problems_of_a_good_certificate_are_none(plan):
    cert = plan.hosts["etcd-k8s-2"].cert("server")
    assert problems_of(cert, good_report(cert)) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("verify", "FAILED", "does not verify"),
        ("subject", "subject=CN=other", "subject"),
        ("sans", "DNS:etcd-k8s-2", "SANs"),
        ("eku", "TLSWebClientAuthentication", "extended key usage"),
        ("keymatch", "no", "no key on the host"),
        ("keystat", "root:root 600", "key 'root:root 600'"),
        ("crtstat", "root:root 600", "certificate 'root:root 600'"),
    ],
)
def test_problems_of_a_bad_certificate_name_what(plan, field, value, message):
    cert = plan.hosts["etcd-k8s-2"].cert("server")
    problems = problems_of(cert, {**good_report(cert), field: value})
    assert len(problems) == 1
    assert message in problems[0]
    assert problems[0].startswith("etcd-k8s-2 etcd-k8s-2-server")


def test_a_missing_report_is_a_problem(plan):
    assert problems_of(plan.hosts["app-server"].cert("client"), None) == [
        "app-server app-server-client: not checked (no report)"
    ]


def test_parse_report():
    out = "== a-peer\nverify ok\nsans DNS:a,IPAddress:1.2.3.4\n\n== a-client\nkeymatch no\n"
    assert parse_report(out) == {
        "a-peer": {"verify": "ok", "sans": "DNS:a,IPAddress:1.2.3.4"},
        "a-client": {"keymatch": "no"},
    }


@pytest.fixture
def keys_dir():
    """A directory removed after the test: the private keys made here must not outlive
    it (the e2e tests scan the controller's temp directories for keys)."""
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")
def test_check_script_against_real_files(plan, keys_dir):
    """The script itself, on files made by openssl: a leaf of a root, its key."""
    tmp_path = keys_dir

    cert = dataclasses.replace(plan.hosts["etcd-k8s-2"].cert("server"), ssl_dir=str(tmp_path))
    root_key, root = tmp_path / "root.key", tmp_path / "root.crt"

    def sh(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, cwd=tmp_path)

    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", str(root_key), "-out", str(root), "-subj", "/CN=root",
       "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE")  # fmt: skip
    sans = ",".join(("IP:" if n[0].isdigit() else "DNS:") + n for n in cert.sans)
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", cert.key, "-out", "leaf.csr", "-subj", f"/CN={cert.subject}")  # fmt: skip
    ext = tmp_path / "ext.cnf"
    ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\n")
    sh("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", str(root), "-CAkey", str(root_key),
       "-CAcreateserial", "-out", cert.crt, "-days", "1", "-extfile", str(ext))  # fmt: skip
    out = subprocess.run(
        ["sh", "-c", check_script((cert,))],
        input=Path(root).read_text(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seen = parse_report(out)[cert.name]
    problems = problems_of(cert, seen)
    # Everything but the owners and modes, which are this test's user's.
    assert [p for p in problems if "key '" not in p and "certificate '" not in p] == []
    other_root = tmp_path / "other.crt"
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "other.key", "-out", str(other_root), "-subj", "/CN=root")  # fmt: skip
    out = subprocess.run(
        ["sh", "-c", check_script((cert,))],
        input=other_root.read_text(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert parse_report(out)[cert.name]["verify"] == "FAILED"
    Path(cert.key).unlink()
    out = subprocess.run(
        ["sh", "-c", check_script((cert,))], input=root.read_text(), capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    assert parse_report(out)[cert.name]["keymatch"] == "no"


def test_peers_report_table_and_ratios():
    from bench.measure import Run
    from bench.peers.report import peers_report

    def run(wall, cpu, changed, per_host, records=()):
        places = {"etcd-k8s-1": cpu / 2, " controller": cpu / 2}
        return Run("x", wall, 1, changed, per_host, {}, cpu * 2, places, list(records))

    task_log = [
        {"k": "task", "task": "slow one", "t": 0.0},
        {"k": "task", "task": "quick one", "t": 5.0},
        {"k": "stats", "hosts": {}, "t": 6.0},
    ]
    results = {
        "connector": "docker",
        "cpus": 2,
        "peers": [
            {
                "hosts": 4,
                "ours": [{"fresh": run(8, 6, 23, {"a": 24}), "rerun": [run(2, 2, 0, {"a": 1})]}],
                "peer": [
                    {
                        "fresh": run(64, 48, 50, {"a": 46}, task_log),
                        "rerun": [run(40, 40, 4, {"a": 37}, task_log)],
                        "rerun_summaries": [{"changed": 10, "changed_by_task": {"tok": 10}}],
                    }
                ],
            }
        ],
    }
    text = peers_report(results)
    assert "| 4 | 0.12 | 0.05 | 0.12 | 0.05 |" in text
    assert "| 4 | Ansible collection | no-change re-run | 1 | 40.0 s | 40.0 core-s |" in text
    assert "re-run reported 10 changes: tok x10" in text
    assert "5.00 s  slow one" in text


def test_over_ssh_the_token_task_connects_to_the_ca_a_few_hosts_at_a_time(plan):
    _, hosts_play = generate.playbook(plan, throttle=generate.SSH_TOKEN_THROTTLE)
    tok = task(hosts_play, "one-time token per certificate, minted on the CA")
    assert tok["throttle"] == generate.SSH_TOKEN_THROTTLE < 10  # sshd's MaxStartups start


@pytest.mark.parametrize("connection, throttled", [("docker", False), ("ssh", True)])
def test_the_run_dir_throttles_the_token_task_over_ssh_only(
    plan, tmp_path, monkeypatch, connection, throttled
):
    monkeypatch.setattr(runner, "peer_source", lambda: tmp_path)  # no collection needed
    key = "/k" if connection == "ssh" else None
    targets = {n: generate.Target(connection, n, key) for n in plan.hosts}
    run_dir = runner.write_run_dir(tmp_path / "run", plan, targets, ("a" * 24, "b" * 24))
    _, hosts_play = json.loads((run_dir / "playbook.yml").read_text())
    tok = task(hosts_play, "one-time token per certificate, minted on the CA")
    assert tok.get("throttle") == (generate.SSH_TOKEN_THROTTLE if throttled else None)
