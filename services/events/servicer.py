"""gRPC servicer for elevation events: authorisation, validation and proto <-> store translation."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.events.v1 import elevation_event_service_pb2_grpc as pb_grpc

from ..common import errors, paging
from ..common.auth import CONFIG_READ, CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE, EVENTS_WRITE, TokenVerifier, authorize
from ..common.metrics import EVENTS_INGESTED, EVENTS_REJECTED
from ..common.odata import ODataError
from ..common.timestamps import set_time
from . import model
from .seen_devices import SeenDeviceReporter
from .store import EventStore
from .usage import SUPPORT_APPROVED, UsageReporter

READ = (CONFIG_READ, CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE)
WRITE = EVENTS_WRITE
MAX_TOP = 100
MAX_WRITES_IN_FLIGHT = 2
NOUN = "elevation event"
STATS_LOOKBACK_DAYS = 90


class ElevationEventServicer(pb_grpc.ElevationEventServiceServicer):
    def __init__(self, store: EventStore, verifier: TokenVerifier, retention_days: int,
                 usage: UsageReporter | None = None, devices: SeenDeviceReporter | None = None):
        self.store = store
        self.usage = usage
        self.devices = devices
        self.verifier = verifier
        self.retention_us = retention_days * 86_400_000_000

    async def _caller(self, context, allowed):
        return await authorize(self.verifier, context.invocation_metadata(), allowed)

    def _problem(self, event: pb.ElevationEvent) -> str | None:
        now = time.time_ns() // 1000
        return model.problem(event, now, now - self.retention_us)

    async def RecordElevationEvent(self, request, context):
        caller = await self._caller(context, WRITE)
        if reason := self._problem(request.event):
            EVENTS_REJECTED.inc()
            raise errors.invalid(reason)
        row = model.to_row(request.event)
        stored = (caller.tenant_id, *row)
        new = await self.store.insert_one(stored)
        EVENTS_INGESTED.inc(bool(new))
        if self.devices:
            self.devices.report([stored], context)
        if self.usage and request.event.elevation_type == SUPPORT_APPROVED:
            self.usage.report([request.event], context)
        if new:
            return model.stored(request.event, row[0])
        return model.from_row(await self.store.get(caller.tenant_id, row[0]))  # sent before: as stored then

    async def IngestElevationEvents(self, request_iterator, context):
        """Each batch is one transaction. While up to two batches are being written, the next is validated."""
        caller = await self._caller(context, WRITE)
        tenant = caller.tenant_id
        result = pb.IngestElevationEventsResponse()
        writing: list[asyncio.Future] = []
        try:
            async for number, batch in _enumerate(request_iterator):
                rows, valid = [], []
                for index, event in enumerate(batch.events):
                    if reason := self._problem(event):
                        result.rejected.add(batch=number, index=index, reason=reason)
                    else:
                        rows.append((tenant, *model.to_row(event)))
                        valid.append(event)
                result.received += len(batch.events)
                EVENTS_REJECTED.inc(len(batch.events) - len(rows))
                if len(writing) == MAX_WRITES_IN_FLIGHT:
                    self._count(result, *await writing.pop(0))
                writing.append(asyncio.ensure_future(self._insert(rows, valid, context)))
            for write in writing:
                self._count(result, *await write)
        finally:
            for write in writing:
                write.cancel()
        return result

    async def _insert(self, rows: list[tuple], events, context) -> tuple[int, int]:
        inserted = await self.store.insert(rows)
        if self.usage:  # only once they are stored
            self.usage.report(events, context)
        if self.devices:
            self.devices.report(rows, context)
        return len(rows), inserted

    @staticmethod
    def _count(result: pb.IngestElevationEventsResponse, valid: int, inserted: int) -> None:
        result.inserted += inserted
        EVENTS_INGESTED.inc(inserted)
        result.duplicates += valid - inserted

    async def GetElevationEvent(self, request, context):
        caller = await self._caller(context, READ)
        row = await self.store.get(caller.tenant_id, errors.uuid_id(request.id, NOUN))
        if row is None:
            raise errors.no_such(NOUN, request.id)
        return model.from_row(row)

    async def ListElevationEvents(self, request, context):
        caller = await self._caller(context, READ)
        try:
            if request.skip < 0:
                raise ODataError("$skip must not be negative.")
            rows, token = await self.store.list(
                caller.tenant_id, filter=request.filter, order_by=request.order_by,
                size=paging.page_size(request.page_size), token=request.page_token, skip=request.skip)
            total = await self.store.count(caller.tenant_id, request.filter) if request.include_total_size else 0
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None
        return pb.ListElevationEventsResponse(
            events=[model.from_row(r) for r in rows], next_page_token=token, total_size=total)

    async def CountElevationEvents(self, request, context):
        caller = await self._caller(context, READ)
        try:
            return pb.CountElevationEventsResponse(count=await self.store.count(caller.tenant_id, request.filter))
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None

    async def UpdateElevationEvent(self, request, context):
        caller = await self._caller(context, WRITE)
        event_id = errors.uuid_id(request.event.id, NOUN)
        paths = list(request.update_mask.paths) or list(model.UPDATABLE)
        if bad := [p for p in paths if p not in model.UPDATABLE]:
            key = ", ".join(model.graph_name(p) for p in bad)
            raise errors.invalid(f"Cannot update {key}: deviceId and eventDateTime identify the event.")
        current = await self.store.get(caller.tenant_id, event_id)
        if current is None:
            raise errors.no_such(NOUN, request.event.id)
        merged = model.from_row(current)
        for path in paths:
            setattr(merged, path, getattr(request.event, path))
        if reason := model.problem(merged, time.time_ns() // 1000, oldest_us=-(2**63)):
            raise errors.invalid(reason)
        row = dict(zip(model.COLUMNS, model.to_row(merged), strict=True))
        updated = await self.store.update(caller.tenant_id, event_id, {p: row[p] for p in paths})
        if updated is None:
            raise errors.no_such(NOUN, request.event.id)
        return model.from_row(updated)

    async def DeleteElevationEvent(self, request, context):
        caller = await self._caller(context, WRITE)
        if not await self.store.delete(caller.tenant_id, errors.uuid_id(request.id, NOUN)):
            raise errors.no_such(NOUN, request.id)
        return pb.DeleteElevationEventResponse()

    async def SummarizeElevationEvents(self, request, context):
        caller = await self._caller(context, READ)
        top = request.top or 10
        if not 0 < top <= MAX_TOP:
            raise errors.invalid(f"top must be between 1 and {MAX_TOP}.")
        try:
            summary = await self.store.summarize(caller.tenant_id, request.filter, top)
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None
        out = pb.ElevationEventSummary(total=summary.pop("total"))
        for name, buckets in summary.items():
            getattr(out, name).extend(pb.Bucket(key=str(k), count=n) for k, n in buckets)
        return out

    async def GetElevationStats(self, request, context):
        caller = await self._caller(context, READ)
        if request.file_hash and not model.SHA256.match(request.file_hash):
            raise errors.invalid("file_hash must be a SHA-256 digest: 64 hexadecimal characters.")
        days = request.lookback_days or STATS_LOOKBACK_DAYS
        if not 0 < days <= 3660:
            raise errors.invalid("lookback_days must be between 1 and 3660.")
        since = datetime.now(timezone.utc) - timedelta(days=days)
        found = await self.store.stats(caller.tenant_id, request.file_hash.lower(), request.device_id, since)
        out = pb.ElevationStats()
        if (file := found["file"]) is not None:
            out.file.SetInParent()
            out.file.elevations, out.file.devices, out.file.users = file["elevations"], file["devices"], file["users"]
            if file["first_seen"] is not None:
                set_time(out.file.first_seen_date_time, file["first_seen"])
                set_time(out.file.last_seen_date_time, file["last_seen"])
        if (device := found["device"]) is not None:
            out.device.CopyFrom(pb.DeviceStats(**dict(device)))
        return out


async def _enumerate(iterator):
    number = 0
    async for item in iterator:
        yield number, item
        number += 1
