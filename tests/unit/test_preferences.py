"""The Prefer header (RFC 7240) as the gateway reads it, and enums shown to clients that know only the members up
to unknownFutureValue."""

import pytest
from aiohttp.test_utils import make_mocked_request
from epm.requests.v1 import elevation_request_service_pb2 as pb
from multidict import CIMultiDict

from gateway import graph, graphjson


def _asking(*prefer: str):
    return make_mocked_request("GET", "/beta/x", headers=CIMultiDict(("Prefer", p) for p in prefer))


def test_preferences_are_read_from_every_prefer_header():
    request = _asking('Return=minimal; foo="bar", odata.maxpagesize="50"', "include-unknown-enum-members",
                      "return=representation")
    assert graph.preferences(request) == {"return": "minimal", "odata.maxpagesize": "50",
                                          "include-unknown-enum-members": ""}  # the first of a name counts
    assert graph.unknown_members(request) and not graph.unknown_members(_asking("return=minimal"))
    assert graph.preferences(_asking(" , ,")) == {}


@pytest.mark.parametrize("value, size", [
    ("1", 1), ("50", 50), ("0050", 50), ("999", 999), ("1000", 999), ("9" * 5000, 999),
    ("0", 0), ("000", 0), ("", 0), ("-5", 0), ("2.5", 0), ("five", 0), ("²", 0), ("1e3", 0),
])
def test_a_page_size_is_a_whole_number_above_zero_and_at_most_max_top(value, size):
    assert graph.page_size_preferred(_asking(f"odata.maxpagesize={value}")) == size


def test_without_the_preference_members_after_the_sentinel_are_unknown_future_value():
    for state, known in ((pb.STATE_PENDING, "pending"), (pb.STATE_EXPIRED, "expired"),
                         (pb.STATE_REVOKED, "unknownFutureValue"), (pb.STATE_COMPLETED, "unknownFutureValue")):
        message = pb.ElevationRequest(status=state)
        assert graphjson.to_json(message, unknown_members=False)["status"] == known
        assert graphjson.to_json(message)["status"] == pb.State.Name(state).removeprefix("STATE_").lower()
