"""The SIEM feeds over real gRPC and PostgreSQL: ElevationEventFeedService.StreamElevationEvents and
AuditFeedService.StreamAuditEvents. The backlog in commit order and exact resumption, follow mode, the late
commit, tenants, errors, re-ingest and changes, partitions, rights that end, and servers that stop."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import asyncpg
import grpc
import pytest
from epm.events.v1 import elevation_event_feed_service_pb2 as feed_pb
from epm.events.v1 import elevation_event_feed_service_pb2_grpc as feed_grpc
from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.events.v1 import elevation_event_service_pb2_grpc as pb_grpc
from epm.requests.v1 import audit_feed_service_pb2 as audit_pb
from epm.requests.v1 import audit_feed_service_pb2_grpc as audit_grpc
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as requests_grpc
from epm.requests.v1 import role_assignment_service_pb2 as roles_pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as roles_grpc
from google.protobuf import field_mask_pb2

from services.common import feed
from services.common.feed import ACCEPTED, Position
from services.events import app as events_app
from tests.claims import ROLE_ADMIN

CONFIG_READ = "DeviceManagementConfiguration.Read.All"
CONFIG_WRITE = "DeviceManagementConfiguration.ReadWrite.All"
DEVICES_WRITE = "DeviceManagementManagedDevices.ReadWrite.All"
READER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000002"  # Endpoint Privilege Reader: view
WAIT = 5.0  # seconds: the bound on anything asynchronous
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def md(bearer: str) -> tuple:
    return (("authorization", f"Bearer {bearer}"),)


@pytest.fixture
def agent(token):
    """A device agent's application token: ingests events, asks for and reviews requests, reads both feeds."""
    return md(token(scopes=(), roles=[CONFIG_WRITE, DEVICES_WRITE]))


@pytest.fixture
def events(events_channel):
    return pb_grpc.ElevationEventServiceStub(events_channel)


@pytest.fixture
def elevations(events_channel):
    return feed_grpc.ElevationEventFeedServiceStub(events_channel)


@pytest.fixture
def requests(requests_channel):
    return requests_grpc.ElevationRequestServiceStub(requests_channel)


@pytest.fixture
def audit(requests_channel):
    return audit_grpc.AuditFeedServiceStub(requests_channel)


@pytest.fixture(autouse=True)
def quick_followers(events_service, requests_service, monkeypatch):
    """Followers poll often here, so live events come soon; what they get is what the tests check."""
    for running in (events_service, requests_service):
        monkeypatch.setattr(running.feeds, "poll", 0.05)


@pytest.fixture
async def conn(database_url):
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


# --- helpers -----------------------------------------------------------------------------------------


def event(device: str, seconds_ago: float = 0) -> pb.ElevationEvent:
    made = pb.ElevationEvent(device_id=device, hash=hashlib.sha256(device.encode()).hexdigest(),
                             elevation_type=pb.ELEVATION_TYPE_USER_CONFIRMED_ELEVATION, upn="adele@contoso.example")
    made.event_date_time.FromDatetime(NOW - timedelta(seconds=seconds_ago))
    return made


async def ingest(events, metadata, *batches: list[pb.ElevationEvent]) -> pb.IngestElevationEventsResponse:
    """Each batch commits on its own, in the order given."""
    async def stream():
        for batch in batches:
            yield pb.IngestElevationEventsRequest(events=batch)
    return await events.IngestElevationEvents(stream(), metadata=metadata)


async def record(events, metadata, device: str) -> pb.ElevationEvent:
    return await events.RecordElevationEvent(pb.RecordElevationEventRequest(event=event(device)), metadata=metadata)


async def accepted(call) -> str:
    """The cursor a stream starts after, once the server has accepted it."""
    metadata = dict(await asyncio.wait_for(call.initial_metadata(), WAIT))
    return metadata[ACCEPTED]


