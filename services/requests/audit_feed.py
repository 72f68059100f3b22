"""The audit trail as a SIEM feed: a server stream in commit order, resumable from a cursor."""

from __future__ import annotations

from epm.requests.v1 import audit_feed_service_pb2 as pb
from epm.requests.v1 import audit_feed_service_pb2_grpc as pb_grpc

from ..common.feed import FeedStreams
from .servicer import AUDIT_READ, VIEW, ElevationRequestServicer, audit_to_proto
from .store import AUDIT_SCOPED


class AuditFeedServicer(pb_grpc.AuditFeedServiceServicer):
    def __init__(self, streams: FeedStreams, requests: ElevationRequestServicer):
        self.streams, self.requests = streams, requests

    async def StreamAuditEvents(self, request, context):
        async def authorized():  # whoever may list audit events: the Graph permission and, for users, the role
            principal, _ = await self.requests._caller(context, AUDIT_READ, VIEW)
            return principal

        caller = await authorized()
        async for response in self.streams.responses(context, request, AUDIT_SCOPED, [caller.tenant_id], authorized,
                                                     _item, pb.StreamAuditEventsResponse):
            yield response


def _item(cursor: str, row) -> pb.AuditEventFeedItem:
    return pb.AuditEventFeedItem(cursor=cursor, audit_event=audit_to_proto(row))
