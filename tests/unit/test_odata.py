"""$filter / $orderby parsing, type checking and SQL compilation (services.common.odata). No database."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import pytest

from services.common.odata import (
    Call,
    Compare,
    Field,
    In,
    Literal,
    Logical,
    Not,
    ODataError,
    Property,
    compile_filter,
    parse_filter,
    parse_orderby,
)

ELEVATION_TYPES = ("undetermined", "unmanagedElevation", "zeroTouchElevation", "userConfirmedElevation",
                   "supportApprovedElevation", "unknownFutureValue")
FIELDS = {
    "deviceName": Field("device_name", "string"),
    "hash": Field("hash", "string", casefold=True),
    "justification": Field("justification", "string", empty_is_null=True),
    "result": Field("result", "int"),
    "systemInitiatedElevation": Field("system_initiated_elevation", "bool"),
    "eventDateTime": Field("event_date_time", "datetime"),
    "elevationType": Field("elevation_type", "enum", ELEVATION_TYPES),
}
UTC = timezone.utc


def sql(text: str, params: list | None = None) -> tuple[str, list]:
    params = [] if params is None else params
    return compile_filter(text, FIELDS, params), params


def error(text: str) -> str:
    with pytest.raises(ODataError) as caught:
        compile_filter(text, FIELDS, [])
    return str(caught.value)


# --- empty input and parameter numbering -------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_filter_is_true(text):
    params = ["tenant"]
    assert compile_filter(text, FIELDS, params) == "TRUE"
    assert params == ["tenant"]


def test_placeholders_continue_after_prefilled_params():
    params = ["tenant", "other"]
    where = compile_filter("deviceName eq 'pc' and result in (1, 2)", FIELDS, params)
    assert where == "(device_name = $3 AND result IN ($4, $5))"
    assert params == ["tenant", "other", "pc", 1, 2]


def test_params_untouched_when_compilation_fails():
    params = ["tenant"]
    with pytest.raises(ODataError):
        compile_filter("deviceName eq 'pc' and result eq 'x'", FIELDS, params)
    assert params == ["tenant"]


# --- comparisons ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("op, symbol", [
    ("eq", "="), ("ne", "IS DISTINCT FROM"), ("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="),
])
def test_every_comparison_operator(op, symbol):
    assert sql(f"result {op} 3") == (f"result {symbol} $1", [3])


@pytest.mark.parametrize("text, expected", [
    ("3 eq result", "result = $1"),
    ("3 ne result", "result IS DISTINCT FROM $1"),
    ("3 gt result", "result < $1"),
    ("3 ge result", "result <= $1"),
    ("3 lt result", "result > $1"),
    ("3 le result", "result >= $1"),
])
def test_literal_first_comparisons_are_flipped(text, expected):
    assert sql(text) == (expected, [3])


def test_string_comparison_and_quote_escape():
    assert sql("deviceName eq 'O''Brien''s PC'") == ("device_name = $1", ["O'Brien's PC"])
    assert sql("deviceName eq ''") == ("device_name = $1", [""])


def test_casefold_lowers_column_and_literal():
    assert sql("hash eq 'ABCDEF'") == ("lower(hash) = $1", ["abcdef"])
    assert sql("'ABC' ne hash") == ("lower(hash) IS DISTINCT FROM $1", ["abc"])


def test_unquoted_guid_is_a_string_literal():
    guid = "01234567-89AB-cdef-0123-456789abcdef"
    assert sql(f"deviceName eq {guid}") == ("device_name = $1", [guid])
    assert sql("deviceName eq abcdef01-0000-0000-0000-000000000000") == (
        "device_name = $1", ["abcdef01-0000-0000-0000-000000000000"])


def test_int_literals_including_negative_and_int32_bounds():
    assert sql("result eq -7") == ("result = $1", [-7])
    assert sql("result ge -2147483648 and result le 2147483647")[1] == [-2147483648, 2147483647]


@pytest.mark.parametrize("value", ["2147483648", "-2147483649", "99999999999999999999"])
def test_int_out_of_range(value):
    message = error(f"result eq {value}")
    assert value in message and "result" in message and "range" in message


def test_bool_literals():
    assert sql("systemInitiatedElevation eq true") == ("system_initiated_elevation = $1", [True])
    assert sql("false ne systemInitiatedElevation") == ("system_initiated_elevation IS DISTINCT FROM $1", [False])


def test_bare_boolean_property_and_literal_are_conditions():
    assert sql("systemInitiatedElevation") == ("system_initiated_elevation", [])
    assert sql("true") == ("TRUE", [])
    assert sql("false or result eq 1") == ("(FALSE OR result = $1)", [1])


# --- datetimes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("literal, expected", [
    ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01T10:30:00.123+02:00", datetime(2026, 1, 1, 8, 30, 0, 123000, tzinfo=UTC)),
    ("2026-01-01T00:00:00-05:30", datetime(2026, 1, 1, 5, 30, tzinfo=UTC)),
    ("2026-01-01T12:00:00.1234567Z", datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)),
    ("2026-01-01T12:00Z", datetime(2026, 1, 1, 12, tzinfo=UTC)),
    ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),
    ("'2026-01-01T00:00:00+01:00'", datetime(2025, 12, 31, 23, tzinfo=UTC)),  # quoted, leniently
    ("'2026-01-01 08:00:00'", datetime(2026, 1, 1, 8, tzinfo=UTC)),  # no offset: UTC
])
def test_datetime_literals_become_utc(literal, expected):
    where, params = sql(f"eventDateTime ge {literal}")
    assert where == "event_date_time >= $1"
    assert params == [expected] and params[0].utcoffset() == timedelta(0)


def test_datetime_range():
    assert sql("eventDateTime ge 2026-01-01 and eventDateTime lt 2026-02-01T00:00:00Z") == (
        "(event_date_time >= $1 AND event_date_time < $2)",
        [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)],
    )


@pytest.mark.parametrize("literal", ["2026-13-01", "2026-02-30T00:00:00Z", "2026-01-01T25:00:00Z",
                                     "2026-01-01T00:00:00+02:99", "0000-01-01"])
def test_invalid_unquoted_datetime(literal):
    assert literal in error(f"eventDateTime gt {literal}")


def test_invalid_quoted_datetime_names_value_and_property():
    message = error("eventDateTime gt 'yesterday'")
    assert "'yesterday'" in message and "eventDateTime" in message


# --- enums ---------------------------------------------------------------------------------------------


def test_enum_literals_plain_and_qualified():
    assert sql("elevationType eq 'supportApprovedElevation'") == ("elevation_type = $1", ["supportApprovedElevation"])
    qualified = "elevationType ne microsoft.graph.privilegeManagementElevationType'zeroTouchElevation'"
    assert sql(qualified) == ("elevation_type IS DISTINCT FROM $1", ["zeroTouchElevation"])


def test_unknown_enum_member_names_only_value_and_property():
    message = error("elevationType eq 'sudo'")
    assert "'sudo'" in message and "elevationType" in message
    assert "unmanagedElevation" not in message


def test_enum_members_are_case_sensitive():
    assert "'SupportApprovedElevation'" in error("elevationType eq 'SupportApprovedElevation'")


# --- null ----------------------------------------------------------------------------------------------


def test_null_comparisons():
    assert sql("deviceName eq null") == ("device_name IS NULL", [])
    assert sql("null ne eventDateTime") == ("event_date_time IS NOT NULL", [])


def test_null_on_empty_is_null_field_compares_with_empty_string():
    assert sql("justification eq null") == ("justification = ''", [])
    assert sql("justification ne null") == ("justification <> ''", [])


# An empty_is_null column stores '' for null: no value is '', so '' compares as null does (OData's two-valued
# logic: null eq '' is false, null ne '' true, null lt 'b' false), and functions of it are null.
@pytest.mark.parametrize("text, expected", [
    ("justification eq ''", ("NULLIF(justification, '') = $1", [""])),
    ("justification ne ''", ("NULLIF(justification, '') IS DISTINCT FROM $1", [""])),
    ("justification lt 'b'", ("NULLIF(justification, '') < $1", ["b"])),
    ("justification eq 'b'", ("justification = $1", ["b"])),  # '' is not 'b' either way: the index serves
    ("justification in ('', 'b')", ("NULLIF(justification, '') IN ($1, $2)", ["", "b"])),
    ("contains(justification, '')", ("lower(NULLIF(justification, '')) LIKE lower($1) ESCAPE '\\'", ["%%"])),
])
def test_empty_string_on_empty_is_null_field_is_no_value(text, expected):
    assert sql(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("justification in (null, 'b')", ("(justification = '' OR justification IN ($1))", ["b"])),
    ("deviceName in ('a', null)", ("(device_name IS NULL OR device_name IN ($1))", ["a"])),
    ("deviceName in (null)", ("device_name IS NULL", [])),
])
def test_in_list_with_null_matches_null_too(text, expected):
    assert sql(text) == expected


@pytest.mark.parametrize("op", ["gt", "ge", "lt", "le"])
def test_null_only_with_eq_or_ne(op):
    message = error(f"result {op} null")
    assert "null" in message and op in message and "result" in message


# --- logic, precedence and parentheses ---------------------------------------------------------------


def test_and_binds_tighter_than_or():
    assert sql("result eq 1 or result eq 2 and result eq 3") == (
        "(result = $1 OR (result = $2 AND result = $3))", [1, 2, 3])
    assert sql("result eq 1 and result eq 2 or result eq 3") == (
        "((result = $1 AND result = $2) OR result = $3)", [1, 2, 3])


def test_parentheses_override_precedence():
    assert sql("(result eq 1 or result eq 2) and deviceName eq 'x'") == (
        "((result = $1 OR result = $2) AND device_name = $3)", [1, 2, "x"])
    assert sql("((result eq 1))") == ("result = $1", [1])


def test_same_operator_chains_are_flattened():
    assert sql("result eq 1 and result eq 2 and result eq 3")[0] == "(result = $1 AND result = $2 AND result = $3)"
    assert sql("result eq 1 or result eq 2 or result eq 3")[0] == "(result = $1 OR result = $2 OR result = $3)"


def test_not_keeps_rows_with_nulls():
    assert sql("not (result eq 1)") == ("NOT COALESCE(result = $1, FALSE)", [1])
    assert sql("not(result eq 1)") == ("NOT COALESCE(result = $1, FALSE)", [1])
    assert sql("not systemInitiatedElevation") == ("NOT COALESCE(system_initiated_elevation, FALSE)", [])
    assert sql("not not systemInitiatedElevation") == (
        "NOT COALESCE(NOT COALESCE(system_initiated_elevation, FALSE), FALSE)", [])


def test_not_of_and_or():
    assert sql("not (result eq 1 or result eq 2) and result lt 9") == (
        "(NOT COALESCE(result = $1 OR result = $2, FALSE) AND result < $3)", [1, 2, 9])


def test_not_binds_tighter_than_comparison():
    assert parse_filter("not systemInitiatedElevation eq true") == Compare(
        "eq", Not(Property("systemInitiatedElevation", 4), 0), Literal("bool", True, "true", 32), 29)
    message = error("not deviceName eq 'x'")
    assert "deviceName" in message and "not(" in message


def test_conditions_compared_with_booleans():
    assert sql("(result eq 1 or result eq 2) eq true and result lt 9") == (
        "((result = $1 OR result = $2) AND result < $3)", [1, 2, 9])
    assert sql("(result eq 1) ne true") == ("NOT COALESCE(result = $1, FALSE)", [1])


def test_parse_filter_builds_the_ast():
    assert parse_filter("result eq 1 or startswith(deviceName, 'a') and hash in ('x')") == Logical("or", (
        Compare("eq", Property("result", 0), Literal("int", 1, "1", 10), 7),
        Logical("and", (
            Call("startswith", (Property("deviceName", 26), Literal("string", "a", "'a'", 38)), 15),
            In(Property("hash", 47), (Literal("string", "x", "'x'", 56),), 52),
        )),
    ))


# --- functions -----------------------------------------------------------------------------------------

LIKE = "lower(device_name) LIKE lower($1) ESCAPE '\\'"


@pytest.mark.parametrize("function, pattern", [
    ("startswith", "Desk%"), ("endswith", "%Desk"), ("contains", "%Desk%"),
])
def test_string_functions_are_case_insensitive_like(function, pattern):
    assert sql(f"{function}(deviceName, 'Desk')") == (LIKE, [pattern])


def test_like_wildcards_in_literal_are_escaped():
    assert sql(r"contains(deviceName, '50%_a\b')") == (LIKE, [r"%50\%\_a\\b%"])


@pytest.mark.parametrize("text, negated", [
    ("startswith(deviceName, 'a') eq true", False),
    ("startswith(deviceName, 'a') ne false", False),
    ("true eq startswith(deviceName, 'a')", False),
    ("startswith(deviceName, 'a') eq false", True),
    ("startswith(deviceName, 'a') ne true", True),
    ("not startswith(deviceName, 'a')", True),
])
def test_function_compared_with_boolean(text, negated):
    assert sql(text) == (f"NOT COALESCE({LIKE}, FALSE)" if negated else LIKE, ["a%"])


def test_function_on_casefold_field_and_guid_argument():
    assert sql("startswith(hash, 01234567-89ab-cdef-0123-456789abcdef)") == (
        "lower(hash) LIKE lower($1) ESCAPE '\\'", ["01234567-89ab-cdef-0123-456789abcdef%"])


@pytest.mark.parametrize("text, named", [
    ("startswith(result, '1')", ["startswith", "result"]),
    ("contains(elevationType, 'zero')", ["contains", "elevationType"]),
    ("endswith(eventDateTime, 'Z')", ["endswith", "eventDateTime"]),
    ("startswith('abc', deviceName)", ["startswith", "first argument"]),
    ("startswith(deviceName, 5)", ["startswith", "second argument"]),
    ("startswith(deviceName, null)", ["startswith", "second argument"]),
    ("startswith(deviceName, 'a') eq 'yes'", ["true or false"]),
    ("startswith(deviceName, 'a') gt true", ["'gt'"]),
])
def test_function_type_errors(text, named):
    message = error(text)
    assert all(part in message for part in named), message


@pytest.mark.parametrize("text, named", [
    ("startswith(deviceName)", "takes 2 arguments but 1"),
    ("contains(deviceName, 'a', 'b')", "takes 2 arguments but 3"),
    ("endswith()", "takes 2 arguments but 0"),
    ("tolower(deviceName, 'x') eq 'x'", "function 'tolower' takes 1 argument but 2 were given"),
    ("year() eq 2026", "function 'year' takes 1 argument but 0 were given"),
    ("substringof('a', deviceName)", "unknown function 'substringof'"),
    ("ToLower(deviceName) eq 'x'", "('tolower' must be written in lowercase)"),
])
def test_function_syntax_errors(text, named):
    assert named in error(text)


# --- value functions: tolower, toupper, length, year ... date ----------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("tolower(deviceName) eq 'Git'", ("lower(device_name) = $1", ["Git"])),  # the literal is not lowered
    ("'GIT' eq toupper(deviceName)", ("upper(device_name) = $1", ["GIT"])),
    ("tolower(deviceName) in ('a', 'b')", ("lower(device_name) IN ($1, $2)", ["a", "b"])),
    ("contains(tolower(deviceName), 'it')", ("lower(lower(device_name)) LIKE lower($1) ESCAPE '\\'", ["%it%"])),
    ("endswith(toupper(tolower(deviceName)), 'T')",
     ("lower(upper(lower(device_name))) LIKE lower($1) ESCAPE '\\'", ["%T"])),
    ("length(deviceName) gt 3", ("char_length(device_name) > $1", [3])),
    ("length(justification) eq null", ("char_length(NULLIF(justification, '')) IS NULL", [])),  # '' is null
    ("tolower(justification) ne null", ("lower(NULLIF(justification, '')) IS NOT NULL", [])),
    ("year(eventDateTime) eq 2026",
     ("EXTRACT(YEAR FROM (event_date_time AT TIME ZONE 'UTC'))::integer = $1", [2026])),
    ("minute(eventDateTime) lt 30",
     ("EXTRACT(MINUTE FROM (event_date_time AT TIME ZONE 'UTC'))::integer < $1", [30])),
    ("date(eventDateTime) ge 2026-01-31",
     ("(event_date_time AT TIME ZONE 'UTC')::date >= $1", [datetime(2026, 1, 31).date()])),
    ("date(eventDateTime) eq '2026-02-01'",
     ("(event_date_time AT TIME ZONE 'UTC')::date = $1", [datetime(2026, 2, 1).date()])),
])
def test_value_functions_compile_with_bound_literals(text, expected):
    assert sql(text) == expected


@pytest.mark.parametrize("text, named", [
    ("tolower(result) eq 'a'", "tolower() needs a string property but 'result' is of type int"),
    ("year(deviceName) eq 1", "year() needs a datetime property but 'deviceName' is of type string"),
    ("contains(length(deviceName), '1')", "contains() needs a string property but 'length(deviceName)' is of type int"),
    ("length(deviceName) eq 'a'", "'a' does not fit the int property 'length(deviceName)'"),
    ("year(eventDateTime) eq 2147483648", "out of range"),
    ("date(eventDateTime) eq 2026-01-31T08:00Z", "not a valid date (YYYY-MM-DD) for 'date(eventDateTime)'"),
    ("date(eventDateTime) eq 2026-02-30", "invalid date/time"),
    ("tolower(colour) eq 'a'", "Could not find a property named 'colour'"),
    ("tolower('a') eq 'a'", "first argument of tolower() at position 0 must be a property"),
    ("tolower(contains(deviceName, 'a')) eq 'a'", "first argument of tolower()"),
    ("tolower(deviceName)", "tolower() at position 0 is a value, not a condition"),
    ("not tolower(deviceName)", "is a value, not a condition"),
    ("tolower(deviceName) eq tolower(hash)", "Comparing two properties ('tolower(deviceName)' eq 'tolower(hash)')"),
    ("tolower(deviceName) gt true", "does not fit the string property 'tolower(deviceName)'"),
    ("contains(deviceName, 'a') in ('x')", "contains() at position 0 is a condition, not a value"),
    ("contains(deviceName, 'a') has 1", "contains() at position 0 is a condition, not a value"),
])
def test_value_function_errors(text, named):
    assert named in error(text)


@pytest.mark.parametrize("text, named", [
    ("elevationType has microsoft.graph.privilegeManagementElevationType'zeroTouchElevation'",
     "The property 'elevationType' is not a flags enum"),
    ("result has 1", "'has' needs a flags enum property but 'result' is of type int"),
    ("tolower(deviceName) has 'a'", "but 'tolower(deviceName)' is of type string"),
    ("'a' has elevationType", "left side of 'has'"),
])
def test_has_is_refused_naming_the_property(text, named):
    assert named in error(text)


# --- in ------------------------------------------------------------------------------------------------


def test_in_lists():
    assert sql("deviceName in ('a', 'b')") == ("device_name IN ($1, $2)", ["a", "b"])
    assert sql("result in (1,-2)") == ("result IN ($1, $2)", [1, -2])
    assert sql("hash in ('AA')") == ("lower(hash) IN ($1)", ["aa"])
    assert sql("elevationType in ('undetermined', microsoft.graph.x'unknownFutureValue')") == (
        "elevation_type IN ($1, $2)", ["undetermined", "unknownFutureValue"])


@pytest.mark.parametrize("text, named", [
    ("result in ()", "at least one value"),
    ("result in (1, 'two')", "'two'"),
    ("elevationType in ('sudo')", "'sudo'"),
    ("'a' in ('a')", "left side of 'in'"),
    ("result in 1", "'(' after 'in'"),
    ("result in (1,)", "expected a literal"),
    ("result in (1 2)", "expected ',' or ')'"),
    ("result in (result)", "expected a literal"),
])
def test_in_errors(text, named):
    assert named in error(text)


# --- type and property errors ------------------------------------------------------------------------


def test_unknown_property_is_named():
    assert "Could not find a property named 'colour'" in error("colour eq 'blue'")
    assert "'DeviceName'" in error("DeviceName eq 'x'")  # case-sensitive, as Graph
    assert "'colour'" in error("startswith(colour, 'x')")
    assert "'colour'" in error("colour in (1)")


@pytest.mark.parametrize("text, literal, prop", [
    ("result eq 'five'", "'five'", "result"),
    ("deviceName eq 5", "5", "deviceName"),
    ("systemInitiatedElevation eq 1", "1", "systemInitiatedElevation"),
    ("eventDateTime eq 5", "5", "eventDateTime"),
    ("deviceName eq 2026-01-01", "2026-01-01", "deviceName"),
    ("elevationType eq 1", "1", "elevationType"),
    ("result eq microsoft.graph.x'one'", "microsoft.graph.x'one'", "result"),
    ("deviceName eq true", "true", "deviceName"),
])
def test_literal_must_fit_the_property(text, literal, prop):
    message = error(text)
    assert literal in message and f"'{prop}'" in message


@pytest.mark.parametrize("text", ["systemInitiatedElevation gt true", "elevationType lt 'undetermined'"])
def test_ordering_comparisons_rejected_for_bool_and_enum(text):
    message = error(text)
    assert text.split()[1] in message and text.split()[0] in message


@pytest.mark.parametrize("text, named", [
    ("result eq result", "two properties"),
    ("1 eq 1", "property"),
    ("deviceName", "'deviceName' is not a boolean"),
    ("5", "not a condition"),
    ("result eq 1 eq true", "expected 'and', 'or'"),
    ("(result eq 1) eq (result eq 2)", "true or false"),
])
def test_malformed_comparisons(text, named):
    assert named in error(text)


# --- syntax errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, named", [
    ("deviceName eq 'abc", "position 14: unterminated string"),
    ("result eq", "position 9: expected a property, literal, function or '(' but found end of input"),
    ("result eq 1 2", "position 12: expected 'and', 'or' or end of input but found '2'"),
    ("result eq 1)", "position 11: expected 'and', 'or' or end of input but found ')'"),
    ("(result eq 1", "position 12: expected 'and', 'or' or ')' but found end of input"),
    ("result eq 1 and", "position 15: expected a property"),
    ("and result eq 1", "position 0: expected a property, literal, function or '(' but found 'and'"),
    ("result eq $1", "position 10: unexpected character '$'"),
    ("deviceName eq \"x\"", "unexpected character '\"'"),
    ("result eq 1.5", "invalid literal '1.5'"),
    ("result eq 5abc", "invalid literal '5abc'"),
    ("result eq -", "invalid literal '-'"),
    ("result EQ 1", "found 'EQ' ('eq' must be written in lowercase)"),
    ("result eq 1 AND result eq 2", "'and' must be written in lowercase"),
    ("NOT (result eq 1)", "'not' must be written in lowercase"),
    ("systemInitiatedElevation eq TRUE", "'true' must be written in lowercase"),
    ("StartsWith(deviceName, 'a')", "'startswith' must be written in lowercase"),
    ("result add 1 eq 2", "operator 'add' is not supported"),
    ("deviceName/any(d: d eq 'x')", "unexpected character ':'"),
    ("result eq 1 or", "found end of input"),
    ("()", "found ')'"),
])
def test_syntax_errors_name_position_and_problem(text, named):
    assert named in error(text)


def test_nesting_limit():
    assert sql("(" * 50 + "result eq 1" + ")" * 50) == ("result = $1", [1])
    assert "nested more than 50" in error("(" * 51 + "result eq 1" + ")" * 51)
    assert "nested more than 50" in error("not " * 51 + "systemInitiatedElevation")
    assert "nested more than 50" in error("(" * 4000)


def test_length_limit():
    padding = 4096 - len("deviceName eq ''")
    assert sql(f"deviceName eq '{'x' * padding}'")[1] == ["x" * padding]
    message = error(f"deviceName eq '{'x' * (padding + 1)}'")
    assert "4097" in message and "4096" in message


def test_literals_never_reach_the_sql():
    evil = "x'); DROP TABLE events; --"
    quoted = "'" + evil.replace("'", "''") + "'"
    where, params = sql(f"deviceName eq {quoted} or contains(deviceName, {quoted})")
    assert "DROP" not in where and params == [evil, f"%{evil}%"]


# --- $orderby ------------------------------------------------------------------------------------------


def test_orderby():
    assert parse_orderby("eventDateTime desc, hash", FIELDS) == [("eventDateTime", True), ("hash", False)]
    assert parse_orderby("  result   asc ,deviceName\tdesc ", FIELDS) == [("result", False), ("deviceName", True)]
    assert parse_orderby("elevationType", FIELDS) == [("elevationType", False)]


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_orderby(text):
    assert parse_orderby(text, FIELDS) == []


@pytest.mark.parametrize("text, named", [
    ("colour", "'colour'"),
    ("Result", "'Result'"),
    ("result sideways", "'sideways'"),
    ("result DESC", "'DESC'"),
    ("result desc, result asc", "'result' appears more than once"),
    ("result,,hash", "Invalid $orderby item"),
    ("result,", "Invalid $orderby item"),
    ("result desc nulls", "'result desc nulls'"),
    ("x" * 5000, "maximum is 4096"),
])
def test_orderby_errors(text, named):
    with pytest.raises(ODataError) as caught:
        parse_orderby(text, FIELDS)
    assert named in str(caught.value)


# --- fuzz: nothing but ODataError, and no literal text in the SQL ------------------------------------

TOKENS = [
    "deviceName", "hash", "justification", "result", "systemInitiatedElevation", "eventDateTime", "elevationType",
    "colour", "eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not", "in", "has", "AND", "Eq", "(", ")", ",",
    "'a'", "'it''s'", "''", "'", "'2026-01-01T00:00:00Z'", "'supportApprovedElevation'",
    "microsoft.graph.privilegeManagementElevationType'zeroTouchElevation'", "microsoft.graph.x'", "1", "-1", "0",
    "2147483648", "1.5", "-", "true", "false", "null", "TRUE", "2026-01-01", "2026-01-01T10:00:00.5+02:00",
    "2026-99-99T99:99:99Z", "01234567-89ab-cdef-0123-456789abcdef", "startswith", "endswith", "contains",
    "tolower", "startswith(", "contains(hash,", "$", "/", "%", "_", "\\", "\u00e9", "\u0661", "\u00b2", "\x00",
]
ALPHABET = "abcdeqnotrl() ,'-0123456789:TZ.+_$%\\\"\t\u00e9\u00b2\u0661\x00"


def check_any_input(text: str):
    params = ["tenant"]
    try:
        where = compile_filter(text, FIELDS, params)
    except ODataError:
        assert params == ["tenant"]
        return
    placeholders = [int(n) for n in re.findall(r"\$(\d+)", where)]
    assert sorted(placeholders) == list(range(2, len(params) + 1))
    assert "'" not in where.replace("ESCAPE '\\'", "").replace("''", "")


def test_fuzz_random_characters():
    rng = random.Random(20260101)
    for _ in range(3000):
        check_any_input("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))))


def test_fuzz_token_soup():
    rng = random.Random(4096)
    for _ in range(4000):
        tokens = [rng.choice(TOKENS) for _ in range(rng.randint(1, 14))]
        check_any_input(rng.choice([" ", ""]).join(tokens))


def test_fuzz_mutated_valid_filters():
    rng = random.Random(7)
    seeds = [
        "result eq 1 or deviceName eq 'a' and not (hash in ('X', 'y'))",
        "startswith(deviceName, 'a') eq false and eventDateTime ge 2026-01-01T00:00:00Z",
        "elevationType eq microsoft.graph.privilegeManagementElevationType'undetermined' or justification ne null",
    ]
    for _ in range(3000):
        chars = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(chars))
            action = rng.randrange(3)
            if action == 0:
                del chars[position]
            elif action == 1:
                chars.insert(position, rng.choice(ALPHABET))
            else:
                chars[position] = rng.choice(ALPHABET)
        check_any_input("".join(chars))


def test_fuzz_orderby():
    rng = random.Random(11)
    words = ["result", "hash", "desc", "asc", "DESC", ",", " ", "colour", "\t", ""]
    for _ in range(2000):
        text = "".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        try:
            order = parse_orderby(text, FIELDS)
        except ODataError:
            continue
        assert all(name in FIELDS for name, _ in order)


ATOMS = [
    "result eq 1", "3 lt result", "deviceName ne 'a''b'", "hash in ('A', 'b')", "justification eq null",
    "eventDateTime ge 2026-01-01T00:00:00+02:00", "elevationType eq 'undetermined'", "systemInitiatedElevation",
    "contains(deviceName, '%_')", "startswith(hash, 'AB') eq false", "not(result in (1, 2))",
    "false ne systemInitiatedElevation",
]


def random_expression(rng: random.Random, depth: int) -> str:
    roll = rng.randrange(5) if depth else 0
    if roll == 0:
        return rng.choice(ATOMS)
    if roll == 1:
        return f"not ({random_expression(rng, depth - 1)})"
    if roll == 2:
        return f"({random_expression(rng, depth - 1)}) eq {rng.choice(['true', 'false'])}"
    joiner = rng.choice([" and ", " or "])
    return joiner.join(f"({random_expression(rng, depth - 1)})" if rng.random() < 0.5
                       else random_expression(rng, 0) for _ in range(rng.randint(2, 3)))


def test_fuzz_generated_valid_filters_compile():
    rng = random.Random(50)
    for _ in range(1500):
        text = random_expression(rng, rng.randint(0, 4))
        params = ["tenant"]
        where = compile_filter(text, FIELDS, params)  # all valid: must not raise
        placeholders = [int(n) for n in re.findall(r"\$(\d+)", where)]
        assert sorted(placeholders) == list(range(2, len(params) + 1))
        assert where.count("(") == where.count(")")


def test_property_paths_into_complex_properties():
    fields = {"applicationDetail/fileName": Field("file_name", "string")}
    params: list = []
    assert compile_filter("applicationDetail/fileName eq 'git.exe'", fields, params) == "file_name = $1"
    assert params == ["git.exe"]
    with pytest.raises(ODataError, match="applicationDetail/fileHash"):
        compile_filter("applicationDetail/fileHash eq 'x'", fields, [])
