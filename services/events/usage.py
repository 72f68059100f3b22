"""Tells the requests service when a device used a support-approved elevation, so the approved request
for that device and file completes. Best effort and off the ingest path: a slow or absent requests
service never slows or fails event ingest (a failure is logged)."""

from __future__ import annotations

import logging

import grpc
from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as requests_grpc

from ..common.background import Forwarder, forwarded

log = logging.getLogger("epm.events.usage")
SUPPORT_APPROVED = pb.ELEVATION_TYPE_SUPPORT_APPROVED_ELEVATION


class UsageReporter(Forwarder):
    def __init__(self, address: str):
        super().__init__(address, requests_grpc.ElevationRequestServiceStub)

    def report(self, events, context) -> None:
        """Forwards the supportApprovedElevation events among `events` with the caller's own credentials."""
        used = [e for e in events if e.elevation_type == SUPPORT_APPROVED]
        if used:
            self._background.start(self._send(used, forwarded(context.invocation_metadata())))

    async def _send(self, used, metadata) -> None:
        for event in used:
            request = requests_pb.RecordElevationUsageRequest(
                device_id=event.device_id, file_hash=event.hash.lower(), used_date_time=event.event_date_time)
            try:
                await self._stub.RecordElevationUsage(request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as exc:
                log.warning("could not report a support-approved elevation on %s: %s %s", event.device_id,
                            exc.code().name, exc.details())
