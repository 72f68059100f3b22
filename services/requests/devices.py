"""The managed device inventory (Graph `managedDevice`, a subset): devices admins register and devices seen in
elevation events. A device's id is its Intune device id, a GUID: what elevation events carry as `deviceId` and
elevation requests as `requestedOnDeviceId`. Every statement filters by tenant."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import asyncpg
import grpc
from epm.requests.v1 import managed_device_service_pb2 as pb
from epm.requests.v1 import managed_device_service_pb2_grpc as pb_grpc

from ..common import errors, listing, paging
from ..common.auth import CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE, TokenVerifier, authorize
from ..common.enums import graph_numbers, to_graph
from ..common.odata import Field, ODataError
from ..common.optional import MANAGED_DEVICE, marked
from ..common.timestamps import set_time

READ = (DEVICES_READ, DEVICES_WRITE)
WRITE = (DEVICES_WRITE,)
REPORT = (CONFIG_WRITE, DEVICES_WRITE)  # what ingesting elevation events takes
NOUN = "managed device"
TABLE = "requests.managed_devices"
SCOPED = f"{TABLE} WHERE tenant_id = $1"
NEVER = datetime.min  # a date never known: asyncpg's -infinity (sorts first, and pages like any other)
SOURCE_NUMBERS = graph_numbers(pb.DeviceSource.DESCRIPTOR)
API, EVENTS = "api", "elevationEvents"  # DEVICE_SOURCE_API, DEVICE_SOURCE_ELEVATION_EVENTS
COMPLIANCE_NUMBERS = graph_numbers(pb.ComplianceState.DESCRIPTOR)
TEXT = ("device_name", "operating_system", "os_version", "azure_ad_device_id", "user_principal_name", "user_id",
        "serial_number", "model", "manufacturer")
DATES = ("enrolled_date_time", "last_sync_date_time")
SET_BY_ADMIN = (*TEXT, "compliance_state", *DATES)  # columns, named as their proto fields
MAX_TEXT = 256
MAX_SEEN = 1000
GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_JSON = {f.name: f.json_name for f in pb.ManagedDevice.DESCRIPTOR.fields}


def _field(column: str) -> Field:
    if column in DATES:
        return Field(column, "datetime")
    if column == "compliance_state":
        return Field(column, "enum", tuple(COMPLIANCE_NUMBERS))
    return Field(column, "string", casefold=column in ("device_name", "user_principal_name"))


FIELDS = marked({"id": Field("id::text", "string", casefold=True), **{_JSON[c]: _field(c) for c in SET_BY_ADMIN}},
                MANAGED_DEVICE)

# Seen devices: new ones join; known ones only get what they lack and a later last seen time.
_KEEP = ", ".join(f"{c} = CASE WHEN d.{c} = '' THEN excluded.{c} ELSE d.{c} END"
                  for c in ("device_name", "user_principal_name"))
RECORD_SEEN = f"""
INSERT INTO {TABLE} AS d (tenant_id, id, device_name, user_principal_name, source, created_at, last_seen_at)
SELECT $1, u.id, u.name, u.upn, '{EVENTS}', $5, u.seen
FROM unnest($2::uuid[], $3::text[], $4::text[], $6::timestamptz[]) AS u(id, name, upn, seen)
ON CONFLICT (tenant_id, id) DO UPDATE SET {_KEEP}, last_seen_at = GREATEST(d.last_seen_at, excluded.last_seen_at)"""  # nosec B608 # constant table, bound values
# An admin registers a device: new, or one only seen so far (its last seen time stays).
_COLUMNS = ("tenant_id", "id", *SET_BY_ADMIN, "source", "created_at")
CREATE = (f"INSERT INTO {TABLE} AS d ({', '.join(_COLUMNS)}) "  # nosec B608 # constant table, bound values
          f"VALUES ({', '.join(f'${i + 1}' for i in range(len(_COLUMNS)))}) "
          f"ON CONFLICT (tenant_id, id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS[2:])} "
          f"WHERE d.source = '{EVENTS}' RETURNING *")


def device_id(text: str) -> uuid.UUID | None:
    """The device id in `text`, if it is a GUID (in any case, without braces)."""
    return uuid.UUID(text) if GUID.fullmatch(text) else None


def latest_per_device(seen: list[pb.SeenDevice]) -> tuple[list[tuple], int]:
    """(rows (id, name, upn, seen at) sorted by id, how many were ignored): one row per device, its latest
    sighting (sorted: concurrent upserts lock rows in one order)."""
    latest: dict[uuid.UUID, pb.SeenDevice] = {}
    ignored = 0
    for device in seen:
        if (key := device_id(device.device_id)) is None:
            ignored += 1
        elif key not in latest or device.seen_date_time.ToNanoseconds() > latest[key].seen_date_time.ToNanoseconds():
            latest[key] = device
    rows = [(key, d.device_name[:MAX_TEXT], d.user_principal_name[:MAX_TEXT],
             d.seen_date_time.ToDatetime(tzinfo=timezone.utc)) for key, d in sorted(latest.items())]
    return rows, ignored


class DeviceStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def create(self, tenant: str, values: dict, now: datetime) -> asyncpg.Record | None:
        """The registered device; None when a registered device already has that id."""
        return await self.pool.fetchrow(CREATE, tenant, *(values[c] for c in _COLUMNS[1:-2]), API, now)

    async def get(self, tenant: str, id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT * FROM {TABLE} WHERE tenant_id = $1 AND id = $2", tenant, id)  # nosec B608 # constant table, bound values

    async def named(self, tenant: str, name: str) -> asyncpg.Record | None:
        """The device of that name (any case); of several, the one most recently registered or seen."""
        return await self.pool.fetchrow(
            f"SELECT * FROM {TABLE} WHERE tenant_id = $1 AND lower(device_name) = lower($2) "
            "ORDER BY GREATEST(created_at, last_seen_at) DESC, id LIMIT 1", tenant, name)  # nosec B608 # constant table, bound values

    async def delete(self, tenant: str, id: str) -> bool:
        return await self.pool.execute(f"DELETE FROM {TABLE} WHERE tenant_id = $1 AND id = $2",  # nosec B608 # constant table, bound values
                                       tenant, id) != "DELETE 0"

    async def list(self, tenant: str, *, filter: str, order_by: str, size: int, token: str,
                   skip: int) -> tuple[list, str]:
        return await listing.fetch_page(self.pool, SCOPED, FIELDS, [tenant], filter=filter,
                                        order_by=order_by or "deviceName", size=size, token=token, skip=skip)

    async def count(self, tenant: str, filter: str) -> int:
        return await listing.count(self.pool, SCOPED, FIELDS, [tenant], filter)

    async def record_seen(self, tenant: str, rows: list[tuple], now: datetime) -> None:
        if rows:
            ids, names, upns, seen = zip(*rows, strict=True)
            await self.pool.execute(RECORD_SEEN, tenant, ids, names, upns, now, seen)


def to_proto(row) -> pb.ManagedDevice:
    message = pb.ManagedDevice(id=str(row["id"]), compliance_state=COMPLIANCE_NUMBERS[row["compliance_state"]],
                               source=SOURCE_NUMBERS[row["source"]], **{c: row[c] for c in TEXT})
    for column in DATES:
        if row[column] != NEVER:
            set_time(getattr(message, column), row[column])
    if row["last_seen_at"] is not None:
        set_time(message.last_seen_date_time, row["last_seen_at"])
    return message


def _new_device(given: pb.ManagedDevice) -> dict:
    """The columns of a device an admin registers; INVALID_ARGUMENT naming the first problem."""
    id_ = device_id(given.id) if given.id else uuid.uuid4()
    problems = [
        id_ is None and "id must be a GUID, e.g. 6f9c0b7e-1d2a-4c55-9d0e-2a1b3c4d5e6f (the Intune device id).",
        not given.device_name.strip() and "deviceName is required.",
        *(len(getattr(given, c)) > MAX_TEXT and f"{_JSON[c]} must be at most {MAX_TEXT} characters." for c in TEXT),
    ]
    if problem := next((p for p in problems if p), None):
        raise errors.invalid(problem)
    return {"id": id_, **{c: getattr(given, c) for c in TEXT},
            "compliance_state": to_graph(pb.ComplianceState.DESCRIPTOR, given.compliance_state),
            **{c: getattr(given, c).ToDatetime(tzinfo=timezone.utc) if given.HasField(c) else NEVER for c in DATES}}


class ManagedDeviceServicer(pb_grpc.ManagedDeviceServiceServicer):
    def __init__(self, store: DeviceStore, verifier: TokenVerifier, clock: Callable[[], datetime]):
        self.store, self.verifier, self.clock = store, verifier, clock

    async def _tenant(self, context, scopes) -> str:
        return (await authorize(self.verifier, context.invocation_metadata(), scopes)).tenant_id

    async def CreateManagedDevice(self, request, context):
        tenant = await self._tenant(context, WRITE)
        values = _new_device(request.managed_device)
        row = await self.store.create(tenant, values, self.clock())
        if row is None:
            raise errors.RpcError(grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS",
                                  f"A managed device with id '{values['id']}' already exists.", id=str(values["id"]))
        return to_proto(row)

    async def GetManagedDevice(self, request, context):
        tenant = await self._tenant(context, READ)
        row = await self.store.get(tenant, errors.uuid_id(request.id, NOUN))
        if row is None:
            raise errors.no_such(NOUN, request.id)
        return to_proto(row)

    async def ListManagedDevices(self, request, context):
        tenant = await self._tenant(context, READ)
        try:
            rows, token = await self.store.list(
                tenant, filter=request.filter, order_by=request.order_by, size=paging.page_size(request.page_size),
                token=request.page_token, skip=max(request.skip, 0))
            total = await self.store.count(tenant, request.filter) if request.include_total_size else 0
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None
        return pb.ListManagedDevicesResponse(managed_devices=[to_proto(r) for r in rows], next_page_token=token,
                                             total_size=total)

    async def CountManagedDevices(self, request, context):
        tenant = await self._tenant(context, READ)
        try:
            return pb.CountManagedDevicesResponse(count=await self.store.count(tenant, request.filter))
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None

    async def DeleteManagedDevice(self, request, context):
        tenant = await self._tenant(context, WRITE)
        if not await self.store.delete(tenant, errors.uuid_id(request.id, NOUN)):
            raise errors.no_such(NOUN, request.id)
        return pb.DeleteManagedDeviceResponse()

    async def RecordSeenDevices(self, request, context):
        tenant = await self._tenant(context, REPORT)
        if len(request.devices) > MAX_SEEN:
            raise errors.invalid(f"At most {MAX_SEEN} devices per call.")
        rows, ignored = latest_per_device(list(request.devices))
        await self.store.record_seen(tenant, rows, self.clock())
        return pb.RecordSeenDevicesResponse(recorded=len(rows), ignored=ignored)