async def drain(call) -> list:
    """Every item of a stream that ends by itself (not following)."""
    async def read_all():
        out = []
        while (response := await call.read()) is not grpc.aio.EOF:
            assert response.items
            out += response.items
        return out
    return await asyncio.wait_for(read_all(), WAIT)


async def take(call, n: int) -> list:
    """The next `n` items of a following stream (and no more in the responses that bring them)."""
    out = []
    while len(out) < n:
        response = await asyncio.wait_for(call.read(), WAIT)
        assert response is not grpc.aio.EOF and response.items
        out += response.items
    assert len(out) == n, out
    return out


async def ends_with(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(drain(call), WAIT)
    assert err.value.code() == code, err.value.details()
    return err.value


async def closed(feeds) -> None:
    """Waits until the service serves no feed stream any more."""
    async def none_open():
        while feeds.open:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(none_open(), WAIT)


def ids(responses) -> list[str]:
    return [(r.event if hasattr(r, "event") else r.audit_event).id for r in responses]


async def elevation_feed(elevations, metadata, cursor: str = "") -> list[feed_pb.ElevationEventFeedItem]:
    return await drain(elevations.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(cursor=cursor),
                                                        metadata=metadata))


async def audit_feed(audit, metadata, cursor: str = "") -> list[audit_pb.AuditEventFeedItem]:
    return await drain(audit.StreamAuditEvents(audit_pb.StreamAuditEventsRequest(cursor=cursor), metadata=metadata))


async def create(requests, metadata, file: str) -> requests_pb.ElevationRequest:
    request = requests_pb.ElevationRequest(
        requested_on_device_id="pc-1", requested_by_user_id="user-1", request_justification="Need it",
        application_detail=requests_pb.ElevationRequestApplicationDetail(
            file_hash=hashlib.sha256(file.encode()).hexdigest(), file_name=file))
    return await requests.CreateElevationRequest(requests_pb.CreateElevationRequestRequest(elevation_request=request),
                                                 metadata=metadata)


def activities(responses) -> list[tuple[str, str]]:
    return [(r.audit_event.activity, r.audit_event.resources[0].resource_id) for r in responses]


async def insert_audit_row(conn, tenant: str, resource_id: str) -> str:
    row_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO requests.audit_events (tenant_id, id, at, activity, operation, actor_type, resource_type, "
        "resource_id) VALUES ($1, $2, now(), 'Late Thing', 'Action', 'System', 'ElevationRequest', $3)",
        tenant, row_id, resource_id)
    return row_id


async def insert_elevation_row(conn, tenant: str, device: str) -> str:
    row_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO events.elevations (tenant_id, id, device_id, event_date_time, elevation_type, user_type, hash, "
        "process_type) VALUES ($1, $2, $3, $4, 'unmanagedElevation', 'azureAd', $5, 'parent')",
        tenant, row_id, device, NOW, hashlib.sha256(device.encode()).hexdigest())
    return row_id


# --- elevation events --------------------------------------------------------------------------------


async def test_the_backlog_comes_in_commit_order_and_any_cursor_resumes_with_exactly_the_rest(events, elevations,
                                                                                               agent):
    batch = [event("batch-a", 3), event("batch-b", 2), event("batch-c", 1)]
    await ingest(events, agent, batch)
    singles = [await record(events, agent, f"single-{i}") for i in range(3)]
    later = [event("later-a"), event("later-b")]
    await ingest(events, agent, later[:1], later[1:])
    backlog = await elevation_feed(elevations, agent)
    assert sorted(r.event.device_id for r in backlog[:3]) == ["batch-a", "batch-b", "batch-c"]
    assert ids(backlog[:3]) == sorted(ids(backlog[:3]))  # one transaction: its events in id order
    assert ids(backlog[3:6]) == [s.id for s in singles]
    # two batches of one stream: the service writes up to two at once, so either may take its transaction first
    assert sorted(r.event.device_id for r in backlog[6:]) == ["later-a", "later-b"]
    for response in backlog:  # as stored, as the list returns it
        assert response.event == await events.GetElevationEvent(pb.GetElevationEventRequest(id=response.event.id),
                                                                metadata=agent)
    positions = [Position.parse(r.cursor) for r in backlog]
    assert positions == sorted(positions, key=lambda p: (p.txid, p.id)) and len(set(positions)) == len(backlog)
    for k, response in enumerate(backlog):
        assert ids(await elevation_feed(elevations, agent, response.cursor)) == ids(backlog[k + 1:])


