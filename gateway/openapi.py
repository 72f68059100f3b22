"""The gateway's OpenAPI 3.1 document, served at GET /openapi.json without a token.

ROUTES is the one table of what the gateway implements; request bodies read from protobuf messages are described
from the same descriptors graphjson.from_json reads them with, so the document cannot drift from the parser.
tests/unit/test_openapi.py fails when a route on the router is missing here.
"""

from __future__ import annotations

import functools
import re

from aiohttp import web
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.reputation.v1 import file_reputation_service_pb2 as reputation_pb
from epm.requests.v1 import managed_device_service_pb2 as devices_pb
from epm.requests.v1 import provisioning_service_pb2 as provisioning_pb
from epm.requests.v1 import subscription_service_pb2 as subscriptions_pb
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from services.common.enums import graph_names

from . import (
    batch,
    console,
    elevation_requests,
    elevations,
    graph,
    graphjson,
    intune_roles,
    managed_devices,
    provisioning,
    query,
    reputation,
    role_assignments,
    siem,
    subscriptions,
    support,
)

ROOT, METADATA = "/beta", "/beta/$metadata"  # the service document and the CSDL (gateway/metadata.py)
DM = "/beta/deviceManagement"
REQ, ELEV, AUDIT, DEV = elevation_requests.PATH, elevations.PATH, elevation_requests.AUDIT_PATH, managed_devices.PATH
ROLES, PIM, SEC, SUB, MMD = role_assignments.PATH, role_assignments.ROLES_PATH, reputation.SECURITY, \
    subscriptions.PATH, support.PATH
RDEF, RASG = intune_roles.DEFINITIONS, intune_roles.ASSIGNMENTS
# Collections whose members are also addressed with OData key syntax (graph.member): .../x('{id}'), .../x({id})
KEY_SYNTAX = (ELEV, REQ, AUDIT, ROLES, PIM, DEV, SUB, RDEF, RASG)
LIST = ("filter", "select", "orderby", "top", "skip", "count", "skiptoken")
SEARCHED = (*LIST, "search")  # lists with $search (gateway/query.py search_filter)
NULLABLE_STRING = {"type": ["string", "null"]}


def _nullable(schema: dict) -> dict:
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    return {**schema, "type": [schema["type"], "null"]}


def _field_schema(field: FieldDescriptor) -> dict:
    if field.message_type is not None and field.message_type.full_name == graphjson.TIMESTAMP:
        return _nullable({"type": "string", "format": "date-time"})
    if field.message_type is not None:
        return {"anyOf": [message(field.message_type), {"type": "null"}]}
    if field.enum_type is not None:
        return _nullable({"type": "string", "enum": list(graph_names(field.enum_type).values())})
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _nullable({"type": "boolean"})
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        return _nullable({"type": "integer", "minimum": graphjson.INT32[0], "maximum": graphjson.INT32[1]})
    return NULLABLE_STRING


@functools.cache
def _message(descriptor: Descriptor, required: tuple[str, ...], skip: frozenset[str]) -> dict:
    """A Graph object as graphjson.from_json reads it: its settable properties (repeated ones cannot be set), null
    for any; anything else is a 400 (but annotations, @..., which are ignored and left out here)."""
    names = {f.json_name: f for f in descriptor.fields if not f.is_repeated and f.json_name not in skip}
    types = (graphjson.graph_type(descriptor), *graphjson.LEGACY_NAMES.get(descriptor.name, ()))
    kinds = [f"{mark}microsoft.graph.{t}" for t in types for mark in ("#", "")]
    return {"type": "object", "title": f"microsoft.graph.{types[0]}", "required": list(required),
            "properties": {"@odata.type": {"enum": kinds},
                           **{name: _field_schema(field) for name, field in names.items()}},
            "additionalProperties": False}


def message(descriptor: Descriptor, required: tuple[str, ...] = (), skip: frozenset[str] = frozenset()) -> dict:
    return _message(descriptor, required, frozenset(skip))


