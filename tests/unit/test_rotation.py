"""rotate_ca.py's decisions as data (etcd_pki/rotation.py): the state file, what a run
may start or resume, and what it says."""

from __future__ import annotations

import pytest

from etcd_pki.certs import fingerprint, pem_blocks
from etcd_pki.rotation import (
    PHASES,
    Rotation,
    finished_message,
    in_progress_message,
    kind_problem,
    parse_state,
    start_problem,
    trust_now,
)

from .pki_fixtures import Ca

FP = "ab" * 32


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_no_state_means_no_rotation_yet(text):
    assert parse_state(text) is None


@pytest.mark.parametrize("kind", ["intermediate", "root"])
@pytest.mark.parametrize("phase", PHASES)
def test_a_state_line_round_trips(kind, phase):
    state = parse_state(f"{kind} {phase} {FP}\n")
    assert state == Rotation(kind, phase, FP)
    assert parse_state(state.line()) == state
    assert state.finished is (phase == "done")


@pytest.mark.parametrize(
    "text",
    [
        f"root started {FP}",  # unknown phase
        f"leaf done {FP}",  # unknown kind
        f"root done {FP[:-1]}",  # short fingerprint
        f"root done {FP.upper()}",
        f"root done {FP} extra",
        f"root done {FP}\nroot done {FP}",
    ],
)
def test_a_damaged_state_is_not_guessed_at(text):
    with pytest.raises(ValueError, match="unreadable rotation state"):
        parse_state(text)


def test_phases_are_ordered():
    state = Rotation("root", "trusted", FP)
    assert state.reached("prepared") and state.reached("trusted")
    assert not state.reached("switched") and not state.reached("done")


@pytest.mark.parametrize(
    ("kind", "state", "again", "problem"),
    [
        ("root", None, False, None),  # first rotation
        ("root", Rotation("root", "trusted", FP), False, None),  # resume
        ("root", Rotation("root", "done", FP), False, None),  # done: nothing to do
        ("root", Rotation("root", "done", FP), True, None),  # again
        ("intermediate", Rotation("root", "done", FP), False, None),
        ("root", Rotation("intermediate", "done", FP), False, None),
        ("root", Rotation("intermediate", "switched", FP), False, "rotate=intermediate"),
        ("intermediate", Rotation("root", "prepared", FP), True, "rotate=root"),
    ],
)
def test_what_a_run_may_start(kind, state, again, problem):
    got = start_problem(kind, state, again)
    assert (got is None) == (problem is None)
    if problem:
        assert problem in got and state.phase in got


@pytest.mark.parametrize("value", [None, "", "Root", "both", 1, "intermediate "])
def test_only_the_two_kinds_are_accepted(value):
    problem = kind_problem(value)
    assert problem and repr(value) in problem and "rotate=root" in problem


def test_messages_name_the_next_step():
    done = finished_message(Rotation("root", "done", FP))
    assert FP[:16] in done and "rotate_again=true" in done
    busy = in_progress_message(Rotation("root", "switched", FP), "etcd-k8s-1")
    assert "etcd-k8s-1" in busy and "'switched'" in busy
    assert "rotate_ca.py --data rotate=root" in busy


# --- what hosts may trust while a root rotation is under way ---------------------------

OLD, NEW = Ca(name="rot"), Ca(name="rot")  # same names, different keys: as a rotation makes


def _state(phase: str) -> Rotation:
    return Rotation("root", phase, fingerprint(NEW.root_pem))


def _roots(bundle: str) -> list[str]:
    return [fingerprint(pem) for pem in pem_blocks(bundle, "CERTIFICATE")]


def _choices(trust) -> list[list[str]]:
    return [sorted(_roots(choice)) for choice in trust.choices]


def test_without_a_root_rotation_hosts_trust_the_cas_root():
    for state in (None, Rotation("intermediate", "switched", FP), _state("done")):
        trust = trust_now(state, OLD.root_pem, NEW.root_pem, None)
        assert trust.chain == trust.current == OLD.root_pem
        assert trust.choices == (OLD.root_pem,)


@pytest.mark.parametrize(
    "phase, current, previous, chain, choices",
    [
        # trust_roots was under way: a host has the old root, or already both
        ("prepared", OLD, None, ["old"], [["old"], ["new", "old"]]),
        ("trusted", OLD, None, ["new", "old"], [["new", "old"]]),
        # hosts were dropping the old root: both, or the new one only
        ("switched", NEW, OLD, ["new", "old"], [["new", "old"], ["new"]]),
    ],
)
def test_each_phase_allows_both_sides_of_a_step_stopped_half_way(
    phase, current, previous, chain, choices
):
    name = {fingerprint(OLD.root_pem): "old", fingerprint(NEW.root_pem): "new"}
    trust = trust_now(_state(phase), current.root_pem, NEW.root_pem, previous and previous.root_pem)
    assert trust.current == current.root_pem
    assert sorted(name[fp] for fp in _roots(trust.chain)) == chain
    assert [sorted(name[fp] for fp in c) for c in _choices(trust)] == choices


def test_a_switch_stopped_before_its_record_is_told_apart_by_fingerprint():
    """The renames are done (certs/root_ca.crt is the new root), the state still says
    trusted: the old root is the previous one, and hosts must still trust both."""
    trust = trust_now(_state("trusted"), NEW.root_pem, NEW.root_pem, OLD.root_pem)
    assert sorted(_roots(trust.chain)) == sorted(
        [fingerprint(OLD.root_pem), fingerprint(NEW.root_pem)]
    )
    assert len(trust.choices) == 1


def test_missing_rotation_files_fall_back_to_the_cas_root():
    trust = trust_now(_state("trusted"), OLD.root_pem, None, None)
    assert trust.choices == (OLD.root_pem,) and trust.chain == OLD.root_pem
