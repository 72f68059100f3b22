"""The pure rules of the device inventory and the MMD support API: device ids, seen-device batches, the memory of
reported devices, which open request a new one repeats, MMD bodies and what Graph reviewers read."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.requests.v1 import managed_device_service_pb2 as devices_pb
from epm.requests.v1 import support_elevation_service_pb2 as support_pb
from google.protobuf import timestamp_pb2

from gateway.errors import GraphError
from gateway.support import CREATE_FIELDS, body_fields
from services.events import model
from services.events.seen_devices import Reported, latest_by_device
from services.requests.devices import device_id, latest_per_device
from services.requests.store import same_request
from services.requests.support import create_problem, justification

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
ID = "6f9c0b7e-1d2a-4c55-9d0e-2a1b3c4d5e6f"


def at(hours: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(T0 + timedelta(hours=hours))
    return stamp


def seen(device: str, hours: int, name: str = "PC") -> devices_pb.SeenDevice:
    return devices_pb.SeenDevice(device_id=device, device_name=name, seen_date_time=at(hours))


# --- device ids and seen devices -----------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    (ID, uuid.UUID(ID)), (ID.upper(), uuid.UUID(ID)),
    ("device-1", None), ("", None), ("{" + ID + "}", None), (ID.replace("-", ""), None), (ID + " ", None),
])
def test_a_device_id_is_a_guid(text, expected):
    assert device_id(text) == expected


def test_a_seen_batch_is_one_row_per_device_its_latest_sorted_and_counts_the_ignored():
    other = str(uuid.uuid4())
    rows, ignored = latest_per_device([
        seen(ID, 1, "old"), seen("device-1", 5), seen(ID.upper(), 3, "new"), seen(other, 2, "x" * 300),
        seen(ID, 2, "middle"), seen("", 1)])
    assert ignored == 2
    assert [r[0] for r in rows] == sorted([uuid.UUID(ID), uuid.UUID(other)])
    by_id = {r[0]: r for r in rows}
    assert by_id[uuid.UUID(ID)][1] == "new" and by_id[uuid.UUID(ID)][3] == T0 + timedelta(hours=3)
    assert len(by_id[uuid.UUID(other)][1]) == 256  # names are cut to the column's limit


def test_stored_events_tell_the_latest_per_wanted_device_in_any_case():
    def row(device: str, hours: int, name: str) -> tuple:
        event = events_pb.ElevationEvent(device_id=device, device_name=name, upn=f"{name}@x", event_date_time=at(hours),
                                         hash="a" * 64)
        return ("tenant", *model.to_row(event))

    rows = [row(ID.upper(), 2, "b"), row(ID, 3, "c"), row(ID, 1, "a"), row("pc-9", 1, "z"), row("pc-8", 1, "y")]
    latest = latest_by_device(rows, {ID, "pc-9"})
    assert set(latest) == {ID, "pc-9"}
    assert (latest[ID].device_id, latest[ID].device_name, latest[ID].user_principal_name) == (ID, "c", "c@x")
    assert latest[ID].seen_date_time == at(3)


def test_reported_devices_are_claimed_once_forgotten_on_failure_and_bounded():
    reported = Reported(size=3, refresh=3600)
    assert reported.claim([("t", "a"), ("t", "b")], 0) == [("t", "a"), ("t", "b")]
    assert reported.claim([("t", "a"), ("u", "a")], 1) == [("u", "a")]  # per tenant
    reported.forget([("u", "a")])  # its report failed: the next event tries again
    assert reported.claim([("u", "a")], 2) == [("u", "a")]
    reported.claim([("t", "a")], 3)  # met again: the most recent now
    assert reported.claim([("t", "c")], 4) == [("t", "c")]  # over the bound: the least recently met ("t", "b") goes
    assert reported.claim([("t", "b"), ("t", "a")], 5) == [("t", "b")]


def test_a_device_seen_again_after_the_refresh_is_reported_again():
    reported = Reported(size=10, refresh=3600)
    assert reported.claim([("t", "a")], 0) == [("t", "a")]
    assert reported.claim([("t", "a")], 3599) == []
    assert reported.claim([("t", "a")], 3600) == [("t", "a")]  # its last-seen time moves on
    assert reported.claim([("t", "a")], 3601) == []


# --- which open request a new one repeats --------------------------------------------------------------


def row(**values) -> dict:
    return {"source": "graph", "requested_by_user_id": "u1", "file_hash": "f" * 64, "partner_ticket_id": "",
            **values}


def test_a_graph_request_repeats_the_same_users_open_request_for_the_same_file():
    fields = {"requested_by_user_id": "u1", "file_hash": "f" * 64}
    assert same_request(row(), fields)
    assert not same_request(row(requested_by_user_id="u2"), fields)
    assert not same_request(row(file_hash="e" * 64), fields)
    assert not same_request(row(source="mmd"), fields)


def test_mmd_tickets_are_told_apart_by_their_partner_ticket_id_not_by_user_and_file():
    fields = {"source": "mmd", "requested_by_user_id": "u1", "file_hash": "", "partner_ticket_id": "INC1"}
    assert same_request(row(source="mmd", file_hash="", partner_ticket_id="INC1"), fields)
    assert not same_request(row(source="mmd", file_hash="", partner_ticket_id="INC2"), fields)
    assert same_request(row(source="mmd", requested_by_user_id="u2", file_hash="", partner_ticket_id="INC1"), fields)
    assert not same_request(row(file_hash="", partner_ticket_id="INC1"), fields)  # a Graph request is no ticket


# --- MMD bodies ----------------------------------------------------------------------------------------


def ticket(**overrides) -> support_pb.CreateSupportElevationRequestRequest:
    values = {"partner_ticket_id": "INC1", "device_name": "PC", "title": "Install", "plan_of_action": "Run it"}
    return support_pb.CreateSupportElevationRequestRequest(**{**values, **overrides})


@pytest.mark.parametrize("overrides, problem", [
    ({}, None),
    ({"category": "", "subcategory": ""}, None),
    ({"partner_ticket_id": " "}, "partnerTicketId is required."),
    ({"device_name": ""}, "deviceName is required."),
    ({"title": ""}, "title is required."),
    ({"plan_of_action": "\n"}, "planOfAction is required."),
    ({"partner_ticket_id": "x" * 129}, "partnerTicketId must be at most 128 characters."),
    ({"subcategory": "x" * 129}, "subcategory must be at most 128 characters."),
])
def test_create_problems_name_the_mmd_property(overrides, problem):
    assert create_problem(ticket(**overrides)) == problem


def test_reviewers_read_the_title_and_the_plan_in_at_most_256_characters():
    assert justification(" Install Office ", "Run setup.exe ") == "Install Office: Run setup.exe"
    long = justification("T" * 200, "P" * 4000)
    assert len(long) == 256 and long.startswith("T" * 200 + ": P") and long.endswith("…")


def test_bodies_take_camel_or_pascal_case():
    assert body_fields({"PartnerTicketId": "1", "deviceName": "PC", "Title": None, "@odata.type": "x"},
                       CREATE_FIELDS) == {"partner_ticket_id": "1", "device_name": "PC", "title": ""}


@pytest.mark.parametrize("body, message", [
    ([], "must be a JSON object"),
    ({"Colour": "red"}, "'Colour' is not a property this call takes; it takes: partnerTicketId, deviceName"),
    ({"title": "a", "Title": "b"}, "'title' is given more than once."),
    ({"title": 5}, "'title' must be a string."),
])
def test_bad_bodies(body, message):
    with pytest.raises(GraphError) as err:
        body_fields(body, CREATE_FIELDS)
    assert err.value.status == 400 and message in err.value.message
