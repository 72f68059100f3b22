"""/beta/deviceManagement/privilegeManagementElevations -> epm.events.v1.ElevationEventService."""

from __future__ import annotations

from aiohttp import web
from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.events.v1 import elevation_event_service_pb2_grpc as pb_grpc
from google.protobuf import field_mask_pb2

from services.common import optional
from services.common.auth import EVENTS_WRITE, not_authorized

from . import graphjson, query
from .errors import GraphError
from .graph import (
    PRINCIPAL,
    call_options,
    count_collection,
    entity_body,
    list_collection,
    located,
    member,
    read_json,
    reply,
    stub,
    writable_fields,
    written,
)

PATH = "/beta/deviceManagement/privilegeManagementElevations"
ENTITY_SET = "deviceManagement/privilegeManagementElevations"
TYPE = "privilegeManagementElevation"
PROPERTIES = frozenset(f.json_name for f in pb.ElevationEvent.DESCRIPTOR.fields)
SEARCHABLE = ("filePath", "upn", "deviceName")  # what $search looks in (the file path holds its name)
INGEST_MAX = 1000  # events per POST …/ingest: one batch, one transaction
KEY = frozenset({"id", "deviceId", "eventDateTime"})  # what identifies an event: never changed
WRITABLE = frozenset(f.name for f in pb.ElevationEvent.DESCRIPTOR.fields if f.json_name not in KEY)


def _stub(request: web.Request) -> pb_grpc.ElevationEventServiceStub:
    return stub(request, "events", pb_grpc.ElevationEventServiceStub)


def _entity(request: web.Request, event: pb.ElevationEvent, select: tuple[str, ...] = ()) -> dict:
    return entity_body(request, ENTITY_SET, _json(event), select)


def _json(event: pb.ElevationEvent) -> dict:
    return graphjson.to_json(event, TYPE, optional.ELEVATION_EVENT)


async def create(request: web.Request) -> web.Response:
    event = pb.ElevationEvent()
    graphjson.from_json(await read_json(request), event, TYPE)
    stored = await _stub(request).RecordElevationEvent(pb.RecordElevationEventRequest(event=event),
                                                       **call_options(request))
    return located(request, reply(_entity(request, stored), status=201), ENTITY_SET, stored.id)


async def ingest(request: web.Request) -> web.Response:
    """Extension (not in Graph): POST {"value": [up to 1000 events]} stores them as one batch of the gRPC
    IngestElevationEvents stream. Like it, an invalid event is reported by its index and not stored, the valid
    rest is; a re-sent event counts as a duplicate. The permission is checked before the body is (the service
    checks it again)."""
    if wanted := request[PRINCIPAL].missing(EVENTS_WRITE):
        raise GraphError(403, not_authorized(wanted))
    body = await read_json(request)
    events = body.get("value") if isinstance(body, dict) else None
    if not isinstance(events, list) or not 0 < len(events) <= INGEST_MAX:
        raise GraphError(400, f"The body must be {{\"value\": [1 to {INGEST_MAX} {TYPE} objects]}}.")
    batch, positions, rejected = pb.IngestElevationEventsRequest(), [], []
    for index, item in enumerate(events):
        try:
            graphjson.from_json(item, batch.events.add(), TYPE)  # filled in place, not copied in
        except GraphError as exc:
            del batch.events[-1]
            rejected.append({"index": index, "reason": exc.message})
            continue
        positions.append(index)
    result = pb.IngestElevationEventsResponse()
    if positions:
        result = await _stub(request).IngestElevationEvents(iter((batch,)), **call_options(request))
    rejected += [{"index": positions[r.index], "reason": r.reason} for r in result.rejected]
    return reply({"received": len(events), "inserted": result.inserted, "duplicates": result.duplicates,
                  "rejected": sorted(rejected, key=lambda r: r["index"])})


async def list_(request: web.Request) -> web.Response:
    return await list_collection(request, _stub(request).ListElevationEvents, pb.ListElevationEventsRequest,
                                 "events", _json, ENTITY_SET, PROPERTIES, SEARCHABLE)


async def count(request: web.Request) -> web.Response:
    return await count_collection(request, _stub(request).CountElevationEvents, pb.CountElevationEventsRequest,
                                  PROPERTIES, SEARCHABLE)


async def summary(request: web.Request) -> web.Response:
    """Extension (not in Graph): counts for reports, optionally over a $filter and with ?top=N lists."""
    options = query.parse(request.query, frozenset({"filter", "top"}), PROPERTIES)
    result = await _stub(request).SummarizeElevationEvents(
        pb.SummarizeElevationEventsRequest(filter=options.filter, top=options.top), **call_options(request))
    body = {"total": result.total}
    for field in pb.ElevationEventSummary.DESCRIPTOR.fields[1:]:
        body[field.json_name] = [{"key": b.key, "count": b.count} for b in getattr(result, field.name)]
    return reply(body)


async def _get(request: web.Request) -> pb.ElevationEvent:
    return await _stub(request).GetElevationEvent(pb.GetElevationEventRequest(id=request.match_info["id"]),
                                                  **call_options(request))


async def get(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), PROPERTIES)
    return reply(_entity(request, await _get(request), options.select))


async def update(request: web.Request) -> web.Response:
    """PATCH any property but the key (id, deviceId, eventDateTime), which a fetched event may bring unchanged."""
    event = pb.ElevationEvent()
    fields = graphjson.from_json(await read_json(request), event, TYPE, ignore=frozenset())
    paths = await writable_fields(event, fields, WRITABLE, lambda: _get(request))
    event.id = request.match_info["id"]
    updated = await _stub(request).UpdateElevationEvent(
        pb.UpdateElevationEventRequest(event=event, update_mask=field_mask_pb2.FieldMask(paths=paths)),
        **call_options(request))
    return written(request, reply(_entity(request, updated)))


async def delete(request: web.Request) -> web.Response:
    await _stub(request).DeleteElevationEvent(pb.DeleteElevationEventRequest(id=request.match_info["id"]),
                                              **call_options(request))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, list_)
    app.router.add_get(PATH + "/$count", count)
    app.router.add_get(PATH + "/summary", summary)
    app.router.add_post(PATH + "/ingest", ingest)
    for item in member(PATH):
        app.router.add_get(item, get)
        app.router.add_patch(item, update)
        app.router.add_delete(item, delete)
