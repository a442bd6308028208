"""Run the peer: its venv, a run directory with the generated files, one timed
``ansible-playbook``, and what its callback log says (module runs per host, changes).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from etcd_pki.plan import ClusterPlan

from ...measure import REPO, BenchError, Run, log_dir, timed
from . import generate

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
CALLBACKS = HERE / "callback_plugins"
LEAF_TEMPLATE = REPO / "templates" / "step-leaf.tpl"
# The benchmark's own venv: ansible is never a dependency of the deploy.
VENV = REPO / ".venv-peers"
PEER_ENV = "ETCD_PKI_PEER_ANSIBLE"
PEER_SUBDIR = Path("shared") / "peers" / "ansible-collection-smallstep"
# Actions Ansible runs in the controller, not on a host: not module runs.
CONTROLLER_ACTIONS = frozenset(
    {
        "add_host",
        "assert",
        "debug",
        "fail",
        "group_by",
        "import_role",
        "import_tasks",
        "include_role",
        "include_tasks",
        "include_vars",
        "meta",
        "set_fact",
        "set_stats",
    }
)


def peer_source() -> Path:
    """The collection's source tree: ``$ETCD_PKI_PEER_ANSIBLE``, else ``shared/peers/...``
    beside the repository (or beside the main checkout of a git worktree)."""
    explicit = os.environ.get(PEER_ENV)
    candidates = [Path(explicit)] if explicit else []
    candidates += [REPO.parent / PEER_SUBDIR, Path("/work") / PEER_SUBDIR]
    for path in candidates:
        if (path / "galaxy.yml").is_file() and (path / "roles" / "step_ca").is_dir():
            return path
    raise BenchError(
        "the Ansible collection's source is not found (looked in "
        f"{', '.join(map(str, candidates))}); set {PEER_ENV} to its directory"
    )


def ensure_venv() -> Path:
    """.venv-peers with ``requirements.txt`` installed (from PyPI, once); returns the
    ``ansible-playbook`` to run."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".requirements-sha256"
    playbook = VENV / "bin" / "ansible-playbook"
    if playbook.exists() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return playbook
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        + ["--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(wanted + "\n")
    return playbook


def write_run_dir(
    run_dir: Path,
    plan: ClusterPlan,
    targets: Mapping[str, generate.Target],
    passwords: tuple[str, str],
) -> Path:
    """The playbook, inventory, ansible.cfg, secrets (0600), the leaf template and the
    collection (a link to its source) in ``run_dir``. Over SSH the token task, which
    connects to the CA from every host at once, is throttled (generate.py says why)."""
    over_ssh = any(t.connection == "ssh" for t in targets.values())
    throttle = generate.SSH_TOKEN_THROTTLE if over_ssh else None
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    collections_dir = run_dir / "collections"
    link = collections_dir / "ansible_collections" / "maxhoesel" / "smallstep"
    link.parent.mkdir(parents=True)
    link.symlink_to(peer_source(), target_is_directory=True)
    files = {
        "playbook.yml": generate.render(generate.playbook(plan, throttle)),
        "inventory.yml": generate.render(generate.inventory(plan, targets)),
        "ansible.cfg": generate.ansible_cfg(len(plan.hosts), str(collections_dir), str(CALLBACKS)),
    }
    for name, text in files.items():
        (run_dir / name).write_text(text)
    secrets = run_dir / "secrets.yml"
    secrets.touch(mode=0o600)
    secrets.write_text(generate.render(generate.secrets(*passwords)))
    shutil.copyfile(LEAF_TEMPLATE, run_dir / "step-leaf.tpl")
    return run_dir


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What a run's callback log says: module runs per host (where each ran: a
    delegated task counts for the host it ran on), results that reported a change
    (per task), failures, and Ansible's recap."""
    runs: collections.Counter[str] = collections.Counter()
    changed: collections.Counter[str] = collections.Counter()
    failed: list[str] = []
    tasks = 0
    stats: dict[str, Any] = {}
    for r in records:
        if r["k"] == "task":
            tasks += 1
        elif r["k"] == "stats":
            stats = r["hosts"]
        elif r["k"] == "result":
            action = r["action"].rsplit(".", 1)[-1]
            if r["status"] in ("failed", "unreachable"):
                failed.append(f"{r['host']}: {r['task']} {r['status']}")
            if r["status"] == "skipped" or action in CONTROLLER_ACTIONS:
                continue
            runs[r["ran_on"]] += 1
            if r["changed"]:
                changed[r["task"]] += 1
    return {
        "tasks": tasks,
        "module_runs": dict(sorted(runs.items())),
        "changed": sum(changed.values()),
        "changed_by_task": dict(changed.most_common()),
        "failed": failed,
        "recap_changed": sum(h.get("changed", 0) for h in stats.values()),
        "recap": stats,
    }


def run_playbook(playbook: Path, run_dir: Path, label: str) -> tuple[Run, dict[str, Any]]:
    """One timed ``ansible-playbook`` in ``run_dir``; raise if it fails."""
    logs = log_dir()
    cmd_log = logs / f"{label}.jsonl"
    cmd_log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(run_dir / "ansible.cfg"),
        "BENCH_ANSIBLE_LOG": str(cmd_log),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{playbook.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [str(playbook), "-i", "inventory.yml", "playbook.yml"]
    proc, wall, cpu, places = timed(cmd, run_dir, env)
    (logs / f"{label}.log").write_text(proc.stdout + proc.stderr)
    records = (
        [json.loads(line) for line in cmd_log.read_text().splitlines() if line]
        if cmd_log.exists()
        else []
    )
    summary = summarize(records)
    if proc.returncode != 0 or summary["failed"]:
        raise BenchError(
            f"{label}: ansible-playbook exited {proc.returncode} "
            f"({'; '.join(summary['failed'][:5]) or 'no failed task logged'}); "
            f"see {logs / label}.log"
        )
    run = Run(
        label,
        wall,
        summary["tasks"],
        summary["recap_changed"],
        summary["module_runs"],
        {},
        cpu,
        places,
        records,
    )
    return run, summary
