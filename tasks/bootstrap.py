"""Make every host trust the CA: root_ca.crt in ssl_dir, and `step` configured for it."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import deploy

from etcd_pki.certs import fingerprint
from etcd_pki.commands.certs import (
    SYSTEM_TRUST_FILE,
    step_config_command,
    step_dirs,
    step_files,
    step_root_path,
    system_trust_command,
)
from etcd_pki.commands.files import directories_command, links_command, write_files_command
from etcd_pki.plan import ClusterPlan, HostPlan
from facts.snapshot import Snapshot, Want
from tasks.common import call
from tasks.ops import Op, emit
from tasks.run import ca_root_pem, decided_before_run, get_plan, snapshot, this_host

LINKS = ("peer-ca.crt", "client-ca.crt")


def _paths(me: HostPlan) -> tuple[str, str, list[str]]:
    """The root certificate, step's defaults.json and the CA links of ``me``."""
    s = me.settings
    links = [f"{s.ssl_dir}/{link}" for link in LINKS]
    return s.trusted_root, f"{s.step_dir}/config/defaults.json", links


def reads(me: HostPlan) -> Want:
    root_path, defaults_path, links = _paths(me)
    return Want.of(
        contents={
            root_path,
            defaults_path,
            step_root_path(me.settings.step_dir),
            SYSTEM_TRUST_FILE,
        },
        stat={
            me.settings.ssl_dir,
            _parent(me.settings.ssl_dir),
            *links,
            *step_dirs(me.settings.step_dir),
        },
        links=links,
    )


def _parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] or "/"


def _stale(me: HostPlan, before: Snapshot, root: str, ca_url: str) -> tuple[bool, bool]:
    """(root file differs, step's CA URL, fingerprint or root differ)."""
    root_path, defaults_path, _ = _paths(me)
    step_root = step_root_path(me.settings.step_dir)
    found = before.contents
    try:
        defaults = json.loads(found[defaults_path] or "{}")
    except ValueError:
        defaults = {}
    step_stale = (
        defaults.get("ca-url"),
        defaults.get("fingerprint"),
        found[step_root],
    ) != (ca_url, fingerprint(root), root)
    return found.get(root_path) != root, step_stale


def trust_commands(me: HostPlan, before: Snapshot, root: str, ca_url: str) -> list[str]:
    """What differs on ``me`` (as ``before`` shows it) from trusting the CA of ``root``
    at ``ca_url``, as commands; none when all is in place."""
    s = me.settings
    root_path, _, links = _paths(me)
    root_stale, step_stale = _stale(me, before, root, ca_url)
    todo = []
    # Owned by root and writable by nobody else: everything trust rests on is in them.
    if not before.is_directory(s.ssl_dir, "root", "root", "755"):
        todo.append(directories_command({s.ssl_dir: "755"}))
    parent = before.paths.get(_parent(s.ssl_dir))
    if parent and (parent.user != "root" or int(str(parent.mode), 8) & 0o022):
        # Whoever may write there may swap ssl_dir itself.
        todo.append(f"chown root {shlex.quote(_parent(s.ssl_dir))} && "
                    f"chmod go-w {shlex.quote(_parent(s.ssl_dir))}")  # fmt: skip
    step_modes = step_dirs(s.step_dir)
    if not step_stale and not all(
        before.is_directory(d, "root", "root", m) for d, m in step_modes.items()
    ):
        todo.append(directories_command(step_modes))
    if root_stale:
        todo.append(write_files_command([(root_path, root, "644")]))
    wrong = {path: "root_ca.crt" for path in links if not before.is_link(path, "root_ca.crt")}
    if wrong:
        todo.append(links_command(wrong))
    if step_stale:
        todo.append(step_config_command(s.step_dir, ca_url, root))
    in_store = before.contents.get(SYSTEM_TRUST_FILE)
    if s.install_root_in_trust_store and in_store != root:
        todo.append(system_trust_command(root))
    elif not s.install_root_in_trust_store and in_store is not None:
        todo.append(system_trust_command(None))
    return todo


def trust_commands_now(me: HostPlan) -> list[str]:
    """`trust_commands` at execute time: the CA may be new in this run."""
    return trust_commands(me, snapshot(reads(me)), ca_root_pem(), get_plan().ca_url)


def trust_name(me: HostPlan, plan: ClusterPlan) -> str:
    store = ", system trust store" if me.settings.install_root_in_trust_store else ""
    return f"{_paths(me)[0]} from {plan.active_ca}, CA links, step's CA URL ({plan.ca_url}){store}"


def planned_files(me: HostPlan, plan: ClusterPlan, root: str) -> dict[str, str]:
    """The files this task writes on ``me`` to trust the CA of ``root``."""
    files = {me.settings.trusted_root: root, SYSTEM_TRUST_FILE: root}
    files.update(
        {path: text for path, text, _ in step_files(me.settings.step_dir, plan.ca_url, root)}
    )
    return files


def decide(me: HostPlan, plan: ClusterPlan, before: Snapshot, root: str) -> list[Op]:
    """The operation that makes ``me`` trust the CA of ``root`` (none when it does)."""
    commands = trust_commands(me, before, root, plan.ca_url)
    name = trust_name(me, plan)
    return [Op("trust", name, "steps", {"commands": commands})] if commands else []


@deploy("Trust the CA")
def trust_ca() -> None:
    """Install the root certificate and point `step` at the active CA by fingerprint
    (what `step ca bootstrap` does, without a round trip to the CA).

    The root goes into the system trust store only with `install_root_in_trust_store`
    (and out of it again when that is unset).

    .. code:: python

        trust_ca()
    """
    me, plan = this_host(), get_plan()
    found: list[list[Op]] = []  # worked out once, when the check runs

    def ops() -> list[Op]:
        if not found:
            found.append(decide(me, plan, snapshot(reads(me)), ca_root_pem()))
        return found[0]

    # Directory, root certificate, links and step's configuration: one command, and
    # none when all is in place.
    call(
        f"Trust the CA: {trust_name(me, plan)}",
        lambda: emit(ops()),
        check=lambda: bool(ops()),
        check_now=decided_before_run(me),
    )
