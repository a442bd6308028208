"""rotate_ca.py's steps: a new intermediate, or a new root in phases (etcd_pki/rotation.py).

Every key is made on the CA node (etcd_pki/commands/rotation.py). The rest of a rotation
is what the deploy does anyway, told that the CA changes in this run: standbys get the
new material (tasks/standby.py), every host's certificates are issued anew from the new
intermediate (tasks/certs.py), the members fetch the new CRL. A root rotation also
changes what every host trusts, with etcd members restarted one at a time.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError

from etcd_pki.certs import fingerprint, pem_blocks
from etcd_pki.commands.ca import root_password_file
from etcd_pki.commands.crl import SERVICE as CRL_SERVICE
from etcd_pki.commands.crl import crl_fetch_now_command
from etcd_pki.commands.etcd import etcdctl, restart_if_needed_command
from etcd_pki.commands.rotation import (
    NEXT,
    finish_root_command,
    mark_command,
    new_intermediate_command,
    prepare_root_command,
    serves_intermediate_command,
    switch_root_command,
)
from etcd_pki.redundancy import identity_lines
from etcd_pki.rotation import (
    Rotation,
    finished_message,
    in_progress_message,
    kind_problem,
    parse_state,
    root_rotation_unfinished,
    start_problem,
)
from facts.pki import PublicFile
from tasks.bootstrap import reads, trust_commands
from tasks.ca import ca_snapshot
from tasks.common import call, hosts_in_run, on_hosts, pyinfra_host, run_on
from tasks.ops import Op, emit, shell
from tasks.run import (
    ca_intermediate_now,
    get_plan,
    rotation_before_run,
    snapshot,
    this_host,
    this_run,
)


@dataclass(frozen=True)
class Job:
    """What this rotate_ca.py run does: ``kind``, from the CA's rotation ``state`` before
    the run (None: no rotation yet), ``fresh`` when a new rotation starts."""

    kind: str
    state: Rotation | None
    fresh: bool

    def remains(self, phase: str) -> bool:
        """``phase`` of this rotation is still to do."""
        return self.fresh or self.state is None or not self.state.reached(phase)


def rotation_job() -> Job | None:
    """`--data rotate=...` checked against the CA's state, before anything runs; None
    when the rotation asked for is finished (a re-run changes nothing). The run is
    marked as one where the CA changes: tasks decide at execute time."""
    kind = host.data.get("rotate")
    problem = kind_problem(kind)
    if problem:
        raise PyinfraError(problem)
    again = str(host.data.get("rotate_again", "")).lower() in ("1", "true", "yes", "on")
    state = rotation_before_run()
    problem = start_problem(str(kind), state, again)
    if problem:
        raise PyinfraError(problem)
    if state is not None and state.finished and state.kind == kind and not again:
        if this_host().is_active_ca:
            logger.info(f"{host.print_prefix}{finished_message(state)}")
        return None
    _everyone_here(str(kind))
    this_run().rotating = True
    fresh = state is None or state.finished
    return Job(str(kind), None if fresh else state, fresh)


def refuse_during_root_rotation() -> None:
    """deploy.py stops while a root rotation is unfinished: it would write one root
    where the rotation keeps two, and mix the two CAs."""
    state = rotation_before_run()
    if root_rotation_unfinished(state):
        raise PyinfraError(in_progress_message(state, get_plan().active_ca))


def _everyone_here(kind: str) -> None:
    """A rotation acts on every host: refuse --limit, an unreachable host, and (for a
    root rotation, which restarts them) an etcd member that is not healthy."""
    plan = get_plan()
    missing = sorted(set(plan.hosts) - set(hosts_in_run()))
    if missing:
        raise PyinfraError(
            f"rotate_ca.py needs every host, and {', '.join(missing)} is not in this run "
            "(unreachable, or left out by --limit): make it reachable and run it again"
        )
    if kind != "root":
        return
    run = this_run()
    with run.ca_root_lock:
        if run.members_checked is None:
            try:
                on_hosts([m.name for m in plan.etcd_members], _healthy)
                run.members_checked = ""
            except PyinfraError as e:
                run.members_checked = str(e)
    if run.members_checked:
        raise PyinfraError(
            f"{run.members_checked}: a root rotation restarts the members one at a time "
            "and needs every one healthy; nothing was changed"
        )


def _healthy(name: str) -> None:
    me = get_plan().hosts[name]
    local = f"https://127.0.0.1:{me.settings.etcd_client_port}"
    try:
        run_on(pyinfra_host(name), etcdctl(me, local, "endpoint", "health"), "etcd health")
    except PyinfraError:
        raise PyinfraError(f"etcd on {name} is not healthy") from None


def _identity() -> list[str] | None:
    """The age identity of `--data rotate_identity_file=...` (read on the controller,
    never printed), or None when not given."""
    path = host.data.get("rotate_identity_file")
    if not path:
        return None
    file = Path(str(path)).expanduser()
    try:
        return identity_lines(file.read_text())
    except OSError as e:
        raise PyinfraError(f"rotate_identity_file: cannot read {file}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise PyinfraError(f"rotate_identity_file {file}: {e}") from None


@deploy("Rotate the intermediate")
def rotate_intermediate() -> None:
    """On the active cert-manager: a new intermediate key and certificate signed by the
    root, made there; step-ca reloaded and serving it. The root key's own password (when
    it has one) is decrypted on the node with the identity given as
    `rotate_identity_file`, streamed on stdin.

    .. code:: python

        if me.is_active_ca:
            rotate_intermediate()
    """
    me = this_host()
    s = me.settings
    identity = _identity()
    if ca_snapshot().is_file(root_password_file(s)) and identity is None:
        raise PyinfraError(
            f"the root key on {me.name} has its own password, age-encrypted to "
            "backup_recipients: give one of their identities with "
            "--data rotate_identity_file=PATH (read on this controller, never stored)"
        )

    def rotate() -> None:
        out = run_on(
            host,
            new_intermediate_command(s),
            "making a new intermediate on the CA node",
            stdin="\n".join(identity) + "\n" if identity else "",
        )
        pems = pem_blocks(out, "CERTIFICATE")
        if not pems:
            raise PyinfraError(f"no new intermediate came back from {me.name}")
        new = pems[-1]
        run_on(
            host, serves_intermediate_command(s, shlex.quote(fingerprint(new))), "reloading step-ca"
        )
        this_run().ca_intermediate = new
        logger.info(
            f"{host.print_prefix}new intermediate {fingerprint(new)[:16]}... in place; "
            "step-ca serves it"
        )

    call("New intermediate signed by the root (made on this node), step-ca reloaded", rotate)


@deploy("The CA's new CRL")
def fetch_crl_now() -> None:
    """On an etcd member: fetch the CA's CRL now (signed by its new intermediate) instead
    of at the timer's next run.

    .. code:: python

        if me.is_etcd:
            fetch_crl_now()
    """
    emit([shell("crl", f"Fetch the CA's CRL now ({CRL_SERVICE})", crl_fetch_now_command())])


# --- root rotation ------------------------------------------------------------------


def _ca_file_now(path: str, what: str) -> str:
    """A public file of the active CA, read now (it changes during a rotation)."""
    plan = get_plan()
    pem = pyinfra_host(plan.active_ca).get_fact(PublicFile, path=path)
    if not pem:
        raise PyinfraError(f"{what} ({path}) is missing on {plan.active_ca}")
    return pem


def _roots_now() -> tuple[str, str]:
    """(the CA's current root, the next root), read once per run, after the prepare step."""
    run = this_run()
    with run.ca_root_lock:
        if "old" not in run.roots:
            s = get_plan().ca.settings
            run.roots["old"] = _ca_file_now(s.ca_root, "the CA's root")
            run.roots["new"] = _ca_file_now(f"{s.ca_dir}/{NEXT}/root_ca.crt", "the next root")
    return run.roots["old"], run.roots["new"]


def _mark(phase: str) -> None:
    """Record ``phase`` of the root rotation on the CA (the new root read now)."""
    s = this_host().settings
    _, new = _roots_now()
    run_on(host, mark_command(s, f"root {phase} {fingerprint(new)}"), f"recording {phase}")


@deploy("Prepare the next root")
def prepare_root() -> None:
    """On the active cert-manager: the next root and intermediate made beside the CA
    (ca_dir/rotation/), nothing in use changed.

    .. code:: python

        prepare_root()
    """
    s = this_host().settings

    def prepare() -> None:
        out = run_on(host, prepare_root_command(s), "making the next root on the CA node")
        state = parse_state(out.splitlines()[0] if out else "")
        if state is None or state.kind != "root":
            raise PyinfraError(f"unexpected answer from the CA node: {out[:200]!r}")
        logger.info(f"{host.print_prefix}next root {state.fingerprint[:16]}... ready")

    call("Next root and intermediate, made on this node (nothing in use changes)", prepare)


@deploy("Trust the roots")
def trust_roots(both: bool) -> None:
    """On every host: trust the CA's current and next root (``both``), or, once every
    certificate comes from the new root, the new root only. What etcd reads at start
    changes: `restart_for_trust` restarts the members.

    .. code:: python

        trust_roots(both=True)
    """
    plan, me = get_plan(), this_host()
    run = this_run()

    def trust() -> None:
        if both:
            old, new = _roots_now()
            root = old.rstrip("\n") + "\n" + new
        else:
            missing = [
                h for h in plan.hosts.values() if h.certs and h.name not in run.certs_current
            ]
            if missing:
                raise PyinfraError(
                    "the old root stays trusted: not every host has its certificates from the "
                    f"new root ({', '.join(h.name for h in missing)}); make them reachable and "
                    "run rotate_ca.py --data rotate=root again"
                )
            root = _ca_file_now(plan.ca.settings.ca_root, "the CA's root")
        commands = trust_commands(me, snapshot(reads(me)), root, plan.ca_url)
        if commands:
            emit([Op("trust", f"Trust {'both roots' if both else 'the new root only'}",
                     "steps", {"commands": commands})])  # fmt: skip

    if me.certs:
        call(f"Trust {'the current and the next root' if both else 'the new root only'}", trust)


@deploy("etcd members restarted for the roots")
def restart_for_trust() -> None:
    """On etcd members, one at a time, each only when the cluster is healthy: restart
    etcd when it started before its trusted roots last changed (it reads them at start).

    .. code:: python

        restart_for_trust()
    """
    plan, me = get_plan(), this_host()
    if not me.is_etcd:
        return
    emit(
        [
            shell(
                "restart",
                "Restart etcd if it started before its roots changed (one member at a time)",
                restart_if_needed_command(me, plan.etcd_members, me.settings.trusted_root),
                serial=True,
            )
        ]
    )


@deploy("Mark the root rotation")
def mark_root(phase: str) -> None:
    """On the active cert-manager: record that ``phase`` is done.

    .. code:: python

        mark_root("trusted")
    """
    call(f"Root rotation: {phase}", lambda: _mark(phase))


def _all_current() -> None:
    """Every host's certificates come from the CA as it is now (checked in this run)."""
    plan, run = get_plan(), this_run()
    missing = [h.name for h in plan.hosts.values() if h.certs and h.name not in run.certs_current]
    if missing:
        raise PyinfraError(
            f"not every host has its certificates from the new CA ({', '.join(missing)}); "
            "make them reachable and run rotate_ca.py again: it goes on from here"
        )


@deploy("Finish the intermediate rotation")
def finish_intermediate() -> None:
    """On the active cert-manager, once every certificate comes from the new
    intermediate: record `intermediate done` (a re-run then changes nothing).

    .. code:: python

        finish_intermediate()
    """
    s = this_host().settings

    def finish() -> None:
        _all_current()
        line = f"intermediate done {fingerprint(ca_intermediate_now())}"
        run_on(host, mark_command(s, line), "recording the rotation")

    call("Intermediate rotation done: every certificate comes from it", finish)


@deploy("Switch to the new root")
def switch_root() -> None:
    """On the active cert-manager: step-ca runs on the new root and intermediate.

    .. code:: python

        switch_root()
    """
    s = this_host().settings

    def switch() -> None:
        _, new = _roots_now()
        run_on(host, switch_root_command(s, fingerprint(new)), "switching step-ca to the new root")
        run = this_run()
        run.ca_root = new  # every later step works with the new CA
        run.ca_intermediate = None
        logger.info(f"{host.print_prefix}step-ca runs on the new root {fingerprint(new)[:16]}...")

    call("step-ca switched to the new root and intermediate", switch)


@deploy("Finish the root rotation")
def finish_root() -> None:
    """On the active cert-manager: the next-root files go, `root done` is recorded.

    .. code:: python

        finish_root()
    """
    s = this_host().settings

    def finish() -> None:
        new = _ca_file_now(s.ca_root, "the CA's root")
        run_on(host, finish_root_command(s, fingerprint(new)), "finishing the root rotation")

    call("Root rotation done: the old root is trusted nowhere", finish)
