"""`member_add_command` run by sh against a fake etcdctl: etcd's "unhealthy cluster"
refusal (a member up for less than 5 s) is waited out, an add whose answer was lost is
recognised in the member list, anything else fails at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from etcd_pki.commands.etcd import etcd_bins, member_add_command
from etcd_pki.plan import build_plan

from .conftest import seed_hosts

UNHEALTHY = "Error: etcdserver: unhealthy cluster"
# `member list -w simple`: ID, status, name, peer URLs, client URLs, is-learner
OTHER = (
    "8e9e05c52164694d, started, etcd-k8s-1, https://10.0.0.1:2380, https://10.0.0.1:2379, false\n"
)


def run(
    tmp_path: Path,
    defaults: dict,
    answers: list[tuple[int, str]],
    tries: int = 15,
    listed: str = "",
):
    """The command with etcdctl replaced by a script giving ``answers`` to `member add`
    in turn, and ``listed`` to `member list`."""
    me = build_plan(seed_hosts(defaults)).hosts["etcd-k8s-2"]
    (tmp_path / "list").write_text(listed.replace("PEER", me.peer_url))
    for i, (rc, text) in enumerate(answers):
        (tmp_path / f"answer{i}").write_text(f"{rc} {text}\n")
    fake = tmp_path / "etcdctl"
    fake.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *"member list"*) cat {tmp_path}/list; exit 0;; esac\n'
        f"n=$(cat {tmp_path}/calls 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/calls\n"
        f'read rc text < {tmp_path}/answer$n; echo "$text"; echo "$*" >> {tmp_path}/args; '
        "exit $rc\n"
    )
    fake.chmod(0o755)
    command = member_add_command(me, "https://10.0.0.1:2379", tries)
    command = command.replace(etcd_bins(me)[1], str(fake))
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    calls = int((tmp_path / "calls").read_text())
    return result, calls, (tmp_path / "args").read_text()


def test_added_at_once(tmp_path, defaults):
    result, calls, args = run(tmp_path, defaults, [(0, "Member 1234 added")])
    assert result.returncode == 0 and "Member 1234 added" in result.stdout and calls == 1
    assert "member add etcd-k8s-2 --peer-urls=https://" in args


def test_an_unhealthy_cluster_is_waited_out(tmp_path, defaults):
    result, calls, _ = run(tmp_path, defaults, [(1, UNHEALTHY), (0, "Member 1234 added")])
    assert result.returncode == 0 and "Member 1234 added" in result.stdout and calls == 2


@pytest.mark.parametrize("error", ["Error: context deadline exceeded", "Error: member exists"])
def test_any_other_error_fails_at_once(tmp_path, defaults, error):
    result, calls, _ = run(tmp_path, defaults, [(1, error), (0, "never asked")])
    assert result.returncode == 1 and error in result.stderr and calls == 1


def test_an_unhealthy_cluster_that_stays_so_fails_with_its_message(tmp_path, defaults):
    result, calls, _ = run(tmp_path, defaults, [(1, UNHEALTHY), (1, UNHEALTHY)], tries=2)
    assert result.returncode == 1 and UNHEALTHY in result.stderr and calls == 2


def test_an_add_whose_answer_was_lost_is_found_in_the_member_list(tmp_path, defaults):
    listed = OTHER + "91bc3c398fb3c146, unstarted, , PEER, , false\n"
    result, calls, _ = run(tmp_path, defaults, [(1, UNHEALTHY)], listed=listed)
    assert result.returncode == 0 and "added (the answer" in result.stdout and calls == 1


def test_another_members_url_is_not_taken_for_ours(tmp_path, defaults):
    result, calls, _ = run(tmp_path, defaults, [(1, "Error: member exists")], listed=OTHER)
    assert result.returncode == 1 and calls == 1
