"""Reviewer rights: role assignments in the shape of PIM v1 `privilegedRoleAssignment`, and `permissions()`.

An assignment is ACTIVE when `NOT eligible OR active_until > now`:
    permanent  eligible=false, active_until NULL      (active, no end)
    eligible   eligible=true,  active_until NULL/past (held, inactive until selfActivate)
    active     eligible=true,  active_until > now     (activated by its user until active_until)
"now" always comes from the injected clock. Every statement filters by tenant (roles are global).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import asyncpg
import grpc
from epm.requests.v1 import role_assignment_service_pb2 as pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as pb_grpc

from ..common import errors, listing, paging
from ..common.auth import (
    CONFIG_READ,
    CONFIG_WRITE,
    GLOBAL_ADMINISTRATOR,
    INTUNE_ADMINISTRATOR,
    PRIVILEGED_ROLE_ADMINISTRATOR,
    Principal,
    TokenVerifier,
    authorize,
)
from ..common.odata import Field, ODataError
from ..common.optional import ROLE_ASSIGNMENT, marked
from ..common.timestamps import set_time
from .store import Actor, audit

READ = ("RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory", "Directory.AccessAsUser.All")
WRITE = ("RoleManagement.ReadWrite.Directory", "Directory.AccessAsUser.All")
# A signed-in user manages assignments only in one of these directory roles (the permission alone lets any user
# with a common delegated scope make themselves a reviewer); an application's permission is enough, as in Graph.
ROLE_ADMINISTRATORS = frozenset({GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR, INTUNE_ADMINISTRATOR})
MY_PERMISSIONS = (*READ, CONFIG_READ, CONFIG_WRITE)  # whoever may read roles or elevation requests
DURATIONS = {"min": timedelta(hours=1), "default": timedelta(hours=8)}
MAX_HOURS = 24
MAX_REASON = 500
MAX_TICKET = 100
RESOURCE_TYPE = "privilegedRoleAssignment"
# Directory roles, as tokens carry them (wids): listed, read-only. They are assigned in the directory; an
# assignment here would be a second source of truth that no token reflects (and would hand out Global Administrator).
DIRECTORY_ROLES = {GLOBAL_ADMINISTRATOR: "Global Administrator",
                   PRIVILEGED_ROLE_ADMINISTRATOR: "Privileged Role Administrator",
                   INTUNE_ADMINISTRATOR: "Intune Administrator"}
PERMANENT, ELIGIBLE, ACTIVE = "permanent", "eligible", "active"  # audit states
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_HOURS = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,6})?|\.[0-9]{1,6}")

# --- SQL ---------------------------------------------------------------------------------------------

ROLE = "SELECT id, name, permissions FROM requests.roles WHERE id = $1"
ROLES = "SELECT id, name, permissions FROM requests.roles ORDER BY id"
_COLUMNS = "a.user_id, a.role_id, a.eligible, a.active_until, a.result_message, r.name AS role_name"
_FROM = "FROM requests.role_assignments a JOIN requests.roles r ON r.id = a.role_id"
ASSIGNMENT = f"SELECT {_COLUMNS} {_FROM} WHERE a.tenant_id = $1 AND a.user_id = $2 AND a.role_id = $3"
ASSIGNMENT_FOR_UPDATE = ASSIGNMENT + " FOR UPDATE OF a"
# The assignments listed with OData options: $1 tenant, $2 now, $3 user ('' any), $4 role ('' any).
LISTED = ("(SELECT a.*, r.name AS role_name, a.user_id || '_' || a.role_id AS id, "
          "(NOT a.eligible OR coalesce(a.active_until > $2, false)) AS is_elevated, "
          "CASE WHEN a.eligible AND a.active_until > $2 THEN a.active_until END AS expiration "
          f"{_FROM} WHERE a.tenant_id = $1) s WHERE ($3 = '' OR user_id = $3) AND ($4 = '' OR role_id::text = $4)")
FIELDS = marked({
    "id": Field("id", "string", casefold=True),
    "userId": Field("user_id", "string", casefold=True),
    "roleId": Field("role_id::text", "string", casefold=True),
    "isElevated": Field("is_elevated", "bool"),
    "expirationDateTime": Field("expiration", "datetime"),
    "resultMessage": Field("result_message", "string"),
}, ROLE_ASSIGNMENT)
UNORDERABLE = frozenset({"expirationDateTime"})  # null for permanent and inactive ones: no keyset order
SUMMARY = ("SELECT count(*) AS users, count(*) FILTER (WHERE eligible) AS managed, "
           "count(*) FILTER (WHERE NOT eligible OR active_until > $3) AS elevated "
           "FROM requests.role_assignments WHERE tenant_id = $1 AND role_id = $2")
INSERT = ("INSERT INTO requests.role_assignments (tenant_id, user_id, role_id, eligible, active_until, created_at) "
          "VALUES ($1, $2, $3, false, NULL, $4) ON CONFLICT DO NOTHING")
UPDATE = ("UPDATE requests.role_assignments SET eligible = $4, active_until = $5, result_message = $6 "
          "WHERE tenant_id = $1 AND user_id = $2 AND role_id = $3")
DELETE = "DELETE FROM requests.role_assignments WHERE tenant_id = $1 AND user_id = $2 AND role_id = $3"
# every holding of a role: PIM assignments and the members of Intune role assignments (the view requests.role_holders)
ACTIVE_ROLES = ("SELECT r.name, r.permissions FROM requests.role_holders a "
                "JOIN requests.roles r ON r.id = a.role_id "
                "WHERE a.tenant_id = $1 AND a.user_id = $2 AND (NOT a.eligible OR a.active_until > $3) ORDER BY r.name")



async def active_roles(conn, tenant_id: str, user_id: str, now: datetime) -> dict[str, frozenset[str]]:
    """The roles of the user's ACTIVE assignments at `now`, by name, with their permissions (conn: connection or
    pool)."""
    rows = await conn.fetch(ACTIVE_ROLES, tenant_id, _canonical(user_id), now)
    return {r["name"]: frozenset(r["permissions"]) for r in rows}


def granted(roles: dict[str, frozenset[str]]) -> frozenset[str]:
    """The union of the permissions of `roles` (as active_roles returns them)."""
    return frozenset().union(*roles.values())


async def permissions(conn, tenant_id: str, user_id: str, now: datetime) -> frozenset[str]:
    """The union of the permissions of the user's ACTIVE assignments at `now`."""
    return granted(await active_roles(conn, tenant_id, user_id, now))


