import pytest
from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from multidict import MultiDict
from yarl import URL

from gateway import graphjson, query
from gateway.errors import GraphError
from services.common import optional
from services.common.enums import graph_names, to_graph
from services.common.odata import Field

PROPS = frozenset({"id", "result", "deviceId"})
ALL = frozenset({"filter", "orderby", "top", "skip", "skiptoken", "count", "select"})
REQUEST_TYPE = "privilegeManagementElevationRequest"


def test_enum_names_follow_graph():
    assert list(graph_names(pb.ElevationType.DESCRIPTOR).values()) == [
        "undetermined", "unmanagedElevation", "zeroTouchElevation", "userConfirmedElevation",
        "supportApprovedElevation", "unknownFutureValue"]
    assert graph_names(pb.UserType.DESCRIPTOR)[pb.USER_TYPE_AZURE_AD] == "azureAd"
    assert to_graph(pb.ProcessType.DESCRIPTOR, 0) == "undefined"


def test_json_round_trip():
    event = pb.ElevationEvent()
    given = graphjson.from_json({"deviceId": "d", "result": 3, "eventDateTime": "2026-01-02T03:04:05.1234567Z",
                                 "userType": "hybrid", "justification": None, "id": "ignored"}, event,
                                "privilegeManagementElevation")
    assert given == ["device_id", "result", "event_date_time", "user_type", "justification"]
    body = graphjson.to_json(event, "privilegeManagementElevation", frozenset({"justification"}))
    assert body["eventDateTime"] == "2026-01-02T03:04:05.123456Z"
    assert body["userType"] == "hybrid" and body["justification"] is None and body["id"] == ""


@pytest.mark.parametrize("body", [
    {"result": True}, {"result": 1.5}, {"result": 2**31}, {"deviceId": 5}, {"eventDateTime": "soon"},
    {"eventDateTime": 5}, {"userType": "alien"}, {"systemInitiatedElevation": 1}, {"unknown": 1},
    {"@odata.type": 3},
])
def test_wrong_types_are_400(body):
    with pytest.raises(GraphError) as err:
        graphjson.from_json(body, pb.ElevationEvent(), "privilegeManagementElevation")
    assert err.value.status == 400


def test_query_options_dollar_is_optional_and_values_are_checked():
    options = query.parse(MultiDict({"top": "5", "$filter": "a eq 1", "count": "true", "select": "result"}), ALL, PROPS)
    assert (options.top, options.filter, options.count, options.select) == (5, "a eq 1", True, ("result",))
    assert query.parse(MultiDict({"api-version": "x"}), ALL, PROPS) == query.QueryOptions()
    for bad in ({"$top": "0"}, {"$top": "1e3"}, {"$top": "1000"}, {"$expand": "x"}, {"$select": "nope"},
                {"$select": ","}, {"$unknown": "1"}):
        with pytest.raises(GraphError):
            query.parse(MultiDict(bad), ALL, PROPS)
    with pytest.raises(GraphError):
        query.parse(MultiDict([("$top", "1"), ("top", "2")]), ALL, PROPS)


def test_next_link_replaces_the_token_and_drops_skip():
    url = URL("http://h/beta/x?$filter=a eq 'b'&$skip=5&$top=2&$skiptoken=old")
    link = query.next_link(url, "NEW")
    assert link.startswith("http://h/beta/x?") and "$skiptoken=NEW" in link
    assert "old" not in link and "skip=" not in link.replace("skiptoken", "") and "$top=2" in link


def _request(body: dict) -> tuple[requests_pb.ElevationRequest, list[str]]:
    message = requests_pb.ElevationRequest()
    return message, graphjson.from_json(body, message, REQUEST_TYPE, ignore=frozenset())


STORED = {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "requestCreatedDateTime": "2026-11-22T09:15:00Z",
          "status": "revoked", "deviceName": "LAPTOP-01",
          "applicationDetail": {"fileHash": "ab" * 32, "fileName": "git.exe"}}


