"""Leaf certificates: the key is made on the host that uses it, the CA signs it.

The provisioner password never leaves the CA node: the CA mints a one-time token
bound to exactly this subject and these SANs; the host redeems it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import gevent
import gevent.event
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import server

from etcd_pki.certs import CertOnHost, permission_problems, reissue_reason
from etcd_pki.commands.certs import issue_command
from etcd_pki.commands.tokens import mint_command, provisioner_key_lookup  # noqa: F401
from etcd_pki.plan import CertSpec, ClusterPlan, HostPlan
from facts.pki import CertStates, StepVersions
from facts.snapshot import Snapshot, Want
from tasks.bootstrap import trust_ca, trust_commands_now, trust_name
from tasks.common import call, pyinfra_host, run_on, spawn_in_context
from tasks.crl import ca_view
from tasks.install import step_command
from tasks.ops import Op, emit, shell
from tasks.renewal import renewal_units, units_command
from tasks.run import (
    ca_intermediate_now,
    ca_root_pem,
    decided_before_run,
    fact_before_run,
    fact_want,
    get_plan,
    snapshot,
    this_host,
    this_run,
)

# `step ca token` with the password file decrypts the provisioner key every time (PBES2,
# ~0.2 s of CPU on the CA), and every issuing host asks at about the same moment. The
# requests that arrive together are gathered and minted by one command on the CA, which
# decrypts the key once (see `mint_command`).
GATHER_SECONDS = 0.1


def parse_minted(output: str, certs: Sequence[CertSpec], ca: str) -> list[str | PyinfraError]:
    """The token, or the error naming the certificate, for each of ``certs`` in the
    output of `mint_command` run on node ``ca``."""
    found: dict[int, tuple[str, str]] = {}
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        index, _, value = rest.partition(" ")
        if kind in ("token", "error") and index.isdigit():
            found[int(index)] = (kind, value.strip())
    results: list[str | PyinfraError] = []
    for i, cert in enumerate(certs):
        kind, value = found.get(i, ("error", "no answer from the CA node"))
        if kind == "token" and value and " " not in value:
            results.append(value)
        else:
            results.append(PyinfraError(f"could not mint a token for {cert.name} on {ca}: {value}"))
    return results


class _Minter:
    """Mints the tokens asked for within `GATHER_SECONDS` of each other in one command
    on the CA (one per run: `Run.minter`)."""

    def __init__(self, plan: ClusterPlan) -> None:
        self.plan = plan
        self.queue: list[tuple[CertSpec, gevent.event.AsyncResult]] = []
        self.runner: gevent.Greenlet | None = None

    def tokens(self, certs: Sequence[CertSpec]) -> list[str]:
        if not certs:
            return []
        this_run().minted = True
        waits = []
        for cert in certs:
            waits.append(gevent.event.AsyncResult())
            self.queue.append((cert, waits[-1]))
        if self.runner is None or self.runner.dead:
            self.runner = spawn_in_context(self._run)
        return [w.get() for w in waits]

    def _run(self) -> None:
        while self.queue:
            gevent.sleep(GATHER_SECONDS)
            batch, self.queue = self.queue, []
            certs = [cert for cert, _ in batch]
            try:
                results = self._mint(certs)
            except Exception as e:  # every waiting host hears of it; none waits forever
                error = e if isinstance(e, PyinfraError) else PyinfraError(str(e))
                results = [error] * len(certs)
            for (_, wait), result in zip(batch, results, strict=True):
                if isinstance(result, PyinfraError):
                    wait.set_exception(result)
                else:
                    wait.set(result)

    def _mint(self, certs: list[CertSpec]) -> list[str | PyinfraError]:
        ca = self.plan.active_ca
        command = mint_command(self.plan.ca.settings, self.plan.ca_url, certs)
        # A lost connection fails these certificates, not the run.
        output = run_on(pyinfra_host(ca), command, "minting certificate tokens")
        return parse_minted(output, certs, ca)


def mint_tokens(plan: ClusterPlan, certs: Sequence[CertSpec]) -> list[str]:
    """One-time tokens for ``certs``, minted on the CA node; kept in memory only.

    Raises PyinfraError naming the first certificate that got none.
    """
    run = this_run()
    if run.minter is None:
        run.minter = _Minter(plan)
    return run.minter.tokens(certs)


def _interrupted(me: HostPlan) -> tuple[str, str]:
    # A host that died during an issuance keeps the temp dir with the new key in it (the
    # shell's trap never ran); only this task writes .issue-* directories.
    return (me.settings.ssl_dir, ".issue-*")


def _none_there(me: HostPlan, before: Snapshot) -> bool:
    """None of ``me``'s certificate and key files existed before the run."""
    return all(before.is_absent(c.crt) and before.is_absent(c.key) for c in me.certs)