async def test_a_long_backlog_comes_whole_in_messages_of_bounded_size(events, elevations, agent):
    items = [event(f"pc-{i}", seconds_ago=i) for i in range(feed.BATCH * 2 + 100)]  # more than two reads
    for big in items[:120]:  # 3.8 MB: more than three messages' worth, so some read is split
        big.file_path = "C:\\" + "x" * 32_000
    await ingest(events, agent, items)
    call = elevations.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(), metadata=agent)
    responses = [r async for r in call]
    sent = [item for r in responses for item in r.items]
    assert sorted(item.event.device_id for item in sent) == sorted(e.device_id for e in items)  # each once
    assert all(r.ByteSize() < feed.MESSAGE_BYTES + 40_000 for r in responses) and len(responses) >= 4
    positions = [Position.parse(item.cursor) for item in sent]
    assert positions == sorted(positions, key=lambda p: (p.txid, p.id))


async def test_following_sends_what_commits_after_the_stream_started(events, elevations, agent, events_service):
    old = await record(events, agent, "old")
    call = elevations.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(follow=True), metadata=agent)
    try:
        await accepted(call)
        assert ids(await take(call, 1)) == [old.id]
        await ingest(events, agent, [event("new-1")])
        (first,) = await take(call, 1)
        assert first.event.device_id == "new-1"
        second = await record(events, agent, "new-2")
        assert ids(await take(call, 1)) == [second.id]
    finally:
        call.cancel()
    await closed(events_service.feeds)


async def test_a_re_sent_event_is_not_sent_again_and_a_changed_one_is(events, elevations, agent):
    first, second = event("first", 2), event("second", 1)
    await ingest(events, agent, [first, second])
    backlog = await elevation_feed(elevations, agent)
    again = await ingest(events, agent, [first, second])
    assert (again.inserted, again.duplicates) == (0, 2)
    await events.RecordElevationEvent(pb.RecordElevationEventRequest(event=first), metadata=agent)  # once more
    assert await elevation_feed(elevations, agent, backlog[-1].cursor) == []
    changed = pb.ElevationEvent(id=backlog[0].event.id, justification="Reviewed by the SOC")
    await events.UpdateElevationEvent(pb.UpdateElevationEventRequest(
        event=changed, update_mask=field_mask_pb2.FieldMask(paths=["justification"])), metadata=agent)
    (update,) = await elevation_feed(elevations, agent, backlog[-1].cursor)
    assert (update.event.id, update.event.justification) == (changed.id, "Reviewed by the SOC")
    assert ids(await elevation_feed(elevations, agent)) == [backlog[1].event.id, changed.id]  # moved, not twice


async def test_a_transaction_that_commits_late_still_reaches_readers_past_a_younger_one(events, elevations, agent,
                                                                                         conn, tenant):
    await ingest(events, agent, [event("before")])
    (before,) = await elevation_feed(elevations, agent)
    call = elevations.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(cursor=before.cursor, follow=True),
                                            metadata=agent)
    late = conn.transaction()
    await late.start()
    try:
        late_id = await insert_elevation_row(conn, tenant, "late")  # an older transaction, still open...
        young = await record(events, agent, "young")  # ...while a younger one commits
        assert await elevation_feed(elevations, agent, before.cursor) == []  # held back: nothing to skip past
    finally:
        await late.commit()
    try:
        assert ids(await take(call, 2)) == [late_id, young.id]
    finally:
        call.cancel()
    assert ids(await elevation_feed(elevations, agent, before.cursor)) == [late_id, young.id]