@pytest.mark.parametrize("same", [
    {"id": "0F8FAD5B-D9CB-469F-A165-70867728950E"},
    {"requestCreatedDateTime": "2026-11-22T09:15:00.000Z"},
    {"requestCreatedDateTime": "2026-11-22T10:15:00+01:00"},
    {"requestCreatedDateTime": "2026-11-22T09:15:00.0000004Z"},  # below the microsecond that is written
    {"status": "revoked"},
    {"status": "unknownFutureValue"},  # how revoked is shown to a client that did not opt in to new members
    {"deviceName": "LAPTOP-01"},
    {"applicationDetail": {"@odata.type": "#microsoft.graph.elevationRequestApplicationDetail",
                           "fileHash": "AB" * 32, "fileName": "git.exe"}},
])
def test_unchanged_values_in_other_forms_are_the_same(same):
    stored, _ = _request(STORED)
    given, fields = _request(same)
    assert graphjson.changed(given, stored, fields) is None


@pytest.mark.parametrize("other, named", [
    ({"id": "0f8fad5b-d9cb-469f-a165-70867728950f"}, "id"),
    ({"requestCreatedDateTime": "2026-11-22T09:15:00.001Z"}, "requestCreatedDateTime"),
    ({"requestCreatedDateTime": None}, "requestCreatedDateTime"),
    ({"status": "completed"}, "status"),
    ({"deviceName": "laptop-01"}, "deviceName"),  # only identifiers are compared without case
    ({"deviceName": None}, "deviceName"),
    ({"applicationDetail": {"fileHash": "ab" * 32, "fileName": "GIT.exe"}}, "applicationDetail"),
    ({"applicationDetail": None}, "applicationDetail"),
    ({"deviceName": "LAPTOP-01", "status": "pending"}, "status"),
])
def test_a_changed_value_is_named(other, named):
    stored, _ = _request(STORED)
    given, fields = _request(other)
    assert graphjson.changed(given, stored, fields) == named


def test_an_enum_before_the_sentinel_is_not_stood_for_by_it():
    stored, _ = _request({"status": "pending"})
    given, fields = _request({"status": "unknownFutureValue"})
    assert graphjson.changed(given, stored, fields) == "status"


def error_of(call) -> str:
    with pytest.raises(GraphError) as caught:
        call()
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize("key", ["$FILTER", "$Filter", "FILTER", "Filter", "filter", "$filter"])
def test_option_names_are_case_insensitive_with_or_without_dollar(key):
    assert query.parse(MultiDict({key: "a eq 1"}), ALL, PROPS).filter == "a eq 1"


@pytest.mark.parametrize("pairs", [
    [("$top", "1"), ("top", "2")], [("$TOP", "1"), ("$top", "1")], [("$Filter", "a"), ("filter", "b")],
])
def test_an_option_given_twice_in_any_spelling_is_400(pairs):
    name = pairs[0][0].lstrip("$").lower()
    assert error_of(lambda: query.parse(MultiDict(pairs), ALL, PROPS)) == \
        f"Query option '${name}' was specified more than once."


def test_expand_names_the_unknown_navigation_and_accepts_known_ones():
    assert error_of(lambda: query.parse(MultiDict({"$expand": "device"}), ALL, PROPS)) == \
        "Could not find a navigation property named 'device' for $expand."
    navigations = frozenset({"roleInfo", "principal"})
    assert query.expand("roleInfo", navigations) == ("roleInfo",)
    assert query.expand(" * ", navigations) == ("principal", "roleInfo")
    assert query.expand("", navigations) == ()
    assert "not supported" in error_of(lambda: query.expand("roleInfo($select=id)", navigations))
    assert "names no navigation" in error_of(lambda: query.expand(",", navigations))


def test_top_up_to_a_page_is_the_page_size_and_its_token_passes_through():
    options = query.QueryOptions(top=50, skiptoken="abc")
    page = query.window(options)
    assert (page.size, page.token) == (50, "abc")
    assert page.next_token(50, "next") == "next"


def test_top_above_a_page_carries_the_remaining_count_in_the_skiptoken():
    first = query.window(query.QueryOptions(top=2500))
    assert (first.size, first.token) == (999, "")
    token = first.next_token(999, "b1")
    assert token == "1501.b1"
    second = query.window(query.QueryOptions(top=2500, skiptoken=token))
    assert (second.size, second.token) == (999, "b1")
    third = query.window(query.QueryOptions(top=2500, skiptoken=second.next_token(999, "b2")))
    assert (third.size, third.token, third.remaining) == (502, "b2", 502)
    assert third.next_token(502, "b3") == ""  # the $top is reached: no more pages, though the backend has some
    assert query.window(query.QueryOptions(top=2500)).next_token(40, "") == ""  # the backend ran out