def reads(me: HostPlan) -> Want:
    if not me.certs:
        return Want()
    step = f"{me.settings.bin_dir}/step"
    files = [path for cert in me.certs for path in (cert.crt, cert.key)]
    return Want.of(stat=files, finds={_interrupted(me)}) | fact_want(
        CertStates, certs=me.certs, step=step
    )


@deploy("Issue certificates")
def issue_certificates() -> None:
    """Issue this host's peer/server/client certificates when missing or no longer right.

    Re-issued only when missing, not matching its key, not from this CA, with SANs
    other than the inventory implies, past the renewal threshold, or expired.

    .. code:: python

        issue_certificates()
    """
    plan = get_plan()
    me = this_host()
    if not me.certs:
        return
    s = me.settings
    before = snapshot(reads(me))
    emit(stale_issuance_ops(me, before))
    todo: list[ToIssue] = []  # worked out once, when the check runs

    step = f"{s.bin_dir}/step"
    # Read with the host's snapshot when the pinned `step` was there before the run (it
    # computes each key's public half); otherwise once install_step has run.
    step_ready = fact_before_run(StepVersions, bin_dir=s.bin_dir).get("step") == s.step_version
    # A new host has none of the files: nothing to read (only this task writes them).
    none_there = _none_there(me, before)
    view = ca_view()
    revoked = view.revoked  # a revoked certificate is issued anew (new key)

    def check() -> bool:
        if none_there:
            found: dict[str, CertOnHost | None] = dict.fromkeys(c.name for c in me.certs)
        elif step_ready:
            found = fact_before_run(CertStates, certs=me.certs, step=step)
        else:
            found = host.get_fact(CertStates, certs=me.certs, step=step)
        intermediate = ca_intermediate_now() if this_run().rotating else view.intermediate
        todo[:] = [to_issue(me, found, ca_root_pem(), revoked, intermediate=intermediate)]
        if not todo[0].issue:
            this_run().certs_current.add(me.name)  # a root rotation waits for every host
        return bool(todo[0].issue or todo[0].fix)

    def apply() -> None:
        certs = [cert for cert, _ in todo[0].issue]
        tokens = {"issue": {"_stdin": mint_tokens(plan, certs)}} if certs else {}
        emit(issue_ops(me, plan, todo[0]), extra=tokens)
        this_run().certs_current.add(me.name)

    call(
        f"Issue or repair certificates ({', '.join(c.kind for c in me.certs)})",
        apply,
        check=check,
        # The host's certificates (or that it has none) known before the run; else
        # `step` is new here: decided at execute time.
        check_now=(step_ready or none_there) and decided_before_run(me),
    )


def stale_issuance_ops(me: HostPlan, before: Snapshot) -> list[Op]:
    """Temp directories an interrupted issuance left (with a new key in them) removed."""
    return [
        Op(
            f"remove {path}",
            f"Remove {path} (left by an interrupted issuance)",
            "directory",
            {"path": path, "present": False},
        )  # fmt: skip
        for path in before.found_dirs[_interrupted(me)]
    ]


@dataclass(frozen=True)
class ToIssue:
    """A host's certificates to issue (with why) and those whose owner or mode is wrong."""

    issue: list[tuple[CertSpec, str]]
    fix: list[CertSpec]


def to_issue(
    me: HostPlan,
    found: Mapping[str, CertOnHost | None],
    root: str,
    revoked: frozenset[int] = frozenset(),
    now: datetime | None = None,
    intermediate: str | None = None,
) -> ToIssue:
    """Which of ``me``'s certificates (as ``found`` on the host) are issued anew, and
    which only need their owner and mode repaired.

    Re-issued only when missing, not matching its key, not from the CA of ``root`` or
    not from its current ``intermediate``, revoked, with SANs other than the inventory
    implies, a key of another type than `key_type`, past the renewal threshold, or
    expired (etcd_pki.certs.reissue_reason).
    """
    if set(found) != {c.name for c in me.certs}:
        # Every section is printed even for missing files: an incomplete answer is a
        # failed read, which must not be mistaken for "missing" and re-issued.
        raise PyinfraError(f"could not read the certificates on {me.name}; nothing re-issued")
    threshold, key_type = me.settings.renew_threshold_percent, me.settings.key_type
    todo = ToIssue([], [])
    for cert in me.certs:
        reason = reissue_reason(
            found[cert.name], cert, root, threshold, now, revoked, intermediate, key_type
        )
        if reason:
            todo.issue.append((cert, reason))
        elif permission_problems(found[cert.name], cert):  # type: ignore[arg-type]
            todo.fix.append(cert)
    return todo


