from datetime import datetime, timezone

import pytest

from services.common import paging
from services.common.odata import Field, ODataError

FIELDS = [Field("event_date_time", "datetime"), Field("result", "int"), Field("id", "string")]
VALUES = [datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), 7, "9b2f..."]


def test_tokens_round_trip_and_are_bound_to_their_query():
    key = paging.query_key("result gt 1", "result")
    token = paging.encode_token(VALUES, key)
    assert paging.decode_token(token, FIELDS, key) == VALUES
    with pytest.raises(ODataError):
        paging.decode_token(token, FIELDS, paging.query_key("", ""))
    for junk in ("", "!!!", "eyJ4IjoxfQ", paging.encode_token(["a", "b", "c"], key)):
        with pytest.raises(ODataError):
            paging.decode_token(junk, FIELDS, key)


def test_one_direction_uses_a_row_comparison():
    params = ["tenant"]
    sql = paging.after([("a", True), ("id", True)], [1, "x"], params)
    assert sql == "(a, id) < ($2, $3)" and params == ["tenant", 1, "x"]


def test_mixed_directions_expand():
    params = []
    sql = paging.after([("a", False), ("b", True), ("id", True)], [1, 2, "x"], params)
    assert sql == "((a > $1) OR (a = $1 AND b < $2) OR (a = $1 AND b = $2 AND id < $3))"


def test_page_size():
    assert paging.page_size(0) == paging.DEFAULT_PAGE_SIZE
    assert paging.page_size(5000) == paging.MAX_PAGE_SIZE
    with pytest.raises(ODataError):
        paging.page_size(-1)
