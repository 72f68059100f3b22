"""/beta/deviceManagement/elevationRequests and /auditEvents -> epm.requests.v1.ElevationRequestService."""

from __future__ import annotations

import functools

from aiohttp import web
from epm.requests.v1 import elevation_request_service_pb2 as pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as pb_grpc

from services.common import optional

from . import graphjson, query
from .errors import GraphError, bad_request
from .graph import (
    UNKNOWN_MEMBERS,
    applied,
    call_options,
    count_collection,
    count_reply,
    entity_body,
    list_collection,
    located,
    member,
    read_json,
    reply,
    stub,
    unknown_members,
    writable_fields,
    written,
)

PATH = "/beta/deviceManagement/elevationRequests"
ENTITY_SET = "deviceManagement/elevationRequests"
TYPE = "privilegeManagementElevationRequest"
AUDIT_PATH = "/beta/deviceManagement/auditEvents"
AUDIT_SET = "deviceManagement/auditEvents"
PROPERTIES = frozenset(f.json_name for f in pb.ElevationRequest.DESCRIPTOR.fields) - {"etag", "reputation"}
AUDIT_PROPERTIES = frozenset(f.json_name for f in pb.AuditEvent.DESCRIPTOR.fields)
# Set by the service, never by a client: accepted in a body (SDKs send back what they read) but ignored.
SERVER_SET = frozenset({
    "id", "status", "requestCreatedDateTime", "requestLastModifiedDateTime", "requestExpiryDateTime",
    "reviewCompletedByUserId", "reviewCompletedByUserPrincipalName", "reviewCompletedDateTime",
    "reviewerJustification"})
NO_CORRELATION = "00000000-0000-0000-0000-000000000000"  # Guid.Empty: a change no request caused (expiry)
NOT_GRAPH = frozenset({"etag", "reputation"})
WRITABLE = frozenset({"request_justification"})
# What $search looks in: what a reviewer searches by
SEARCHABLE = ("applicationDetail/fileName", "requestedByUserPrincipalName", "deviceName", "requestJustification")
ACTIONS = {"approve": "ApproveElevationRequest", "deny": "DenyElevationRequest", "revoke": "RevokeElevationRequest"}


def _stub(request: web.Request) -> pb_grpc.ElevationRequestServiceStub:
    return stub(request, "requests", pb_grpc.ElevationRequestServiceStub)


def etag_of(message: pb.ElevationRequest) -> str:
    return f'W/"{message.etag}"'


def if_match(request: web.Request) -> str:
    """The version an If-Match header asks for ("" when absent, "*" for any)."""
    value = request.headers.get("If-Match", "").strip()
    if value in ("", "*"):
        return value
    version = value.removeprefix("W/").strip('"')
    if not (version.isascii() and version.isdigit()):
        raise bad_request(f"If-Match '{value}' is not an ETag of this resource.")
    return version


def _json(message: pb.ElevationRequest, new_members: bool = True) -> dict:
    """The Graph entity; the verdict attached by the reputation service (not a Graph property) rides along as
    the instance annotation @epm.reputation, which Graph clients ignore. Without `new_members`, a status Graph
    added after unknownFutureValue (revoked, completed) is shown as unknownFutureValue."""
    entity = {**graphjson.to_json(message, TYPE, optional.ELEVATION_REQUEST, skip=NOT_GRAPH,
                                  unknown_members=new_members),
              "@odata.etag": etag_of(message)}
    if message.HasField("reputation"):
        summary = graphjson.to_json(message.reputation)
        entity["@epm.reputation"] = {k: v for k, v in summary.items() if k != "@odata.type"}
    return entity


def _honoured(request: web.Request, response: web.Response) -> web.Response:
    """Prefer: include-unknown-enum-members is honoured by every reply carrying requests."""
    return applied(response, UNKNOWN_MEMBERS if unknown_members(request) else "")


def _entity_reply(request: web.Request, message: pb.ElevationRequest, status: int = 200,
                  select: tuple[str, ...] = ()) -> web.Response:
    response = reply(entity_body(request, ENTITY_SET, _json(message, unknown_members(request)), select),
                     status=status)
    response.headers["ETag"] = etag_of(message)
    return _honoured(request, response)


async def create(request: web.Request) -> web.Response:
    given = pb.ElevationRequest()
    graphjson.from_json(await read_json(request), given, TYPE, ignore=SERVER_SET)
    created = await _stub(request).CreateElevationRequest(
        pb.CreateElevationRequestRequest(elevation_request=given), **call_options(request))
    return located(request, _entity_reply(request, created, status=201), ENTITY_SET, created.id)


async def list_(request: web.Request, context: str = ENTITY_SET) -> web.Response:
    """The requests, paged; `context` names the result in @odata.context (the entity set, or an action's
    Collection(type))."""
    to_json = functools.partial(_json, new_members=unknown_members(request))
    return _honoured(request, await list_collection(
        request, _stub(request).ListElevationRequests, pb.ListElevationRequestsRequest, "elevation_requests",
        to_json, context, PROPERTIES, SEARCHABLE))