def issue_ops(me: HostPlan, plan: ClusterPlan, todo: ToIssue) -> list[Op]:
    """The issuance of ``todo.issue`` in one command (it reads one token per certificate
    from stdin, minted when it runs) and the repair of ``todo.fix``."""
    ops = []
    if todo.issue:
        # One command for all of them: a round trip per host, not per certificate.
        certs = [cert for cert, _ in todo.issue]
        name = "Issue " + ", ".join(f"{cert.name} ({why})" for cert, why in todo.issue)
        ops.append(shell("issue", name, issue_command(me, certs, plan.ca_url)))
    for cert in todo.fix:
        ops.append(Op(f"mode {cert.crt}", f"Mode of {cert.crt}", "file",
                      {"path": cert.crt, "mode": "644"}))  # fmt: skip
        ops.append(Op(f"mode {cert.key}", f"Owner/mode of {cert.key}", "file",
                      {"path": cert.key, "user": cert.owner, "mode": "400"}))  # fmt: skip
    return ops


def is_new_host() -> bool:
    """This host has none of its certificates (nor a temp dir of an interrupted issuance)
    before the run: all of them are issued (see `first_certificates`)."""
    me = this_host()
    if not me.certs:
        return False
    before = snapshot(reads(me))
    return not before.found_dirs[_interrupted(me)] and _none_there(me, before)


@deploy("Certificates of a new host")
def first_certificates(with_step: bool = False) -> None:
    """What `trust_ca`, `issue_certificates` and `renewal_units` do on a host that has none
    of its certificates, in one command: trust the CA, issue every certificate, write and
    enable the renewal units (two round trips fewer per new host). ``with_step``: install
    the pinned `step` first in that command, when `install_step(step=False)` left it.

    .. code:: python

        if is_new_host():
            first_certificates()
    """
    plan = get_plan()
    me = this_host()
    certs = list(me.certs)
    renewal = units_command(me)  # None: stale units to remove first, by renewal_units
    install = step_command(me) if with_step else ""

    def apply() -> None:
        trust = " && ".join(trust_commands_now(me))
        # `set -e` does not stop a failing && list: each list exits by itself. The
        # renewal units are written with the default umask (the issuance sets 077).
        steps = [
            # A subshell: the install's own `set -e` and exit trap end with it.
            f"( {install} ) </dev/null || exit 1" if install else "",
            f"{{ {trust}; }} </dev/null || exit 1" if trust else "",
            issue_command(me, certs, plan.ca_url),  # under `set -e`, reads the tokens
            f"{{ umask 022 && {renewal}; }} </dev/null || exit 1" if renewal else "",
        ]
        done = [
            f"install step {me.settings.step_version}" if install else "",
            f"trust the CA ({trust_name(me, plan)})" if trust else "",
            f"issue {', '.join(c.name for c in certs)}",
            "renewal units" if renewal else "",
        ]
        server.shell(
            name="New host: " + ", ".join(filter(None, done)),
            commands=["; ".join(filter(None, steps))],
            _stdin=mint_tokens(plan, certs),
        )

    call("Trust the CA, issue every certificate, renewal units", apply)
    if renewal is None:
        renewal_units()


def step_comes_with_certificates() -> bool:
    """A new host that holds no CA installs `step` in its first certificates' command
    (`certificates`), not on its own: one round trip fewer (see deploy.py)."""
    return is_new_host() and not this_host().is_cert_manager


def certificates() -> None:
    """Trust the CA, issue this host's certificates, and their renewal units: on a new
    host in one command (`first_certificates`), else each task checks what it must do.
    (A phase, not a deploy of its own: the operations keep their deploys' names.)

    .. code:: python

        install_step(step=not step_comes_with_certificates())
        certificates()
    """
    if is_new_host():
        first_certificates(with_step=step_comes_with_certificates())
    else:
        trust_ca()
        issue_certificates()
        renewal_units()
