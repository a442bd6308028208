"""rotate_ca.py's decisions as data (etcd_pki/rotation.py): the state file, what a run
may start or resume, and what it says."""

from __future__ import annotations

import pytest

from etcd_pki.rotation import (
    PHASES,
    Rotation,
    finished_message,
    in_progress_message,
    kind_problem,
    parse_state,
    start_problem,
)

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
