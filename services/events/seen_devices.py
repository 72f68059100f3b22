"""Tells the requests service which devices elevation events come from (RecordSeenDevices), so they join its
managed device inventory. Best effort and off the ingest path: a slow or absent requests service never slows or
fails ingest. Each device is reported once per process (a bounded memory of those reported); a report that fails
is forgotten, so the device's next event tries again."""

from __future__ import annotations

import logging
from collections import OrderedDict

import grpc
from epm.requests.v1 import managed_device_service_pb2 as devices_pb
from epm.requests.v1 import managed_device_service_pb2_grpc as devices_grpc

from ..common.background import Background, forwarded

log = logging.getLogger("epm.events.seen_devices")
REMEMBERED = 100_000  # devices (tenant, id) this process knows it reported
PER_CALL = 1000


class Reported:
    """A bounded set of (tenant, device id) keys, the least recently met forgotten first. No I/O."""

    def __init__(self, size: int = REMEMBERED):
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._size = size

    def claim(self, keys) -> list[tuple[str, str]]:
        """The keys not reported yet, now taken as reported; the known ones count as just met."""
        new = []
        for key in keys:
            if key in self._keys:
                self._keys.move_to_end(key)
                continue
            self._keys[key] = None
            new.append(key)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return new

    def forget(self, keys) -> None:
        for key in keys:
            self._keys.pop(key, None)


def latest_by_device(events) -> dict[str, devices_pb.SeenDevice]:
    """Per device id (lowercased), what its latest event in `events` tells about it."""
    latest: dict[str, devices_pb.SeenDevice] = {}
    for event in events:
        key = event.device_id.lower()
        if key not in latest or event.event_date_time.ToNanoseconds() > latest[key].seen_date_time.ToNanoseconds():
            latest[key] = devices_pb.SeenDevice(device_id=key, device_name=event.device_name,
                                                user_principal_name=event.upn, seen_date_time=event.event_date_time)
    return latest


class SeenDeviceReporter:
    def __init__(self, address: str, remembered: int = REMEMBERED):
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = devices_grpc.ManagedDeviceServiceStub(self._channel)
        self._background = Background()
        self._reported = Reported(remembered)

    def report(self, tenant: str, events, context) -> None:
        """Reports the devices of stored `events` not reported yet, with the caller's own credentials."""
        latest = latest_by_device(events)
        if new := self._reported.claim((tenant, key) for key in latest):
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

    async def close(self) -> None:
        await self._background.close()
        await self._channel.close()
