import uuid
from datetime import datetime, timedelta, timezone

from epm.events.v1 import elevation_event_service_pb2 as pb

from services.events import model

NOW_DT = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
NOW = int(NOW_DT.timestamp()) * 1_000_000
OLDEST = NOW - 365 * 86_400_000_000


def valid(**fields) -> pb.ElevationEvent:
    event = pb.ElevationEvent(**{"device_id": "d1", "hash": "A" * 64, **fields})
    event.event_date_time.FromDatetime(NOW_DT - timedelta(minutes=5))
    return event


def test_a_valid_event_has_no_problem_and_round_trips_through_a_row():
    event = valid(elevation_type=pb.ELEVATION_TYPE_SUPPORT_APPROVED_ELEVATION, result=7, justification="ok")
    assert model.problem(event, NOW, OLDEST) is None
    row = dict(zip(model.COLUMNS, model.to_row(event), strict=True))
    assert row["hash"] == "a" * 64 and row["elevation_type"] == "supportApprovedElevation"
    assert row["user_type"] == "undetermined" and row["process_type"] == "undefined"
    row["event_date_time"] = model.as_datetime(row["event_date_time"])  # as PostgreSQL returns it
    assert row["event_date_time"] == NOW_DT - timedelta(minutes=5)
    back = model.from_row(row)
    assert back.id == row["id"] and back.result == 7 and back.hash == "a" * 64 and back.justification == "ok"
    assert back.user_type == pb.USER_TYPE_UNDETERMINED


def test_the_id_is_a_standard_uuid5():
    us = 1_795_381_870_123_456
    expected = uuid.uuid5(model.ID_NAMESPACE, f"6f9c0b7e-1d2a|{us}")
    assert uuid.UUID(model.event_id("6F9C0B7E-1d2a", us)) == expected
    assert expected.version == 5


def test_the_id_depends_only_on_device_and_time():
    a, b = valid(result=1), valid(result=2, device_name="x")
    assert model.to_row(a)[0] == model.to_row(b)[0]
    c = valid()
    c.device_id = "d2"
    assert model.to_row(c)[0] != model.to_row(a)[0]
    d = valid()
    d.device_id = "D1"  # Intune device ids are GUIDs: case does not make another device
    assert model.to_row(d)[0] == model.to_row(a)[0]


def test_each_rule_names_its_property():
    cases = {
        "deviceId": valid(device_id=" "),
        "hash": valid(hash="xyz"),
        "justification": valid(justification="j" * 257),
        "elevationType": valid(elevation_type=99),
        "policyName": valid(policy_name="p" * 5000),
    }
    for name, event in cases.items():
        assert name in model.problem(event, NOW, OLDEST), name
    missing_time = pb.ElevationEvent(device_id="d", hash="a" * 64)
    assert "eventDateTime" in model.problem(missing_time, NOW, OLDEST)
    future = valid()
    future.event_date_time.FromDatetime(NOW_DT + timedelta(days=2))
    assert "future" in model.problem(future, NOW, OLDEST)
    old = valid()
    old.event_date_time.FromDatetime(model.as_datetime(OLDEST) - timedelta(seconds=1))
    assert "retention" in model.problem(old, NOW, OLDEST)


def test_the_filter_fields_use_graph_names_and_types():
    assert model.FIELDS["eventDateTime"].type == "datetime"
    assert model.FIELDS["elevationType"].enum_values[-1] == "unknownFutureValue"
    assert model.FIELDS["systemInitiatedElevation"].type == "bool"
    assert model.FIELDS["result"].type == "int"
    assert model.FIELDS["hash"].casefold


def test_months():
    def utc(*args):
        return datetime(*args, tzinfo=timezone.utc)

    assert model.next_month(utc(2026, 12, 1)) == utc(2027, 1, 1)
    assert model.month_start(NOW_DT) == utc(2026, 11, 1)
    assert model.months_between(utc(2026, 11, 30), utc(2027, 2, 1)) == {
        utc(2026, 11, 1), utc(2026, 12, 1), utc(2027, 1, 1), utc(2027, 2, 1)}
    assert model.months_between(NOW_DT, NOW_DT) == {utc(2026, 11, 1)}
