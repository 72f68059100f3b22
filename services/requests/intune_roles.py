"""Reviewer rights the Intune way: Graph's deviceManagement/roleDefinitions and roleAssignments.

The role definitions are the built-in roles of roles.py, read only. An assignment binds one of them to members
(Entra ID user object ids); each member holds the role as a permanent PIM assignment would: the view
requests.role_holders (migration 0008) is every holding of either kind, and roles.active_roles reads it. Writes take
Graph's DeviceManagementRBAC.ReadWrite.All and, for a signed-in user, the directory roles PIM writes take.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime

import asyncpg
import grpc
from epm.requests.v1 import intune_role_service_pb2 as pb
from epm.requests.v1 import intune_role_service_pb2_grpc as pb_grpc

from ..common import errors, listing, paging
from ..common.auth import Principal, TokenVerifier, authorize
from ..common.odata import Field, ODataError
from . import roles
from .store import Actor, audit

READ = ("DeviceManagementRBAC.Read.All", "DeviceManagementRBAC.ReadWrite.All")
WRITE = ("DeviceManagementRBAC.ReadWrite.All",)
# Intune's resource actions for what roles.py's permissions allow (Intune's "Endpoint Privilege Management
# Elevation Requests" permission: View elevation requests, Modify elevation requests)
RESOURCE_ACTIONS = {"elevationRequests.view": "Microsoft.Intune_EndpointPrivilegeManagement_ViewElevationRequests",
                    "elevationRequests.modify": "Microsoft.Intune_EndpointPrivilegeManagement_ModifyElevationRequests"}
RESOURCE_TYPE = "deviceAndAppManagementRoleAssignment"
DEFAULT_SCOPE_TAGS = ("0",)  # Intune's built-in scope tag "Default"
MAX_NAME, MAX_DESCRIPTION, MAX_IDS = 128, 1024, 100
WRITABLE = {"displayName": "display_name", "description": "description", "members": "members",
            "scopeMembers": "scope_members", "resourceScopes": "resource_scopes",
            "roleScopeTagIds": "role_scope_tag_ids"}
_SCOPE_TAG = re.compile(r"[0-9]{1,10}")

# --- SQL ---------------------------------------------------------------------------------------------

DEFINITIONS = ("(SELECT id::text AS id, name, description, permissions, true AS is_built_in FROM requests.roles) "
               "AS d WHERE true")
DEFINITION = "SELECT id::text AS id, name, description, permissions FROM requests.roles WHERE id = $1"
DEFINITION_FIELDS = {"id": Field("id", "string", casefold=True), "displayName": Field("name", "string"),
                     "description": Field("description", "string"), "isBuiltIn": Field("is_built_in", "bool")}
_ASSIGNMENT_COLUMNS = ("a.id::text AS id, a.tenant_id, a.role_id::text AS role_id, a.display_name, a.description, "
                       "a.members, a.scope_members, a.resource_scopes, a.role_scope_tag_ids")
ASSIGNMENTS = ("(SELECT " + _ASSIGNMENT_COLUMNS + " FROM requests.intune_role_assignments a) "  # nosec B608 # constants
               "AS a WHERE tenant_id = $1")
ASSIGNMENT_FIELDS = {"id": Field("id", "string", casefold=True), "displayName": Field("display_name", "string"),
                     "description": Field("description", "string")}
ASSIGNMENT = ("SELECT " + _ASSIGNMENT_COLUMNS + ", r.name AS role_name FROM requests.intune_role_assignments a "  # nosec B608 # constants
              "JOIN requests.roles r ON r.id = a.role_id WHERE a.tenant_id = $1 AND a.id = $2")
INSERT = ("INSERT INTO requests.intune_role_assignments (tenant_id, id, role_id, display_name, description, members, "
          "scope_members, resource_scopes, role_scope_tag_ids, created_at) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
UPDATE = ("UPDATE requests.intune_role_assignments SET display_name = $3, description = $4, members = $5, "
          "scope_members = $6, resource_scopes = $7, role_scope_tag_ids = $8 WHERE tenant_id = $1 AND id = $2")
DELETE = "DELETE FROM requests.intune_role_assignments WHERE tenant_id = $1 AND id = $2"
# --- values ------------------------------------------------------------------------------------------


def _definition(row) -> pb.IntuneRoleDefinition:
    return pb.IntuneRoleDefinition(id=row["id"], display_name=row["name"], description=row["description"],
                                   is_built_in=True,
                                   allowed_resource_actions=[RESOURCE_ACTIONS[p] for p in row["permissions"]])


def _assignment(row) -> pb.IntuneRoleAssignment:
    return pb.IntuneRoleAssignment(
        id=row["id"], display_name=row["display_name"], description=row["description"], members=row["members"],
        scope_members=row["scope_members"], resource_scopes=row["resource_scopes"],
        role_scope_tag_ids=row["role_scope_tag_ids"], role_definition_id=row["role_id"])


def _text(value: str, name: str, limit: int, *, required: bool = False) -> str:
    if required and not value.strip():
        raise errors.invalid(f"Property '{name}' is required.", property=name)
    if len(value) > limit:
        raise errors.invalid(f"Property '{name}' must be at most {limit} characters.", property=name)
    return value.strip()


def _ids(values, name: str) -> list[str]:
    """GUIDs, lowercase, each once, in the order given."""
    if len(values) > MAX_IDS:
        raise errors.invalid(f"Property '{name}' holds at most {MAX_IDS} ids.", property=name)
    return list(dict.fromkeys(roles._guid(v, name) for v in values))


def _scope_tags(values) -> list[str]:
    if bad := next((v for v in values if not _SCOPE_TAG.fullmatch(v)), None):
        raise errors.invalid(f"Property 'roleScopeTagIds' holds scope tag ids (numbers, e.g. \"0\"); "
                             f"got '{bad[:64]}'.", property="roleScopeTagIds")
    return list(dict.fromkeys(values)) or list(DEFAULT_SCOPE_TAGS)


def _checked(given: pb.IntuneRoleAssignment) -> dict:
    """The writable columns of an assignment, validated."""
    return {"display_name": _text(given.display_name, "displayName", MAX_NAME, required=True),
            "description": _text(given.description, "description", MAX_DESCRIPTION),
            "members": _ids(given.members, "members"), "scope_members": _ids(given.scope_members, "scopeMembers"),
            "resource_scopes": _ids(given.resource_scopes, "resourceScopes"),
            "role_scope_tag_ids": _scope_tags(given.role_scope_tag_ids)}


def _assignment_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise _no_assignment(text) from None


def _no_assignment(text: str) -> errors.RpcError:
    return errors.not_found(f"No role assignment with id '{text[:100]}'.", id=text[:100])


def _no_definition(text: str) -> errors.RpcError:
    return errors.not_found(f"No role definition with id '{text[:100]}'.", id=text[:100])


def _members(values) -> str:
    return ",".join(values)


async def administrator(verifier: TokenVerifier, context, allowed) -> Principal:
    """As for PIM writes: an application with one of the permissions `allowed`, or a user with one of them in an
    administrator role."""
    caller = await authorize(verifier, context.invocation_metadata(), allowed)
    if caller.delegated and not caller.directory_roles & roles.ROLE_ADMINISTRATORS:
        raise errors.RpcError(grpc.StatusCode.PERMISSION_DENIED, "NOT_A_ROLE_ADMINISTRATOR",
                              "This takes the directory role Global Administrator, Privileged Role Administrator "
                              "or Intune Administrator.")
    return caller


# --- servicer ----------------------------------------------------------------------------------------


class IntuneRoleServicer(pb_grpc.IntuneRoleServiceServicer):
    def __init__(self, pool: asyncpg.Pool, verifier: TokenVerifier, clock: Callable[[], datetime]):
        self.pool = pool
        self.verifier = verifier
        self.clock = clock

    async def _caller(self, context, allowed) -> Principal:
        return await authorize(self.verifier, context.invocation_metadata(), allowed)

    async def _administrator(self, context) -> Principal:
        return await administrator(self.verifier, context, WRITE)

    async def _audit(self, conn, caller: Principal, context, row, *, activity: str, operation: str,
                     old_state: str = "", new_state: str = "") -> None:
        actor = Actor("ItPro" if caller.delegated else "Application", caller.object_id, caller.upn,
                      roles._correlation_id(context))
        await audit(conn, caller.tenant_id, actor, self.clock(), activity, operation, row["id"],
                    resource_type=RESOURCE_TYPE, resource_name=f"{row['display_name']} ({row['role_name']})",
                    old_state=old_state, new_state=new_state)

    # role definitions

    async def ListIntuneRoleDefinitions(self, request, context):
        await self._caller(context, READ)
        try:
            rows, token = await listing.fetch_page(
                self.pool, DEFINITIONS, DEFINITION_FIELDS, [], filter=request.filter,
                order_by=request.order_by or "displayName", size=paging.page_size(request.page_size),
                token=request.page_token, skip=max(request.skip, 0))
            total = await listing.count(self.pool, DEFINITIONS, DEFINITION_FIELDS, [], request.filter) \
                if request.include_total_size else 0
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None
        return pb.ListIntuneRoleDefinitionsResponse(role_definitions=[_definition(r) for r in rows],
                                                    next_page_token=token, total_size=total)

    async def CountIntuneRoleDefinitions(self, request, context):
        await self._caller(context, READ)
        try:
            count = await listing.count(self.pool, DEFINITIONS, DEFINITION_FIELDS, [], request.filter)
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None
        return pb.CountIntuneRoleDefinitionsResponse(count=count)

    async def GetIntuneRoleDefinition(self, request, context):
        await self._caller(context, READ)
        return _definition(await self._definition_row(request.id))

    async def _definition_row(self, text: str):
        try:
            row = await self.pool.fetchrow(DEFINITION, uuid.UUID(text))
        except ValueError:
            row = None
        if row is None:
            raise _no_definition(text)
        return row

    async def CreateIntuneRoleDefinition(self, request, context):
        await self._administrator(context)
        raise errors.invalid("Custom role definitions are not supported: the built-in role definitions are the "
                             "only ones (GET deviceManagement/roleDefinitions).")

    async def UpdateIntuneRoleDefinition(self, request, context):
        await self._built_in(request.id, context)

    async def DeleteIntuneRoleDefinition(self, request, context):
        await self._built_in(request.id, context)

    async def _built_in(self, text: str, context):
        """The refusal of a change to a role definition (every one is built in)."""
        await self._administrator(context)
        await self._definition_row(text)
        raise errors.RpcError(grpc.StatusCode.PERMISSION_DENIED, "BUILT_IN_ROLE_DEFINITION",
                              "Built-in role definitions cannot be modified.")

    # role assignments

    async def CreateIntuneRoleAssignment(self, request, context):
        caller = await self._administrator(context)
        given = request.role_assignment
        values = _checked(given)
        if not given.role_definition_id:
            raise errors.invalid("The role definition is required: bind it with roleDefinition@odata.bind.",
                                 property="roleDefinition")
        role = await self._definition_row(given.role_definition_id)
        row = {"id": str(uuid.uuid4()), "role_id": role["id"], **values, "role_name": role["name"]}
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(INSERT, caller.tenant_id, uuid.UUID(row["id"]), uuid.UUID(role["id"]),
                               *(values[c] for c in WRITABLE.values()), self.clock())
            await self._audit(conn, caller, context, row, activity="Create DeviceAndAppManagementRoleAssignment",
                              operation="Create", new_state=_members(values["members"]))
        return _assignment(row)

    async def GetIntuneRoleAssignment(self, request, context):
        caller = await self._caller(context, READ)
        row = await self.pool.fetchrow(ASSIGNMENT, caller.tenant_id, _assignment_id(request.id))
        if row is None:
            raise _no_assignment(request.id)
        return _assignment(row)

    async def ListIntuneRoleAssignments(self, request, context):
        caller = await self._caller(context, READ)
        try:
            rows, token = await listing.fetch_page(
                self.pool, ASSIGNMENTS, ASSIGNMENT_FIELDS, [caller.tenant_id], filter=request.filter,
                order_by=request.order_by or "displayName", size=paging.page_size(request.page_size),
                token=request.page_token, skip=max(request.skip, 0))
            total = await listing.count(self.pool, ASSIGNMENTS, ASSIGNMENT_FIELDS, [caller.tenant_id],
                                        request.filter) if request.include_total_size else 0
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None
        return pb.ListIntuneRoleAssignmentsResponse(role_assignments=[_assignment(r) for r in rows],
                                                    next_page_token=token, total_size=total)

    async def CountIntuneRoleAssignments(self, request, context):
        caller = await self._caller(context, READ)
        try:
            count = await listing.count(self.pool, ASSIGNMENTS, ASSIGNMENT_FIELDS, [caller.tenant_id],
                                        request.filter)
        except ODataError as exc:
            raise errors.invalid(str(exc)) from None
        return pb.CountIntuneRoleAssignmentsResponse(count=count)

    async def UpdateIntuneRoleAssignment(self, request, context):
        caller = await self._administrator(context)
        given, mask = request.role_assignment, set(request.update_mask)
        if unknown := sorted(mask - set(WRITABLE) - {"roleDefinition"}):
            raise errors.invalid(f"Property '{unknown[0]}' cannot be changed.", property=unknown[0])
        assignment_id = _assignment_id(given.id)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(ASSIGNMENT + " FOR UPDATE OF a", caller.tenant_id, assignment_id)
            if row is None:
                raise _no_assignment(given.id)
            if "roleDefinition" in mask and roles._canonical(given.role_definition_id) != row["role_id"]:
                raise errors.invalid("The role definition of an assignment cannot be changed: create another "
                                     "assignment.", property="roleDefinition")
            merged = pb.IntuneRoleAssignment()
            merged.CopyFrom(_assignment(row))
            for name in mask & set(WRITABLE):
                field = WRITABLE[name]
                if isinstance(getattr(given, field), str):
                    setattr(merged, field, getattr(given, field))
                else:
                    getattr(merged, field)[:] = getattr(given, field)
            values = _checked(merged)
            await conn.execute(UPDATE, caller.tenant_id, assignment_id, *(values[c] for c in WRITABLE.values()))
            await self._audit(conn, caller, context, {**dict(row), **values},
                              activity="Update DeviceAndAppManagementRoleAssignment", operation="Update",
                              old_state=_members(row["members"]), new_state=_members(values["members"]))
        return _assignment({**dict(row), **values})

    async def DeleteIntuneRoleAssignment(self, request, context):
        caller = await self._administrator(context)
        assignment_id = _assignment_id(request.id)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(ASSIGNMENT + " FOR UPDATE OF a", caller.tenant_id, assignment_id)
            if row is None:
                raise _no_assignment(request.id)
            await conn.execute(DELETE, caller.tenant_id, assignment_id)
            await self._audit(conn, caller, context, row, activity="Delete DeviceAndAppManagementRoleAssignment",
                              operation="Delete", old_state=_members(row["members"]))
        return pb.DeleteIntuneRoleAssignmentResponse()
