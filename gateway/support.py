"""Microsoft Managed Desktop's support elevation API (not Graph) -> epm.requests.v1.SupportElevationService:

  POST  /support/odata/v1/tenants/{tenantId}/elevationRequests        a support agent asks: 201 + the request
  GET   /support/odata/v1/tenants/{tenantId}/elevationRequests        $filter, $orderby, $top, $skip
  GET   /support/odata/v1/tenants/{tenantId}/elevationRequests/{id}
  PATCH /support/odata/v1/tenants/{tenantId}/elevationRequests/{id}   close: {"actionsTaken": "..."}, 204

Bodies may name properties in camelCase or PascalCase, as MMD's docs do. `{tenantId}` is the token's tenant (any
other is a 404). Errors are MMD's: {"error": {"code": "<HTTP status>", "message": "..."}}, with no innerError.
How the shared lifecycle sees the request rides along as the annotation @epm.elevationRequest."""

from __future__ import annotations

import json

import grpc
import orjson
from aiohttp import web
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import support_elevation_service_pb2 as pb
from epm.requests.v1 import support_elevation_service_pb2_grpc as pb_grpc

from services.common.enums import to_graph

from . import errors, graphjson, query
from .errors import GraphError, bad_request
from .graph import JSON, call_options, caller, read_json, stub

PREFIX = "/support/"
ROOT = "/support/odata/v1"
PATH = ROOT + "/tenants/{tenantId}/elevationRequests"
ENTITY_SET = "ElevationRequests"
TTL = 7_776_000  # seconds a request is kept (90 days), as MMD reports it
CREATE_FIELDS = {f.json_name: f.name for f in pb.CreateSupportElevationRequestRequest.DESCRIPTOR.fields}
CLOSE_FIELDS = {"actionsTaken": "actions_taken"}
NOT_MMD = frozenset({"status", "deviceId", "etag"})
LIST_OPTIONS = frozenset({"filter", "orderby", "top", "skip", "skiptoken"})
NO_TENANT = "This tenant does not exist."


def error_response(error: GraphError) -> web.Response:
    """MMD's error body: the HTTP status as a string in `code`."""
    body = {"error": {"code": str(error.status), "message": error.message}}
    return web.Response(status=error.status, text=json.dumps(body), content_type=JSON, headers=errors.headers(error))


def _stub(request: web.Request) -> pb_grpc.SupportElevationServiceStub:
    if request.match_info["tenantId"].lower() != caller(request).tenant_id:
        raise GraphError(404, NO_TENANT)
    return stub(request, "requests", pb_grpc.SupportElevationServiceStub)


def _context(request: web.Request, suffix: str = "") -> str:
    return f"{request.scheme}://{request.host}{ROOT}/$metadata#{ENTITY_SET}{suffix}"


def body_fields(body, fields: dict[str, str]) -> dict[str, str]:
    """The proto fields a JSON object sets; its property names in camelCase or PascalCase, its values strings
    (null: not given)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    given: dict[str, str] = {}
    for name, value in body.items():
        if name.startswith("@"):
            continue
        camel = name[:1].lower() + name[1:]
        if camel not in fields:
            raise bad_request(f"'{name}' is not a property this call takes; it takes: {', '.join(fields)}.")
        if fields[camel] in given:
            raise bad_request(f"'{camel}' is given more than once.")
        if value is not None and not isinstance(value, str):
            raise bad_request(f"'{camel}' must be a string.")
        given[fields[camel]] = value or ""
    return given


def _json(message: pb.SupportElevationRequest) -> dict:
    entity = graphjson.to_json(message, skip=NOT_MMD)
    del entity["@odata.type"]
    return {**entity, "requestRenewTime": None, "viewerUpns": [], "passwordLastUpdatedTime": None,
            "isDeleted": False, "ttl": TTL, "eTag": f'"{message.etag}"',
            "@epm.elevationRequest": {"status": to_graph(requests_pb.State.DESCRIPTOR, message.status),
                                      "requestedOnDeviceId": message.device_id}}


def _reply(body: dict, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON, charset="utf-8")


async def create(request: web.Request) -> web.Response:
    support = _stub(request)
    given = body_fields(await read_json(request), CREATE_FIELDS)
    created = await support.CreateSupportElevationRequest(pb.CreateSupportElevationRequestRequest(**given),
                                                          **call_options(request))
    return _reply({"@odata.context": _context(request, "/$entity"), **_json(created)}, status=201)


async def list_(request: web.Request) -> web.Response:
    support = _stub(request)
    options = query.parse(request.query, LIST_OPTIONS, frozenset())
    page = await support.ListSupportElevationRequests(pb.ListSupportElevationRequestsRequest(
        filter=options.filter, order_by=options.orderby, page_size=options.top, page_token=options.skiptoken,
        skip=options.skip), **call_options(request))
    body: dict = {"@odata.context": _context(request)}
    if page.next_page_token:
        body["@odata.nextLink"] = query.next_link(request.url, page.next_page_token)
    body["value"] = [_json(m) for m in page.elevation_requests]
    return _reply(body)


async def get(request: web.Request) -> web.Response:
    found = await _stub(request).GetSupportElevationRequest(
        pb.GetSupportElevationRequestRequest(id=request.match_info["id"]), **call_options(request))
    return _reply({"@odata.context": _context(request, "/$entity"), **_json(found)})


async def close(request: web.Request) -> web.Response:
    support = _stub(request)
    given = body_fields(await read_json(request), CLOSE_FIELDS)
    try:
        await support.CloseSupportElevationRequest(pb.CloseSupportElevationRequestRequest(
            id=request.match_info["id"], **given), **call_options(request))
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:  # MMD: closing a closed request is a bad request
            raise GraphError(400, errors.from_rpc(exc).message) from None
        raise
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, list_)
    app.router.add_get(PATH + "/{id}", get)
    app.router.add_patch(PATH + "/{id}", close)
