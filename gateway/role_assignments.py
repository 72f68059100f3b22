"""/beta/privilegedRoleAssignments and /beta/privilegedRoles (PIM v1 shape) -> epm.requests.v1.RoleAssignmentService."""

from __future__ import annotations

import functools

from aiohttp import web
from epm.requests.v1 import role_assignment_service_pb2 as pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as pb_grpc

from services.common import optional

from . import graphjson, query
from .errors import GraphError, bad_request
from .graph import (
    call_options,
    caller,
    collection_body,
    count_collection,
    count_reply,
    entity_body,
    function,
    list_collection,
    located,
    member,
    read_json,
    reply,
    service_root,
    stub,
    writable_fields,
    written,
)

PATH = "/beta/privilegedRoleAssignments"
ROLES_PATH = "/beta/privilegedRoles"
ENTITY_SET = "privilegedRoleAssignments"
TYPE = "privilegedRoleAssignment"
PROPERTIES = frozenset(f.json_name for f in pb.RoleAssignment.DESCRIPTOR.fields)
WRITABLE = frozenset({"expiration_date_time"})
ROLE_INFO = "roleInfo"  # the one navigation property of an assignment
ROLE_TYPE = "#microsoft.graph.privilegedRole"
ROLE_PROPERTIES = frozenset({"id", "name", "permissions"})
STRING = (str,)
NUMBER_OR_STRING = (str, int, float)


def _stub(request: web.Request) -> pb_grpc.RoleAssignmentServiceStub:
    return stub(request, "requests", pb_grpc.RoleAssignmentServiceStub)


def _json(assignment: pb.RoleAssignment, select: tuple[str, ...] = (), roles: dict | None = None) -> dict:
    """The assignment; with `roles` (id -> pb.Role, for $expand=roleInfo) its roleInfo too."""
    body = graphjson.to_json(assignment, TYPE, optional.ROLE_ASSIGNMENT)
    if roles is not None:
        body[ROLE_INFO] = _role_json(roles[assignment.role_id])
        select = select and (*select, ROLE_INFO)
    return {k: v for k, v in body.items() if k in select or k in ("id", "@odata.type")} if select else body


def _entity(request: web.Request, assignment: pb.RoleAssignment, select: tuple[str, ...] = (),
            roles: dict | None = None) -> dict:
    context = f"{ENTITY_SET}({','.join(select)})" if select else ENTITY_SET
    return {"@odata.context": f"{service_root(request)}/$metadata#{context}/$entity",
            **_json(assignment, select, roles)}


def _role_json(role: pb.Role) -> dict:
    """A role: id, name and (an extension) the elevation request rights it grants."""
    return {"@odata.type": ROLE_TYPE, "id": role.id, "name": role.name, "permissions": list(role.permissions)}


def _expanded(request: web.Request) -> tuple[str, ...]:
    """$expand (with or without the $): only roleInfo, and as a plain name."""
    values = [v for k, v in request.query.items() if k in ("$expand", "expand")]
    if not values:
        return ()
    if len(values) > 1:
        raise bad_request("Query option '$expand' was specified more than once.")
    names = tuple(n.strip() for n in values[0].split(",") if n.strip())
    if names != (ROLE_INFO,):
        raise bad_request(f"$expand supports only '{ROLE_INFO}' on {TYPE}; got '{values[0][:100]}'.")
    return names


async def _roles(request: web.Request) -> dict[str, pb.Role]:
    page = await _stub(request).ListRoles(pb.ListRolesRequest(), **call_options(request))
    return {r.id: r for r in page.roles}


async def _expansion(request: web.Request) -> tuple[tuple[str, ...], dict | None]:
    """(the $expand names, the roles to expand them with, or None without $expand)."""
    expanded = _expanded(request)
    return expanded, (await _roles(request) if expanded else None)


def _read_options(request: web.Request, expanded: tuple[str, ...]):
    return query.parse(request.query, frozenset({"select", *(("expand",) if expanded else ())}), PROPERTIES,
                       navigations=frozenset(expanded))


