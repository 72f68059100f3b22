"""/beta/deviceManagement/managedDevices -> epm.requests.v1.ManagedDeviceService (a subset of Graph managedDevice).

How a device became known (registered here, or seen in elevation events) and when it was last seen ride along as
the instance annotation @epm.discovery, which Graph clients ignore."""

from __future__ import annotations

from aiohttp import web
from epm.requests.v1 import managed_device_service_pb2 as pb
from epm.requests.v1 import managed_device_service_pb2_grpc as pb_grpc

from services.common import optional

from . import graphjson, query
from .errors import bad_request
from .graph import (
    call_options,
    count_collection,
    entity_body,
    list_collection,
    located,
    member,
    read_json,
    reply,
    stub,
)

PATH = "/beta/deviceManagement/managedDevices"
ENTITY_SET = "deviceManagement/managedDevices"
TYPE = "managedDevice"
NOT_GRAPH = frozenset({"source", "lastSeenDateTime"})
PROPERTIES = frozenset(f.json_name for f in pb.ManagedDevice.DESCRIPTOR.fields) - NOT_GRAPH


def _stub(request: web.Request) -> pb_grpc.ManagedDeviceServiceStub:
    return stub(request, "requests", pb_grpc.ManagedDeviceServiceStub)


def _json(device: pb.ManagedDevice) -> dict:
    discovery = graphjson.to_json(device)
    return {**graphjson.to_json(device, TYPE, optional.MANAGED_DEVICE, skip=NOT_GRAPH),
            "@epm.discovery": {name: discovery[name] for name in NOT_GRAPH}}


async def create(request: web.Request) -> web.Response:
    given = pb.ManagedDevice()
    fields = graphjson.from_json(await read_json(request), given, TYPE, ignore=frozenset())
    json_names = {f.name: f.json_name for f in pb.ManagedDevice.DESCRIPTOR.fields}
    if bad := [json_names[f] for f in fields if json_names[f] in NOT_GRAPH]:
        raise bad_request(f"Property '{bad[0]}' does not exist on type 'microsoft.graph.{TYPE}'.")
    created = await _stub(request).CreateManagedDevice(pb.CreateManagedDeviceRequest(managed_device=given),
                                                       **call_options(request))
    return located(request, reply(entity_body(request, ENTITY_SET, _json(created)), status=201), ENTITY_SET, created.id)


async def list_(request: web.Request) -> web.Response:
    return await list_collection(request, _stub(request).ListManagedDevices, pb.ListManagedDevicesRequest,
                                 "managed_devices", _json, ENTITY_SET, PROPERTIES)


async def count(request: web.Request) -> web.Response:
    return await count_collection(request, _stub(request).CountManagedDevices, pb.CountManagedDevicesRequest,
                                  PROPERTIES)


async def get(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), PROPERTIES)
    found = await _stub(request).GetManagedDevice(pb.GetManagedDeviceRequest(id=request.match_info["id"]),
                                                  **call_options(request))
    return reply(entity_body(request, ENTITY_SET, _json(found), options.select))


async def delete(request: web.Request) -> web.Response:
    await _stub(request).DeleteManagedDevice(pb.DeleteManagedDeviceRequest(id=request.match_info["id"]),
                                             **call_options(request))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, list_)
    app.router.add_get(PATH + "/$count", count)
    for item in member(PATH):
        app.router.add_get(item, get)
        app.router.add_delete(item, delete)
