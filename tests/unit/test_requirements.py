"""etcd_pki/requirements.py: what each host needs, judged from one read of the host."""

from __future__ import annotations

import subprocess

import pytest

from etcd_pki.plan import build_plan
from etcd_pki.requirements import (
    etcd_problem,
    etcd_version,
    parse_tools,
    requirement_problems,
    tools_command,
)

from .conftest import seed_hosts

ALL = ["0", "root", "has curl", "has openssl", "has update-ca-certificates", "systemd 257 (257)"]


@pytest.fixture
def plan(defaults):
    return build_plan(seed_hosts(defaults))


def test_the_command_reads_this_machine():
    out = subprocess.run(["sh", "-c", tools_command()], capture_output=True, text=True).stdout
    found = parse_tools(out.splitlines())
    assert found.uid is not None and found.user


def test_a_host_with_everything_passes(plan):
    for name in plan.hosts:
        assert requirement_problems(plan.hosts[name], parse_tools(ALL)) == []


def test_not_root(plan):
    (problem,) = requirement_problems(plan.hosts["app-server"], parse_tools(["1000", "deployer"]))
    assert "commands run as user deployer, not root; run pyinfra with --sudo" in problem


def test_each_missing_piece_is_one_line(plan, defaults):
    found = parse_tools(["0", "root", "systemd 245 (245)"])
    problems = requirement_problems(plan.hosts["etcd-k8s-2"], found)
    assert len(problems) == 3
    assert problems[0].startswith("neither curl nor wget is installed: the deploy fetches the CRL")
    assert problems[1].startswith("openssl is not installed")
    assert problems[2] == "systemd 245 is too old: the deploy needs 248 or newer"
    # A client downloads step (install_source github): curl or wget; uploaded: nothing.
    bare = parse_tools(["0", "root", "systemd 257"])
    assert "neither curl nor wget" in requirement_problems(plan.hosts["app-server"], bare)[0]
    data = {"install_source": "controller", "install_controller_dir": "/srv/releases"}
    uploaded = build_plan(seed_hosts({**defaults, **data}))
    assert requirement_problems(uploaded.hosts["app-server"], bare) == []


def test_etcd_versions():
    assert etcd_version("etcd Version: 3.5.16") == (3, 5, 16)
    assert etcd_version("3.4.23-2+b1") == (3, 4, 23)
    assert etcd_problem((3, 5, 16), "x") is None and etcd_problem(None, "x") is None
    assert "x is etcd 3.4.23; the deploy supports etcd 3.5" in etcd_problem((3, 4, 23), "x")
