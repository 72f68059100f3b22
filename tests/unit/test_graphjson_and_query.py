import pytest
from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from multidict import MultiDict
from yarl import URL

from gateway import graphjson, query
from gateway.errors import GraphError
from services.common.enums import graph_names, to_graph

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
    for bad in ({"$top": "0"}, {"$top": "1e3"}, {"$Top": "1"}, {"$expand": "x"}, {"$select": "nope"},
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