async def _body(request: web.Request, what: str, parameters: dict[str, tuple[type, ...]]) -> dict:
    """The JSON object of an (optionally empty) body: only `parameters`, each of its types or null."""
    if not request.body_exists or not (await request.read()).strip():
        return {}
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    kind = body.get("@odata.type")
    if what == TYPE and kind is not None and (not isinstance(kind, str)
                                              or kind.lstrip("#") != f"microsoft.graph.{TYPE}"):
        raise bad_request(f"The @odata.type '{kind}' is not microsoft.graph.{TYPE}.")
    values = {k: v for k, v in body.items() if not k.startswith("@") and "@odata." not in k}
    if unknown := [k for k in values if k not in parameters]:
        names = ", ".join(f"'{k}'" for k in unknown)
        raise bad_request(f"{what} has no propert{'ies' if len(unknown) > 1 else 'y'} named {names}; "
                          f"expected: {', '.join(parameters)}.")
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, parameters[name]):
            kind = "a string" if parameters[name] == STRING else "a string or a number"
            raise bad_request(f"Property '{name}' must be {kind}.")
        out[name] = value if isinstance(value, str) else repr(value)
    return out


async def create(request: web.Request) -> web.Response:
    body = await _body(request, TYPE, {"userId": STRING, "roleId": STRING})
    created = await _stub(request).CreateRoleAssignment(
        pb.CreateRoleAssignmentRequest(user_id=body.get("userId", ""), role_id=body.get("roleId", "")),
        **call_options(request))
    return located(request, reply(_entity(request, created), status=201), ENTITY_SET, created.id)


async def _list(request: web.Request, entity_set: str = ENTITY_SET, **scope) -> web.Response:
    """A page of assignments with OData options; `scope`: user_id or role_id of ListRoleAssignmentsRequest."""
    expanded, roles = await _expansion(request)
    return await list_collection(
        request, _stub(request).ListRoleAssignments, functools.partial(pb.ListRoleAssignmentsRequest, **scope),
        "role_assignments", functools.partial(_json, roles=roles), entity_set, PROPERTIES, expanded=expanded)


async def list_(request: web.Request) -> web.Response:
    return await _list(request)


async def count(request: web.Request) -> web.Response:
    return await count_collection(request, _stub(request).CountRoleAssignments, pb.CountRoleAssignmentsRequest,
                                  PROPERTIES)


async def my(request: web.Request) -> web.Response:
    """The function my(): the caller's own assignments (a signed-in user's token)."""
    if not caller(request).object_id:
        raise bad_request("The 'my' view needs a token of a signed-in user (with an oid claim).")
    return await _list(request, f"Collection(microsoft.graph.{TYPE})", user_id=caller(request).object_id)


async def my_permissions(request: web.Request) -> web.Response:
    """An extension for consoles: what the caller may do with elevation requests now, and the roles that grant it
    (any valid token: it is about the caller)."""
    query.parse(request.query, frozenset(), frozenset())
    mine = await _stub(request).GetMyPermissions(pb.GetMyPermissionsRequest(), **call_options(request))
    return reply({"@odata.context": f"{service_root(request)}/$metadata#microsoft.graph.epmPermissions",
                  "permissions": list(mine.permissions), "roles": list(mine.roles), "delegated": mine.delegated})


async def _get(request: web.Request, assignment_id: str) -> pb.RoleAssignment:
    return await _stub(request).GetRoleAssignment(pb.GetRoleAssignmentRequest(id=assignment_id),
                                                  **call_options(request))


async def get(request: web.Request) -> web.Response:
    expanded, roles = await _expansion(request)
    options = _read_options(request, expanded)
    return reply(_entity(request, await _get(request, request.match_info["id"]), options.select, roles))


async def update(request: web.Request) -> web.Response:
    """PATCH: only expirationDateTime (the end of an activation); the other properties may come along unchanged."""
    given = pb.RoleAssignment()
    fields = graphjson.from_json(await read_json(request), given, TYPE)
    await writable_fields(given, fields, WRITABLE, lambda: _get(request, request.match_info["id"]))
    if not given.HasField("expiration_date_time"):
        raise bad_request("Property 'expirationDateTime' cannot be null: an activation ends at a time.")
    updated = await _stub(request).UpdateRoleAssignment(pb.UpdateRoleAssignmentRequest(
        id=request.match_info["id"], expiration_date_time=given.expiration_date_time), **call_options(request))
    return written(request, reply(_entity(request, updated)))


