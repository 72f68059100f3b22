"""/beta/privilegedRoleAssignments and /beta/privilegedRoles (PIM v1 shape) -> epm.requests.v1.RoleAssignmentService."""

from __future__ import annotations

from aiohttp import web
from epm.requests.v1 import role_assignment_service_pb2 as pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as pb_grpc

from . import graphjson, query
from .errors import bad_request
from .graph import call_options, caller, function, located, member, read_json, reply, service_root, stub

PATH = "/beta/privilegedRoleAssignments"
ROLES_PATH = "/beta/privilegedRoles"
ENTITY_SET = "privilegedRoleAssignments"
TYPE = "privilegedRoleAssignment"
NULL_WHEN_EMPTY = frozenset({"resultMessage"})
PROPERTIES = frozenset(f.json_name for f in pb.RoleAssignment.DESCRIPTOR.fields)
STRING = (str,)
NUMBER_OR_STRING = (str, int, float)


def _stub(request: web.Request) -> pb_grpc.RoleAssignmentServiceStub:
    return stub(request, "requests", pb_grpc.RoleAssignmentServiceStub)


def _json(assignment: pb.RoleAssignment, select: tuple[str, ...] = ()) -> dict:
    body = graphjson.to_json(assignment, TYPE, NULL_WHEN_EMPTY)
    return {k: v for k, v in body.items() if k in select or k in ("id", "@odata.type")} if select else body


def _entity(request: web.Request, assignment: pb.RoleAssignment, select: tuple[str, ...] = ()) -> dict:
    context = f"{ENTITY_SET}({','.join(select)})" if select else ENTITY_SET
    return {"@odata.context": f"{service_root(request)}/$metadata#{context}/$entity", **_json(assignment, select)}


def _collection(request: web.Request, assignments, select: tuple[str, ...], context: str = "") -> dict:
    """A collection of assignments; `context` names a function's result (Collection(type)) in place of the set."""
    context = context or (f"{ENTITY_SET}({','.join(select)})" if select else ENTITY_SET)
    return {"@odata.context": f"{service_root(request)}/$metadata#{context}",
            "value": [_json(a, select) for a in assignments]}


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


async def list_(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), PROPERTIES)
    page = await _stub(request).ListRoleAssignments(pb.ListRoleAssignmentsRequest(), **call_options(request))
    return reply(_collection(request, page.role_assignments, options.select))


async def my(request: web.Request) -> web.Response:
    """The function my(): the caller's own assignments (a signed-in user's token)."""
    options = query.parse(request.query, frozenset({"select"}), PROPERTIES)
    if not caller(request).object_id:
        raise bad_request("The 'my' view needs a token of a signed-in user (with an oid claim).")
    page = await _stub(request).ListRoleAssignments(
        pb.ListRoleAssignmentsRequest(user_id=caller(request).object_id), **call_options(request))
    return reply(_collection(request, page.role_assignments, options.select,
                             context=f"Collection(microsoft.graph.{TYPE})"))


async def my_permissions(request: web.Request) -> web.Response:
    """An extension for consoles: what the caller may do with elevation requests now, and the roles that grant it
    (any valid token: it is about the caller)."""
    query.parse(request.query, frozenset(), frozenset())
    mine = await _stub(request).GetMyPermissions(pb.GetMyPermissionsRequest(), **call_options(request))
    return reply({"@odata.context": f"{service_root(request)}/$metadata#microsoft.graph.epmPermissions",
                  "permissions": list(mine.permissions), "roles": list(mine.roles), "delegated": mine.delegated})


async def get(request: web.Request) -> web.Response:
    options = query.parse(request.query, frozenset({"select"}), PROPERTIES)
    assignment = await _stub(request).GetRoleAssignment(pb.GetRoleAssignmentRequest(id=request.match_info["id"]),
                                                        **call_options(request))
    return reply(_entity(request, assignment, options.select))


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


async def self_activate(request: web.Request) -> web.Response:
    body = await _body(request, "selfActivate", {"reason": STRING, "duration": NUMBER_OR_STRING,
                                                 "ticketNumber": STRING, "ticketSystem": STRING})
    assignment = await _stub(request).SelfActivate(pb.SelfActivateRequest(
        role_id=request.match_info["roleId"], reason=body.get("reason", ""), duration=body.get("duration", ""),
        ticket_number=body.get("ticketNumber", ""), ticket_system=body.get("ticketSystem", "")),
        **call_options(request))
    return reply(_entity(request, assignment))


async def list_roles(request: web.Request) -> web.Response:
    """The built-in roles: id, name and (an extension) the elevation request rights they grant."""
    query.parse(request.query, frozenset(), frozenset())
    roles = await _stub(request).ListRoles(pb.ListRolesRequest(), **call_options(request))
    return reply({"@odata.context": f"{service_root(request)}/$metadata#privilegedRoles", "value": [
        {"@odata.type": "#microsoft.graph.privilegedRole", "id": r.id, "name": r.name,
         "permissions": list(r.permissions)} for r in roles.roles]})


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, list_)
    for path in function(PATH + "/my"):
        app.router.add_get(path, my)
    for path in function(PATH + "/myPermissions"):
        app.router.add_get(path, my_permissions)
    for item in member(PATH):
        app.router.add_get(item, get)
        app.router.add_delete(item, delete)
        app.router.add_post(item + "/makePermanent", make_permanent)
        app.router.add_post(item + "/makeEligible", make_eligible)
    app.router.add_get(ROLES_PATH, list_roles)
    for item in member(ROLES_PATH, "roleId"):
        app.router.add_post(item + "/selfActivate", self_activate)
