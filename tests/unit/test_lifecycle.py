"""The elevation request state machine, exhaustively: every (state, action) pair, deadlines, justifications."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from services.requests.lifecycle import (
    FINAL,
    MAX_JUSTIFICATION,
    OPEN,
    TRANSITIONS,
    Action,
    Policy,
    State,
    TransitionError,
    closure_time,
    effective,
    is_successful,
    justification_problem,
    transition,
    valid_until,
)

S, A = State, Action
# The issue's table, written out independently of lifecycle.TRANSITIONS.
ALLOWED = {
    (S.PENDING, A.APPROVE): S.APPROVED,
    (S.PENDING, A.DENY): S.DENIED,
    (S.PENDING, A.EXPIRE): S.EXPIRED,
    (S.APPROVED, A.REVOKE): S.REVOKED,
    (S.APPROVED, A.EXPIRE): S.EXPIRED,
    (S.APPROVED, A.COMPLETE): S.COMPLETED,
    (S.PENDING, A.CLOSE): S.REVOKED,      # the MMD agent withdraws its request
    (S.APPROVED, A.CLOSE): S.COMPLETED,   # the MMD agent is done with the elevation
}
PAIRS = list(itertools.product(State, Action))
DENIED_PAIRS = [pair for pair in PAIRS if pair not in ALLOWED]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
TICK = timedelta(microseconds=1)


def test_the_table_is_the_issues_table():
    assert TRANSITIONS == ALLOWED
    assert len(PAIRS) == 36 and len(DENIED_PAIRS) == 28


def test_open_and_final_states():
    assert OPEN == {S.PENDING, S.APPROVED}
    assert FINAL == {S.DENIED, S.EXPIRED, S.REVOKED, S.COMPLETED}
    assert OPEN | FINAL == set(State) and not OPEN & FINAL


@pytest.mark.parametrize(("state", "action"), list(ALLOWED), ids=lambda x: x.value)
def test_allowed_transitions(state, action):
    assert transition(state, action) is ALLOWED[(state, action)]


@pytest.mark.parametrize(("state", "action"), DENIED_PAIRS, ids=lambda x: x.value)
def test_every_other_pair_is_refused_naming_state_and_action(state, action):
    with pytest.raises(TransitionError) as err:
        transition(state, action)
    message = str(err.value)
    assert err.value.current is state and err.value.action is action
    assert f"Cannot {action.value} an elevation request that is {state.value}" in message
    # it names what a reviewer could do instead, never the system's own actions (expire, complete, close)
    expected = {State.PENDING: "only approve, deny is allowed.", State.APPROVED: "only revoke is allowed."}
    assert message.endswith(expected.get(state, "it is final."))


@pytest.mark.parametrize("state", sorted(FINAL), ids=lambda s: s.value)
def test_final_states_have_no_way_out(state):
    for action in Action:
        with pytest.raises(TransitionError):
            transition(state, action)


def test_every_final_state_is_reachable_and_expiry_ends_every_open_state():
    assert {ALLOWED[pair] for pair in ALLOWED} == FINAL | {S.APPROVED}
    assert all(transition(s, A.EXPIRE) is S.EXPIRED for s in OPEN)


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
def test_effective_around_the_deadline(state):
    deadline = T0 + timedelta(hours=24)
    after = S.EXPIRED if state in OPEN else state
    assert effective(state, deadline, deadline - timedelta(hours=1)) is state
    assert effective(state, deadline, deadline - TICK) is state
    assert effective(state, deadline, deadline) is after  # the deadline itself is already past
    assert effective(state, deadline, deadline + TICK) is after
    assert effective(state, deadline, deadline + timedelta(days=365)) is after


def test_valid_until_defaults():
    policy = Policy()
    assert (policy.approval_window, policy.pending_ttl, policy.max_open_per_device) == (
        timedelta(hours=24), timedelta(days=7), 10)
    approved_at = T0 + timedelta(days=2)
    assert valid_until(S.PENDING, T0, None, policy) == T0 + timedelta(days=7)
    assert valid_until(S.APPROVED, T0, approved_at, policy) == approved_at + timedelta(hours=24)
    # the window runs from approval, not creation: it may end after the pending deadline would have
    late = T0 + timedelta(days=6, hours=23)
    assert valid_until(S.APPROVED, T0, late, policy) == late + timedelta(hours=24) > T0 + timedelta(days=7)


def test_valid_until_follows_the_policy():
    policy = Policy(approval_window=timedelta(minutes=30), pending_ttl=timedelta(hours=2), max_open_per_device=1)
    assert valid_until(S.PENDING, T0, None, policy) == T0 + timedelta(hours=2)
    assert valid_until(S.APPROVED, T0, T0 + timedelta(hours=1), policy) == T0 + timedelta(hours=1, minutes=30)
    assert valid_until(S.APPROVED, T0, None, policy) == T0 + timedelta(hours=2)  # no approval time: pending's


def test_effective_with_valid_until_end_to_end():
    policy = Policy()
    approved_at = T0 + timedelta(hours=3)
    end = valid_until(S.APPROVED, T0, approved_at, policy)
    assert effective(S.APPROVED, end, approved_at + timedelta(hours=24) - TICK) is S.APPROVED
    assert effective(S.APPROVED, end, approved_at + timedelta(hours=24)) is S.EXPIRED
    pending_end = valid_until(S.PENDING, T0, None, policy)
    assert effective(S.PENDING, pending_end, T0 + timedelta(days=7) - TICK) is S.PENDING
    assert effective(S.PENDING, pending_end, T0 + timedelta(days=7)) is S.EXPIRED


@pytest.mark.parametrize("length", [0, 1, 255, MAX_JUSTIFICATION])
def test_justification_up_to_256_is_fine(length):
    assert MAX_JUSTIFICATION == 256
    assert justification_problem("j" * length, "reviewerJustification") is None


@pytest.mark.parametrize("length", [MAX_JUSTIFICATION + 1, 10_000])
def test_justification_over_256_is_a_problem_naming_the_field(length):
    problem = justification_problem("é" * length, "requestJustification")
    assert problem == "requestJustification must be at most 256 characters."


def test_close_ends_every_open_state_and_nothing_final():
    assert {s for (s, a) in ALLOWED if a is A.CLOSE} == OPEN
    for state in FINAL:
        with pytest.raises(TransitionError, match=f"Cannot close an elevation request that is {state.value}"):
            transition(state, A.CLOSE)


def test_closure_time_is_when_the_request_left_the_open_states():
    deadline, changed = T0 + timedelta(days=7), T0 + timedelta(hours=2)
    assert closure_time(S.PENDING, deadline, changed, T0 + timedelta(hours=3)) is None
    assert closure_time(S.APPROVED, deadline, changed, T0 + timedelta(hours=3)) is None
    for final in (S.DENIED, S.REVOKED, S.COMPLETED):
        assert closure_time(final, deadline, changed, T0 + timedelta(hours=3)) == changed
    # expired at its deadline, whether or not a sweep wrote it down (and whenever that sweep ran)
    assert closure_time(S.PENDING, deadline, changed, deadline + timedelta(days=1)) == deadline
    assert closure_time(S.EXPIRED, deadline, deadline + timedelta(hours=5), deadline + timedelta(days=1)) == deadline


def test_successful_means_the_elevation_was_granted():
    assert {s for s in State if is_successful(s)} == {S.APPROVED, S.COMPLETED}
