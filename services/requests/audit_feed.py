"""The audit trail as a SIEM feed: a server stream in commit order, resumable from a cursor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from epm.requests.v1 import audit_feed_service_pb2 as pb
from epm.requests.v1 import audit_feed_service_pb2_grpc as pb_grpc

from ..common.auth import TokenVerifier
from ..common.feed import FeedStreams
from .servicer import AUDIT_READ, VIEW, audit_to_proto, caller
from .store import AUDIT_SCOPED


class AuditFeedServicer(pb_grpc.AuditFeedServiceServicer):
    def __init__(self, streams: FeedStreams, verifier: TokenVerifier, clock: Callable[[], datetime]):
        self.streams, self.verifier, self.clock = streams, verifier, clock

    async def StreamAuditEvents(self, request, context):
        async def authorized():  # whoever may list audit events: the Graph permission and, for users, the role
            principal, _ = await caller(self.verifier, self.streams.pool, self.clock(), context, AUDIT_READ, VIEW)
            return principal

        principal = await authorized()
        async for response in self.streams.responses(context, request, AUDIT_SCOPED, [principal.tenant_id],
                                                     authorized, _item, pb.StreamAuditEventsResponse):
            yield response


def _item(cursor: str, row) -> pb.AuditEventFeedItem:
    return pb.AuditEventFeedItem(cursor=cursor, audit_event=audit_to_proto(row))