def strings(required: tuple[str, ...] = (), *names: str, pascal: bool = False) -> dict:
    """An object of optional string (or null) properties; MMD bodies also take the PascalCase names."""
    names = (*required, *names)
    properties = {n: NULLABLE_STRING for n in names}
    if pascal:
        properties |= {n[0].upper() + n[1:]: NULLABLE_STRING for n in names}
    return {"type": "object", "required": list(required), "properties": properties,
            "additionalProperties": False}


READ_ONLY_EVENT = frozenset({"id"})
REQUEST = message(elevation_requests.pb.ElevationRequest.DESCRIPTOR, ("requestedOnDeviceId", "applicationDetail"),
                  elevation_requests.SERVER_SET | elevation_requests.NOT_GRAPH)
REVIEW = strings((), "reviewerJustification")
DEVICE = message(devices_pb.ManagedDevice.DESCRIPTOR, ("deviceName",), managed_devices.NOT_GRAPH)
SUBSCRIPTION_FIELDS = subscriptions.READ_ONLY - {"id"}
SUBSCRIPTION = message(subscriptions_pb.Subscription.DESCRIPTOR,
                       ("changeType", "notificationUrl", "resource", "expirationDateTime"), SUBSCRIPTION_FIELDS)
SUBSCRIPTION_PATCH = message(subscriptions_pb.Subscription.DESCRIPTOR, (), subscriptions.READ_ONLY)
LOOKUP = {"type": "object", "required": ["hashes"], "additionalProperties": False,
          "properties": {"hashes": {"type": "array", "items": {"type": "string"}, "maxItems": reputation.MAX_LOOKUP}}}
SELF_ACTIVATE = strings(("reason",), "ticketNumber", "ticketSystem")
SELF_ACTIVATE["properties"]["duration"] = {"type": ["string", "number", "null"]}
EMPTY = {"type": "object", "additionalProperties": False}
# A role's navigations and actions, under /privilegedRoles/{roleId} and an assignment's roleInfo
ROLE_NAVIGATIONS = (
    ("GET", "/settings", "What activating the role takes", (), None, ""),
    ("GET", "/summary", "Counts of the role's assignments", (), None, ""),
    ("GET", "/assignments", "The role's assignments", LIST + ("expand",), None, ""),
    ("GET", "/assignments/$count", "Count the role's assignments", ("filter",), None, ""),
    ("GET", "/assignments/{assignmentId}", "One assignment of the role", ("select", "expand"), None, ""),
    ("POST", "/selfActivate", "Activate an eligible role", (), SELF_ACTIVATE, "409"),
    ("POST", "/selfDeactivate", "End the caller's own activation of the role now", (), EMPTY, "409"),
)
REQUEST_IDS = {"type": "array", "items": {"type": "string"}}
BATCH = {"type": "object", "required": ["requests"], "additionalProperties": False, "properties": {"requests": {
    "type": "array", "minItems": 1, "maxItems": batch.MAX_REQUESTS, "items": {
        "type": "object", "required": ["id", "method", "url"], "additionalProperties": False, "properties": {
            "id": {"type": "string", "minLength": 1}, "method": {"enum": list(batch.METHODS)},
            "url": {"type": "string", "minLength": 1, "description": "Relative to /beta."},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"description": "JSON, or a string: base64."},
            "dependsOn": REQUEST_IDS, "depends_on": REQUEST_IDS}}}}}
