"""What the other services know, asked over gRPC with the caller's own credentials: about a file, a user and a
device (best effort: a source that fails or is slower than TIMEOUT is left out and named, and the analysis goes
on without it), and the caller's reviewer rights (fail closed)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timezone

import grpc
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.events.v1 import elevation_event_service_pb2_grpc as events_grpc
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as requests_grpc
from epm.requests.v1 import role_assignment_service_pb2 as roles_pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as roles_grpc

from ..common import errors
from ..common.background import forwarded
from ..common.channels import connect
from .scoring import Activity, Counts

log = logging.getLogger("epm.reputation.peers")
TIMEOUT = 2.0
MODIFY = "elevationRequests.modify"


class Peers:
    def __init__(self, events_addr: str, requests_addr: str):
        self._channels = [connect(events_addr), connect(requests_addr)]
        self._events = events_grpc.ElevationEventServiceStub(self._channels[0])
        self._requests = requests_grpc.ElevationRequestServiceStub(self._channels[1])
        self._roles = roles_grpc.RoleAssignmentServiceStub(self._channels[1])

    async def require_modify(self, metadata) -> None:
        """That a delegated caller holds the Intune modify right (as reviewers who decide need it): the requests
        service, which owns the role assignments, says. When it cannot, the answer is no."""
        try:
            mine = await self._roles.GetMyPermissions(roles_pb.GetMyPermissionsRequest(),
                                                      metadata=forwarded(metadata), timeout=TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            log.warning("cannot check reviewer rights: %s %s", exc.code().name, exc.details())
            raise errors.RpcError(grpc.StatusCode.UNAVAILABLE, "RIGHTS_UNAVAILABLE",
                                  "The reviewer rights cannot be checked right now; try again.") from None
        if mine.delegated and MODIFY not in mine.permissions:
            raise errors.RpcError(
                grpc.StatusCode.PERMISSION_DENIED, "MISSING_ROLE",
                "The Intune permission 'Endpoint Privilege Management Elevation Requests: Modify elevation requests' "
                "is required to change what reviewers rely on; it comes with a role assignment such as Endpoint "
                "Privilege Manager.", right=MODIFY)

    async def gather(self, file_hash: str, user_id: str, device_id: str, exclude_request_id: str,
                     metadata) -> tuple[Activity | None, Counts | None, Counts | None, list[str]]:
        """(file and device activity, user counts, device counts, the sources that did not answer)."""
        on_behalf = forwarded(metadata)
        calls = {"events": self._events.GetElevationStats(
            events_pb.GetElevationStatsRequest(file_hash=file_hash, device_id=device_id),
            metadata=on_behalf, timeout=TIMEOUT)}
        if user_id or device_id:
            calls["requests"] = self._requests.GetRequestHistory(requests_pb.GetRequestHistoryRequest(
                user_id=user_id, device_id=device_id, exclude_request_id=exclude_request_id),
                metadata=on_behalf, timeout=TIMEOUT)
        answers = dict(zip(calls, await asyncio.gather(*(_answer(n, c) for n, c in calls.items())), strict=True))
        stats, history = answers["events"], answers.get("requests")
        seen = stats is not None and stats.file.HasField("first_seen_date_time")
        activity = None if stats is None else Activity(
            file_devices=stats.file.devices, file_users=stats.file.users, file_elevations=stats.file.elevations,
            file_first_seen=stats.file.first_seen_date_time.ToDatetime(tzinfo=timezone.utc) if seen else None,
            file_last_seen=stats.file.last_seen_date_time.ToDatetime(tzinfo=timezone.utc) if seen else None,
            device_unmanaged=stats.device.unmanaged_elevations, device_failed=stats.device.failed_elevations)
        user = _counts(history.user) if history is not None and user_id else None
        device = _counts(history.device) if history is not None and device_id else None
        return activity, user, device, [name for name, answer in answers.items() if answer is None]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


async def _answer(name: str, call):
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        log.warning("no history from %s: %s %s", name, exc.code().name, exc.details())
        return None


def _counts(counts: requests_pb.HistoryCounts) -> Counts:
    return Counts(total=counts.total, denied=counts.denied, revoked=counts.revoked, malicious=counts.malicious,
                  last_day=counts.last_day, distinct_users=counts.distinct_users)

