"""Prometheus metrics, scraped over HTTP from a real metrics server while the test services answer real gRPC and
HTTP calls (the registry is the process's: one endpoint serves every in-process service)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import grpc
import pytest
from epm.events.v1 import elevation_event_feed_service_pb2 as feed_pb
from epm.events.v1 import elevation_event_feed_service_pb2_grpc as feed_grpc
from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.events.v1 import elevation_event_service_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from services.common.metrics import start_metrics_server

EVENTS = "epm.events.v1.ElevationEventService"
FEED = "epm.events.v1.ElevationEventFeedService"
ELEVATIONS = "/beta/deviceManagement/privilegeManagementElevations"
ROLES = ("DeviceManagementConfiguration.ReadWrite.All", "DeviceManagementManagedDevices.ReadWrite.All")


@pytest.fixture(scope="module")
async def scrape():
    """scrape() -> (the /metrics text, {(sample name, frozenset of labels): value})."""
    runner = await start_metrics_server(0, "127.0.0.1")
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    async with aiohttp.ClientSession() as session:
        async def get():
            async with session.get(url) as response:
                assert response.status == 200 and response.content_type == "text/plain"
                text = await response.text()
            return text, {(s.name, frozenset(s.labels.items())): s.value
                          for family in text_string_to_metric_families(text) for s in family.samples}
        yield get
    await runner.cleanup()


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def event(i: int, hash: str | None = None) -> pb.ElevationEvent:
    e = pb.ElevationEvent(device_id="dev", hash=hash or hashlib.sha256(f"{uuid.uuid4()}".encode()).hexdigest(),
                          elevation_type=pb.ELEVATION_TYPE_ZERO_TOUCH_ELEVATION, result=i)
    e.event_date_time.FromDatetime(datetime.now(timezone.utc) - timedelta(seconds=i))
    return e


@pytest.fixture
def agent(token):
    return (("authorization", f"Bearer {token(scopes=(), roles=ROLES)}"),)


async def test_grpc_calls_and_ingest_are_counted_by_method_and_code(scrape, events_channel, agent):
    stub = pb_grpc.ElevationEventServiceStub(events_channel)
    _, before = await scrape()
    await stub.RecordElevationEvent(pb.RecordElevationEventRequest(event=event(0)), metadata=agent)
    for bad, metadata, code in ((event(1, hash="nope"), agent, grpc.StatusCode.INVALID_ARGUMENT),
                                (event(2), (), grpc.StatusCode.UNAUTHENTICATED)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RecordElevationEvent(pb.RecordElevationEventRequest(event=bad), metadata=metadata)
        assert err.value.code() == code

    async def batches():
        yield pb.IngestElevationEventsRequest(events=[event(3), event(4, hash="bad"), event(5)])
    result = await stub.IngestElevationEvents(batches(), metadata=agent)
    assert (result.inserted, len(result.rejected)) == (2, 1)
    _, after = await scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    record = {"service": EVENTS, "method": "RecordElevationEvent"}
    for code, n in (("OK", 1), ("INVALID_ARGUMENT", 1), ("UNAUTHENTICATED", 1)):
        assert delta("epm_grpc_requests_total", code=code, **record) == n, code
    assert delta("epm_grpc_request_seconds_count", **record) == 3
    assert delta("epm_grpc_request_seconds_bucket", le="+Inf", **record) == 3
    assert delta("epm_grpc_request_seconds_sum", **record) > 0
    assert delta("epm_grpc_requests_total", service=EVENTS, method="IngestElevationEvents", code="OK") == 1
    assert delta("epm_events_ingested_total") == 3 and delta("epm_events_rejected_total") == 2


async def test_streams_count_when_they_end_and_the_open_ones_are_a_gauge(scrape, events_channel, agent):
    feed = feed_grpc.ElevationEventFeedServiceStub(events_channel)
    labels = {"service": FEED, "method": "StreamElevationEvents"}
    _, before = await scrape()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in feed.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(cursor="forged"),
                                                  metadata=agent):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    following = feed.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(follow=True), metadata=agent)
    await following.initial_metadata()  # the stream stands
    _, during = await scrape()
    assert value(during, "epm_feed_streams_open") >= 1 + value(before, "epm_feed_streams_open")
    assert value(during, "epm_grpc_requests_total", code="INVALID_ARGUMENT", **labels) == \
        value(before, "epm_grpc_requests_total", code="INVALID_ARGUMENT", **labels) + 1
    following.cancel()
    for _ in range(100):  # the server sees the cancellation a moment later
        _, after = await scrape()
        if value(after, "epm_grpc_requests_total", code="CANCELLED", **labels) > \
                value(before, "epm_grpc_requests_total", code="CANCELLED", **labels):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the cancelled stream was never counted")
    assert value(after, "epm_grpc_request_seconds_count", **labels) == \
        value(before, "epm_grpc_request_seconds_count", **labels) + 2
    assert value(after, "epm_feed_streams_open") == value(before, "epm_feed_streams_open")
    assert ("epm_background_tasks", frozenset()) in after
    for name in ("epm_notifications_delivered_total", "epm_notification_failures_total"):
        assert (name, frozenset()) in after


async def test_http_requests_are_labelled_by_route_pattern_never_by_path(scrape, http):
    raw = str(uuid.uuid4())
    _, before = await scrape()
    async with http.get(ELEVATIONS) as response:
        assert response.status == 200
    for path in (f"{ELEVATIONS}/{raw}", f"{ELEVATIONS}('{raw}')", f"/beta/{raw}"):
        async with http.get(path) as response:
            assert response.status == 404
    async with http.delete(ELEVATIONS) as response:
        assert response.status == 405
    text, after = await scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    for route, status, n in ((ELEVATIONS, "200", 1), (ELEVATIONS + "/{id}", "404", 1),
                             (ELEVATIONS + "('{id}')", "404", 1), ("unmatched", "404", 1)):
        assert delta("epm_http_requests_total", method="GET", route=route, status=status) == n, route
    assert delta("epm_http_requests_total", method="DELETE", route="unmatched", status="405") == 1
    assert delta("epm_http_request_seconds_count", method="GET", route=ELEVATIONS + "/{id}") == 1
    assert raw not in text