async def delete(request: web.Request) -> web.Response:
    await _stub(request).DeleteRoleAssignment(pb.DeleteRoleAssignmentRequest(id=request.match_info["id"]),
                                              **call_options(request))
    return web.Response(status=204)


async def make_permanent(request: web.Request) -> web.Response:
    body = await _body(request, "makePermanent",
                       {"reason": STRING, "ticketNumber": STRING, "ticketSystem": STRING})
    assignment = await _stub(request).MakePermanent(pb.MakePermanentRequest(
        id=request.match_info["id"], reason=body.get("reason", ""), ticket_number=body.get("ticketNumber", ""),
        ticket_system=body.get("ticketSystem", "")), **call_options(request))
    return reply(_entity(request, assignment))


async def make_eligible(request: web.Request) -> web.Response:
    await _body(request, "makeEligible", {})
    assignment = await _stub(request).MakeEligible(pb.MakeEligibleRequest(id=request.match_info["id"]),
                                                   **call_options(request))
    return reply(_entity(request, assignment))


async def _role_id(request: web.Request) -> str:
    """The role a path names: /privilegedRoles/{roleId}/..., or /privilegedRoleAssignments/{id}/roleInfo/...
    (the assignment's role)."""
    if "roleId" in request.match_info:
        return request.match_info["roleId"]
    return (await _get(request, request.match_info["id"])).role_id


async def _role(request: web.Request) -> pb.Role:
    return await _stub(request).GetRole(pb.GetRoleRequest(id=await _role_id(request)), **call_options(request))


async def list_roles(request: web.Request) -> web.Response:
    """The Intune roles, then the directory roles (read-only: assigned in the directory)."""
    options = query.parse(request.query, frozenset({"select", "count"}), ROLE_PROPERTIES)
    roles = (await _stub(request).ListRoles(pb.ListRolesRequest(), **call_options(request))).roles
    return reply(collection_body(request, "privilegedRoles", [_role_json(r) for r in roles], options, "", len(roles)))


async def count_roles(request: web.Request) -> web.Response:
    query.parse(request.query, frozenset(), frozenset())
    return count_reply(len((await _stub(request).ListRoles(pb.ListRolesRequest(), **call_options(request))).roles))


async def get_role(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), ROLE_PROPERTIES)
    return reply(entity_body(request, "privilegedRoles", _role_json(await _role(request)), options.select))


def _duration(value) -> str | None:
    """A protobuf Duration as ISO 8601 (PT8H); None when unset."""
    seconds = value.ToSeconds()
    if not seconds:
        return None
    return f"PT{seconds // 3600}H" if seconds % 3600 == 0 else f"PT{seconds}S"


async def settings(request: web.Request) -> web.Response:
    """What activating the role takes here: the durations selfActivate enforces; no MFA, approval, ticket or
    notification is required on activation (a reason is). A directory role is not activated here: no durations."""
    query.parse(request.query, frozenset(), frozenset())
    role = await _role(request)
    applies = None if role.directory_role else False  # a directory role's settings are the directory's
    return reply(entity_body(request, "privilegedRoleSettings", {
        "@odata.type": "#microsoft.graph.privilegedRoleSettings", "id": role.id,
        "elevationDuration": _duration(role.settings.elevation_duration),
        "minElevationDuration": _duration(role.settings.min_elevation_duration),
        "maxElavationDuration": _duration(role.settings.max_elevation_duration),  # sic: Graph's name
        "isMfaOnElevationConfigurable": applies, "mfaOnElevation": applies, "approvalOnElevation": applies,
        "approverIds": [], "ticketingInfoOnElevation": applies, "notificationToUserOnElevation": applies,
        "lastGlobalAdmin": None}))


