"""The events service over a real gRPC channel: auth metadata, batch ingest, health and reflection."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.events.v1 import elevation_event_service_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

NOW = datetime.now(timezone.utc)


def make(i: int, device: str = "dev") -> pb.ElevationEvent:
    event = pb.ElevationEvent(device_id=device, hash=hashlib.sha256(str(i % 7).encode()).hexdigest(),
                              elevation_type=pb.ELEVATION_TYPE_ZERO_TOUCH_ELEVATION, result=i)
    event.event_date_time.FromDatetime(NOW - timedelta(seconds=i))
    return event


@pytest.fixture
def stub(events_channel):
    return pb_grpc.ElevationEventServiceStub(events_channel)


@pytest.fixture
def md(token):
    return (("authorization", f"Bearer {token()}"),)


async def test_calls_without_a_valid_token_are_unauthenticated(stub, token):
    for metadata in ((), (("authorization", "Bearer junk"),)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetElevationEvent(pb.GetElevationEventRequest(id="x"), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reader = (("authorization", f"Bearer {token(scopes=['DeviceManagementManagedDevices.Read.All'])}"),)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordElevationEvent(pb.RecordElevationEventRequest(event=make(1)), metadata=reader)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    status = rpc_status.from_call(err.value)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "MISSING_SCOPE"


async def test_stream_of_batches_reports_bad_records_by_index_and_dedupes(stub, md):
    bad_hash = make(3)
    bad_hash.hash = "nope"
    too_long = make(4)
    too_long.justification = "j" * 257

    async def batches():
        yield pb.IngestElevationEventsRequest(events=[make(i) for i in range(3)])
        yield pb.IngestElevationEventsRequest(events=[make(0), bad_hash, too_long, make(5), make(5)])
        yield pb.IngestElevationEventsRequest(events=[make(i) for i in range(6, 1006)])

    result = await stub.IngestElevationEvents(batches(), metadata=md)
    assert (result.received, result.inserted, result.duplicates) == (1008, 1004, 2)
    assert [(r.batch, r.index) for r in result.rejected] == [(1, 1), (1, 2)]
    assert "hash" in result.rejected[0].reason and "justification" in result.rejected[1].reason
    count = await stub.CountElevationEvents(pb.CountElevationEventsRequest(), metadata=md)
    assert count.count == 1004
    page = await stub.ListElevationEvents(pb.ListElevationEventsRequest(page_size=1000, order_by="result"),
                                          metadata=md)
    assert len(page.events) == 1000 and page.next_page_token
    rest = await stub.ListElevationEvents(pb.ListElevationEventsRequest(
        page_size=1000, order_by="result", page_token=page.next_page_token), metadata=md)
    assert [e.result for e in rest.events][-1] == 1005 and not rest.next_page_token


async def test_events_out_of_the_retention_window_or_in_the_future_are_rejected(stub, md):
    old, future = make(0), make(0)
    old.event_date_time.FromDatetime(NOW - timedelta(days=400))
    future.event_date_time.FromDatetime(NOW + timedelta(days=2))
    for event, word in ((old, "retention"), (future, "future")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RecordElevationEvent(pb.RecordElevationEventRequest(event=event), metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and word in err.value.details()


async def test_health_and_reflection(events_channel):
    health = health_pb2_grpc.HealthStub(events_channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="epm.events.v1.ElevationEventService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(events_channel)

    async def ask():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for answer in reflection.ServerReflectionInfo(ask()):
        names = {s.name for s in answer.list_services_response.service}
        assert "epm.events.v1.ElevationEventService" in names
        break


async def test_record_answers_exactly_what_a_read_returns(stub, md):
    event = make(9)
    event.hash = event.hash.upper()
    event.elevation_type = pb.ELEVATION_TYPE_UNSPECIFIED
    event.event_date_time.nanos = 123_456_789
    recorded = await stub.RecordElevationEvent(pb.RecordElevationEventRequest(event=event), metadata=md)
    read = await stub.GetElevationEvent(pb.GetElevationEventRequest(id=recorded.id), metadata=md)
    assert recorded == read
    assert read.elevation_type == pb.ELEVATION_TYPE_UNDETERMINED and read.event_date_time.nanos == 123_456_000


async def test_concurrent_single_records_all_land_once(stub, md):
    events = [make(i, device=f"dev-{i % 5}") for i in range(200)]
    replies = await asyncio.gather(*(
        stub.RecordElevationEvent(pb.RecordElevationEventRequest(event=e), metadata=md) for e in events + events))
    assert len({r.id for r in replies}) == 200
    assert (await stub.CountElevationEvents(pb.CountElevationEventsRequest(), metadata=md)).count == 200
