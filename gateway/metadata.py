"""GET /beta/$metadata (the CSDL of what the gateway serves) and GET /beta (the OData service document), served
without a token as Graph serves them.

Nothing here lists properties: the collections and their bound actions and functions come from openapi.ROUTES
(the router's table), each entity's properties from the protobuf message graphjson writes it from, less what the
gateway leaves out (ENTITIES names the message and those), enum members in proto order, which is Graph's.
Everything is in microsoft.graph: what is not Graph's (security/..., the SIEM streams, summary, ingest, analyze)
is left out, but for myPermissions(), whose result the gateway already calls microsoft.graph.epmPermissions.
deviceManagement is a singleton only to contain its collections (GET /beta/deviceManagement itself is not served).
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET  # nosec B405 # only writes XML, parses none
from dataclasses import dataclass

from aiohttp import web
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import managed_device_service_pb2 as devices_pb
from epm.requests.v1 import role_assignment_service_pb2 as roles_pb
from epm.requests.v1 import subscription_service_pb2 as subscriptions_pb
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from services.common.enums import graph_names

from . import elevation_requests, elevations, graphjson, managed_devices, openapi, role_assignments, subscriptions
from .graph import reply, service_root

NS = "microsoft.graph"
EDMX = "http://docs.oasis-open.org/odata/ns/edmx"
EDM = "http://docs.oasis-open.org/odata/ns/edm"
CONTAINER = "GraphService"
SINGLETON = "deviceManagement"
ANONYMOUS = frozenset({openapi.ROOT, openapi.METADATA})  # served without a token (app.py's auth check)
PRIMITIVES = {FieldDescriptor.TYPE_STRING: "Edm.String", FieldDescriptor.TYPE_BOOL: "Edm.Boolean",
              FieldDescriptor.TYPE_INT32: "Edm.Int32", FieldDescriptor.TYPE_INT64: "Edm.Int64"}
SCHEMA_TYPES = {"string": "Edm.String", "boolean": "Edm.Boolean", "integer": "Edm.Int32"}  # of a body's property
# Graph's names of enums the protos name shortly (others: the proto name, lower camel case)
ENUM_NAMES = {requests_pb.State.DESCRIPTOR: "elevationRequestState",
              events_pb.ElevationType.DESCRIPTOR: "privilegeManagementElevationType",
              events_pb.UserType.DESCRIPTOR: "privilegeManagementEndUserType",
              events_pb.ProcessType.DESCRIPTOR: "privilegeManagementProcessType"}
EXTENSIONS = frozenset({"analyze"})  # bound operations that are not Graph's


@dataclass(frozen=True)
class Entity:
    """What the members of a collection are written from: a message, as type `name`, without the fields `skip`."""
    descriptor: Descriptor
    name: str
    skip: frozenset[str] = frozenset()

    def fields(self) -> list[FieldDescriptor]:
        return [f for f in self.descriptor.fields if f.json_name not in self.skip]


# The collections described (every one openapi.KEY_SYNTAX names but Intune RBAC's, whose JSON is not yet written
# from its messages: INTUNE_RBAC; a test checks it)
ENTITIES = {
    openapi.REQ: Entity(requests_pb.ElevationRequest.DESCRIPTOR, elevation_requests.TYPE,
                        elevation_requests.NOT_GRAPH),
    openapi.ELEV: Entity(events_pb.ElevationEvent.DESCRIPTOR, elevations.TYPE),
    openapi.AUDIT: Entity(requests_pb.AuditEvent.DESCRIPTOR, graphjson.graph_type(requests_pb.AuditEvent.DESCRIPTOR)),
    openapi.DEV: Entity(devices_pb.ManagedDevice.DESCRIPTOR, managed_devices.TYPE, managed_devices.NOT_GRAPH),
    openapi.ROLES: Entity(roles_pb.RoleAssignment.DESCRIPTOR, role_assignments.TYPE),
    openapi.PIM: Entity(roles_pb.Role.DESCRIPTOR, "privilegedRole",
                        frozenset({"directoryRole", "settings", "summary"})),  # settings, summary: navigations
    openapi.SUB: Entity(subscriptions_pb.Subscription.DESCRIPTOR, "subscription", subscriptions.NOT_GRAPH),
}
INTUNE_RBAC = frozenset({openapi.RDEF, openapi.RASG})
DESCRIBED = tuple(path for path in openapi.KEY_SYNTAX if path not in INTUNE_RBAC)
PERMISSIONS = Entity(roles_pb.MyPermissions.DESCRIPTOR, "epmPermissions")
# What a bound operation returns when it is not its binding's type: a collection, or another type
RETURNS = {"getAllElevationRequests": f"Collection({NS}.{elevation_requests.TYPE})",
           "selfActivate": f"{NS}.{role_assignments.TYPE}", "selfDeactivate": f"{NS}.{role_assignments.TYPE}",
           "myPermissions": f"{NS}.{PERMISSIONS.name}"}


@dataclass(frozen=True)
class Operation:
    name: str
    action: bool  # an Action (POST), else a Function (GET)
    binding: str  # the type it is bound to
    parameters: tuple[tuple[str, str], ...]  # (name, type)
    returns: str


def enum_name(enum: EnumDescriptor) -> str:
    return ENUM_NAMES.get(enum) or graphjson.graph_type(enum)


def edm_type(field: FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.full_name == graphjson.TIMESTAMP:
        kind = "Edm.DateTimeOffset"
    elif field.message_type is not None:
        kind = f"{NS}.{graphjson.graph_type(field.message_type)}"
    elif field.enum_type is not None:
        kind = f"{NS}.{enum_name(field.enum_type)}"
    else:
        kind = PRIMITIVES[field.type]
    return f"Collection({kind})" if field.is_repeated else kind


def collections() -> dict[str, str]:
    """Entity set or navigation path (deviceManagement/x) -> the collection's path, as the router serves it."""
    return {path.removeprefix(openapi.ROOT + "/"): path for path in DESCRIBED}