async def summary(request: web.Request) -> web.Response:
    """The role's assignments in the tenant; status 'ok' when every one is eligible (none is permanently active),
    else 'bad'. A directory role's assignments are the directory's: null counts."""
    query.parse(request.query, frozenset(), frozenset())
    role = await _role(request)
    counts = role.summary
    known = not role.directory_role
    return reply(entity_body(request, "privilegedRoleSummary", {
        "@odata.type": "#microsoft.graph.privilegedRoleSummary", "id": role.id,
        "usersCount": counts.users_count if known else None,
        "managedCount": counts.managed_count if known else None,
        "elevatedCount": counts.elevated_count if known else None,
        "mfaEnabled": False if known else None,
        "status": ("ok" if counts.managed_count == counts.users_count else "bad") if known else None}))


def _role_scope(request: web.Request) -> dict:
    """The role whose assignments a path names: its own, or an assignment's (roleInfo)."""
    if "roleId" in request.match_info:
        return {"role_id": request.match_info["roleId"]}
    return {"assignment_id": request.match_info["id"]}


async def role_assignments(request: web.Request) -> web.Response:
    return await _list(request, **_role_scope(request))


async def count_role_assignments(request: web.Request) -> web.Response:
    return await count_collection(request, _stub(request).CountRoleAssignments,
                                  functools.partial(pb.CountRoleAssignmentsRequest, **_role_scope(request)),
                                  PROPERTIES)


async def role_assignment(request: web.Request) -> web.Response:
    """One assignment of the role; another role's is not found here."""
    expanded, roles = await _expansion(request)
    options = _read_options(request, expanded)
    role_id = (await _role(request)).id
    assignment = await _get(request, request.match_info["assignmentId"])
    if assignment.role_id != role_id:
        raise GraphError(404, f"The role '{role_id}' has no assignment with id '{assignment.id}'.")
    return reply(_entity(request, assignment, options.select, roles))


async def self_activate(request: web.Request) -> web.Response:
    body = await _body(request, "selfActivate", {"reason": STRING, "duration": NUMBER_OR_STRING,
                                                 "ticketNumber": STRING, "ticketSystem": STRING})
    assignment = await _stub(request).SelfActivate(pb.SelfActivateRequest(
        role_id=await _role_id(request), reason=body.get("reason", ""), duration=body.get("duration", ""),
        ticket_number=body.get("ticketNumber", ""), ticket_system=body.get("ticketSystem", "")),
        **call_options(request))
    return reply(_entity(request, assignment))


async def self_deactivate(request: web.Request) -> web.Response:
    await _body(request, "selfDeactivate", {})
    assignment = await _stub(request).SelfDeactivate(pb.SelfDeactivateRequest(role_id=await _role_id(request)),
                                                     **call_options(request))
    return reply(_entity(request, assignment))


def _add_role_routes(app: web.Application, item: str) -> None:
    """A role's navigations and actions under `item` (a role, or an assignment's roleInfo)."""
    app.router.add_get(item + "/settings", settings)
    app.router.add_get(item + "/summary", summary)
    app.router.add_get(item + "/assignments", role_assignments)
    app.router.add_get(item + "/assignments/$count", count_role_assignments)
    app.router.add_get(item + "/assignments/{assignmentId}", role_assignment)
    app.router.add_post(item + "/selfActivate", self_activate)
    app.router.add_post(item + "/selfDeactivate", self_deactivate)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, list_)
    app.router.add_get(PATH + "/$count", count)
    for path in function(PATH + "/my"):
        app.router.add_get(path, my)
    for path in function(PATH + "/myPermissions"):
        app.router.add_get(path, my_permissions)
    for item in member(PATH):
        app.router.add_get(item, get)
        app.router.add_patch(item, update)
        app.router.add_delete(item, delete)
        app.router.add_post(item + "/makePermanent", make_permanent)
        app.router.add_post(item + "/makeEligible", make_eligible)
        app.router.add_get(item + "/roleInfo", get_role)
        _add_role_routes(app, item + "/roleInfo")
    app.router.add_get(ROLES_PATH, list_roles)
    app.router.add_get(ROLES_PATH + "/$count", count_roles)
    for item in member(ROLES_PATH, "roleId"):
        app.router.add_get(item, get_role)
        _add_role_routes(app, item)