async def test_a_tenant_sees_only_its_own_events(events, elevations, agent, token):
    other = md(token(scopes=(), roles=[CONFIG_WRITE, DEVICES_WRITE], tenant=str(uuid.uuid4())))
    await ingest(events, agent, [event("mine")])
    assert await elevation_feed(elevations, other) == []
    call = elevations.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(follow=True), metadata=other)
    try:
        await accepted(call)
        await record(events, agent, "mine-too")
        theirs = await record(events, other, "theirs")
        assert ids(await take(call, 1)) == [theirs.id]  # the first it sees
    finally:
        call.cancel()
    assert [r.event.device_id for r in await elevation_feed(elevations, agent)] == ["mine", "mine-too"]


async def test_bad_cursors_are_invalid_arguments_and_the_right_permission_is_needed(elevations, audit, token):
    reader = md(token(scopes=[CONFIG_READ]))
    valid = Position(7, uuid.uuid4()).token()
    for cursor in ("junk", valid[:-1], valid + "A", Position(-1, uuid.uuid4()).token(), "MC4w!!"):
        for call in (elevations.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(cursor=cursor),
                                                      metadata=reader),
                     audit.StreamAuditEvents(audit_pb.StreamAuditEventsRequest(cursor=cursor),
                                             metadata=md(token(scopes=(), roles=[CONFIG_READ])))):
            error = await ends_with(call, grpc.StatusCode.INVALID_ARGUMENT)
            assert "The cursor is not one this feed gave out." in error.details()
    assert await elevation_feed(elevations, reader, valid) == []
    nobody = md(token(scopes=["User.Read"]))
    error = await ends_with(elevations.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(), metadata=nobody),
                            grpc.StatusCode.PERMISSION_DENIED)
    assert "DeviceManagementConfiguration.Read.All" in error.details()
    await ends_with(audit.StreamAuditEvents(audit_pb.StreamAuditEventsRequest(), metadata=nobody),
                    grpc.StatusCode.PERMISSION_DENIED)
    await ends_with(elevations.StreamElevationEvents(feed_pb.StreamElevationEventsRequest()),
                    grpc.StatusCode.UNAUTHENTICATED)


async def test_every_partition_carries_the_feed_index(events, agent, conn):
    await ingest(events, agent, [event("this-month"), event("last-month", seconds_ago=40 * 86400)])
    partitions = await conn.fetch(
        "SELECT c.relname, (SELECT count(*) FROM pg_indexes i WHERE i.schemaname = 'events' "
        "  AND i.tablename = c.relname AND i.indexdef LIKE '%(tenant_id, txid, id)') AS feed_indexes "
        "FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid WHERE h.inhparent = 'events.elevations'::regclass")
    assert len(partitions) >= 2 and all(p["feed_indexes"] == 1 for p in partitions), partitions


async def test_a_stopping_server_ends_its_followers_with_unavailable_at_once(settings, requests_service, agent):
    running = await events_app.start(replace(settings, requests_addr=f"127.0.0.1:{requests_service.port}"),
                                     "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        stub = feed_grpc.ElevationEventFeedServiceStub(channel)
        call = stub.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(follow=True), metadata=agent)
        await accepted(call)
        await asyncio.wait_for(running.stop(grace=60), WAIT)  # not the 60 s grace: the stream ends itself
        error = await ends_with(call, grpc.StatusCode.UNAVAILABLE)
        assert "resume from the last cursor" in error.details()
    finally:
        await channel.close()


# --- audit events ------------------------------------------------------------------------------------


