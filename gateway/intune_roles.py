"""/beta/deviceManagement/roleDefinitions and /roleAssignments (Intune RBAC) -> epm.requests.v1.IntuneRoleService.

A role assignment's role definition is bound as Graph binds a navigation property: `roleDefinition@odata.bind`
(the definition's URL, as Intune scripts send it), or `roleDefinition: {"id": ...}` (as the SDK's model serialises
it); it is read back at /roleAssignments/{id}/roleDefinition.
"""

from __future__ import annotations

import re

from aiohttp import web
from epm.requests.v1 import intune_role_service_pb2 as pb
from epm.requests.v1 import intune_role_service_pb2_grpc as pb_grpc

from . import query
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

DEFINITIONS = "/beta/deviceManagement/roleDefinitions"
ASSIGNMENTS = "/beta/deviceManagement/roleAssignments"
DEFINITION_SET, ASSIGNMENT_SET = "deviceManagement/roleDefinitions", "deviceManagement/roleAssignments"
DEFINITION_TYPE, ASSIGNMENT_TYPE = "deviceAndAppManagementRoleDefinition", "deviceAndAppManagementRoleAssignment"
DEFINITION_PROPERTIES = frozenset({"id", "displayName", "description", "isBuiltIn", "isBuiltInRoleDefinition",
                                   "rolePermissions", "permissions", "roleScopeTagIds"})
ASSIGNMENT_PROPERTIES = frozenset({"id", "displayName", "description", "members", "scopeMembers", "scopeType",
                                   "resourceScopes", "roleScopeTagIds"})
STRINGS = {"displayName": "display_name", "description": "description"}
LISTS = {"members": "members", "scopeMembers": "scope_members", "resourceScopes": "resource_scopes",
         "roleScopeTagIds": "role_scope_tag_ids"}
READ_ONLY = frozenset({"id", "scopeType", "roleScopeTags"})  # accepted as the server has them
BIND = "roleDefinition@odata.bind"
_BOUND = re.compile(r"(?:.*/)?roleDefinitions(?:/([^/()']+)|\('?([^/()']+?)'?\))")


def _stub(request: web.Request) -> pb_grpc.IntuneRoleServiceStub:
    return stub(request, "requests", pb_grpc.IntuneRoleServiceStub)


def _definition_json(definition: pb.IntuneRoleDefinition) -> dict:
    permissions = [{"actions": [], "resourceActions": [{
        "allowedResourceActions": list(definition.allowed_resource_actions), "notAllowedResourceActions": []}]}]
    return {"@odata.type": f"#microsoft.graph.{DEFINITION_TYPE}", "id": definition.id,
            "displayName": definition.display_name, "description": definition.description,
            "isBuiltIn": definition.is_built_in, "isBuiltInRoleDefinition": definition.is_built_in,
            "rolePermissions": permissions, "permissions": permissions, "roleScopeTagIds": ["0"]}


def _assignment_json(assignment: pb.IntuneRoleAssignment) -> dict:
    return {"@odata.type": f"#microsoft.graph.{ASSIGNMENT_TYPE}", "id": assignment.id,
            "displayName": assignment.display_name, "description": assignment.description,
            "members": list(assignment.members), "scopeMembers": list(assignment.scope_members),
            "scopeType": "resourceScope", "resourceScopes": list(assignment.resource_scopes),
            "roleScopeTagIds": list(assignment.role_scope_tag_ids)}


def _bound_definition(body: dict) -> str | None:
    """The id of the role definition the body binds, None when it binds none."""
    if BIND in body:
        link = body[BIND]
        found = _BOUND.fullmatch(link) if isinstance(link, str) else None
        if not found:
            raise bad_request(f"'{BIND}' must be the URL of a role definition, e.g. "
                              "https://graph.microsoft.com/beta/deviceManagement/roleDefinitions/{id}.")
        return found.group(1) or found.group(2)
    if (definition := body.get("roleDefinition")) is not None:
        if not isinstance(definition, dict) or not isinstance(definition.get("id"), str):
            raise bad_request("Property 'roleDefinition' must be an object with the id of a role definition.")
        return definition["id"]
    return None


async def _object(request: web.Request) -> dict:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


async def _assignment_body(request: web.Request) -> tuple[pb.IntuneRoleAssignment, list[str]]:
    """The assignment a POST or PATCH body describes, and the Graph names of the properties it sets."""
    body = await _object(request)
    kind = body.get("@odata.type")
    if kind is not None and (not isinstance(kind, str) or kind.lstrip("#").removeprefix("microsoft.graph.") not in
                             (ASSIGNMENT_TYPE, "roleAssignment")):
        raise bad_request(f"The @odata.type '{kind}' is not microsoft.graph.{ASSIGNMENT_TYPE}.")
    given, fields = pb.IntuneRoleAssignment(), []
    for name, value in body.items():
        if name.startswith("@") or name in (BIND, "roleDefinition") or name in READ_ONLY:
            continue  # annotations, the binding (below), and what the server sets, which a client cannot
        if name in STRINGS and (value is None or isinstance(value, str)):
            setattr(given, STRINGS[name], value or "")
        elif name in LISTS and (value is None or isinstance(value, list) and all(isinstance(v, str) for v in value)):
            getattr(given, LISTS[name])[:] = value or []
        elif name in STRINGS or name in LISTS:
            raise bad_request(f"Property '{name}' must be {'a string' if name in STRINGS else 'a list of strings'}.")
        else:
            raise bad_request(f"Property '{name}' does not exist on type 'microsoft.graph.{ASSIGNMENT_TYPE}'.")
        fields.append(name)
    if (definition := _bound_definition(body)) is not None:
        given.role_definition_id = definition
        fields.append("roleDefinition")
    return given, fields


