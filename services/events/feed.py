"""The elevation events as a SIEM feed: a server stream in commit order, resumable from a cursor."""

from __future__ import annotations

from epm.events.v1 import elevation_event_feed_service_pb2 as pb
from epm.events.v1 import elevation_event_feed_service_pb2_grpc as pb_grpc

from ..common.auth import TokenVerifier, authorize
from ..common.feed import FeedStreams
from . import model
from .servicer import READ
from .store import TABLE

SOURCE = f"{TABLE} WHERE tenant_id = $1"
COLUMNS = ", ".join(("txid", *model.COLUMNS))


class ElevationEventFeedServicer(pb_grpc.ElevationEventFeedServiceServicer):
    def __init__(self, streams: FeedStreams, verifier: TokenVerifier):
        self.streams, self.verifier = streams, verifier

    async def StreamElevationEvents(self, request, context):
        def authorized():  # whoever may list elevation events
            return authorize(self.verifier, context.invocation_metadata(), READ)

        caller = await authorized()
        async for response in self.streams.responses(context, request, SOURCE, [caller.tenant_id], authorized, _item,
                                                     pb.StreamElevationEventsResponse, COLUMNS):
            yield response


def _item(cursor: str, row) -> pb.ElevationEventFeedItem:
    return pb.ElevationEventFeedItem(cursor=cursor, event=model.from_row(row))
