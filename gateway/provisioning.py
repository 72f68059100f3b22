"""/beta/deviceManagement/enableEndpointPrivilegeManagement and /endpointPrivilegeManagementProvisioningStatus
-> epm.requests.v1.ProvisioningService.

Whether and when the tenant enabled Endpoint Privilege Management rides along as the instance annotation
@epm.provisioning, which Graph clients ignore."""

from __future__ import annotations

from aiohttp import web
from epm.requests.v1 import provisioning_service_pb2 as pb
from epm.requests.v1 import provisioning_service_pb2_grpc as pb_grpc

from . import graphjson, query
from .errors import bad_request
from .graph import call_options, entity_body, read_json, reply, stub

ENABLE = "/beta/deviceManagement/enableEndpointPrivilegeManagement"
STATUS = "/beta/deviceManagement/endpointPrivilegeManagementProvisioningStatus"
ENTITY_SET = "deviceManagement/endpointPrivilegeManagementProvisioningStatus"
TYPE = "endpointPrivilegeManagementProvisioningStatus"
NOT_GRAPH = frozenset({"enabled", "enabledDateTime"})
PROPERTIES = frozenset(f.json_name for f in pb.ProvisioningStatus.DESCRIPTOR.fields) - NOT_GRAPH


def _stub(request: web.Request) -> pb_grpc.ProvisioningServiceStub:
    return stub(request, "requests", pb_grpc.ProvisioningServiceStub)


def _json(status: pb.ProvisioningStatus) -> dict:
    extension = graphjson.to_json(status)
    return {**graphjson.to_json(status, TYPE, skip=NOT_GRAPH),
            "@epm.provisioning": {name: extension[name] for name in sorted(NOT_GRAPH)}}


async def get(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), PROPERTIES)
    status = await _stub(request).GetProvisioningStatus(pb.GetProvisioningStatusRequest(), **call_options(request))
    return reply(entity_body(request, ENTITY_SET, _json(status), options.select))


async def update(request: web.Request) -> web.Response:
    given = pb.ProvisioningStatus()
    fields = graphjson.from_json(await read_json(request), given, TYPE, skip=NOT_GRAPH)
    if not fields:
        raise bad_request("The request body names no property that can be changed.")
    status = await _stub(request).UpdateProvisioningStatus(
        pb.UpdateProvisioningStatusRequest(provisioning_status=given, update_mask=fields), **call_options(request))
    return reply(entity_body(request, ENTITY_SET, _json(status)))


async def enable(request: web.Request) -> web.Response:
    """The action takes no parameters: no body, or an empty object."""
    if request.body_exists and (await request.read()).strip() and await read_json(request) != {}:
        raise bad_request("enableEndpointPrivilegeManagement takes no parameters.")
    await _stub(request).EnableEndpointPrivilegeManagement(pb.EnableEndpointPrivilegeManagementRequest(),
                                                           **call_options(request))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post(ENABLE, enable)
    app.router.add_get(STATUS, get)
    app.router.add_patch(STATUS, update)