async def _audit(conn, tenant_id: str, caller: Principal, *, at: datetime, activity: str, operation: str,
                 resource_id: str, resource_name: str = "", old_state: str = "", new_state: str = "",
                 reason: str = "", correlation_id: str = "") -> None:
    """One audit event; call inside the transaction that makes the change."""
    actor = Actor("ItPro" if caller.delegated else "Application", caller.object_id, caller.upn, correlation_id)
    await audit(conn, tenant_id, actor, at, activity, operation, resource_id, resource_type=RESOURCE_TYPE,
                resource_name=resource_name, old_state=old_state, new_state=new_state, reason=reason)


# --- values ------------------------------------------------------------------------------------------


def _canonical(text: str) -> str:
    """A GUID in lowercase, as stored; anything else unchanged (it then matches nothing)."""
    return text.lower() if _GUID.fullmatch(text) else text


def _guid(text: str, name: str) -> str:
    if _GUID.fullmatch(text):
        return text.lower()
    raise errors.invalid(f"Property '{name}' must be a GUID, e.g. 00000000-0000-0000-0000-000000000000; "
                         f"got '{text[:64]}'.", property=name)


def _assignment_id(user_id: str, role_id: str) -> str:
    return f"{user_id}_{role_id}"


def _parse_id(text: str) -> tuple[str, str]:
    """(userId, roleId) from "{userId}_{roleId}"; NOT_FOUND when it cannot be an id (it is simply not there)."""
    user, _, role = text.partition("_")
    if _GUID.fullmatch(user) and _GUID.fullmatch(role):
        return user.lower(), role.lower()
    raise _no_assignment(text)


def _no_assignment(text: str) -> errors.RpcError:
    return errors.not_found(f"No privileged role assignment with id '{text[:100]}'.", id=text[:100])


