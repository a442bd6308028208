"""Rotating the CA (rotate_ca.py), as data: what is asked, and where a root rotation is.

Each rotation records where it is on the CA node (`ca_dir/rotation/state`: "KIND PHASE
FINGERPRINT"), so that a run stopped anywhere is finished by the next one, and a
finished one is not made again by a re-run.

An intermediate rotation is one step on the CA (a new intermediate signed by the same
root, step-ca reloaded: `intermediate switched FINGERPRINT-OF-IT`) followed by the
re-issue of every certificate (`intermediate done`); etcd needs no restart, since it
trusts the root and reads its certificates on every handshake.

A root rotation goes through phases (FINGERPRINT of the new root):

    prepared   the new root and intermediate exist beside the CA (ca_dir/rotation/)
    trusted    every host trusts both roots; etcd members restarted one at a time
    switched   step-ca runs on the new root and intermediate; certificates re-issued
    done       every host trusts the new root only; members restarted again

What the audit expects hosts to trust at each point of a root rotation is
:func:`trust_now`. No pyinfra import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .certs import fingerprint

KINDS = ("intermediate", "root")
PHASES = ("prepared", "trusted", "switched", "done")
_STATE_RE = re.compile(r"^(intermediate|root) (prepared|trusted|switched|done) ([0-9a-f]{64})$")


@dataclass(frozen=True)
class Rotation:
    """Where a rotation is: its kind, its last phase done, and the fingerprint of the new
    root (or, for an intermediate rotation, of the new intermediate)."""

    kind: str
    phase: str
    fingerprint: str

    @property
    def finished(self) -> bool:
        return self.phase == "done"

    def reached(self, phase: str) -> bool:
        """``phase`` is done (or a later one)."""
        return PHASES.index(self.phase) >= PHASES.index(phase)

    def line(self) -> str:
        return f"{self.kind} {self.phase} {self.fingerprint}"


def root_rotation_unfinished(state: Rotation | None) -> bool:
    """A root rotation has started and is not done: hosts may trust two roots."""
    return state is not None and state.kind == "root" and not state.finished


def parse_state(text: str | None) -> Rotation | None:
    """The state file's content; None when there is none (no rotation started).
    ValueError for anything else (a damaged file is not guessed at)."""
    if not text or not text.strip():
        return None
    match = _STATE_RE.match(text.strip())
    if not match:
        raise ValueError(f"unreadable rotation state {text.strip()[:80]!r}")
    return Rotation(*match.groups())


def start_problem(kind: str, state: Rotation | None, again: bool) -> str | None:
    """Why a `rotate=kind` run must not go on from ``state`` (None: go on, resuming an
    unfinished rotation of that kind or starting a new one)."""
    if state is None or (state.finished and (again or state.kind != kind)):
        return None
    if not state.finished and state.kind != kind:
        return (
            f"a {state.kind} rotation is unfinished (phase {state.phase!r} done): finish it "
            f"first with --data rotate={state.kind}"
        )
    return None


def finished_message(state: Rotation) -> str:
    """What a re-run of a finished rotation says (it changes nothing)."""
    return (
        f"the {state.kind} rotation to {state.fingerprint[:16]}... is done: nothing to do. "
        f"To rotate the {state.kind} again: --data rotate={state.kind} --data rotate_again=true"
    )


def kind_problem(value: object) -> str | None:
    """What is wrong with `--data rotate=...`, or None."""
    if value in KINDS:
        return None
    return (
        f"--data rotate={value!r}: say what to rotate, `rotate=intermediate` (a new "
        "intermediate from the same root) or `rotate=root` (a new root and intermediate, "
        "in phases)"
    )


def in_progress_message(state: Rotation, ca: str) -> str:
    """Why deploy.py stops while a root rotation is unfinished, and how to go on."""
    return (
        f"a root rotation is in progress on {ca} (phase {state.phase!r} done; new root "
        f"{state.fingerprint[:16]}...): finish it first with "
        "`pyinfra INVENTORY rotate_ca.py --data rotate=root` (it resumes where it stopped); "
        "deploy.py would mix the two roots"
    )


@dataclass(frozen=True)
class Trust:
    """What the audit expects at this point of the CA's life: ``current`` the CA's root
    now (certs/root_ca.crt); ``chain`` every root a certificate may chain to (a bundle
    during a root rotation); ``choices`` the root files a host may hold (each one
    certificate or a bundle), any of them fine."""

    current: str
    chain: str
    choices: tuple[str, ...]


def trust_now(
    state: Rotation | None, current: str, next_root: str | None, previous_root: str | None
) -> Trust:
    """:class:`Trust` from the rotation's ``state`` and the CA's root files: ``current``
    (certs/root_ca.crt), ``next_root`` (rotation/root_ca.crt) and ``previous_root``
    (rotation/previous_root_ca.crt), None when missing.

    A run stopped inside a phase leaves hosts on either side of it, and both are fine:
    prepared, the old root or both (trust_roots was under way); trusted, both; switched,
    both or the new one only (the old one was being dropped). A switch stopped between
    its renames and its record leaves the new root in place with the state "trusted":
    the roots are told apart by the state's fingerprint, not by file name."""
    if not root_rotation_unfinished(state):
        return Trust(current, current, (current,))
    known = [pem for pem in (current, next_root, previous_root) if pem]
    new = next((p for p in known if fingerprint(p) == state.fingerprint), None)
    old = next((p for p in known if fingerprint(p) != state.fingerprint), None)
    if new is None or old is None:  # files missing: expect what is there
        return Trust(current, current, (current,))
    both = old.rstrip("\n") + "\n" + new
    if state.phase == "prepared":
        return Trust(current, old, (old, both))
    if state.phase == "trusted":
        return Trust(current, both, (both,))
    return Trust(current, both, (both, new))