STRING_LIST = {"type": ["array", "null"], "items": {"type": "string"}}
ROLE_ASSIGNMENT = {"type": "object", "additionalProperties": False, "properties": {
    "@odata.type": {"enum": [f"{mark}microsoft.graph.{t}" for t in (intune_roles.ASSIGNMENT_TYPE, "roleAssignment")
                             for mark in ("#", "")]},
    **{name: NULLABLE_STRING for name in intune_roles.STRINGS}, **{name: STRING_LIST for name in intune_roles.LISTS},
    **{name: {"description": "Ignored: set by the server."} for name in intune_roles.READ_ONLY},
    intune_roles.BIND: {"type": "string", "description": "The URL of a role definition (fixed once created)."},
    "roleDefinition": {"type": ["object", "null"], "properties": {"id": {"type": "string"}},
                       "description": "The role definition, by id: the same as the binding."}}}
ROLE_DEFINITION = {"type": "object", "description": "Refused: the built-in role definitions are the only ones."}
INGEST = {"type": "object", "required": ["value"], "properties": {"value": {
    "type": "array", "minItems": 1, "maxItems": elevations.INGEST_MAX,
    "items": message(events_pb.ElevationEvent.DESCRIPTOR, ("deviceId", "eventDateTime"), READ_ONLY_EVENT)}}}