def _no_role(role_id: str) -> errors.RpcError:
    return errors.not_found(f"No role with id '{role_id}'.", roleId=role_id)


def _role(row) -> pb.Role:
    return pb.Role(id=str(row["id"]), name=row["name"], permissions=row["permissions"])


def _directory_role(role_id: str) -> pb.Role:
    return pb.Role(id=role_id, name=DIRECTORY_ROLES[role_id], directory_role=True)


def _settings() -> pb.RoleSettings:
    """What SelfActivate enforces on every role it can activate."""
    out = pb.RoleSettings()
    out.elevation_duration.FromTimedelta(DURATIONS["default"])
    out.min_elevation_duration.FromTimedelta(DURATIONS["min"])
    out.max_elevation_duration.FromTimedelta(timedelta(hours=MAX_HOURS))
    return out


def _read_only(role_id: str) -> errors.RpcError:
    return errors.invalid(f"The role '{role_id}' ({DIRECTORY_ROLES[role_id]}) is a directory role: it is assigned "
                          "in the directory and read-only here.", roleId=role_id)


async def _assignable(conn, role_id: str):
    """The row of a role that can be assigned here; 400 for a directory role, 404 for no role."""
    if role_id in DIRECTORY_ROLES:
        raise _read_only(role_id)
    if (role := await conn.fetchrow(ROLE, role_id)) is None:
        raise _no_role(role_id)
    return role


def _is_active(row, now: datetime) -> bool:
    return not row["eligible"] or (row["active_until"] is not None and row["active_until"] > now)


def _state(row, now: datetime) -> str:
    if not row["eligible"]:
        return PERMANENT
    return ACTIVE if _is_active(row, now) else ELIGIBLE


def _message(row, now: datetime, result_message: str | None = None) -> pb.RoleAssignment:
    user_id, role_id = row["user_id"], str(row["role_id"])
    out = pb.RoleAssignment(id=_assignment_id(user_id, role_id), user_id=user_id, role_id=role_id,
                            is_elevated=_is_active(row, now),
                            result_message=row["result_message"] if result_message is None else result_message)
    if row["eligible"] and out.is_elevated:
        set_time(out.expiration_date_time, row["active_until"])
    return out


def _duration(text: str) -> timedelta:
    """"min" (1 h), "default" or unset (8 h), or hours as a number > 0 and <= 24."""
    if not text:
        return DURATIONS["default"]
    word = text.strip().lower()
    if word in DURATIONS:
        return DURATIONS[word]
    if _HOURS.fullmatch(word) and 0 < float(word) <= MAX_HOURS:
        return timedelta(hours=float(word))
    raise errors.invalid(f"Property 'duration' must be 'min', 'default' or a number of hours greater than 0 "
                         f"and at most {MAX_HOURS}; got '{text[:64]}'.", property="duration")


def _reason(text: str, *, required: bool) -> str:
    if required and not text.strip():
        raise errors.invalid("Property 'reason' is required: say why the role is activated.", property="reason")
    if len(text) > MAX_REASON:
        raise errors.invalid(f"Property 'reason' must be at most {MAX_REASON} characters.", property="reason")
    return text.strip()


def _ticket(reason: str, number: str, system: str) -> str:
    """The audit reason with the ticket, if any, appended."""
    for name, value in (("ticketNumber", number), ("ticketSystem", system)):
        if len(value) > MAX_TICKET:
            raise errors.invalid(f"Property '{name}' must be at most {MAX_TICKET} characters.", property=name)
    ticket = " ".join(v.strip() for v in (system, number) if v.strip())
    return f"{reason} (ticket {ticket})".strip() if ticket else reason


def _scope(caller: Principal, request, now: datetime) -> list:
    """The parameters of LISTED: the caller's tenant, now, and the request's user and role (or the role of its
    assignment), if any. A role that cannot be one matches nothing (its absence is checked after the $filter)."""
    user_id = _guid(request.user_id, "userId") if request.user_id else ""
    return [caller.tenant_id, now, user_id, _canonical(request.role_id or request.assignment_id.partition("_")[2])]


