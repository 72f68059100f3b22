"""ManagedDeviceService and SupportElevationService over real gRPC and PostgreSQL: seen-device batches (what
they may change, who may send them), concurrent batches, and MMD tickets with their audit trail."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import grpc
import pytest
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import managed_device_service_pb2 as pb
from epm.requests.v1 import managed_device_service_pb2_grpc as pb_grpc
from epm.requests.v1 import support_elevation_service_pb2 as support_pb
from epm.requests.v1 import support_elevation_service_pb2_grpc as support_grpc
from google.protobuf import timestamp_pb2

from .test_requests_grpc import CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE, fails, md, reason_of

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=5)


def seen(device_id: str, hours: int = 0, name: str = "EVENT-PC", upn: str = "lee@contoso.example") -> pb.SeenDevice:
    at = timestamp_pb2.Timestamp()
    at.FromDatetime(T0 + timedelta(hours=hours))
    return pb.SeenDevice(device_id=device_id, device_name=name, user_principal_name=upn, seen_date_time=at)


@pytest.fixture
def devices(requests_channel):
    return pb_grpc.ManagedDeviceServiceStub(requests_channel)


@pytest.fixture
def support(requests_channel):
    return support_grpc.SupportElevationServiceStub(requests_channel)


@pytest.fixture
def writer(token):
    return md(token(scopes=(), roles=[DEVICES_WRITE]))


async def record(devices, metadata, *batch: pb.SeenDevice) -> pb.RecordSeenDevicesResponse:
    return await devices.RecordSeenDevices(pb.RecordSeenDevicesRequest(devices=batch), metadata=metadata)


async def get(devices, metadata, device_id: str) -> pb.ManagedDevice:
    return await devices.GetManagedDevice(pb.GetManagedDeviceRequest(id=device_id), metadata=metadata)


async def test_seen_devices_join_fill_in_and_move_their_last_seen_time_forward_only(devices, writer):
    device_id = str(uuid.uuid4())
    answer = await record(devices, writer, seen(device_id, 1, name="", upn=""), seen("pc-1"), seen(""))
    assert (answer.recorded, answer.ignored) == (1, 2)
    found = await get(devices, writer, device_id)
    assert found.source == pb.DEVICE_SOURCE_ELEVATION_EVENTS and found.device_name == ""
    await record(devices, writer, seen(device_id.upper(), 3, name="LATER-PC"))
    await record(devices, writer, seen(device_id, 2, name="OTHER-PC", upn="other@contoso.example"))
    found = await get(devices, writer, device_id)
    assert found.device_name == "LATER-PC" and found.user_principal_name == "lee@contoso.example"  # filled once
    assert found.last_seen_date_time.ToDatetime(tzinfo=timezone.utc) == T0 + timedelta(hours=3)


async def test_a_registered_devices_properties_are_never_overwritten(devices, writer):
    registered = await devices.CreateManagedDevice(pb.CreateManagedDeviceRequest(managed_device=pb.ManagedDevice(
        device_name="ADMIN-PC", user_principal_name="adele@contoso.example", model="X1")), metadata=writer)
    await record(devices, writer, seen(registered.id, name="EVENT-PC", upn="lee@contoso.example"))
    found = await get(devices, writer, registered.id)
    assert (found.device_name, found.user_principal_name, found.model, found.source) == (
        "ADMIN-PC", "adele@contoso.example", "X1", pb.DEVICE_SOURCE_API)
    assert found.HasField("last_seen_date_time")


async def test_concurrent_overlapping_batches_do_not_deadlock(devices, writer):
    ids = [str(uuid.uuid4()) for _ in range(50)]
    batches = [[seen(i, hours) for i in (ids if n % 2 else reversed(ids))] for n, hours in enumerate(range(8))]
    answers = await asyncio.wait_for(asyncio.gather(*(record(devices, writer, *b) for b in batches)), 10)
    assert {a.recorded for a in answers} == {50}
    page = await devices.ListManagedDevices(pb.ListManagedDevicesRequest(page_size=100, include_total_size=True),
                                            metadata=writer)
    assert page.total_size == 50
    assert {d.last_seen_date_time.ToDatetime(tzinfo=timezone.utc) for d in page.managed_devices} == {
        T0 + timedelta(hours=7)}


async def test_who_may_report_seen_devices(devices, token):
    device_id = str(uuid.uuid4())
    await record(devices, md(token(scopes=[CONFIG_WRITE])), seen(device_id))  # the permission ingest takes
    error = await fails(record(devices, md(token(scopes=[DEVICES_READ])), seen(device_id)),
                        grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(error) == "MISSING_SCOPE"
    too_many = [seen(str(uuid.uuid4())) for _ in range(1001)]
    await fails(record(devices, md(token()), *too_many), grpc.StatusCode.INVALID_ARGUMENT)


async def test_a_support_ticket_and_its_close_are_audited_in_the_shared_trail(devices, support, writer, token,
                                                                              database_url, tenant):
    await devices.CreateManagedDevice(pb.CreateManagedDeviceRequest(managed_device=pb.ManagedDevice(
        device_name="MMD-07")), metadata=writer)
    agent = md(token(scopes=(), roles=["MmdSupport.ReadWrite"], upn="agent@partner.example"))
    created = await support.CreateSupportElevationRequest(support_pb.CreateSupportElevationRequestRequest(
        partner_ticket_id="INC7", device_name="mmd-07", title="Fix printer", plan_of_action="Reinstall the driver"),
        metadata=agent)
    closed = await support.CloseSupportElevationRequest(support_pb.CloseSupportElevationRequestRequest(
        id=created.id, actions_taken="Withdrawn"), metadata=agent)
    assert closed.status == requests_pb.STATE_REVOKED
    assert closed.closing_agent_upn == "agent@partner.example" and closed.HasField("request_closure_time")
    error = await fails(support.CloseSupportElevationRequest(support_pb.CloseSupportElevationRequestRequest(
        id=created.id, actions_taken="Again"), metadata=agent), grpc.StatusCode.FAILED_PRECONDITION)
    assert error.details() == "This elevation request was already closed." and reason_of(error) == "ALREADY_CLOSED"
    conn = await asyncpg.connect(database_url)
    try:
        trail = await conn.fetch("SELECT activity, old_state, new_state, reason, actor_type, actor_upn "
                                 "FROM requests.audit_events WHERE tenant_id = $1 AND resource_id = $2 ORDER BY at",
                                 tenant, created.id)
    finally:
        await conn.close()
    assert [tuple(r) for r in trail] == [
        ("Create ElevationRequest", "", "pending", "Fix printer: Reinstall the driver", "Application",
         "agent@partner.example"),
        ("Close ElevationRequest", "pending", "revoked", "Withdrawn", "Application", "agent@partner.example")]