async def test_the_audit_trail_streams_in_order_resumes_exactly_and_follows(requests, audit, agent,
                                                                            requests_service):
    one, two = await create(requests, agent, "one.exe"), await create(requests, agent, "two.exe")
    await requests.ApproveElevationRequest(requests_pb.ReviewElevationRequestRequest(id=one.id), metadata=agent)
    backlog = await audit_feed(audit, agent)
    assert activities(backlog) == [("Create ElevationRequest", one.id), ("Create ElevationRequest", two.id),
                                   ("Approve ElevationRequest", one.id)]
    listed = await requests.ListAuditEvents(requests_pb.ListAuditEventsRequest(), metadata=agent)
    assert sorted(ids(backlog)) == sorted(e.id for e in listed.audit_events)
    assert {e.id: e for e in listed.audit_events} == {r.audit_event.id: r.audit_event for r in backlog}
    assert ids(await audit_feed(audit, agent, backlog[0].cursor)) == ids(backlog[1:])
    assert await audit_feed(audit, agent, backlog[-1].cursor) == []
    call = audit.StreamAuditEvents(audit_pb.StreamAuditEventsRequest(cursor=backlog[-1].cursor, follow=True),
                                   metadata=agent)
    try:
        assert await accepted(call) == backlog[-1].cursor
        await requests.DenyElevationRequest(requests_pb.ReviewElevationRequestRequest(id=two.id), metadata=agent)
        assert activities(await take(call, 1)) == [("Deny ElevationRequest", two.id)]
    finally:
        call.cancel()
    await closed(requests_service.feeds)


async def test_an_audit_row_that_commits_late_is_still_sent(requests, audit, agent, conn, tenant):
    await create(requests, agent, "first.exe")
    (before,) = await audit_feed(audit, agent)
    late = conn.transaction()
    await late.start()
    try:
        late_id = await insert_audit_row(conn, tenant, "late")
        young = await create(requests, agent, "young.exe")
        assert await audit_feed(audit, agent, before.cursor) == []
    finally:
        await late.commit()
    assert activities(await audit_feed(audit, agent, before.cursor)) == [
        ("Late Thing", "late"), ("Create ElevationRequest", young.id)]
    assert ids(await audit_feed(audit, agent, before.cursor))[0] == late_id


async def test_the_audit_feed_is_the_tenants_own_and_needs_the_view_right(requests, audit, agent, token,
                                                                          requests_channel):
    await create(requests, agent, "mine.exe")
    other = md(token(scopes=(), roles=[CONFIG_READ], tenant=str(uuid.uuid4())))
    assert await audit_feed(audit, other) == []
    user = str(uuid.uuid4())
    no_role = md(token(scopes=[CONFIG_READ], oid=user))
    error = await ends_with(audit.StreamAuditEvents(audit_pb.StreamAuditEventsRequest(), metadata=no_role),
                            grpc.StatusCode.PERMISSION_DENIED)
    assert "Endpoint Privilege Management Elevation Requests" in error.details()


async def test_a_follower_that_loses_its_role_is_stopped(requests, audit, agent, token, requests_channel,
                                                         requests_service, monkeypatch):
    monkeypatch.setattr(requests_service.feeds, "reauthorize", 0.0)  # check the caller before every read
    roles = roles_grpc.RoleAssignmentServiceStub(requests_channel)
    admin = md(token(**ROLE_ADMIN))
    user = str(uuid.uuid4())
    assignment = await roles.CreateRoleAssignment(roles_pb.CreateRoleAssignmentRequest(user_id=user, role_id=READER),
                                                  metadata=admin)
    call = audit.StreamAuditEvents(audit_pb.StreamAuditEventsRequest(follow=True),
                                   metadata=md(token(scopes=[CONFIG_READ], oid=user)))
    created = await create(requests, agent, "watched.exe")
    assert ("Create ElevationRequest", created.id) in activities(await take(call, 2))  # the role's own audit too
    await roles.DeleteRoleAssignment(roles_pb.DeleteRoleAssignmentRequest(id=assignment.id), metadata=admin)
    await ends_with(call, grpc.StatusCode.PERMISSION_DENIED)