async def list_definitions(request: web.Request) -> web.Response:
    return await list_collection(request, _stub(request).ListIntuneRoleDefinitions,
                                 pb.ListIntuneRoleDefinitionsRequest, "role_definitions", _definition_json,
                                 DEFINITION_SET, DEFINITION_PROPERTIES)


async def count_definitions(request: web.Request) -> web.Response:
    return await count_collection(request, _stub(request).CountIntuneRoleDefinitions,
                                  pb.CountIntuneRoleDefinitionsRequest, DEFINITION_PROPERTIES)


async def get_definition(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), DEFINITION_PROPERTIES)
    definition = await _stub(request).GetIntuneRoleDefinition(
        pb.GetIntuneRoleDefinitionRequest(id=request.match_info["roleDefinitionId"]), **call_options(request))
    return reply(entity_body(request, DEFINITION_SET, _definition_json(definition), options.select))


async def create_definition(request: web.Request) -> web.Response:
    await _object(request)
    created = await _stub(request).CreateIntuneRoleDefinition(pb.CreateIntuneRoleDefinitionRequest(),
                                                              **call_options(request))  # refused: built-ins only
    return reply(entity_body(request, DEFINITION_SET, _definition_json(created)), status=201)


async def update_definition(request: web.Request) -> web.Response:
    await _object(request)
    updated = await _stub(request).UpdateIntuneRoleDefinition(  # refused: built-in ones cannot be modified
        pb.UpdateIntuneRoleDefinitionRequest(id=request.match_info["roleDefinitionId"]), **call_options(request))
    return reply(entity_body(request, DEFINITION_SET, _definition_json(updated)))


async def delete_definition(request: web.Request) -> web.Response:
    await _stub(request).DeleteIntuneRoleDefinition(  # refused: built-in ones cannot be modified
        pb.DeleteIntuneRoleDefinitionRequest(id=request.match_info["roleDefinitionId"]), **call_options(request))
    return web.Response(status=204)


async def create_assignment(request: web.Request) -> web.Response:
    given, _ = await _assignment_body(request)
    created = await _stub(request).CreateIntuneRoleAssignment(
        pb.CreateIntuneRoleAssignmentRequest(role_assignment=given), **call_options(request))
    return located(request, reply(entity_body(request, ASSIGNMENT_SET, _assignment_json(created)), status=201),
                   ASSIGNMENT_SET, created.id)


async def list_assignments(request: web.Request) -> web.Response:
    return await list_collection(request, _stub(request).ListIntuneRoleAssignments,
                                 pb.ListIntuneRoleAssignmentsRequest, "role_assignments", _assignment_json,
                                 ASSIGNMENT_SET, ASSIGNMENT_PROPERTIES)


async def count_assignments(request: web.Request) -> web.Response:
    return await count_collection(request, _stub(request).CountIntuneRoleAssignments,
                                  pb.CountIntuneRoleAssignmentsRequest, ASSIGNMENT_PROPERTIES)


async def _assignment(request: web.Request) -> pb.IntuneRoleAssignment:
    return await _stub(request).GetIntuneRoleAssignment(
        pb.GetIntuneRoleAssignmentRequest(id=request.match_info["id"]), **call_options(request))


async def get_assignment(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), ASSIGNMENT_PROPERTIES)
    return reply(entity_body(request, ASSIGNMENT_SET, _assignment_json(await _assignment(request)), options.select))


async def assignment_definition(request: web.Request) -> web.Response:
    """The navigation roleDefinition of an assignment."""
    options = query.parse(request.query, frozenset({"select"}), DEFINITION_PROPERTIES)
    assignment = await _assignment(request)
    definition = await _stub(request).GetIntuneRoleDefinition(
        pb.GetIntuneRoleDefinitionRequest(id=assignment.role_definition_id), **call_options(request))
    return reply(entity_body(request, f"{ASSIGNMENT_SET}('{assignment.id}')/roleDefinition",
                             _definition_json(definition), options.select))


async def update_assignment(request: web.Request) -> web.Response:
    given, fields = await _assignment_body(request)
    if not fields:
        raise bad_request("The request body names no property that can be changed.")
    given.id = request.match_info["id"]
    updated = await _stub(request).UpdateIntuneRoleAssignment(
        pb.UpdateIntuneRoleAssignmentRequest(role_assignment=given, update_mask=fields), **call_options(request))
    return reply(entity_body(request, ASSIGNMENT_SET, _assignment_json(updated)))


async def delete_assignment(request: web.Request) -> web.Response:
    await _stub(request).DeleteIntuneRoleAssignment(
        pb.DeleteIntuneRoleAssignmentRequest(id=request.match_info["id"]), **call_options(request))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get(DEFINITIONS, list_definitions)
    app.router.add_post(DEFINITIONS, create_definition)
    app.router.add_get(DEFINITIONS + "/$count", count_definitions)
    for item in member(DEFINITIONS, "roleDefinitionId"):  # the same in every tenant (not an {id}: no tenant's)
        app.router.add_get(item, get_definition)
        app.router.add_patch(item, update_definition)
        app.router.add_delete(item, delete_definition)
    app.router.add_get(ASSIGNMENTS, list_assignments)
    app.router.add_post(ASSIGNMENTS, create_assignment)
    app.router.add_get(ASSIGNMENTS + "/$count", count_assignments)
    for item in member(ASSIGNMENTS):
        app.router.add_get(item, get_assignment)
        app.router.add_patch(item, update_assignment)
        app.router.add_delete(item, delete_assignment)
        app.router.add_get(item + "/roleDefinition", assignment_definition)
