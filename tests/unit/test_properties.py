"""Property-based tests (hypothesis) of the pure rules: the OData compiler (services/common/odata.py) and the
elevation request state machine (services/requests/lifecycle.py). Derandomized: the same cases every run."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import odata
from services.common.odata import Field, ODataError, compile_filter, parse_filter, parse_orderby
from services.requests.lifecycle import (
    FINAL,
    OPEN,
    Action,
    Policy,
    State,
    TransitionError,
    closure_time,
    effective,
    is_successful,
    transition,
    valid_until,
)

from .test_odata import FIELDS as ODATA_FIELDS

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=300,
                    suppress_health_check=[HealthCheck.too_slow])

UTC = timezone.utc
FIELDS = {**ODATA_FIELDS, "applicationDetail/fileName": Field("file_name", "string")}  # and a path

# --- OData: any text is an expression or an ODataError, nothing else ------------------------------------------------

PIECES = ["(", ")", " ", ",", "'", "''", "not", "and", "or", "eq", "ne", "gt", "le", "in", "has", "add", "true",
          "null", "NOT", "deviceName", "hash", "elevationType", "result", "eventDateTime", "systemInitiatedElevation",
          "applicationDetail/fileName", "contains", "startswith", "tolower", "length", "year", "date",
          "contains(deviceName, 'a')",
          "foo", "'a'", "'%_\\'", "1", "-", "-1", "2147483648", "99999999999999999999", "2026-02-30",
          "2026-01-31T08:00Z", "2026-01-31T25:00:00+99:99", "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
          "microsoft.graph.elevationType'zeroTouchElevation'",
          "microsoft.graph.x'", ".", "/", "$", "\x00", "é", "\ud800", "(((((", ")))))", "not not not "]
odata_like = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
nested = st.tuples(st.integers(0, 6000), st.sampled_from(["(", "not ", "contains(", "not(", "( "])).map(
    lambda n_piece: n_piece[1] * n_piece[0] + "deviceName eq 'a'" + ")" * n_piece[0])
any_text = st.one_of(st.text(max_size=200), odata_like, nested, st.text(alphabet="() notandr'", max_size=5000))


@SETTINGS
@given(any_text)
def test_any_filter_text_parses_or_raises_odata_error(text):
    params = ["tenant"]
    try:
        sql = compile_filter(text, FIELDS, params)
    except ODataError as exc:
        assert str(exc) and params == ["tenant"]  # a message, and the caller's parameters untouched
        return
    assert isinstance(sql, str) and sql
    parse_filter(text) if text.strip() else None


@SETTINGS
@given(any_text)
def test_any_orderby_text_parses_or_raises_odata_error(text):
    try:
        order = parse_orderby(text, FIELDS)
    except ODataError:
        return
    assert all(name in FIELDS and isinstance(descending, bool) for name, descending in order)


# --- OData: well-formed expressions compile to SQL whose values are all bind parameters ------------------------------

MARK = "zq"  # every generated string value carries it, so value text in SQL would show
strings = st.text(min_size=0, max_size=30).map(lambda s: MARK + s)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@st.composite
def comparisons(draw) -> tuple[str, list]:
    """A comparison in text, and the values it must bind."""
    name = draw(st.sampled_from(sorted(FIELDS)))
    field = FIELDS[name]
    if field.type == "string":
        value = draw(strings)
        name = draw(st.sampled_from([name, f"tolower({name})", f"toupper(tolower({name}))"]))
        kind = draw(st.sampled_from(["eq", "ne", "gt", "contains", "startswith", "endswith", "in"]))
        if kind in odata.LIKE_PATTERNS:
            return f"{kind}({name}, {_quoted(value)})", [value]
        if kind == "in":
            values = draw(st.lists(strings, min_size=1, max_size=4))
            return f"{name} in ({', '.join(map(_quoted, values))})", values
        return f"{name} {kind} {_quoted(value)}", [value]
    if field.type == "int":
        value = draw(st.integers(odata.INT32_MIN, odata.INT32_MAX))
        return f"{name} {draw(st.sampled_from(odata.COMPARISONS))} {value}", [value]
    if field.type == "datetime":
        value = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                                  timezones=st.just(UTC)))
        return f"{name} {draw(st.sampled_from(odata.COMPARISONS))} {value.isoformat().replace('+00:00', 'Z')}", [value]
    if field.type == "enum":
        value = draw(st.sampled_from(field.enum_values))
        return f"{name} {draw(st.sampled_from(['eq', 'ne']))} '{value}'", [value]
    return draw(st.sampled_from([f"{name}", f"{name} eq true", f"not {name}", f"{name} eq null"])), []


@st.composite
def expressions(draw, depth: int = 3) -> tuple[str, list]:
    if depth == 0 or draw(st.booleans()):
        return draw(comparisons())
    op = draw(st.sampled_from(["and", "or", "not", "()"]))
    if op == "not":
        text, values = draw(expressions(depth - 1))
        return f"not ({text})", values
    if op == "()":
        text, values = draw(expressions(depth - 1))
        return f"({text})", values
    parts = draw(st.lists(expressions(depth - 1), min_size=2, max_size=3))
    return f" {op} ".join(f"({t})" for t, _ in parts), [v for _, vs in parts for v in vs]


COLUMNS = sorted({f.column for f in FIELDS.values()}, key=len, reverse=True)
SQL_WORDS = {"AND", "OR", "NOT", "COALESCE", "FALSE", "TRUE", "IS", "DISTINCT", "FROM", "NULL", "IN", "LIKE",
             "lower", "upper", "NULLIF", "ESCAPE"}
SQL_TOKEN = re.compile(r"\s+|\$\d+|'\\'|''|[(),]|[=<>]+|[A-Za-z_]+")


@SETTINGS
@given(expressions(), st.integers(0, 5))
def test_well_formed_filters_bind_every_value(expression, offset):
    text, values = expression
    params = [object()] * offset
    sql = compile_filter(text, FIELDS, params)
    bound = params[offset:]
    # $N placeholders are exactly offset+1 .. offset+len(bound), each used once
    assert sorted(int(n) for n in re.findall(r"\$(\d+)", sql)) == list(range(offset + 1, offset + len(bound) + 1))
    # the SQL is columns, keywords, operators and placeholders only: no value text at all
    rest = sql
    for column in COLUMNS:
        rest = rest.replace(column, " ")
    tokens = [t for t in SQL_TOKEN.findall(rest) if t.strip()]
    assert "".join(SQL_TOKEN.findall(rest)) == rest, rest
    assert all(t.startswith("$") or t in SQL_WORDS or not t[0].isalpha() for t in tokens), rest
    assert MARK not in sql
    # every literal reached the parameters (strings as themselves, lowered, or inside a LIKE pattern)
    for value in values:
        if isinstance(value, str):
            assert any(isinstance(p, str) and value.lower().replace("\\", "") in p.lower().replace("\\", "")
                       for p in bound), (value, bound)
        else:
            assert value in bound


@SETTINGS
@given(st.integers(1, 200))
def test_nesting_is_limited_by_depth_not_by_the_stack(depth):
    text = "(" * depth + "deviceName eq 'a'" + ")" * depth
    if depth <= odata.MAX_DEPTH:
        assert compile_filter(text, FIELDS, []) == "device_name = $1"
    else:
        try:
            compile_filter(text, FIELDS, [])
            raise AssertionError("nested past the limit, yet compiled")
        except ODataError as exc:
            assert "nested" in str(exc)


# --- the request state machine -------------------------------------------------------------------------------------

# The documented table (lifecycle.py's docstring, README): from -> {action: to}; everything else is refused.
DOCUMENTED = {
    State.PENDING: {Action.APPROVE: State.APPROVED, Action.DENY: State.DENIED, Action.EXPIRE: State.EXPIRED,
                    Action.CLOSE: State.REVOKED},
    State.APPROVED: {Action.REVOKE: State.REVOKED, Action.COMPLETE: State.COMPLETED, Action.EXPIRE: State.EXPIRED,
                     Action.CLOSE: State.COMPLETED},
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
policies = st.builds(Policy, approval_window=st.timedeltas(timedelta(seconds=1), timedelta(days=30)),
                     pending_ttl=st.timedeltas(timedelta(seconds=1), timedelta(days=60)))
steps = st.lists(st.tuples(st.sampled_from(list(Action)), st.timedeltas(timedelta(0), timedelta(days=10))),
                 max_size=12)


@SETTINGS
@given(st.sampled_from(list(State)), st.sampled_from(list(Action)))
def test_every_transition_is_the_documented_one(state, action):
    expected = DOCUMENTED.get(state, {}).get(action)
    try:
        assert transition(state, action) is expected is not None
    except TransitionError as exc:
        assert expected is None
        assert exc.current is state and exc.action is action
        assert state.value in str(exc) and action.value in str(exc)
        assert ("final" in str(exc)) == (state in FINAL)


@SETTINGS
@given(policies, steps)
def test_random_histories_follow_the_table_and_expire_on_time(policy, history):
    """A request lives through random actions at random times, as the store runs them: each action applies to the
    state in effect at that instant (expiry included)."""
    stored, approved_at, now, modified = State.PENDING, None, T0, T0
    for action, wait in history:
        now += wait
        deadline = valid_until(stored, T0, approved_at, policy)
        current = effective(stored, deadline, now)
        # expiry is exactly the deadline: pending TTL after creation, the window after approval
        assert (current is State.EXPIRED and stored in OPEN) == (stored in OPEN and now >= deadline)
        if stored is State.APPROVED:
            assert deadline == approved_at + policy.approval_window
        elif stored is State.PENDING:
            assert deadline == T0 + policy.pending_ttl
        assert (closure_time(stored, deadline, modified, now) is None) == (current in OPEN)
        try:
            new = transition(current, action)
        except TransitionError:
            assert action not in DOCUMENTED.get(current, {})
            continue
        assert current in OPEN and new is DOCUMENTED[current][action]  # final states absorb: never reached here
        stored, modified = new, now
        approved_at = now if new is State.APPROVED else approved_at
    assert is_successful(stored) == (stored in (State.APPROVED, State.COMPLETED))


@SETTINGS
@given(policies, st.timedeltas(timedelta(0), timedelta(days=10)), st.timedeltas(timedelta(0), timedelta(days=60)))
def test_an_approval_lasts_exactly_its_window(policy, after_creation, later):
    approved_at = T0 + after_creation
    deadline = valid_until(State.APPROVED, T0, approved_at, policy)
    assert deadline == approved_at + policy.approval_window
    state = effective(State.APPROVED, deadline, approved_at + later)
    assert state is (State.EXPIRED if later >= policy.approval_window else State.APPROVED)
    if state is State.EXPIRED:
        assert closure_time(State.APPROVED, deadline, approved_at, approved_at + later) == deadline


@SETTINGS
@given(st.sampled_from(sorted(FINAL)), st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC)))
def test_final_states_absorb_at_any_time(state, deadline, now):
    assert effective(state, deadline, now) is state
    for action in Action:
        try:
            transition(state, action)
            raise AssertionError(f"{state} left by {action}")
        except TransitionError:
            pass
