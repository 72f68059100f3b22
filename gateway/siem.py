"""SIEM export, our extension (not Graph): the audit trail and the elevation events as JSON lines, in commit
order, resumable from a cursor -> the feed services' server streams.

GET …/stream?cursor=…&follow=true answers application/x-ndjson, one line per event:
{"cursor": "…", "event": {the Graph JSON the list endpoints return}}. A line with a cursor and no event is a
checkpoint: one every HEARTBEAT seconds while a follower waits (it keeps proxies open and tells a client that
left from one that waits), and one as the last line, with "error" when the stream broke off. Resume from the
last cursor read. cursor=latest skips the backlog: the first line is then a checkpoint with the cursor of "now".
A bad cursor or a missing permission is a Graph error before the stream starts.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import orjson
from aiohttp import web
from epm.events.v1 import elevation_event_feed_service_pb2 as elevations_pb
from epm.events.v1 import elevation_event_feed_service_pb2_grpc as elevations_grpc
from epm.requests.v1 import audit_feed_service_pb2 as audit_pb
from epm.requests.v1 import audit_feed_service_pb2_grpc as audit_grpc

from services.common.feed import ACCEPTED, LATEST

from . import elevation_requests, elevations
from .errors import GraphError, bad_request, from_rpc
from .graph import REQUEST_ID, rpc_metadata, stub

ROOT = "/beta/security/epm"
NDJSON = "application/x-ndjson"
HEARTBEAT = 15.0  # seconds of silence before a checkpoint line
STOPPING = web.AppKey("siem_stopping", asyncio.Event)
FLAGS = {"true": True, "false": False}


def _line(body: dict) -> bytes:
    return orjson.dumps(body) + b"\n"


def _follow(request: web.Request) -> bool:
    if unknown := sorted(set(request.query) - {"cursor", "follow"}):
        raise bad_request(f"Unknown query parameter '{unknown[0]}': this stream takes cursor and follow.")
    value = request.query.get("follow", "false").lower()
    if value not in FLAGS:
        raise bad_request(f"follow must be true or false, not '{value}'.")
    return FLAGS[value]


async def _stream(request: web.Request, call, field: str, to_json) -> web.StreamResponse:
    """Relays `call` as JSON lines; the call is cancelled however the response ends."""
    try:
        cursor = dict(await call.initial_metadata()).get(ACCEPTED)
        if cursor is None:  # refused: read its status, which the middleware answers as a Graph error
            await call.read()
        response = web.StreamResponse(headers={
            "Content-Type": NDJSON, "Cache-Control": "no-store", "request-id": request[REQUEST_ID],
            "client-request-id": request.headers.get("client-request-id") or request[REQUEST_ID]})
        await response.prepare(request)
        if request.query.get("cursor") == LATEST:  # the client has no cursor yet to resume from
            await response.write(_line({"cursor": cursor}))
        last: dict = {}
        try:
            async with contextlib.aclosing(_messages(call, request.app[STOPPING])) as messages:
                async for message in messages:
                    if message is None:
                        await response.write(_line({"cursor": cursor}))
                        continue
                    await response.write(b"".join(_line({"cursor": item.cursor, "event": to_json(getattr(item, field))})
                                                  for item in message.items))
                    cursor = message.items[-1].cursor
        except (grpc.aio.AioRpcError, GraphError) as exc:
            error = from_rpc(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
            last["error"] = {"code": error.code, "message": error.message}
        except ConnectionError:  # the client left
            return response
        with contextlib.suppress(ConnectionError):
            await response.write(_line({"cursor": cursor, **last}))
            await response.write_eof()
        return response
    finally:
        call.cancel()


async def _messages(call, stopping: asyncio.Event):
    """The call's messages, and None after each HEARTBEAT without one, until the call ends."""
    stop = asyncio.ensure_future(stopping.wait())
    read = None
    try:
        while True:
            read = read or asyncio.ensure_future(call.read())
            done, _ = await asyncio.wait({read, stop}, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                raise GraphError(503, "The gateway is shutting down; resume from this cursor.")
            if read not in done:
                yield None
                continue
            message, read = read.result(), None
            if message is grpc.aio.EOF:
                return
            yield message
    finally:
        stop.cancel()
        if read:
            read.cancel()


async def audit_events(request: web.Request) -> web.StreamResponse:
    feed = stub(request, "requests", audit_grpc.AuditFeedServiceStub)
    call = feed.StreamAuditEvents(audit_pb.StreamAuditEventsRequest(
        cursor=request.query.get("cursor", ""), follow=_follow(request)), metadata=rpc_metadata(request))
    return await _stream(request, call, "audit_event", elevation_requests._audit_json)


async def elevation_events(request: web.Request) -> web.StreamResponse:
    feed = stub(request, "events", elevations_grpc.ElevationEventFeedServiceStub)
    call = feed.StreamElevationEvents(elevations_pb.StreamElevationEventsRequest(
        cursor=request.query.get("cursor", ""), follow=_follow(request)), metadata=rpc_metadata(request))
    return await _stream(request, call, "event", elevations._json)


def add_routes(app: web.Application) -> None:
    app[STOPPING] = asyncio.Event()

    async def stop_streams(app: web.Application) -> None:  # before the server waits for open requests
        app[STOPPING].set()

    app.on_shutdown.append(stop_streams)
    app.router.add_get(ROOT + "/auditEvents/stream", audit_events)
    app.router.add_get(ROOT + "/privilegeManagementElevations/stream", elevation_events)