@pytest.mark.parametrize("token", ["b1", "0.b1", "2500.b1", "x.b1", "12.", "99999999999.b1", "²3.b1"])
def test_a_large_top_refuses_a_skiptoken_it_did_not_make(token):
    assert error_of(lambda: query.window(query.QueryOptions(top=2500, skiptoken=token))) == \
        "The $skiptoken is not valid for this query."


SEARCHABLE = ("deviceName", "upn")
EVENTUAL = {"ConsistencyLevel": "eventual"}


def search(text: str, filter: str = "", headers=None) -> str:
    headers = EVENTUAL if headers is None else headers
    return query.search_filter(query.QueryOptions(search=text, filter=filter), headers, SEARCHABLE)


@pytest.mark.parametrize("text, expected", [
    ('"git"', "(contains(deviceName, 'git') or contains(upn, 'git'))"),
    ('"o\'brien x"', "(contains(deviceName, 'o''brien x') or contains(upn, 'o''brien x'))"),
    ('"upn:alice"', "(contains(upn, 'alice'))"),
    ('"C:\\Windows"', "(contains(deviceName, 'C:\\Windows') or contains(upn, 'C:\\Windows'))"),  # not a property
    ('"upn:a" AND "deviceName:b" OR "upn:c"',
     "(contains(upn, 'a')) and (contains(deviceName, 'b')) or (contains(upn, 'c'))"),
])
def test_search_terms_become_contains_over_the_searchable_properties(text, expected):
    assert search(text) == expected


def test_search_is_combined_with_the_filter_and_the_filter_keeps_its_positions():
    assert search('"upn:a"', "result eq 1 or result eq 2") == "(result eq 1 or result eq 2) and ((contains(upn, 'a')))"
    assert search("", "result eq 1") == "result eq 1"
    assert "position 9" in error_of(lambda: search('"a"', "result eq"))


@pytest.mark.parametrize("text, named", [
    ("git", "position 0: expected a quoted term"),
    ('"a" "b"', "position 4: expected AND or OR"),
    ('"a" AND', "must end with a quoted term"),
    ('"a" and "b"', "expected AND or OR"),  # KQL's operators are uppercase
    ('"a" NOT "b"', "expected AND or OR"),
    ('""', "term is empty"),
    ('"upn:"', "term is empty"),
    ('"' + "x" * 600 + '"', "longer than 512"),
])
def test_unsupported_search_syntax_is_a_clear_400(text, named):
    assert named in error_of(lambda: search(text))


@pytest.mark.parametrize("headers", [{}, {"ConsistencyLevel": "session"}])
def test_search_needs_consistency_level_eventual(headers):
    assert error_of(lambda: search('"a"', headers=headers)) == query.CONSISTENCY_MESSAGE
    assert query.CONSISTENCY_MESSAGE == ("Request with $search query parameter only works through MSGraph with a "
                                         "special request header: 'ConsistencyLevel: eventual'")


def test_search_on_a_resource_without_searchable_properties_is_400():
    assert "not supported on this resource" in error_of(
        lambda: query.search_filter(query.QueryOptions(search='"a"'), EVENTUAL, ()))


def test_optional_strings_of_a_request_and_its_application_detail_are_null_when_empty():
    request = requests_pb.ElevationRequest(id="r", requested_on_device_id="d")
    request.application_detail.file_name = "a.exe"
    body = graphjson.to_json(request, "privilegeManagementElevationRequest", optional.ELEVATION_REQUEST)
    assert body["reviewCompletedByUserId"] is None and body["reviewerJustification"] is None
    assert body["requestedOnDeviceId"] == "d" and body["id"] == "r"  # required: strings
    detail = body["applicationDetail"]
    assert detail["productName"] is None and detail["publisherName"] is None
    assert detail["fileName"] == "a.exe" and detail["fileHash"] == ""  # required: strings


def test_optional_names_must_be_in_the_field_table():
    fields = {"a": Field("a", "string"), "b": Field("b", "string")}
    assert [f.empty_is_null for f in optional.marked(fields, frozenset({"b"})).values()] == [False, True]
    with pytest.raises(ValueError, match="'c'"):
        optional.marked(fields, frozenset({"c"}))