def _parameters(body: dict | None) -> tuple[tuple[str, str], ...]:
    properties = (body or {}).get("properties", {})
    return tuple((name, next(SCHEMA_TYPES[t] for t in schema["type"] if t in SCHEMA_TYPES))
                 for name, schema in properties.items() if name != "@odata.type")


def operations() -> list[Operation]:
    """The bound actions and functions in ROUTES: POST .../{key}/name (approve|deny|revoke: {action}) and
    GET .../name() on a collection."""
    found = []
    for method, path, _, _, body, _, _ in openapi.ROUTES:
        for base in DESCRIBED:
            tail = path.removeprefix(base)
            if tail == path:
                continue
            entity = f"{NS}.{ENTITIES[base].name}"
            bound = re.fullmatch(r"/\{\w+\}/(\w+|\{action\})", tail) if method == "POST" else None  # GET: navigation
            if bound:
                names, binding, default = [bound[1]], entity, entity
            elif bound := re.fullmatch(r"/(\w+)\(\)", tail):
                names, binding, default = [bound[1]], f"Collection({entity})", f"Collection({entity})"
            else:
                continue
            if names == ["{action}"]:
                names = openapi.PATH_PARAMETERS["action"]["enum"]
            found += [Operation(name, method == "POST", binding, _parameters(body), RETURNS.get(name, default))
                      for name in names if name not in EXTENSIONS]
    return found


def _complex_and_enums(entities) -> tuple[dict[str, Descriptor], dict[str, EnumDescriptor]]:
    """The complex types (nested messages) and enums the entities' properties use, by Graph name."""
    complex_types: dict[str, Descriptor] = {}
    enums: dict[str, EnumDescriptor] = {}
    pending = [f for entity in entities for f in entity.fields()]
    while pending:
        field = pending.pop(0)
        if field.enum_type is not None:
            enums[enum_name(field.enum_type)] = field.enum_type
        elif field.message_type is not None and field.message_type.full_name != graphjson.TIMESTAMP:
            name = graphjson.graph_type(field.message_type)
            if name not in complex_types:
                complex_types[name] = field.message_type
                pending += field.message_type.fields
    return complex_types, enums