# method, path, summary, query options, request body, success status, extra error statuses (beside the common ones)
ROUTES: list[tuple[str, str, str, tuple[str, ...], dict | None, int, str]] = [
    ("GET", "/healthz", "Liveness.", (), None, 200, ""),
    ("GET", "/readyz", "Readiness: every backend's gRPC health (503 when one is not serving).", (), None, 200, ""),
    ("GET", "/openapi.json", "This document.", (), None, 200, ""),
    ("GET", ROOT, "The OData service document: the entity sets and singletons.", (), None, 200, ""),
    ("GET", METADATA, "The CSDL (OData v4 EDMX) of the entity sets, types, actions and functions served here.", (),
     None, 200, ""),
    ("GET", "/console/", "The reviewer console (HTML; its API calls carry the token).", (), None, 200, ""),
    ("GET", "/console/config.json", "The console's sign-in configuration.", (), None, 200, ""),
    ("GET", "/console/{name}", "A file of the reviewer console.", (), None, 200, "404"),
    ("POST", ELEV, "Report an elevation event.", (), message(events_pb.ElevationEvent.DESCRIPTOR,
                                                              ("deviceId", "eventDateTime"), READ_ONLY_EVENT), 201, ""),
    ("POST", ELEV + "/ingest", "Report up to 1000 elevation events in one batch (extension).", (), INGEST, 200, ""),
    ("GET", ELEV, "List elevation events.", SEARCHED, None, 200, ""),
    ("GET", ELEV + "/$count", "Count elevation events.", ("filter", "search"), None, 200, ""),
    ("GET", ELEV + "/summary", "Report counts (extension).", ("filter", "top"), None, 200, ""),
    ("GET", ELEV + "/{id}", "Get an elevation event.", ("select",), None, 200, ""),
    ("PATCH", ELEV + "/{id}", "Change an elevation event; its key (id, deviceId, eventDateTime) may come along "
     "unchanged.", (), message(events_pb.ElevationEvent.DESCRIPTOR), 200, "409"),
    ("DELETE", ELEV + "/{id}", "Delete an elevation event.", (), None, 204, ""),
    ("POST", REQ, "Ask for an elevation.", (), REQUEST, 201, "409"),
    ("GET", REQ, "List elevation requests.", SEARCHED, None, 200, ""),
    ("GET", REQ + "/$count", "Count elevation requests.", ("filter", "search"), None, 200, ""),
    ("GET", REQ + "/{id}", "Get an elevation request.", ("select",), None, 200, ""),
    ("PATCH", REQ + "/{id}", "Change requestJustification while pending (If-Match optional); the other "
     "properties may come along unchanged.", (),
     message(elevation_requests.pb.ElevationRequest.DESCRIPTOR, (), elevation_requests.NOT_GRAPH), 200, "409 412"),
    ("DELETE", REQ + "/{id}", "Delete an elevation request (If-Match optional).", (), None, 204, "409 412"),
    ("POST", REQ + "/{id}/{action}", "Approve, deny or revoke (If-Match optional).", (), REVIEW, 200, "409 412"),
    ("POST", REQ + "/{id}/getAllElevationRequests", "Every request the caller may see.", LIST, None, 200, ""),
    ("GET", REQ + "/{id}/analyze", "The file analysis of a request.", (), None, 200, ""),
    ("POST", REQ + "/{id}/analyze", "The file analysis of a request.", (), EMPTY, 200, ""),
    ("GET", AUDIT, "List audit events.", LIST, None, 200, ""),
    ("GET", AUDIT + "/$count", "Count audit events.", ("filter",), None, 200, ""),
    ("GET", AUDIT + "/{id}", "Get an audit event.", ("select",), None, 200, ""),
    ("POST", ROLES, "Assign a role.", (), strings(("userId", "roleId")), 201, "409"),
    ("GET", ROLES, "List role assignments ($expand=roleInfo).", LIST + ("expand",), None, 200, ""),
    ("GET", ROLES + "/$count", "Count role assignments.", ("filter",), None, 200, ""),
    ("GET", ROLES + "/my()", "The caller's role assignments.", LIST + ("expand",), None, 200, ""),
    ("GET", ROLES + "/myPermissions()", "The caller's elevation request rights and the roles granting them.", (), None,
     200, ""),
    ("GET", ROLES + "/{id}", "Get a role assignment ($expand=roleInfo).", ("select", "expand"), None, 200, ""),
    ("PATCH", ROLES + "/{id}", "Move the end of an activation (expirationDateTime); the other properties may come "
     "along unchanged.", (), message(role_assignments.pb.RoleAssignment.DESCRIPTOR), 200, "409"),
    ("DELETE", ROLES + "/{id}", "Remove a role assignment.", (), None, 204, "409"),
    ("POST", ROLES + "/{id}/makePermanent", "Make an assignment permanent.", (),
     strings((), "reason", "ticketNumber", "ticketSystem"), 200, "409"),
    ("POST", ROLES + "/{id}/makeEligible", "Make an assignment eligible.", (), EMPTY, 200, "409"),
    ("GET", ROLES + "/{id}/roleInfo", "The role of an assignment.", ("select",), None, 200, ""),
    *[(method, ROLES + "/{id}/roleInfo" + rest, text + " (of the assignment's role).", options, body, 200, errors)
      for method, rest, text, options, body, errors in ROLE_NAVIGATIONS],
    ("GET", PIM, "The Intune roles, then the directory roles (read-only).", ("select", "count"), None, 200, ""),
    ("GET", PIM + "/$count", "Count the roles.", (), None, 200, ""),
    ("GET", PIM + "/{roleId}", "Get a role.", ("select",), None, 200, ""),
    *[(method, PIM + "/{roleId}" + rest, text + ".", options, body, 200, errors)
      for method, rest, text, options, body, errors in ROLE_NAVIGATIONS],
    ("GET", RDEF, "Intune role definitions (the built-in roles).", LIST, None, 200, ""),
    ("POST", RDEF, "Refused: custom role definitions are not supported.", (), ROLE_DEFINITION, 201, ""),
    ("GET", RDEF + "/$count", "Count Intune role definitions.", ("filter",), None, 200, ""),
    ("GET", RDEF + "/{roleDefinitionId}", "Get an Intune role definition.", ("select",), None, 200, ""),
    ("PATCH", RDEF + "/{roleDefinitionId}", "Refused: built-in role definitions cannot be modified.", (),
     ROLE_DEFINITION, 200, ""),
    ("DELETE", RDEF + "/{roleDefinitionId}", "Refused: built-in role definitions cannot be modified.", (), None, 204,
     ""),
    ("GET", RASG, "Intune role assignments.", LIST, None, 200, ""),
    ("POST", RASG, "Assign an Intune role to members (its rights as a PIM assignment's).", (), ROLE_ASSIGNMENT,
     201, "404"),
    ("GET", RASG + "/$count", "Count Intune role assignments.", ("filter",), None, 200, ""),
    ("GET", RASG + "/{id}", "Get an Intune role assignment.", ("select",), None, 200, ""),
    ("PATCH", RASG + "/{id}", "Change an Intune role assignment (members, names, scopes).", (), ROLE_ASSIGNMENT,
     200, ""),
    ("DELETE", RASG + "/{id}", "Remove an Intune role assignment.", (), None, 204, ""),
    ("GET", RASG + "/{id}/roleDefinition", "The role definition of an Intune role assignment.", ("select",), None,
     200, ""),
    ("POST", provisioning.ENABLE, "Enable Endpoint Privilege Management for the tenant (recorded and audited; "
     "nothing waits for it).", (), EMPTY, 204, ""),
    ("GET", provisioning.STATUS, "The tenant's Endpoint Privilege Management provisioning status.", ("select",), None,
     200, ""),
    ("PATCH", provisioning.STATUS, "Takes the status as it is (licenseType notPaid, not onboarded to Microsoft "
     "Managed Platform); a change is a 400.", (),
     message(provisioning_pb.ProvisioningStatus.DESCRIPTOR, (), provisioning.NOT_GRAPH | {"id"}), 200, ""),
    ("POST", SEC + "/fileReputations/analyze", "Analyze a described file.", (),
     message(reputation_pb.AnalyzeFileRequest.DESCRIPTOR), 200, ""),
    ("POST", SEC + "/fileReputations/lookup", "Feed data for many hashes.", (), LOOKUP, 200, ""),
    ("GET", SEC + "/fileReputations/{sha256}", "Analyze a file by hash.", ("fileName", "filePath"), None, 200, ""),
    ("GET", SEC + "/publisherRules", "List publisher rules.", (), None, 200, ""),
    ("POST", SEC + "/publisherRules", "Trust or block a publisher.", (),
     message(reputation_pb.PublisherRule.DESCRIPTOR, ("kind", "value"), frozenset({"id", "createdDateTime"})),
     201, "409"),
    ("GET", SEC + "/publisherRules/{id}", "Get a publisher rule.", (), None, 200, ""),
    ("DELETE", SEC + "/publisherRules/{id}", "Delete a publisher rule.", (), None, 204, ""),
    ("GET", SEC + "/reputationFeeds", "Imported feeds and versions.", (), None, 200, ""),
    ("GET", siem.ROOT + "/auditEvents/stream", "The audit trail as JSON lines.", ("cursor", "follow"), None, 200, ""),
    ("GET", siem.ROOT + "/privilegeManagementElevations/stream", "Elevation events as JSON lines.",
     ("cursor", "follow"), None, 200, ""),
    ("POST", DEV, "Register a managed device.", (), DEVICE, 201, "409"),
    ("GET", DEV, "List managed devices.", LIST, None, 200, ""),
    ("GET", DEV + "/$count", "Count managed devices.", ("filter",), None, 200, ""),
    ("GET", DEV + "/{id}", "Get a managed device.", ("select",), None, 200, ""),
    ("DELETE", DEV + "/{id}", "Delete a managed device.", (), None, 204, ""),
    ("POST", MMD, "MMD: ask for an elevation.", (),
     strings(("partnerTicketId", "deviceName", "title", "planOfAction"), "category", "subcategory", pascal=True),
     201, "409"),
    ("GET", MMD, "MMD: list requests.", ("filter", "orderby", "top", "skip", "skiptoken"), None, 200, ""),
    ("GET", MMD + "/{id}", "MMD: get a request.", (), None, 200, ""),
    ("PATCH", MMD + "/{id}", "MMD: close a request.", (), strings(("actionsTaken",), pascal=True), 204, ""),
    ("POST", batch.PATH, "Up to 20 requests in one call (Graph JSON batching); each item has its own status.", (),
     BATCH, 200, ""),
    ("POST", SUB, "Subscribe to change notifications (after the validation handshake).", (), SUBSCRIPTION, 201,
     "409"),
    ("GET", SUB, "The caller's subscriptions.", (), None, 200, ""),
    ("GET", SUB + "/{id}", "Get a subscription.", (), None, 200, ""),
    ("PATCH", SUB + "/{id}", "Renew, move or resume a subscription.", (), SUBSCRIPTION_PATCH, 200, "409"),
    ("DELETE", SUB + "/{id}", "Delete a subscription.", (), None, 204, ""),
]

