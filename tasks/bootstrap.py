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
    step_root_path,
    system_trust_command,
)
from etcd_pki.commands.files import directories_command, links_command, write_files_command
from etcd_pki.plan import HostPlan
from facts.snapshot import Want
from tasks import batch
from tasks.common import call
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


def _bootstrap_state() -> tuple[bool, bool]:
    """(root file differs, step's CA URL, fingerprint or root differ), at execute time.

    The root is the CA's now (it may be created in this run); the host's files are
    as they were before the run (only the operations these answers decide write them).
    """
    plan = get_plan()
    root = ca_root_pem()
    me = this_host()
    root_path, defaults_path, _ = _paths(me)
    step_root = step_root_path(me.settings.step_dir)
    found = snapshot(Want.of(contents={root_path, defaults_path, step_root})).contents
    try:
        defaults = json.loads(found[defaults_path] or "{}")
    except ValueError:
        defaults = {}
    step_stale = (
        defaults.get("ca-url"),
        defaults.get("fingerprint"),
        found[step_root],
    ) != (plan.ca_url, fingerprint(root), root)
    return found[root_path] != root, step_stale


def trust_commands(me: HostPlan) -> list[str]:
    """What differs from trusting the active CA, as commands; none when all is in place.

    Call at execute time: the CA may be new in this run.
    """
    plan = get_plan()
    s = me.settings
    root_path, _, links = _paths(me)
    before = snapshot(reads(me))
    root_stale, step_stale = _bootstrap_state()
    root = ca_root_pem()
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
        todo.append(step_config_command(s.step_dir, plan.ca_url, root))
    in_store = before.contents[SYSTEM_TRUST_FILE]
    if s.install_root_in_trust_store and in_store != root:
        todo.append(system_trust_command(root))
    elif not s.install_root_in_trust_store and in_store is not None:
        todo.append(system_trust_command(None))
    return todo


def trust_name(me: HostPlan) -> str:
    plan = get_plan()
    store = ", system trust store" if me.settings.install_root_in_trust_store else ""
    return f"{_paths(me)[0]} from {plan.active_ca}, CA links, step's CA URL ({plan.ca_url}){store}"


@deploy("Trust the CA")
def trust_ca() -> None:
    """Install the root certificate and point `step` at the active CA by fingerprint
    (what `step ca bootstrap` does, without a round trip to the CA).

    The root goes into the system trust store only with `install_root_in_trust_store`
    (and out of it again when that is unset).

    .. code:: python

        trust_ca()
    """
    me = this_host()
    found: list[list[str]] = []  # worked out once, when the check runs

    def commands() -> list[str]:
        if not found:
            found.append(trust_commands(me))
        return found[0]

    # Directory, root certificate, links and step's configuration: one command, and
    # none when all is in place.
    name = trust_name(me)
    call(
        f"Trust the CA: {name}",
        lambda: batch.steps(name=name, commands=commands()),
        check=lambda: bool(commands()),
        check_now=decided_before_run(me),
    )