def _property(parent: ET.Element, field: FieldDescriptor) -> None:
    attributes = {"Name": field.json_name, "Type": edm_type(field)}
    if field.is_repeated or field.type in (FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_INT32,
                                           FieldDescriptor.TYPE_INT64):
        attributes["Nullable"] = "false"  # always written: [] or a value
    ET.SubElement(parent, "Property", attributes)


def _entity_type(schema: ET.Element, entity: Entity) -> None:
    element = ET.SubElement(schema, "EntityType", {"Name": entity.name, "BaseType": f"{NS}.entity"})
    for field in entity.fields():
        if field.json_name != "id":  # the base type's key
            _property(element, field)


def _operation(schema: ET.Element, operation: Operation) -> None:
    element = ET.SubElement(schema, "Action" if operation.action else "Function",
                            {"Name": operation.name, "IsBound": "true"})
    ET.SubElement(element, "Parameter", {"Name": "bindingParameter", "Type": operation.binding, "Nullable": "false"})
    for name, kind in operation.parameters:
        ET.SubElement(element, "Parameter", {"Name": name, "Type": kind})
    ET.SubElement(element, "ReturnType", {"Type": operation.returns})


def _container(schema: ET.Element) -> None:
    container = ET.SubElement(schema, "EntityContainer", {"Name": CONTAINER})
    ET.SubElement(container, "Singleton", {"Name": SINGLETON, "Type": f"{NS}.{SINGLETON}"})
    for name, path in collections().items():
        if "/" not in name:
            ET.SubElement(container, "EntitySet", {"Name": name, "EntityType": f"{NS}.{ENTITIES[path].name}"})


@functools.cache
def document() -> bytes:
    """The CSDL (OData v4 EDMX) of everything the gateway serves."""
    ET.register_namespace("edmx", EDMX)
    root = ET.Element(f"{{{EDMX}}}Edmx", {"Version": "4.0"})
    schema = ET.SubElement(ET.SubElement(root, f"{{{EDMX}}}DataServices"), "Schema", {"xmlns": EDM, "Namespace": NS})
    entities = [ENTITIES[path] for path in DESCRIBED]
    complex_types, enums = _complex_and_enums([*entities, PERMISSIONS])
    for name, enum in enums.items():
        element = ET.SubElement(schema, "EnumType", {"Name": name})
        for member in graph_names(enum).values():
            ET.SubElement(element, "Member", {"Name": member})
    for name, descriptor in {**complex_types, PERMISSIONS.name: PERMISSIONS.descriptor}.items():
        element = ET.SubElement(schema, "ComplexType", {"Name": name})
        for field in descriptor.fields:
            _property(element, field)
    base = ET.SubElement(schema, "EntityType", {"Name": "entity", "Abstract": "true"})
    ET.SubElement(ET.SubElement(base, "Key"), "PropertyRef", {"Name": "id"})
    ET.SubElement(base, "Property", {"Name": "id", "Type": "Edm.String", "Nullable": "false"})
    for entity in entities:
        _entity_type(schema, entity)
    device_management = ET.SubElement(schema, "EntityType", {"Name": SINGLETON, "BaseType": f"{NS}.entity"})
    for name, path in collections().items():
        if name.startswith(SINGLETON + "/"):
            ET.SubElement(device_management, "NavigationProperty", {
                "Name": name.removeprefix(SINGLETON + "/"), "Type": f"Collection({NS}.{ENTITIES[path].name})",
                "ContainsTarget": "true"})
    for operation in operations():
        _operation(schema, operation)
    _container(schema)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def service_document(root: str) -> dict:
    """The OData service document: the container's entity sets and singletons."""
    names = [(SINGLETON, "Singleton")] + [(n, "EntitySet") for n in collections() if "/" not in n]
    return {"@odata.context": f"{root}/$metadata",
            "value": [{"name": name, "kind": kind, "url": name} for name, kind in names]}


async def serve_metadata(request: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/xml", charset="utf-8",
                        headers={"OData-Version": "4.0"})


async def serve_root(request: web.Request) -> web.Response:
    return reply(service_document(service_root(request)))


def add_routes(app: web.Application) -> None:
    app.router.add_get(openapi.ROOT, serve_root)
    app.router.add_get(openapi.METADATA, serve_metadata)