async def count(request: web.Request) -> web.Response:
    return await count_collection(request, _stub(request).CountElevationRequests, pb.CountElevationRequestsRequest,
                                  PROPERTIES, SEARCHABLE)


async def _get(request: web.Request) -> pb.ElevationRequest:
    return await _stub(request).GetElevationRequest(pb.GetElevationRequestRequest(id=request.match_info["id"]),
                                                    **call_options(request))


async def get(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), PROPERTIES)
    return _entity_reply(request, await _get(request), select=options.select)


async def update(request: web.Request) -> web.Response:
    """PATCH requestJustification; the rest of a fetched request may come along unchanged."""
    given = pb.ElevationRequest()
    fields = graphjson.from_json(await read_json(request), given, TYPE, ignore=frozenset(), skip=NOT_GRAPH)
    await writable_fields(given, fields, WRITABLE, lambda: _get(request))
    updated = await _stub(request).UpdateElevationRequest(pb.UpdateElevationRequestRequest(
        id=request.match_info["id"], request_justification=given.request_justification, etag=if_match(request)),
        **call_options(request))
    return written(request, _entity_reply(request, updated))


async def delete(request: web.Request) -> web.Response:
    await _stub(request).DeleteElevationRequest(
        pb.DeleteElevationRequestRequest(id=request.match_info["id"], etag=if_match(request)),
        **call_options(request))
    return web.Response(status=204)


async def review(request: web.Request) -> web.Response:
    """approve, deny, revoke: {"reviewerJustification": "..."} (optional) -> 200 with the updated request."""
    body = await read_json(request) if request.can_read_body else {}
    if body is None:
        body = {}
    if not isinstance(body, dict) or set(body) - {"reviewerJustification"}:
        unknown = sorted(set(body) - {"reviewerJustification"}) if isinstance(body, dict) else ["(not an object)"]
        raise bad_request(f"The only parameter of this action is reviewerJustification, not {unknown[0]}.")
    justification = body.get("reviewerJustification")
    if justification is None:  # null or absent: no justification
        justification = ""
    if not isinstance(justification, str):
        raise bad_request("reviewerJustification must be a string.")
    method = getattr(_stub(request), ACTIONS[request.match_info["action"]])
    updated = await method(pb.ReviewElevationRequestRequest(
        id=request.match_info["id"], reviewer_justification=justification, etag=if_match(request)),
        **call_options(request))
    return _entity_reply(request, updated)


async def get_all(request: web.Request) -> web.Response:
    """getAllElevationRequests, bound to one request: every request the caller may see, paged."""
    await _get(request)
    return await list_(request, f"Collection(microsoft.graph.{TYPE})")


def _audit_json(event: pb.AuditEvent) -> dict:
    out = graphjson.to_json(event)
    out["correlationId"] = out["correlationId"] or NO_CORRELATION  # an Edm.Guid: never "" (the SDK parses it)
    return out


async def audit_events(request: web.Request) -> web.Response:
    return await list_collection(request, _stub(request).ListAuditEvents, pb.ListAuditEventsRequest,
                                 "audit_events", _audit_json, AUDIT_SET, AUDIT_PROPERTIES)


async def audit_count(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"filter"}), AUDIT_PROPERTIES)
    page = await _stub(request).ListAuditEvents(pb.ListAuditEventsRequest(
        filter=options.filter, page_size=1, include_total_size=True), **call_options(request))
    return count_reply(page.total_size)


async def audit_event(request: web.Request) -> web.Response:
    """GET auditEvents/{id}: the one event with that id (a list filtered on it: the service has no Get)."""
    options = query.parse(request.query, frozenset({"select"}), AUDIT_PROPERTIES)
    event_id = request.match_info["id"]
    page = await _stub(request).ListAuditEvents(pb.ListAuditEventsRequest(
        filter=f"id eq '{event_id.replace(chr(39), chr(39) * 2)}'", page_size=1), **call_options(request))
    if not page.audit_events:
        raise GraphError(404, f"No audit event with id '{event_id}'.")
    return reply(entity_body(request, AUDIT_SET, _audit_json(page.audit_events[0]), options.select))


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, list_)
    app.router.add_get(PATH + "/$count", count)
    for item in member(PATH):
        app.router.add_get(item, get)
        app.router.add_patch(item, update)
        app.router.add_delete(item, delete)
        app.router.add_post(item + "/{action:approve|deny|revoke}", review)
        app.router.add_post(item + "/getAllElevationRequests", get_all)
    app.router.add_get(AUDIT_PATH, audit_events)
    app.router.add_get(AUDIT_PATH + "/$count", audit_count)
    for item in member(AUDIT_PATH):
        app.router.add_get(item, audit_event)