# Updates that answer Prefer: return=minimal with a 204 (as every Graph create does)
MINIMAL_PATCH = {("PATCH", REQ + "/{id}"), ("PATCH", ELEV + "/{id}")}
# Actions whose body may be left out
OPTIONAL_BODY = {("POST", REQ + "/{id}/{action}"), ("POST", REQ + "/{id}/analyze"), ("POST", ROLES),
                 ("POST", ROLES + "/{id}/makePermanent"), ("POST", ROLES + "/{id}/makeEligible"),
                 ("POST", PIM + "/{roleId}/selfActivate"), ("POST", PIM + "/{roleId}/selfDeactivate"),
                 ("POST", ROLES + "/{id}/roleInfo/selfActivate"), ("POST", ROLES + "/{id}/roleInfo/selfDeactivate"),
                 ("POST", provisioning.ENABLE)}
OPTIONS = {
    "filter": {"type": "string", "description": "OData $filter, e.g. status eq 'pending'."},
    "select": {"type": "string", "description": "Comma-separated property names."},
    "orderby": {"type": "string", "description": "property [asc|desc], comma-separated."},
    "top": {"type": "integer", "minimum": 1, "maximum": query.MAX_TOP},
    "skip": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "count": {"type": "boolean", "description": "Include @odata.count."},
    "skiptoken": {"type": "string", "description": "From @odata.nextLink."},
    "search": {"type": "string", "description": 'Quoted terms joined by AND / OR, e.g. "git" or "upn:adele"; '
               "needs the header ConsistencyLevel: eventual."},
    "expand": {"type": "string", "description": "Navigation properties to include, e.g. roleInfo."},
}
PLAIN = {  # query parameters that are not OData options
    "fileName": {"type": "string"}, "filePath": {"type": "string"},
    "cursor": {"type": "string",
               "description": "The last cursor read; empty: the start of the feed; latest: from now on."},
    "follow": {"type": "boolean", "description": "Keep streaming once caught up."},
}
PATH_PARAMETERS = {"action": {"type": "string", "enum": ["approve", "deny", "revoke"]}}
COMMON_ERRORS = (400, 401, 403, 429, 503, 504)
ERROR_DESCRIPTIONS = {400: "Bad request", 401: "Missing or invalid token", 403: "Missing permission",
                      404: "Not found", 409: "Conflict", 412: "Stale ETag", 413: "Body too large",
                      415: "Body not JSON", 429: "Throttled", 503: "Backend unavailable", 504: "Backend timeout"}
