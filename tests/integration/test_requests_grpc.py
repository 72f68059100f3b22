"""ElevationRequestService over real gRPC and PostgreSQL: lifecycle, races, expiry, completion through the
events service, caps, reviewer rights, ETags, OData, audit, WatchDecisions and tenant isolation.

The clock is shared by the session: tests only move it forward, by at most hours (per-tenant policies keep
windows short), except the last test, which needs the 7-day default and so runs last."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import grpc
import pytest
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.events.v1 import elevation_event_service_pb2_grpc as events_grpc
from epm.requests.v1 import elevation_request_service_pb2 as pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as pb_grpc
from epm.requests.v1 import role_assignment_service_pb2 as roles_pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as roles_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.requests import app as requests_app
from services.requests.lifecycle import Policy
from tests.claims import ROLE_ADMIN
from tests.expiry import sweep

MANAGER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"  # view + modify
READER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000002"   # view
CONFIG_READ = "DeviceManagementConfiguration.Read.All"
CONFIG_WRITE = "DeviceManagementConfiguration.ReadWrite.All"
DEVICES_READ = "DeviceManagementManagedDevices.Read.All"
DEVICES_WRITE = "DeviceManagementManagedDevices.ReadWrite.All"
P = pb.State
WAIT = 5.0  # seconds: the bound on anything asynchronous


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md(bearer: str, request_id: str = "") -> tuple:
    return (("authorization", f"Bearer {bearer}"),) + ((("x-request-id", request_id),) if request_id else ())


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def stub(requests_channel):
    return pb_grpc.ElevationRequestServiceStub(requests_channel)


@pytest.fixture
def events(events_channel):
    return events_grpc.ElevationEventServiceStub(events_channel)


@pytest.fixture
async def conn(database_url, requests_channel):
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
def store(requests_service):
    return requests_service.store


@pytest.fixture
def agent(token):
    """A device agent: an application token (roles only), which needs no Intune role."""
    return md(token(scopes=(), roles=[CONFIG_WRITE, DEVICES_WRITE]))


@pytest.fixture
def reviewer(token, requests_channel):
    """reviewer(role=MANAGER, scopes=...) -> (oid, metadata) of a signed-in user holding `role` (None: no role)."""
    roles = roles_grpc.RoleAssignmentServiceStub(requests_channel)
    admin = md(token(**ROLE_ADMIN))

    async def make(role: str | None = MANAGER, scopes=(CONFIG_WRITE,), upn: str = "") -> tuple[str, tuple]:
        oid = str(uuid.uuid4())
        if role:
            await roles.CreateRoleAssignment(roles_pb.CreateRoleAssignmentRequest(user_id=oid, role_id=role),
                                             metadata=admin)
        return oid, md(token(scopes=scopes, oid=oid, upn=upn or f"{oid[:8]}@contoso.example"))
    return make


# --- helpers -----------------------------------------------------------------------------------------


async def create(stub, metadata, *, device: str = "device-1", user: str = "", file: str = "app.exe",
                 justification: str = "Need it", file_hash: str = "") -> pb.ElevationRequest:
    request = pb.ElevationRequest(
        requested_on_device_id=device, device_name=device.upper(), request_justification=justification,
        requested_by_user_id=user or "user-1", requested_by_user_principal_name="user@contoso.example",
        application_detail=pb.ElevationRequestApplicationDetail(file_hash=file_hash or sha(file), file_name=file))
    return await stub.CreateElevationRequest(pb.CreateElevationRequestRequest(elevation_request=request),
                                             metadata=metadata)


def review(request_id: str, justification: str = "", etag: str = "") -> pb.ReviewElevationRequestRequest:
    return pb.ReviewElevationRequestRequest(id=request_id, reviewer_justification=justification, etag=etag)


async def fails(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Awaits `call`, which must fail with `code`; returns the error."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value


def reason_of(error: grpc.aio.AioRpcError) -> str:
    info = error_details_pb2.ErrorInfo()
    assert rpc_status.from_call(error).details[0].Unpack(info)
    return info.reason


async def get(stub, metadata, request_id: str) -> pb.ElevationRequest:
    return await stub.GetElevationRequest(pb.GetElevationRequestRequest(id=request_id), metadata=metadata)


def graph_only(message: pb.ElevationRequest) -> pb.ElevationRequest:
    """A copy without the verdict, which the reputation service attaches in the background at its own pace."""
    copy = pb.ElevationRequest()
    copy.CopyFrom(message)
    copy.ClearField("reputation")
    return copy


async def listed(stub, metadata, filter: str) -> list[str]:
    page = await stub.ListElevationRequests(pb.ListElevationRequestsRequest(filter=filter, page_size=100),
                                            metadata=metadata)
    return [r.id for r in page.elevation_requests]


async def audit_rows(conn, tenant: str, request_id: str, operation: str | None = None) -> list:
    rows = await conn.fetch("SELECT * FROM requests.audit_events WHERE tenant_id = $1 AND resource_id = $2 "
                            "ORDER BY at, xmin::text::bigint", tenant, request_id)
    return [r for r in rows if operation is None or r["operation"] == operation]


async def decision_rows(conn, tenant: str, request_id: str) -> list:
    return await conn.fetch("SELECT * FROM requests.decisions WHERE tenant_id = $1 AND request_id = $2 "
                            "ORDER BY sequence", tenant, uuid.UUID(request_id))


async def stored_status(conn, tenant: str, request_id: str) -> str:
    return await conn.fetchval("SELECT status FROM requests.elevation_requests WHERE tenant_id = $1 AND id = $2",
                               tenant, uuid.UUID(request_id))


def when(timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=timezone.utc)


async def eventually_status(stub, metadata, request_id: str, status: int) -> pb.ElevationRequest:
    """Polls until the request shows `status` (forwarding from the events service is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        got = await get(stub, metadata, request_id)
        if got.status == status or loop.time() > deadline:
            return got
        await asyncio.sleep(0.05)


# --- create ------------------------------------------------------------------------------------------


async def test_create_by_a_user_is_pending_for_seven_days_and_audited(stub, reviewer, agent, conn, tenant, clock):
    oid, user = await reviewer(role=None, upn="adele@contoso.example")
    before = clock.now()
    created = await create(stub, user, user="someone-else", file="Setup.EXE", file_hash=sha("x").upper())
    assert created.status == P.STATE_PENDING and created.etag == "1"
    assert created.requested_by_user_id == oid  # users ask for themselves, whatever they send
    assert created.requested_by_user_principal_name == "adele@contoso.example"
    assert created.application_detail.file_hash == sha("x")  # stored lowercase
    assert when(created.request_expiry_date_time) - when(created.request_created_date_time) == timedelta(days=7)
    assert when(created.request_created_date_time) >= before
    assert not created.HasField("review_completed_date_time")
    assert graph_only(await get(stub, agent, created.id)) == graph_only(created)
    (row,) = await audit_rows(conn, tenant, created.id)
    assert (row["activity"], row["operation"], row["actor_type"], row["actor_id"], row["new_state"]) == (
        "Create ElevationRequest", "Create", "ItPro", oid, "pending")


async def test_create_validates_its_input(stub, agent):
    await create(stub, agent, justification="j" * 256, file="ok")
    for kwargs in ({"justification": "j" * 257}, {"file_hash": "not-a-hash"}, {"device": " "},
                   {"file_hash": sha("a")[:-1]}):
        error = await fails(create(stub, agent, **kwargs), grpc.StatusCode.INVALID_ARGUMENT)
        assert reason_of(error) == "INVALID_ARGUMENT"
    error = await fails(create(stub, agent, justification="j" * 257), grpc.StatusCode.INVALID_ARGUMENT)
    assert "requestJustification must be at most 256 characters." in error.details()


async def test_create_is_idempotent_per_device_user_and_file(stub, agent, conn, tenant):
    first = await create(stub, agent, user="u1", file="a.exe")
    again = await create(stub, agent, user="u1", file="a.exe", justification="different text")
    upper = await create(stub, agent, user="u1", file_hash=sha("a.exe").upper())
    assert again.id == first.id == upper.id and graph_only(again) == graph_only(first)
    others = {(await create(stub, agent, user="u2", file="a.exe")).id,
              (await create(stub, agent, user="u1", file="b.exe")).id,
              (await create(stub, agent, user="u1", file="a.exe", device="device-2")).id}
    assert len(others) == 3 and first.id not in others
    assert len(await audit_rows(conn, tenant, first.id, "Create")) == 1
    await stub.DenyElevationRequest(review(first.id), metadata=agent)
    fresh = await create(stub, agent, user="u1", file="a.exe")  # no longer open: a new request
    assert fresh.id != first.id and fresh.status == P.STATE_PENDING


async def test_open_requests_per_device_are_capped(stub, agent, store, tenant):
    opened = [await create(stub, agent, file=f"f{i}.exe") for i in range(10)]  # default cap: 10
    error = await fails(create(stub, agent, file="f10.exe"), grpc.StatusCode.PERMISSION_DENIED)
    assert error.details() == "This device has too many open elevation requests."
    assert reason_of(error) == "TOO_MANY_OPEN_REQUESTS"
    assert (await create(stub, agent, file="f3.exe")).id == opened[3].id  # idempotent even at the cap
    await create(stub, agent, file="f10.exe", device="device-2")  # the cap is per device
    await stub.ApproveElevationRequest(review(opened[0].id), metadata=agent)  # approved is still open
    await fails(create(stub, agent, file="f10.exe"), grpc.StatusCode.PERMISSION_DENIED)
    await stub.DenyElevationRequest(review(opened[1].id), metadata=agent)
    await create(stub, agent, file="f10.exe")
    await store.set_policy(tenant, Policy(max_open_per_device=2))
    await create(stub, agent, file="g0.exe", device="device-3")
    await create(stub, agent, file="g1.exe", device="device-3")
    await fails(create(stub, agent, file="g2.exe", device="device-3"), grpc.StatusCode.PERMISSION_DENIED)


async def test_expired_requests_do_not_count_against_the_cap(stub, agent, store, tenant, clock, conn):
    await store.set_policy(tenant, Policy(pending_ttl=timedelta(minutes=10), max_open_per_device=1))
    old = await create(stub, agent, file="a.exe")
    await fails(create(stub, agent, file="b.exe"), grpc.StatusCode.PERMISSION_DENIED)
    clock.advance(timedelta(minutes=10))
    fresh = await create(stub, agent, file="a.exe")  # the old one expired: not returned, not counted
    assert fresh.id != old.id and fresh.status == P.STATE_PENDING
    assert await stored_status(conn, tenant, old.id) == "expired"
    assert [r["actor_type"] for r in await audit_rows(conn, tenant, old.id, "Action")] == ["System"]


# --- transitions -------------------------------------------------------------------------------------


async def test_approve_then_revoke_and_every_refusal_names_the_state(stub, reviewer, agent, conn, tenant, clock):
    oid, me = await reviewer(upn="rev@contoso.example")
    request = await create(stub, agent)
    before = clock.now()
    approved = await stub.ApproveElevationRequest(review(request.id, "ok"), metadata=me)
    assert approved.status == P.STATE_APPROVED and approved.etag == "2"
    assert (approved.review_completed_by_user_id, approved.review_completed_by_user_principal_name,
            approved.reviewer_justification) == (oid, "rev@contoso.example", "ok")
    reviewed = when(approved.review_completed_date_time)
    assert reviewed >= before
    assert when(approved.request_expiry_date_time) == reviewed + timedelta(hours=24)  # the window: from approval
    for call in (stub.ApproveElevationRequest, stub.DenyElevationRequest):
        error = await fails(call(review(request.id), metadata=me), grpc.StatusCode.FAILED_PRECONDITION)
        assert "that is approved" in error.details() and reason_of(error) == "INVALID_TRANSITION"
    revoked = await stub.RevokeElevationRequest(review(request.id, "changed my mind"), metadata=me)
    assert revoked.status == P.STATE_REVOKED
    for call in (stub.ApproveElevationRequest, stub.DenyElevationRequest, stub.RevokeElevationRequest):
        error = await fails(call(review(request.id), metadata=me), grpc.StatusCode.FAILED_PRECONDITION)
        assert "that is revoked: it is final." in error.details()
    rows = await audit_rows(conn, tenant, request.id)
    assert [(r["activity"], r["old_state"], r["new_state"]) for r in rows] == [
        ("Create ElevationRequest", "", "pending"),
        ("Approve ElevationRequest", "pending", "approved"),
        ("Revoke ElevationRequest", "approved", "revoked")]
    assert [d["status"] for d in await decision_rows(conn, tenant, request.id)] == ["approved", "revoked"]


async def test_deny_is_final_and_revoke_needs_an_approval(stub, reviewer, agent, conn, tenant):
    _, me = await reviewer()
    pending = await create(stub, agent, file="a.exe")
    error = await fails(stub.RevokeElevationRequest(review(pending.id), metadata=me),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert "Cannot revoke an elevation request that is pending" in error.details()
    denied = await stub.DenyElevationRequest(review(pending.id, "no"), metadata=me)
    assert denied.status == P.STATE_DENIED and denied.reviewer_justification == "no"
    for call in (stub.ApproveElevationRequest, stub.DenyElevationRequest, stub.RevokeElevationRequest):
        error = await fails(call(review(pending.id), metadata=me), grpc.StatusCode.FAILED_PRECONDITION)
        assert "that is denied: it is final." in error.details()
    assert len(await audit_rows(conn, tenant, pending.id, "Action")) == 1
    assert [d["status"] for d in await decision_rows(conn, tenant, pending.id)] == ["denied"]


async def test_reviewer_justification_is_length_checked(stub, agent):
    request = await create(stub, agent)
    error = await fails(stub.ApproveElevationRequest(review(request.id, "j" * 257), metadata=agent),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert "reviewerJustification must be at most 256 characters." in error.details()
    assert (await get(stub, agent, request.id)).status == P.STATE_PENDING
    approved = await stub.ApproveElevationRequest(review(request.id, "j" * 256), metadata=agent)
    assert approved.reviewer_justification == "j" * 256


async def test_concurrent_reviewers_exactly_one_wins(stub, reviewer, agent, conn, tenant):
    reviewers = [await reviewer() for _ in range(10)]
    for attempt in range(3):  # a few rounds, so both approve and deny get a chance to win
        request = await create(stub, agent, file=f"race{attempt}.exe")
        calls = [(stub.ApproveElevationRequest if i % 2 == 0 else stub.DenyElevationRequest)(
            review(request.id, f"reviewer {i}"), metadata=m) for i, (_, m) in enumerate(reviewers)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        wins = [r for r in results if isinstance(r, pb.ElevationRequest)]
        losses = [r for r in results if not isinstance(r, pb.ElevationRequest)]
        assert len(wins) == 1 and len(losses) == 9, results
        state = {P.STATE_APPROVED: "approved", P.STATE_DENIED: "denied"}[wins[0].status]
        for loss in losses:
            assert isinstance(loss, grpc.aio.AioRpcError) and loss.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert f"that is {state}" in loss.details(), loss.details()
        changes = await audit_rows(conn, tenant, request.id, "Action")
        assert [(r["new_state"], r["reason"]) for r in changes] == [(state, wins[0].reviewer_justification)]
        assert [d["status"] for d in await decision_rows(conn, tenant, request.id)] == [state]
        assert graph_only(await get(stub, agent, request.id)) == graph_only(wins[0])


async def test_a_reviewer_cannot_approve_their_own_request(stub, reviewer, conn, tenant):
    oid, me = await reviewer(scopes=(CONFIG_WRITE,))
    mine = await create(stub, me)
    assert mine.requested_by_user_id == oid
    error = await fails(stub.ApproveElevationRequest(review(mine.id), metadata=me), grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(error) == "SELF_REVIEW"
    assert len(await audit_rows(conn, tenant, mine.id, "Action")) == 0
    _, colleague = await reviewer()
    assert (await stub.ApproveElevationRequest(review(mine.id), metadata=colleague)).status == P.STATE_APPROVED


async def test_the_requester_is_recognised_whatever_the_case_of_their_id(stub, reviewer, agent):
    oid, me = await reviewer()
    on_behalf = await create(stub, agent, user=oid.upper())  # a device agent may send the GUID in capitals
    again = await create(stub, agent, user=oid)
    assert again.id == on_behalf.id
    error = await fails(stub.ApproveElevationRequest(review(on_behalf.id), metadata=me),
                        grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(error) == "SELF_REVIEW"


async def test_concurrent_creates_respect_idempotency_and_the_cap(stub, agent, store, tenant, conn):
    same = await asyncio.gather(*[create(stub, agent, file="same.exe", device="pc-x") for _ in range(8)])
    assert len({r.id for r in same}) == 1
    await store.set_policy(tenant, Policy(max_open_per_device=5))
    results = await asyncio.gather(*[create(stub, agent, file=f"{i}.exe", device="pc-y") for i in range(12)],
                                   return_exceptions=True)
    created = [r for r in results if isinstance(r, pb.ElevationRequest)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 5 and len(refused) == 7, results
    assert all(r.code() == grpc.StatusCode.PERMISSION_DENIED for r in refused)
    assert await conn.fetchval("SELECT count(*) FROM requests.elevation_requests WHERE tenant_id = $1 "
                               "AND device_id = 'pc-y'", tenant) == 5


# --- reviewer rights ---------------------------------------------------------------------------------


async def test_a_reader_can_view_but_not_review(stub, reviewer, agent):
    request = await create(stub, agent)
    _, reader = await reviewer(role=READER)
    assert (await get(stub, reader, request.id)).id == request.id
    assert await listed(stub, reader, "") == [request.id]
    count = await stub.CountElevationRequests(pb.CountElevationRequestsRequest(), metadata=reader)
    assert count.count == 1
    await stub.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=reader)
    for call in (stub.ApproveElevationRequest, stub.DenyElevationRequest, stub.RevokeElevationRequest):
        error = await fails(call(review(request.id), metadata=reader), grpc.StatusCode.PERMISSION_DENIED)
        assert reason_of(error) == "MISSING_ROLE" and "Modify elevation requests" in error.details()
    await fails(stub.UpdateElevationRequest(pb.UpdateElevationRequestRequest(id=request.id), metadata=reader),
                grpc.StatusCode.PERMISSION_DENIED)
    await fails(stub.DeleteElevationRequest(pb.DeleteElevationRequestRequest(id=request.id), metadata=reader),
                grpc.StatusCode.PERMISSION_DENIED)
    assert (await get(stub, agent, request.id)).status == P.STATE_PENDING


async def test_a_user_without_a_role_can_do_nothing_but_create(stub, reviewer, agent):
    request = await create(stub, agent)
    _, nobody = await reviewer(role=None)
    for call in (get(stub, nobody, request.id), listed(stub, nobody, ""),
                 stub.CountElevationRequests(pb.CountElevationRequestsRequest(), metadata=nobody),
                 stub.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=nobody),
                 stub.ApproveElevationRequest(review(request.id), metadata=nobody),
                 stub.DenyElevationRequest(review(request.id), metadata=nobody)):
        error = await fails(call, grpc.StatusCode.PERMISSION_DENIED)
        assert reason_of(error) == "MISSING_ROLE"
    await create(stub, nobody, file="own.exe")


async def test_an_inactive_eligible_role_grants_nothing(stub, reviewer, agent, token, requests_channel):
    roles = roles_grpc.RoleAssignmentServiceStub(requests_channel)
    admin = md(token(**ROLE_ADMIN))
    oid, me = await reviewer(role=MANAGER)
    await roles.MakeEligible(roles_pb.MakeEligibleRequest(id=f"{oid}_{MANAGER}"), metadata=admin)
    request = await create(stub, agent)
    await fails(stub.ApproveElevationRequest(review(request.id), metadata=me), grpc.StatusCode.PERMISSION_DENIED)


async def test_graph_scopes_are_checked_before_roles(stub, reviewer, agent):
    request = await create(stub, agent)
    _, read_only = await reviewer(role=MANAGER, scopes=(CONFIG_READ,))
    assert (await get(stub, read_only, request.id)).id == request.id
    error = await fails(stub.ApproveElevationRequest(review(request.id), metadata=read_only),
                        grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(error) == "MISSING_SCOPE"
    _, devices_only = await reviewer(role=MANAGER, scopes=(DEVICES_WRITE,))
    error = await fails(get(stub, devices_only, request.id), grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(error) == "MISSING_SCOPE"


async def test_an_application_reviews_by_its_graph_permission_alone(stub, token, agent, conn, tenant):
    app_id = str(uuid.uuid4())
    app = md(token(scopes=(), roles=[CONFIG_WRITE], oid=app_id))
    reader_app = md(token(scopes=(), roles=[CONFIG_READ]))
    request = await create(stub, agent)
    assert (await get(stub, reader_app, request.id)).id == request.id
    error = await fails(stub.ApproveElevationRequest(review(request.id), metadata=reader_app),
                        grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(error) == "MISSING_SCOPE"
    approved = await stub.ApproveElevationRequest(review(request.id, "by policy"), metadata=app)
    assert approved.status == P.STATE_APPROVED and approved.review_completed_by_user_id == app_id
    (row,) = await audit_rows(conn, tenant, request.id, "Action")
    assert (row["actor_type"], row["actor_id"], row["reason"]) == ("Application", app_id, "by policy")


# --- ETags, update and delete ------------------------------------------------------------------------


async def test_a_stale_etag_is_aborted_everywhere(stub, agent, conn, tenant):
    request = await create(stub, agent)
    assert request.etag == "1"
    updated = await stub.UpdateElevationRequest(
        pb.UpdateElevationRequestRequest(id=request.id, request_justification="more detail", etag="1"),
        metadata=agent)
    assert updated.etag == "2" and updated.request_justification == "more detail"
    stale = [
        stub.UpdateElevationRequest(pb.UpdateElevationRequestRequest(id=request.id, etag="1"), metadata=agent),
        stub.DeleteElevationRequest(pb.DeleteElevationRequestRequest(id=request.id, etag="1"), metadata=agent),
        stub.ApproveElevationRequest(review(request.id, etag="1"), metadata=agent),
        stub.DenyElevationRequest(review(request.id, etag="1"), metadata=agent),
        stub.RevokeElevationRequest(review(request.id, etag="1"), metadata=agent),
    ]
    for call in stale:
        error = await fails(call, grpc.StatusCode.ABORTED)
        assert reason_of(error) == "ETAG_MISMATCH"
    assert graph_only(await get(stub, agent, request.id)) == graph_only(updated)
    approved = await stub.ApproveElevationRequest(review(request.id, etag="2"), metadata=agent)
    assert approved.etag == "3"
    await fails(stub.RevokeElevationRequest(review(request.id, etag="2"), metadata=agent), grpc.StatusCode.ABORTED)
    revoked = await stub.RevokeElevationRequest(review(request.id, etag="*"), metadata=agent)
    assert revoked.etag == "4"
    await fails(stub.DeleteElevationRequest(pb.DeleteElevationRequestRequest(id=request.id, etag="3"),
                                            metadata=agent), grpc.StatusCode.ABORTED)
    await stub.DeleteElevationRequest(pb.DeleteElevationRequestRequest(id=request.id, etag="4"), metadata=agent)
    await fails(get(stub, agent, request.id), grpc.StatusCode.NOT_FOUND)
    assert [r["operation"] for r in await audit_rows(conn, tenant, request.id)] == [
        "Create", "Patch", "Action", "Action", "Delete"]


async def test_only_a_pending_request_can_be_updated(stub, agent):
    request = await create(stub, agent)
    await fails(stub.UpdateElevationRequest(
        pb.UpdateElevationRequestRequest(id=request.id, request_justification="j" * 257), metadata=agent),
        grpc.StatusCode.INVALID_ARGUMENT)
    await stub.ApproveElevationRequest(review(request.id), metadata=agent)
    error = await fails(stub.UpdateElevationRequest(
        pb.UpdateElevationRequestRequest(id=request.id, request_justification="later"), metadata=agent),
        grpc.StatusCode.FAILED_PRECONDITION)  # a state conflict, like a refused transition
    assert error.details() == "Only a pending request can be changed; this one is approved."


# --- time --------------------------------------------------------------------------------------------


async def test_pending_expiry_shows_at_once_and_the_sweep_writes_it_down(stub, agent, store, tenant, clock, conn):
    await store.set_policy(tenant, Policy(pending_ttl=timedelta(hours=1)))
    request = await create(stub, agent)
    other = await create(stub, agent, file="other.exe", device="device-2")
    assert when(request.request_expiry_date_time) - when(request.request_created_date_time) == timedelta(hours=1)
    async with conn.transaction():  # a share lock keeps the background sweeper off the row (SKIP LOCKED)
        assert await conn.fetchval("SELECT status FROM requests.elevation_requests WHERE tenant_id = $1 AND id = $2 "
                                   "FOR SHARE", tenant, uuid.UUID(request.id)) == "pending"
        clock.advance(timedelta(minutes=59, seconds=59))
        assert (await get(stub, agent, request.id)).status == P.STATE_PENDING
        clock.advance(timedelta(seconds=1))
        assert (await get(stub, agent, request.id)).status == P.STATE_EXPIRED
        assert set(await listed(stub, agent, "status eq 'expired'")) == {request.id, other.id}
        assert await listed(stub, agent, "status eq 'pending'") == []
        count = await stub.CountElevationRequests(pb.CountElevationRequestsRequest(filter="status eq 'expired'"),
                                                  metadata=agent)
        assert count.count == 2
        assert await stored_status(conn, tenant, request.id) == "pending"  # nothing written yet
    for call in (stub.ApproveElevationRequest, stub.DenyElevationRequest):
        error = await fails(call(review(request.id), metadata=agent), grpc.StatusCode.FAILED_PRECONDITION)
        assert "that is expired" in error.details()
    await sweep(store, clock.now())
    assert await stored_status(conn, tenant, request.id) == "expired"
    await sweep(store, clock.now())  # nothing twice
    (row,) = await audit_rows(conn, tenant, request.id, "Action")
    assert (row["activity"], row["actor_type"], row["old_state"], row["new_state"]) == (
        "Expire ElevationRequest", "System", "pending", "expired")
    (decision,) = await decision_rows(conn, tenant, request.id)
    assert decision["status"] == "expired" and decision["valid_until"] is None
    assert (await get(stub, agent, request.id)).status == P.STATE_EXPIRED


async def test_concurrent_sweepers_share_the_work_without_deadlock(stub, agent, store, tenant, clock, conn):
    """Two replicas' sweeps, each holding requests of the same two devices (in opposite order of deadline)."""
    await store.set_policy(tenant, Policy(pending_ttl=timedelta(minutes=1)))
    x, y = "sweep-x", "sweep-y"
    requests = [await create(stub, agent, device=d, file=f"{i}.exe") for i, d in enumerate((x, y, y, x))]
    ids = [uuid.UUID(r.id) for r in requests]
    clock.advance(timedelta(minutes=1))
    now = clock.now()
    async with conn.transaction():
        # keep everyone else's due requests out of these sweeps, and hold device x's decisions for a moment
        await conn.execute("SELECT 1 FROM requests.elevation_requests WHERE status IN ('pending', 'approved') "
                           "AND valid_until <= $1 AND NOT id = ANY($2) FOR UPDATE", now, ids)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"epm.decisions.{tenant}.{x}")
        first = asyncio.ensure_future(store.expire_due(now, limit=2))  # the earliest two: on x, then y
        await asyncio.sleep(0.3)
        second = asyncio.ensure_future(store.expire_due(now, limit=2))  # the other two: on y, then x
        await asyncio.sleep(0.3)
    done = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 10)
    # no deadlock and no request twice; the service's own sweeper may have taken a share of the four meanwhile
    assert all(isinstance(n, int) and n <= 2 for n in done) and sum(done) <= 4, done
    for request in requests:
        (row,) = await audit_rows(conn, tenant, request.id, "Action")
        assert (row["actor_type"], row["new_state"]) == ("System", "expired")
        assert [d["status"] for d in await decision_rows(conn, tenant, request.id)] == ["expired"]


async def test_the_approval_window_ends_in_expiry(stub, agent, store, tenant, clock, conn):
    await store.set_policy(tenant, Policy(approval_window=timedelta(minutes=30)))
    request = await create(stub, agent)
    approved = await stub.ApproveElevationRequest(review(request.id), metadata=agent)
    end = when(approved.review_completed_date_time) + timedelta(minutes=30)
    assert when(approved.request_expiry_date_time) == end
    (decision,) = await decision_rows(conn, tenant, request.id)
    assert (decision["status"], decision["valid_until"]) == ("approved", end)
    clock.advance(timedelta(minutes=29))
    assert (await get(stub, agent, request.id)).status == P.STATE_APPROVED
    clock.advance(timedelta(minutes=1))
    assert (await get(stub, agent, request.id)).status == P.STATE_EXPIRED
    assert await listed(stub, agent, "status eq 'expired'") == [request.id]
    error = await fails(stub.RevokeElevationRequest(review(request.id), metadata=agent),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert "that is expired" in error.details()
    await sweep(store, clock.now())
    assert await stored_status(conn, tenant, request.id) == "expired"
    changes = await audit_rows(conn, tenant, request.id, "Action")
    assert [(r["actor_type"], r["old_state"], r["new_state"]) for r in changes] == [
        ("Application", "pending", "approved"), ("System", "approved", "expired")]
    assert [d["status"] for d in await decision_rows(conn, tenant, request.id)] == ["approved", "expired"]


async def test_a_tenant_policy_does_not_leak_to_other_tenants(stub, agent, store, tenant, token):
    await store.set_policy(tenant, Policy(pending_ttl=timedelta(hours=2), approval_window=timedelta(hours=1)))
    other = md(token(scopes=(), roles=[CONFIG_WRITE], tenant=str(uuid.uuid4())))
    mine, theirs = await create(stub, agent), await create(stub, other)
    assert when(mine.request_expiry_date_time) - when(mine.request_created_date_time) == timedelta(hours=2)
    assert when(theirs.request_expiry_date_time) - when(theirs.request_created_date_time) == timedelta(days=7)
    theirs = await stub.ApproveElevationRequest(review(theirs.id), metadata=other)
    assert when(theirs.request_expiry_date_time) - when(theirs.review_completed_date_time) == timedelta(hours=24)


# --- completion through the events service -----------------------------------------------------------


def usage_event(device: str, file_hash: str, at, kind=events_pb.ELEVATION_TYPE_SUPPORT_APPROVED_ELEVATION):
    event = events_pb.ElevationEvent(device_id=device, hash=file_hash, elevation_type=kind, file_path="C:\\a.exe")
    event.event_date_time.FromDatetime(at)
    return event


async def test_a_support_approved_elevation_completes_the_request(stub, events, agent, conn, tenant, clock):
    assert clock.offset < timedelta(hours=20), "the events service refuses events over a day in the future"
    request = await create(stub, agent, device="pc-7", file="tool.exe")
    sibling = await create(stub, agent, device="pc-7", file="other.exe")
    await stub.ApproveElevationRequest(review(request.id), metadata=agent)
    await stub.ApproveElevationRequest(review(sibling.id), metadata=agent)
    used = clock.now() + timedelta(seconds=1)
    await events.RecordElevationEvent(events_pb.RecordElevationEventRequest(
        event=usage_event("pc-7", sha("tool.exe").upper(), used)), metadata=agent)
    got = await eventually_status(stub, agent, request.id, P.STATE_COMPLETED)
    assert got.status == P.STATE_COMPLETED
    assert (await get(stub, agent, sibling.id)).status == P.STATE_APPROVED  # another file: untouched
    changes = await audit_rows(conn, tenant, request.id, "Action")
    assert [(r["activity"], r["old_state"], r["new_state"]) for r in changes][-1] == (
        "Complete ElevationRequest", "approved", "completed")
    assert [d["status"] for d in await decision_rows(conn, tenant, request.id)] == ["approved", "completed"]
    error = await fails(stub.RevokeElevationRequest(review(request.id), metadata=agent),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert "that is completed: it is final." in error.details()


async def test_ingested_events_complete_only_inside_the_window(stub, events, agent, conn, tenant, clock):
    assert clock.offset < timedelta(hours=20), "the events service refuses events over a day in the future"
    before = clock.now() - timedelta(minutes=5)
    pending = await create(stub, agent, device="pc-8", file="pending.exe")
    request = await create(stub, agent, device="pc-8", file="tool.exe")
    await stub.ApproveElevationRequest(review(request.id), metadata=agent)
    now = clock.now() + timedelta(seconds=1)

    async def batches():
        yield events_pb.IngestElevationEventsRequest(events=[
            usage_event("pc-8", sha("tool.exe"), before),  # before the approval
            usage_event("pc-9", sha("tool.exe"), now + timedelta(seconds=1)),  # another device
            usage_event("pc-8", sha("tool.exe"), now + timedelta(seconds=2),
                        events_pb.ELEVATION_TYPE_USER_CONFIRMED_ELEVATION),  # not a support-approved one
            usage_event("pc-8", sha("pending.exe"), now + timedelta(seconds=3)),  # not approved
        ])
        yield events_pb.IngestElevationEventsRequest(events=[usage_event("pc-8", sha("tool.exe"), now)])

    result = await events.IngestElevationEvents(batches(), metadata=agent)
    assert result.inserted == 5 and not result.rejected
    assert (await eventually_status(stub, agent, request.id, P.STATE_COMPLETED)).status == P.STATE_COMPLETED
    await asyncio.sleep(0.2)  # the earlier batch was forwarded first; give stragglers a moment anyway
    assert (await get(stub, agent, pending.id)).status == P.STATE_PENDING
    assert len(await audit_rows(conn, tenant, request.id, "Action")) == 2  # approve, complete: once


async def test_usage_outside_the_window_or_from_another_tenant_completes_nothing(stub, agent, token, store, tenant,
                                                                                 clock):
    await store.set_policy(tenant, Policy(approval_window=timedelta(minutes=10)))
    request = await create(stub, agent, device="pc-1")
    approved = await stub.ApproveElevationRequest(review(request.id), metadata=agent)
    reviewed = when(approved.review_completed_date_time)

    async def usage(metadata, at) -> list[str]:
        call = pb.RecordElevationUsageRequest(device_id="pc-1", file_hash=sha("app.exe"))
        call.used_date_time.FromDatetime(at)
        return list((await stub.RecordElevationUsage(call, metadata=metadata)).completed_ids)

    other = md(token(scopes=(), roles=[DEVICES_WRITE], tenant=str(uuid.uuid4())))
    assert await usage(other, reviewed + timedelta(minutes=1)) == []
    assert await usage(agent, reviewed - timedelta(seconds=1)) == []
    assert await usage(agent, reviewed + timedelta(minutes=10)) == []  # the window's end is outside it
    assert (await get(stub, agent, request.id)).status == P.STATE_APPROVED
    assert await usage(agent, reviewed + timedelta(minutes=10) - timedelta(microseconds=1)) == [request.id]
    assert await usage(agent, reviewed + timedelta(minutes=1)) == []  # completed already


# --- OData and audit ---------------------------------------------------------------------------------


async def test_odata_filters_on_requests(stub, agent, reviewer):
    a = await create(stub, agent, file="a.exe", device="pc-a")
    b = await create(stub, agent, file="b.exe", device="pc-b")
    await stub.DenyElevationRequest(review(b.id), metadata=agent)
    _, reader = await reviewer(role=READER)
    assert await listed(stub, reader, "status eq 'pending'") == [a.id]
    assert await listed(stub, reader, "status eq 'denied'") == [b.id]
    assert await listed(stub, reader, f"applicationDetail/fileHash eq '{sha('a.exe').upper()}'") == [a.id]
    assert await listed(stub, reader, "requestedOnDeviceId eq 'pc-b'") == [b.id]
    assert set(await listed(stub, reader, "status in ('pending', 'denied')")) == {a.id, b.id}
    await fails(listed(stub, reader, "status eq 'bogus'"), grpc.StatusCode.INVALID_ARGUMENT)
    await fails(listed(stub, reader, "nope eq 1"), grpc.StatusCode.INVALID_ARGUMENT)


async def test_pages_follow_the_effective_status(stub, agent, store, tenant, clock):
    await store.set_policy(tenant, Policy(pending_ttl=timedelta(minutes=5)))
    early = [await create(stub, agent, file=f"early{i}.exe") for i in range(3)]
    clock.advance(timedelta(minutes=5))
    late = [await create(stub, agent, file=f"late{i}.exe") for i in range(4)]
    await stub.DenyElevationRequest(review(late[0].id), metadata=agent)
    for order_by in ("", "status", "status desc, requestCreatedDateTime", "requestExpiryDateTime desc"):
        seen, token = [], ""
        while True:
            page = await stub.ListElevationRequests(pb.ListElevationRequestsRequest(
                page_size=2, order_by=order_by, page_token=token, include_total_size=True), metadata=agent)
            assert page.total_size == 7
            seen += [(r.id, r.status) for r in page.elevation_requests]
            if not (token := page.next_page_token):
                break
        assert len(seen) == 7 and len(set(seen)) == 7, order_by
        assert {i for i, s in seen if s == P.STATE_EXPIRED} == {r.id for r in early}, order_by
        if order_by.startswith("status"):
            names = [pb.State.Name(s) for _, s in seen]
            assert names == sorted(names, key=lambda n: n.lower(), reverse="desc" in order_by), (order_by, names)
    expired = await listed(stub, agent, "status eq 'expired' and requestCreatedDateTime lt "
                                        f"{late[0].request_created_date_time.ToJsonString()}")
    assert set(expired) == {r.id for r in early}


async def test_audit_events_filter_by_actor_type(stub, agent, store, tenant, clock):
    await store.set_policy(tenant, Policy(pending_ttl=timedelta(minutes=1)))
    request = await create(stub, agent)
    clock.advance(timedelta(minutes=1))
    await sweep(store, clock.now())
    system = await stub.ListAuditEvents(pb.ListAuditEventsRequest(filter="actor/type eq 'System'"), metadata=agent)
    assert [(e.activity, e.resources[0].resource_id) for e in system.audit_events] == [
        ("Expire ElevationRequest", request.id)]
    apps = await stub.ListAuditEvents(pb.ListAuditEventsRequest(filter="actor/type eq 'Application'"),
                                      metadata=agent)
    assert [e.activity for e in apps.audit_events] == ["Create ElevationRequest"]


async def test_audit_events_filter_by_activity_and_correlation_id(stub, reviewer, agent, tenant):
    _, me = await reviewer()
    request = await create(stub, agent)
    correlation = str(uuid.uuid4())
    await stub.ApproveElevationRequest(review(request.id, "looks fine"), metadata=me + (("x-request-id", correlation),))
    found = await stub.ListAuditEvents(pb.ListAuditEventsRequest(filter=f"correlationId eq '{correlation}'",
                                                                 include_total_size=True), metadata=me)
    assert found.total_size == 1
    (event,) = found.audit_events
    assert (event.activity, event.activity_operation_type, event.activity_result, event.category) == (
        "Approve ElevationRequest", "Action", "Success", "ElevationRequests")
    assert event.correlation_id == correlation and event.actor.type == "ItPro"
    (resource,) = event.resources
    assert resource.resource_id == request.id and resource.type == "ElevationRequest"
    props = {p.display_name: (p.old_value, p.new_value) for p in resource.modified_properties}
    assert props == {"status": ("pending", "approved"), "justification": ("", "looks fine")}
    creates = await stub.ListAuditEvents(pb.ListAuditEventsRequest(filter="activity eq 'Create ElevationRequest'"),
                                         metadata=me)
    assert [e.resources[0].resource_id for e in creates.audit_events] == [request.id]
    both = await stub.ListAuditEvents(pb.ListAuditEventsRequest(
        filter="activityOperationType eq 'Action' or activity eq 'Create ElevationRequest'"), metadata=me)
    assert [e.activity for e in both.audit_events] == ["Approve ElevationRequest", "Create ElevationRequest"]
    newest = await stub.ListAuditEvents(pb.ListAuditEventsRequest(page_size=1), metadata=me)
    assert newest.next_page_token


# --- WatchDecisions ----------------------------------------------------------------------------------


async def next_decision(call) -> pb.Decision:
    decision = await asyncio.wait_for(call.read(), WAIT)
    assert decision is not grpc.aio.EOF
    return decision


async def test_watch_decisions_live_then_resume_from_a_cursor(stub, agent, token):
    device = f"pc-{uuid.uuid4().hex[:6]}"
    watcher = md(token(scopes=(), roles=[DEVICES_READ]))
    first, second, third = [await create(stub, agent, device=device, file=f"{i}.exe") for i in range(3)]
    elsewhere = await create(stub, agent, device=device + "-other")
    call = stub.WatchDecisions(pb.WatchDecisionsRequest(device_id=device), metadata=watcher)
    try:
        await asyncio.sleep(0.2)  # let the stream start waiting: the decision then arrives live
        await stub.ApproveElevationRequest(review(elsewhere.id), metadata=agent)  # another device: not seen
        approved = await stub.ApproveElevationRequest(review(first.id), metadata=agent)
        seen = await next_decision(call)
        assert (seen.elevation_request_id, seen.device_id, seen.status, seen.file_hash) == (
            first.id, device, P.STATE_APPROVED, sha("0.exe"))
        assert seen.valid_until_date_time == approved.request_expiry_date_time
    finally:
        call.cancel()
    await stub.DenyElevationRequest(review(second.id), metadata=agent)  # while disconnected
    call = stub.WatchDecisions(pb.WatchDecisionsRequest(device_id=device, after=seen.sequence), metadata=watcher)
    try:
        missed = await next_decision(call)
        assert (missed.elevation_request_id, missed.status) == (second.id, P.STATE_DENIED)
        assert missed.sequence > seen.sequence and not missed.HasField("valid_until_date_time")
        await stub.ApproveElevationRequest(review(third.id), metadata=agent)
        live = await next_decision(call)
        assert (live.elevation_request_id, live.status) == (third.id, P.STATE_APPROVED)
        assert live.sequence > missed.sequence
    finally:
        call.cancel()
    call = stub.WatchDecisions(pb.WatchDecisionsRequest(device_id=device), metadata=watcher)
    try:  # from the start: the whole backlog, in order
        backlog = [await next_decision(call) for _ in range(3)]
        assert [d.elevation_request_id for d in backlog] == [first.id, second.id, third.id]
    finally:
        call.cancel()


async def test_watch_decisions_arrive_live_to_every_watcher_without_polling(stub, agent, token):
    device = f"pc-{uuid.uuid4().hex[:6]}"
    watcher = md(token(scopes=(), roles=[DEVICES_READ]))
    requests = [await create(stub, agent, device=device, file=f"{i}.exe") for i in range(3)]
    calls = [stub.WatchDecisions(pb.WatchDecisionsRequest(device_id=device), metadata=watcher) for _ in range(3)]
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(0.3)
        for request in requests:
            started = loop.time()
            await stub.ApproveElevationRequest(review(request.id), metadata=agent)
            got = await asyncio.gather(*[next_decision(call) for call in calls])
            assert {d.elevation_request_id for d in got} == {request.id}
            assert loop.time() - started < 1.0  # LISTEN/NOTIFY, not the periodic re-read
    finally:
        for call in calls:
            call.cancel()


async def test_watch_decisions_is_per_tenant_and_needs_rights(stub, agent, token, reviewer):
    device = f"pc-{uuid.uuid4().hex[:6]}"
    request = await create(stub, agent, device=device)
    outsider = md(token(scopes=(), roles=[DEVICES_READ], tenant=str(uuid.uuid4())))
    call = stub.WatchDecisions(pb.WatchDecisionsRequest(device_id=device), metadata=outsider)
    try:
        await asyncio.sleep(0.2)
        await stub.ApproveElevationRequest(review(request.id), metadata=agent)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call.read(), 1.0)
    finally:
        call.cancel()
    _, nobody = await reviewer(role=None, scopes=(DEVICES_READ,))
    for metadata, code in ((nobody, grpc.StatusCode.PERMISSION_DENIED),
                           (md(token(scopes=(), roles=[CONFIG_WRITE])), None),
                           (md(token(scopes=(), roles=["User.Read.All"])), grpc.StatusCode.PERMISSION_DENIED)):
        call = stub.WatchDecisions(pb.WatchDecisionsRequest(device_id=device), metadata=metadata)
        try:
            if code is None:
                assert (await next_decision(call)).elevation_request_id == request.id
            else:
                await fails(call.read(), code)
        finally:
            call.cancel()
    call = stub.WatchDecisions(pb.WatchDecisionsRequest(), metadata=agent)
    await fails(call.read(), grpc.StatusCode.INVALID_ARGUMENT)


async def test_another_replica_sweeps_in_the_background_and_serves_watchers(settings, clock, stub, agent, token,
                                                                            store, tenant, conn):
    await store.set_policy(tenant, Policy(pending_ttl=timedelta(minutes=1)))
    device = f"pc-{uuid.uuid4().hex[:6]}"
    due = await create(stub, agent, device=device, file="due.exe")
    clock.advance(timedelta(seconds=30))
    later = await create(stub, agent, device=device, file="later.exe")
    clock.advance(timedelta(seconds=30))
    replica = await requests_app.start(settings, "127.0.0.1:0", clock=clock.now)  # its sweeper runs at once
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while await stored_status(conn, tenant, due.id) != "expired" and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert await stored_status(conn, tenant, due.id) == "expired"
        assert [r["actor_type"] for r in await audit_rows(conn, tenant, due.id, "Action")] == ["System"]
        assert await stored_status(conn, tenant, later.id) == "pending"
        watcher = md(token(scopes=(), roles=[DEVICES_READ]))
        call = pb_grpc.ElevationRequestServiceStub(channel).WatchDecisions(
            pb.WatchDecisionsRequest(device_id=device), metadata=watcher)
        try:
            backlog = await next_decision(call)
            assert (backlog.elevation_request_id, backlog.status) == (due.id, P.STATE_EXPIRED)
            started = loop.time()
            await stub.ApproveElevationRequest(review(later.id), metadata=agent)  # on the first replica
            live = await next_decision(call)
            assert (live.elevation_request_id, live.status) == (later.id, P.STATE_APPROVED)
            assert loop.time() - started < 1.0
        finally:
            call.cancel()
    finally:
        await channel.close()
        await replica.stop(1)


# --- tenant isolation --------------------------------------------------------------------------------


async def test_another_tenants_request_is_not_found_everywhere(stub, agent, token, tenant, conn):
    request = await create(stub, agent)
    other = md(token(scopes=(), roles=[CONFIG_WRITE, DEVICES_WRITE], tenant=str(uuid.uuid4())))
    for call in (get(stub, other, request.id),
                 stub.ApproveElevationRequest(review(request.id), metadata=other),
                 stub.DenyElevationRequest(review(request.id), metadata=other),
                 stub.RevokeElevationRequest(review(request.id), metadata=other),
                 stub.UpdateElevationRequest(pb.UpdateElevationRequestRequest(id=request.id), metadata=other),
                 stub.DeleteElevationRequest(pb.DeleteElevationRequestRequest(id=request.id), metadata=other)):
        error = await fails(call, grpc.StatusCode.NOT_FOUND)
        assert request.id in error.details()
    assert await listed(stub, other, "") == []
    assert (await stub.CountElevationRequests(pb.CountElevationRequestsRequest(), metadata=other)).count == 0
    assert not (await stub.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=other)).audit_events
    # the same device, user and file in another tenant is another request, not the idempotent replay
    assert (await create(stub, other)).id != request.id
    assert graph_only(await get(stub, agent, request.id)) == graph_only(request)
    assert len(await audit_rows(conn, tenant, request.id)) == 1
    await fails(get(stub, agent, "not-a-uuid"), grpc.StatusCode.NOT_FOUND)
    await fails(get(stub, agent, str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND)


# --- last: the defaults, which need the clock moved by days --------------------------------------------


async def test_default_windows_seven_days_pending_and_a_day_approved(stub, agent, clock, store, conn, tenant):
    waiting = await create(stub, agent, file="waiting.exe")
    granted = await create(stub, agent, file="granted.exe")
    clock.advance(timedelta(days=6, hours=12))
    approved = await stub.ApproveElevationRequest(review(granted.id), metadata=agent)  # still pending then
    assert approved.status == P.STATE_APPROVED
    clock.advance(timedelta(hours=12) - timedelta(seconds=1))
    assert (await get(stub, agent, waiting.id)).status == P.STATE_PENDING
    clock.advance(timedelta(seconds=1))
    assert (await get(stub, agent, waiting.id)).status == P.STATE_EXPIRED  # 7 days after creation
    assert (await get(stub, agent, granted.id)).status == P.STATE_APPROVED  # the window runs from approval
    clock.advance(timedelta(hours=11, minutes=59))
    assert (await get(stub, agent, granted.id)).status == P.STATE_APPROVED
    clock.advance(timedelta(minutes=1))  # 24 h after approval
    assert (await get(stub, agent, granted.id)).status == P.STATE_EXPIRED
    await sweep(store, clock.now())
    for request in (waiting, granted):
        assert await stored_status(conn, tenant, request.id) == "expired"
        assert (await audit_rows(conn, tenant, request.id, "Action"))[-1]["actor_type"] == "System"
