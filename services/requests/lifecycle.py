"""The elevation request state machine. Pure: no I/O, no clock (callers pass `now`).

    pending  --approve--> approved   --revoke-->   revoked
    pending  --deny-----> denied     approved --complete--> completed
    pending  --expire---> expired    approved --expire----> expired
    pending  --close----> revoked    approved --close-----> completed

close is the requester (an MMD support agent) ending its request: withdrawn while pending, done once approved.
denied, expired, revoked and completed are final. Expiry is a function of time: `effective` tells the state at
any instant, before any sweep has written it down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum


class State(str, Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"
    COMPLETED = "completed"


class Action(str, Enum):
    APPROVE = "approve"
    DENY = "deny"
    REVOKE = "revoke"
    EXPIRE = "expire"
    COMPLETE = "complete"
    CLOSE = "close"


TRANSITIONS: dict[tuple[State, Action], State] = {
    (State.PENDING, Action.APPROVE): State.APPROVED,
    (State.PENDING, Action.DENY): State.DENIED,
    (State.PENDING, Action.EXPIRE): State.EXPIRED,
    (State.APPROVED, Action.REVOKE): State.REVOKED,
    (State.APPROVED, Action.COMPLETE): State.COMPLETED,
    (State.APPROVED, Action.EXPIRE): State.EXPIRED,
    (State.PENDING, Action.CLOSE): State.REVOKED,
    (State.APPROVED, Action.CLOSE): State.COMPLETED,
}
REVIEW = frozenset({Action.APPROVE, Action.DENY, Action.REVOKE})  # what a reviewer may do; the rest is the system's
OPEN = frozenset({State.PENDING, State.APPROVED})
FINAL = frozenset(State) - OPEN
MAX_JUSTIFICATION = 256


class TransitionError(Exception):
    """The action is not allowed in the current state; the message names both, and what a reviewer could do."""

    def __init__(self, current: State, action: Action):
        allowed = sorted(a.value for (s, a) in TRANSITIONS if s is current and a in REVIEW)
        detail = f"only {', '.join(allowed)} is allowed" if allowed else "it is final"
        super().__init__(f"Cannot {action.value} an elevation request that is {current.value}: {detail}.")
        self.current, self.action = current, action


def transition(current: State, action: Action) -> State:
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        raise TransitionError(current, action) from None


def effective(stored: State, valid_until: datetime, now: datetime) -> State:
    """The state at `now`: an open request whose deadline has passed is expired, written down or not."""
    return State.EXPIRED if stored in OPEN and now >= valid_until else stored


@dataclass(frozen=True)
class Policy:
    """Per-tenant timing and limits."""

    approval_window: timedelta = timedelta(hours=24)  # elevation allowed this long after approval
    pending_ttl: timedelta = timedelta(days=7)         # unreviewed requests expire after this
    max_open_per_device: int = 10


def closure_time(stored: State, valid_until: datetime, modified_at: datetime, now: datetime) -> datetime | None:
    """When the request left the open states, None while it is open: an expiry at its deadline, any other end at
    its last change (nothing changes a request after that)."""
    state = effective(stored, valid_until, now)
    if state in OPEN:
        return None
    return valid_until if state is State.EXPIRED else modified_at


def is_successful(state: State) -> bool:
    """MMD's isSuccessfulRequest: the elevation was granted."""
    return state in (State.APPROVED, State.COMPLETED)


def valid_until(state: State, created: datetime, approved: datetime | None, policy: Policy) -> datetime:
    """Deadline of the current state: the request expiry for pending, the end of the window once approved."""
    if state is State.APPROVED and approved is not None:
        return approved + policy.approval_window
    return created + policy.pending_ttl


def justification_problem(text: str, what: str) -> str | None:
    if len(text) > MAX_JUSTIFICATION:
        return f"{what} must be at most {MAX_JUSTIFICATION} characters."
    return None