OPEN = ("/healthz", "/readyz", "/openapi.json", "/console/", "/console/config.json", "/console/{name}", ROOT,
        METADATA)


def _graph_error(mmd: bool) -> dict:
    if mmd:
        return {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
    inner = {"type": "object", "required": ["date", "request-id", "client-request-id"],
             "properties": {k: {"type": "string"} for k in ("date", "request-id", "client-request-id")}}
    return {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message", "innerError"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "innerError": inner}}}}


def _aliases(path: str) -> list[str]:
    """Every form the gateway registers `path` under: a member's in OData key syntax too, a function's (name())
    by its bare name too."""
    forms = [path]
    for base in KEY_SYNTAX:
        if path.startswith(base + "/{"):
            name, _, rest = path[len(base) + 2:].partition("}")
            forms = [item + rest for item in graph.member(base, name)]
    if path.endswith("()"):
        forms = [alias for form in forms for alias in graph.function(form.removesuffix("()"))]
    return forms


def _parameter(name: str, where: str) -> dict:
    if where == "path":
        return {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS.get(name, {"type": "string"})}
    if name in OPTIONS:
        return {"name": "$" + name, "in": "query", "description": "Also accepted without the $.",
                "schema": OPTIONS[name]}
    return {"name": name, "in": "query", "schema": PLAIN[name]}


def _success(status: int, path: str) -> dict:
    if status == 204:
        return {"description": "No content"}
    if path.endswith("/$count"):
        media = {"text/plain": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    elif path.startswith("/console/") and not path.endswith(".json"):
        media = {t: {"schema": {"type": "string"}} for t in console.TYPES.values()}
    elif path == METADATA:
        media = {"application/xml": {"schema": {"type": "string"}}}
    elif path.endswith("/stream"):
        media = {siem.NDJSON: {"schema": {"type": "string"}}}
    else:
        media = {"application/json": {"schema": {"type": "object"}}}
    return {"description": "Created" if status == 201 else "OK", "content": media}


def _operation(path: str, summary: str, options, body, status: int, extra: str, body_optional: bool,
               minimal: bool) -> dict:
    names = re.findall(r"\{(\w+)\}", path)
    operation: dict = {"summary": summary,
                       "parameters": [_parameter(n, "path") for n in names] + [_parameter(n, "query") for n in options],
                       "responses": {str(status): _success(status, path)}}
    if minimal:
        operation["responses"]["204"] = {"description": "No content (Prefer: return=minimal)"}
    if path in OPEN:
        operation["security"] = []
        if names:
            operation["responses"]["404"] = {"description": "Not found",
                                             "content": {"application/json": {"schema": {"type": "object"}}}}
        if path == "/readyz":
            operation["responses"]["503"] = {"description": "Not ready",
                                             "content": {"application/json": {"schema": {"type": "object"}}}}
        return operation
    if body is not None:
        operation["requestBody"] = {"required": not body_optional,
                                    "content": {"application/json": {"schema": body}}}
    codes = {*COMMON_ERRORS, *(int(c) for c in extra.split()), *([404] if names else []),
             *([413, 415] if body is not None else [])}
    error = {"$ref": "#/components/schemas/" + ("MmdError" if path.startswith(support.PREFIX) else "GraphError")}
    for code in sorted(codes):
        operation["responses"][str(code)] = {"description": ERROR_DESCRIPTIONS[code],
                                             "content": {"application/json": {"schema": error}}}
    return operation


@functools.cache
def document() -> dict:
    paths: dict = {}
    for method, path, summary, options, body, status, extra in ROUTES:
        for alias in _aliases(path):
            minimal = (status == 201 and path.startswith("/beta/")) or (method, path) in MINIMAL_PATCH
            paths.setdefault(alias, {})[method.lower()] = _operation(
                alias, summary, options, body, status, extra, (method, path) in OPTIONAL_BODY, minimal)
    return {
        "openapi": "3.1.0",
        "info": {"title": "epm gateway", "version": "1.0.0",
                 "description": "Microsoft Graph style Endpoint Privilege Management API (beta paths, OData, Graph "
                                "errors) and the MMD support API. Bodies may also carry annotations (@...), which "
                                "are ignored. Prefer (answered with Preference-Applied): include-unknown-enum-members "
                                "(statuses after unknownFutureValue by name), odata.maxpagesize=N, return=minimal."},
        "paths": paths,
        "components": {"schemas": {"GraphError": _graph_error(False), "MmdError": _graph_error(True)},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"bearer": []}],
    }


async def serve(request: web.Request) -> web.Response:
    return web.json_response(document())