@contextlib.contextmanager
def _odata_errors():
    try:
        yield
    except ODataError as exc:
        raise errors.invalid(str(exc)) from None


def _correlation_id(context) -> str:
    return next((v for k, v in context.invocation_metadata() or () if k == "x-request-id"), "")


# --- servicer ----------------------------------------------------------------------------------------


class RoleAssignmentServicer(pb_grpc.RoleAssignmentServiceServicer):
    def __init__(self, pool: asyncpg.Pool, verifier: TokenVerifier, clock: Callable[[], datetime]):
        self.pool = pool
        self.verifier = verifier
        self.clock = clock

    async def _caller(self, context, allowed) -> Principal:
        return await authorize(self.verifier, context.invocation_metadata(), allowed)

    async def _administrator(self, context) -> Principal:
        """The caller of a change to someone's assignment: an application, or a user in an administrator role."""
        caller = await self._caller(context, WRITE)
        if caller.delegated and not caller.directory_roles & ROLE_ADMINISTRATORS:
            raise errors.RpcError(grpc.StatusCode.PERMISSION_DENIED, "NOT_A_ROLE_ADMINISTRATOR",
                                  "Managing role assignments takes the directory role Global Administrator, "
                                  "Privileged Role Administrator or Intune Administrator.")
        return caller

    async def CreateRoleAssignment(self, request, context):
        """Active and permanent. Idempotent: an existing assignment is returned unchanged."""
        caller = await self._administrator(context)
        user_id, role_id = _guid(request.user_id, "userId"), _guid(request.role_id, "roleId")
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            role = await _assignable(conn, role_id)
            created = await conn.execute(INSERT, caller.tenant_id, user_id, role_id, now) == "INSERT 0 1"
            row = await conn.fetchrow(ASSIGNMENT, caller.tenant_id, user_id, role_id)
            if created:
                await _audit(conn, caller.tenant_id, caller, at=now, activity="Create PrivilegedRoleAssignment",
                             operation="Create", resource_id=_assignment_id(user_id, role_id),
                             resource_name=role["name"], new_state=PERMANENT,
                             correlation_id=_correlation_id(context))
        return _message(row, now)

    async def GetRoleAssignment(self, request, context):
        caller = await self._caller(context, READ)
        user_id, role_id = _parse_id(request.id)
        row = await self.pool.fetchrow(ASSIGNMENT, caller.tenant_id, user_id, role_id)
        if row is None:
            raise _no_assignment(request.id)
        return _message(row, self.clock())

    async def ListRoleAssignments(self, request, context):
        caller = await self._caller(context, READ)
        now = self.clock()
        scope = _scope(caller, request, now)
        with _odata_errors():
            rows, token = await listing.fetch_page(
                self.pool, LISTED, FIELDS, scope, filter=request.filter, order_by=request.order_by or "id",
                size=paging.page_size(request.page_size), token=request.page_token, skip=max(request.skip, 0),
                unorderable=UNORDERABLE)
            total = await listing.count(self.pool, LISTED, FIELDS, _scope(caller, request, now), request.filter) \
                if request.include_total_size else 0
        await self._parent(caller, request)
        return pb.ListRoleAssignmentsResponse(role_assignments=[_message(r, now) for r in rows],
                                              next_page_token=token, total_size=total)

    async def CountRoleAssignments(self, request, context):
        caller = await self._caller(context, READ)
        with _odata_errors():
            count = await listing.count(self.pool, LISTED, FIELDS, _scope(caller, request, self.clock()),
                                        request.filter)
        await self._parent(caller, request)
        return pb.CountRoleAssignmentsResponse(count=count)

    async def _parent(self, caller: Principal, request) -> None:
        """NOT_FOUND when the role or the assignment whose role's assignments are asked for is not there."""
        if request.assignment_id:
            if await self.pool.fetchrow(ASSIGNMENT, caller.tenant_id, *_parse_id(request.assignment_id)) is None:
                raise _no_assignment(request.assignment_id)
        elif request.role_id and (role_id := _canonical(request.role_id)) not in DIRECTORY_ROLES:
            if not _GUID.fullmatch(role_id) or await self.pool.fetchrow(ROLE, role_id) is None:
                raise _no_role(request.role_id[:100])

    async def DeleteRoleAssignment(self, request, context):
        caller = await self._administrator(context)
        user_id, role_id = _parse_id(request.id)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(ASSIGNMENT_FOR_UPDATE, caller.tenant_id, user_id, role_id)
            if row is None:
                raise _no_assignment(request.id)
            await conn.execute(DELETE, caller.tenant_id, user_id, role_id)
            await _audit(conn, caller.tenant_id, caller, at=now, activity="Delete PrivilegedRoleAssignment",
                         operation="Delete", resource_id=_assignment_id(user_id, role_id),
                         resource_name=row["role_name"], old_state=_state(row, now),
                         correlation_id=_correlation_id(context))
        return pb.DeleteRoleAssignmentResponse()

    async def MakePermanent(self, request, context):
        caller = await self._administrator(context)
        user_id, role_id = _parse_id(request.id)
        reason = _ticket(_reason(request.reason, required=False), request.ticket_number, request.ticket_system)
        return await self._change(caller, context, user_id, role_id, request.id, eligible=False, active_until=None,
                                  activity="MakePermanent PrivilegedRoleAssignment", reason=reason)

    async def MakeEligible(self, request, context):
        """Eligible and inactive; an active eligible assignment is deactivated, an inactive one is a no-op."""
        caller = await self._administrator(context)
        user_id, role_id = _parse_id(request.id)
        return await self._change(caller, context, user_id, role_id, request.id, eligible=True, active_until=None,
                                  activity="MakeEligible PrivilegedRoleAssignment")

    async def UpdateRoleAssignment(self, request, context):
        """A new end for an active activation: later than now and at most MAX_HOURS from now."""
        caller = await self._administrator(context)
        user_id, role_id = _parse_id(request.id)
        if not request.HasField("expiration_date_time"):
            raise errors.invalid("Property 'expirationDateTime' is required.", property="expirationDateTime")
        end, now = request.expiration_date_time.ToDatetime(tzinfo=timezone.utc), self.clock()
        if not now < end <= now + timedelta(hours=MAX_HOURS):
            raise errors.invalid(f"Property 'expirationDateTime' must be later than now and at most {MAX_HOURS} "
                                 "hours from now.", property="expirationDateTime")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(ASSIGNMENT_FOR_UPDATE, caller.tenant_id, user_id, role_id)
            if row is None:
                raise _no_assignment(request.id)
            if _state(row, now) != ACTIVE:
                raise errors.RpcError(grpc.StatusCode.FAILED_PRECONDITION, "NOT_ACTIVATED",
                                      "Only an activated eligible assignment has an expirationDateTime to change "
                                      "(a permanent one has none; an inactive one is activated by its user).")
            return await self._write(conn, caller, context, row, now, eligible=True, active_until=end,
                                     activity="Update PrivilegedRoleAssignment", reason="")

    async def SelfActivate(self, request, context):
        """The caller's own eligible assignment of the role becomes active for `duration` (Graph's delegated
        permission for it, as for any role change: not just any token of the user)."""
        caller = await self._self(context, "selfActivate")
        role_id = _guid(request.role_id, "roleId")
        reason = _ticket(_reason(request.reason, required=True), request.ticket_number, request.ticket_system)
        length = _duration(request.duration)
        async with self.pool.acquire() as conn, conn.transaction():
            row, now = await self._own(conn, caller, role_id, "activate")
            if not row["eligible"]:
                return _message(row, now, "The role assignment is permanent and already active; "
                                          "it needs no activation.")
            return await self._write(conn, caller, context, row, now, eligible=True, active_until=now + length,
                                     activity="SelfActivate PrivilegedRoleAssignment", reason=reason)

    async def SelfDeactivate(self, request, context):
        """The caller's own active activation of the role ends now (an inactive one is left as it is)."""
        caller = await self._self(context, "selfDeactivate")
        role_id = _guid(request.role_id, "roleId")
        async with self.pool.acquire() as conn, conn.transaction():
            row, now = await self._own(conn, caller, role_id, "deactivate")
            if not row["eligible"]:
                return _message(row, now, "The role assignment is permanent: only an administrator can end it "
                                          "(makeEligible).")
            return await self._write(conn, caller, context, row, now, eligible=True, active_until=None,
                                     activity="SelfDeactivate PrivilegedRoleAssignment", reason="")

    async def _self(self, context, action: str) -> Principal:
        caller = await self._caller(context, WRITE)
        if not (caller.delegated and caller.object_id):
            raise errors.RpcError(grpc.StatusCode.PERMISSION_DENIED, "DELEGATED_ONLY",
                                  f"{action} needs a signed-in user (a delegated token): "
                                  "an application cannot change a role of its own.")
        return caller

    async def _own(self, conn, caller: Principal, role_id: str, verb: str):
        """(the caller's locked assignment of an assignable role, now); 404 when there is none."""
        await _assignable(conn, role_id)
        row = await conn.fetchrow(ASSIGNMENT_FOR_UPDATE, caller.tenant_id, _canonical(caller.object_id), role_id)
        if row is None:
            raise errors.not_found(f"You have no assignment of the role '{role_id}' to {verb}.", roleId=role_id)
        return row, self.clock()

    async def ListRoles(self, request, context):
        """The Intune roles, then the directory roles (read-only)."""
        await self._caller(context, READ)
        rows = await self.pool.fetch(ROLES)
        return pb.ListRolesResponse(roles=[*map(_role, rows), *map(_directory_role, DIRECTORY_ROLES)])

    async def GetRole(self, request, context):
        """A role with its settings and the summary of its assignments in the caller's tenant (a directory role:
        no settings or summary, nothing of it is held here)."""
        caller = await self._caller(context, READ)
        role_id = _canonical(request.id)
        if role_id in DIRECTORY_ROLES:
            return _directory_role(role_id)
        row = await self.pool.fetchrow(ROLE, role_id) if _GUID.fullmatch(role_id) else None
        if row is None:
            raise _no_role(request.id[:100])
        counts = await self.pool.fetchrow(SUMMARY, caller.tenant_id, role_id, self.clock())
        role = _role(row)
        role.settings.CopyFrom(_settings())
        role.summary.CopyFrom(pb.RoleSummary(users_count=counts["users"], managed_count=counts["managed"],
                                             elevated_count=counts["elevated"]))
        return role

    async def GetMyPermissions(self, request, context):
        caller = await self._caller(context, MY_PERMISSIONS)
        held = await active_roles(self.pool, caller.tenant_id, caller.object_id, self.clock()) if caller.delegated \
            else {}
        return pb.MyPermissions(permissions=sorted(granted(held)), delegated=caller.delegated,
                                roles=list(held))

    async def _change(self, caller: Principal, context, user_id: str, role_id: str, given_id: str, *,
                      eligible: bool, active_until: datetime | None, activity: str, reason: str = ""):
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(ASSIGNMENT_FOR_UPDATE, caller.tenant_id, user_id, role_id)
            if row is None:
                raise _no_assignment(given_id)
            return await self._write(conn, caller, context, row, now, eligible=eligible, active_until=active_until,
                                     activity=activity, reason=reason)

    async def _write(self, conn, caller: Principal, context, row, now: datetime, *, eligible: bool,
                     active_until: datetime | None, activity: str, reason: str) -> pb.RoleAssignment:
        """Stores the new state of a locked row and audits it; an unchanged state is neither written nor audited."""
        new = {**dict(row), "eligible": eligible, "active_until": active_until, "result_message": ""}
        old_state, new_state = _state(row, now), _state(new, now)
        if old_state == new_state and (new_state != ACTIVE or row["active_until"] == active_until):
            return _message(row, now)
        await conn.execute(UPDATE, caller.tenant_id, row["user_id"], row["role_id"], eligible, active_until, "")
        await _audit(conn, caller.tenant_id, caller, at=now, activity=activity, operation="Action",
                     resource_id=_assignment_id(row["user_id"], str(row["role_id"])), resource_name=row["role_name"],
                     old_state=old_state, new_state=new_state, reason=reason, correlation_id=_correlation_id(context))
        return _message(new, now)
