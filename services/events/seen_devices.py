"""Tells the requests service which devices elevation events come from (RecordSeenDevices), so they join its
managed device inventory. Best effort and off the ingest path: a slow or absent requests service never slows or
fails ingest. Each device is reported once an hour at most per process (a bounded memory of those reported), so
its last-seen time is at most that stale; a report that fails is forgotten, so the device's next event tries
again."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import grpc
from epm.requests.v1 import managed_device_service_pb2 as devices_pb
from epm.requests.v1 import managed_device_service_pb2_grpc as devices_grpc
from google.protobuf import timestamp_pb2

from ..common.background import Forwarder, forwarded
from .model import COLUMNS

log = logging.getLogger("epm.events.seen_devices")
REMEMBERED = 100_000  # devices (tenant, id) this process knows it reported
REFRESH = 3600.0      # seconds after which a device seen again is reported again (its last-seen time moves)
PER_CALL = 1000
# Positions in the stored rows, (tenant_id, *model.to_row(event)); event_date_time is in epoch microseconds.
_DEVICE, _NAME, _TIME, _UPN = (1 + COLUMNS.index(c) for c in ("device_id", "device_name", "event_date_time", "upn"))


class Reported:
    """A bounded map of (tenant, device id) keys to when they were reported, the least recently met forgotten
    first. No I/O: `now` is passed in."""

    def __init__(self, size: int = REMEMBERED, refresh: float = REFRESH):
        self._keys: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._size, self._refresh = size, refresh

    def claim(self, keys, now: float) -> list[tuple[str, str]]:
        """The keys not reported in the last `refresh` seconds, now taken as reported; the others count as just
        met."""
        new = []
        for key in keys:
            reported = self._keys.get(key)
            if reported is not None and now - reported < self._refresh:
                self._keys.move_to_end(key)
                continue
            self._keys[key] = now
            self._keys.move_to_end(key)
            new.append(key)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return new

    def forget(self, keys) -> None:
        for key in keys:
            self._keys.pop(key, None)


def latest_by_device(rows, wanted: set[str]) -> dict[str, devices_pb.SeenDevice]:
    """Per device id in `wanted` (lowercased), what its latest event among the stored `rows` tells about it."""
    latest: dict[str, tuple] = {}
    for row in rows:
        key = row[_DEVICE].lower()
        if key in wanted and (key not in latest or row[_TIME] > latest[key][_TIME]):
            latest[key] = row
    return {key: devices_pb.SeenDevice(
        device_id=key, device_name=row[_NAME], user_principal_name=row[_UPN],
        seen_date_time=timestamp_pb2.Timestamp(seconds=row[_TIME] // 1_000_000, nanos=row[_TIME] % 1_000_000 * 1000))
        for key, row in latest.items()}


class SeenDeviceReporter(Forwarder):
    def __init__(self, address: str, remembered: int = REMEMBERED):
        super().__init__(address, devices_grpc.ManagedDeviceServiceStub)
        self._reported = Reported(remembered)

    def report(self, rows: list[tuple], context) -> None:
        """Reports the devices of stored rows (of one tenant) not reported yet, with the caller's own credentials.
        Cheap when every device is known: a set of the batch's device ids, checked against the memory."""
        if not rows:
            return
        tenant = rows[0][0]
        keys = ((tenant, device.lower()) for device in {row[_DEVICE] for row in rows})
        if new := self._reported.claim(keys, time.monotonic()):
            latest = latest_by_device(rows, {key for _, key in new})
            seen = [latest[key] for _, key in new]
            self._background.start(self._send(new, seen, forwarded(context.invocation_metadata())))

    async def _send(self, keys, seen, metadata) -> None:
        for start in range(0, len(seen), PER_CALL):
            try:
                await self._stub.RecordSeenDevices(
                    devices_pb.RecordSeenDevicesRequest(devices=seen[start:start + PER_CALL]), metadata=metadata,
                    timeout=10)
            except grpc.aio.AioRpcError as exc:
                self._reported.forget(keys[start:start + PER_CALL])
                log.warning("could not report %d seen devices: %s %s", len(seen[start:start + PER_CALL]),
                            exc.code().name, exc.details())
