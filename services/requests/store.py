"""SQL for elevation requests, their audit trail and the decisions devices watch. Every statement filters by
tenant except the expiry sweep, which works across tenants by design and then acts row by row."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ..common import db, listing
from ..common.odata import Field
from ..common.optional import ELEVATION_REQUEST, marked
from .lifecycle import TRANSITIONS, Action, Policy, State, effective, transition

TABLE = "requests.elevation_requests"
# The state at the instant of the query ($2): open requests past their deadline are expired.
EFFECTIVE_STATUS = (
    "(CASE WHEN status IN ('pending', 'approved') AND valid_until <= $2 THEN 'expired' ELSE status END)")


def status_is(status: str) -> str:
    """`EFFECTIVE_STATUS = status` as conditions on the stored columns, which the indexes serve (the open ones by
    elevation_requests_open_by_created). `status` is a State value, never caller text."""
    state = State(status).value
    if state in ("pending", "approved"):
        return f"(status = '{state}' AND valid_until > $2)"
    if state == "expired":
        return "(status = 'expired' OR (status IN ('pending', 'approved') AND valid_until <= $2))"
    return f"status = '{state}'"


_DETAIL = {
    "fileHash": "file_hash", "fileName": "file_name", "filePath": "file_path",
    "fileDescription": "file_description", "publisherName": "publisher_name", "publisherCert": "publisher_cert",
    "productName": "product_name", "productInternalName": "product_internal_name",
    "productVersion": "product_version",
}
DETAIL = tuple(_DETAIL.values())  # the application detail's columns, named as its proto fields
FIELDS: dict[str, Field] = marked({
    "id": Field("id::text", "string", casefold=True),
    "requestedByUserId": Field("requested_by_user_id", "string"),
    "requestedByUserPrincipalName": Field("requested_by_upn", "string"),
    "requestedOnDeviceId": Field("device_id", "string"),
    "deviceName": Field("device_name", "string"),
    "requestCreatedDateTime": Field("created_at", "datetime"),
    "requestLastModifiedDateTime": Field("modified_at", "datetime"),
    "requestJustification": Field("request_justification", "string"),
    "status": Field(EFFECTIVE_STATUS, "enum", tuple(s.value for s in State), equals=status_is),
    "reviewCompletedByUserId": Field("reviewed_by_user_id", "string"),
    "reviewCompletedByUserPrincipalName": Field("reviewed_by_upn", "string"),
    "reviewCompletedDateTime": Field("reviewed_at", "datetime"),
    "requestExpiryDateTime": Field("valid_until", "datetime"),
    "reviewerJustification": Field("reviewer_justification", "string"),
    **{f"applicationDetail/{name}": Field(column, "string", casefold=name == "fileHash")
       for name, column in _DETAIL.items()},
}, ELEVATION_REQUEST)
UNORDERABLE = frozenset({"reviewCompletedDateTime"})  # nullable: no keyset on it
SCOPED = f"{TABLE} WHERE tenant_id = $1 AND $2::timestamptz IS NOT NULL"  # $2: now, for EFFECTIVE_STATUS
AUDIT_SCOPED = "requests.audit_events WHERE tenant_id = $1"
AUDIT_FIELDS: dict[str, Field] = {
    "id": Field("id::text", "string", casefold=True),
    "activityDateTime": Field("at", "datetime"),
    "activity": Field("activity", "string"),
    "activityOperationType": Field("operation", "string"),
    "activityResult": Field("result", "string"),
    "activityType": Field("activity", "string"),
    "category": Field("(CASE resource_type WHEN 'privilegedRoleAssignment' THEN 'Role' "
                      "ELSE 'ElevationRequests' END)", "string"),
    "componentName": Field("'EndpointPrivilegeManagement'", "string"),
    "correlationId": Field("correlation_id", "string"),
    "actor/userId": Field("actor_id", "string"),
    "actor/userPrincipalName": Field("actor_upn", "string"),
    "actor/type": Field("actor_type", "string"),
    "resources/resourceId": Field("resource_id", "string", casefold=True),  # each event has one resource
}


POLICY_TTL = 30.0  # seconds a replica trusts its copy of a tenant's policy



def audit_from(source: str, first: int) -> str:
    """The audit event of a change to the request in CTE `source`; its 11 parameters (see _audit_values) are
    ${first} on."""
    p = [f"${first + i}" for i in range(11)]
    return ("INSERT INTO requests.audit_events (tenant_id, id, at, activity, operation, actor_type, actor_id, "
            "actor_upn, resource_type, resource_id, resource_name, old_state, new_state, reason, correlation_id) "
            f"SELECT tenant_id, {', '.join(p[:7])}, 'ElevationRequest', id::text, file_name, {', '.join(p[7:])} "
            f"FROM {source}")  # nosec B608 # constant table, bound values


# A transition: the update (only of the version read), its audit event and the device's decision. The decision
# takes a per-device lock first, so per device decisions commit in sequence order (a cursor never skips one).
_MOVE = f"""
WITH moved AS (
    UPDATE {TABLE} SET status = $4, modified_at = $5, valid_until = COALESCE($6, valid_until),
        version = version + 1,
        reviewed_by_user_id = CASE WHEN $7 THEN $8 ELSE reviewed_by_user_id END,
        reviewed_by_upn = CASE WHEN $7 THEN $9 ELSE reviewed_by_upn END,
        reviewed_at = CASE WHEN $7 THEN $5 ELSE reviewed_at END,
        reviewer_justification = CASE WHEN $7 THEN $10 ELSE reviewer_justification END
    WHERE tenant_id = $1 AND id = $2 AND {{condition}}
    RETURNING *
), audited AS (
    {audit_from("moved", 11)}
), decided AS (
    INSERT INTO requests.decisions (tenant_id, device_id, request_id, file_hash, status, decided_at, valid_until)
    SELECT m.tenant_id, m.device_id, m.id, m.file_hash, m.status, $5,
           CASE WHEN m.status = 'approved' THEN m.valid_until END
    FROM moved m, LATERAL (SELECT pg_advisory_xact_lock(
        hashtextextended('epm.decisions.' || m.tenant_id || '.' || m.device_id, 0))) AS in_order
)
SELECT * FROM moved"""  # nosec B608 # constant table, bound values
# ... of the version read ($3)
MOVE = _MOVE.format(condition="version = $3")
# ... in one statement, for a reviewer's action that has one source state ($3), open until $5 (now). Nothing
# changes (no row) when anything is off; the caller then reads the row to say what.
REVIEW = _MOVE.format(condition="status = $3 AND valid_until > $5 AND ($22 = '' OR $22 = '*' OR version::text = $22) "
                                "AND NOT ($23 AND lower(requested_by_user_id) = lower($8))")


# A user's ($4) and a device's ($5) requests since $3, by state at $2, without request $6.
HISTORY_COUNTS = {
    "total": "true", "pending": "s = 'pending'",
    "approved": "s IN ('approved', 'completed') OR (s IN ('revoked', 'expired') AND reviewed_at IS NOT NULL)",
    "denied": "s = 'denied'", "revoked": "s = 'revoked' AND reviewed_at IS NOT NULL", "expired": "s = 'expired'",
    "malicious": "verdict = 'malicious'",
    "last_day": "created_at > $2::timestamptz - interval '1 day'",
}
HISTORY = (
    "SELECT " + ", ".join(
        f"count(*) FILTER (WHERE {subject} AND ({condition})) AS {who}_{name}"
        for who, subject in (("user", "requested_by_user_id = $4"), ("device", "device_id = $5"))
        for name, condition in HISTORY_COUNTS.items())
    + ", count(DISTINCT requested_by_user_id) FILTER (WHERE requested_by_user_id = $4) AS user_distinct_users"
    + ", count(DISTINCT requested_by_user_id) FILTER (WHERE device_id = $5) AS device_distinct_users"
    + f" FROM (SELECT *, {EFFECTIVE_STATUS} AS s FROM {TABLE} WHERE tenant_id = $1 AND created_at >= $3"
    " AND (requested_by_user_id = $4 OR device_id = $5) AND id IS DISTINCT FROM $6) AS r")  # nosec B608 # constant table, bound values


@dataclass(frozen=True)
class Actor:
    """Who caused a change, as the audit trail records it."""

    type: str  # "ItPro" (a user), "Application", "System"
    id: str = ""
    upn: str = ""
    correlation_id: str = ""


SYSTEM = Actor("System")


class NotFound(Exception):
    pass


class ETagMismatch(Exception):
    pass


class TooManyOpen(Exception):
    pass


class SelfReview(Exception):
    pass


class NotPending(Exception):
    """Only a pending request's justification can change; the message names the current state."""

    def __init__(self, current: State):
        super().__init__(f"Only a pending request can be changed; this one is {current.value}.")
        self.current = current


class RequestStore:
    def __init__(self, pool: asyncpg.Pool, defaults: Policy):
        self.pool = pool
        self.defaults = defaults
        self._policies: dict[str, tuple[Policy, float]] = {}  # tenant -> (policy, read at, monotonic)

    async def policy(self, conn, tenant: str) -> Policy:
        """The tenant's policy; read at most every POLICY_TTL seconds (other replicas see a change that late)."""
        cached = self._policies.get(tenant)
        if cached and time.monotonic() - cached[1] < POLICY_TTL:
            return cached[0]
        row = await conn.fetchrow(
            "SELECT approval_window, pending_ttl, max_open_per_device FROM requests.tenant_policies "
            "WHERE tenant_id = $1", tenant)
        policy = Policy(*row) if row else self.defaults
        self._policies[tenant] = (policy, time.monotonic())
        return policy

    async def set_policy(self, tenant: str, policy: Policy) -> None:
        await self.pool.execute(
            "INSERT INTO requests.tenant_policies VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE "
            "SET approval_window = $2, pending_ttl = $3, max_open_per_device = $4",
            tenant, policy.approval_window, policy.pending_ttl, policy.max_open_per_device)
        self._policies.pop(tenant, None)

    # --- requests -----------------------------------------------------------------------------------

    async def create(self, tenant: str, fields: dict, actor: Actor, now: datetime) -> tuple[asyncpg.Record, bool]:
        """(row, created). An open request for the same device, user and file is returned instead of a new one;
        more than the tenant's cap of open requests on one device raises TooManyOpen."""
        async with self.pool.acquire() as conn, db.locked_transaction(
                conn, f"epm.requests.{tenant}.{fields['device_id']}"):
            policy = await self.policy(conn, tenant)
            open_rows = await conn.fetch(
                f"SELECT * FROM {TABLE} WHERE tenant_id = $1 AND device_id = $2 "  # nosec B608 # constant table, bound values
                "AND status IN ('pending', 'approved') FOR UPDATE", tenant, fields["device_id"])
            still_open = []
            for row in open_rows:
                if effective(State(row["status"]), row["valid_until"], now) is State.EXPIRED:
                    await self._move(conn, row, Action.EXPIRE, SYSTEM, now, policy)
                else:
                    still_open.append(row)
            for row in still_open:
                if same_request(row, fields):
                    return row, False
            if len(still_open) >= policy.max_open_per_device:
                raise TooManyOpen
            values = dict(fields, tenant_id=tenant, id=uuid.uuid4(), status=State.PENDING.value, created_at=now,
                          modified_at=now, valid_until=now + policy.pending_ttl)
            names, n = list(values), len(values)
            row = await conn.fetchrow(
                f"WITH created AS (INSERT INTO {TABLE} ({', '.join(names)}) VALUES "
                f"({', '.join(f'${i + 1}' for i in range(n))}) RETURNING *), "  # nosec B608 # constant table, bound values
                f"audited AS ({audit_from('created', n + 1)}) SELECT * FROM created",
                *values.values(), *_audit_values(actor, now, "Create ElevationRequest", "Create", "",
                                                 State.PENDING.value, fields["request_justification"]))
            return row, True

    async def get(self, tenant: str, request_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT * FROM {TABLE} WHERE tenant_id = $1 AND id = $2",  # nosec B608 # constant table, bound values
                                        tenant, request_id)

    async def act(self, tenant: str, request_id: str, action: Action, actor: Actor, now: datetime, *,
                  justification: str = "", etag: str = "", forbid_self: bool = False) -> asyncpg.Record:
        """Applies a reviewer's action: one read, then one conditional write of the version that was read.
        Of two concurrent reviewers exactly one wins; the other reads again and meets the new state
        (TransitionError)."""
        review = await self._review(tenant, request_id, action, actor, now, justification, etag, forbid_self)
        if review is not None:
            return review
        while True:
            row = _current(await self.get(tenant, request_id), etag)
            if forbid_self and actor.id and actor.id.lower() == row["requested_by_user_id"].lower():  # GUIDs
                raise SelfReview
            policy = await self.policy(self.pool, tenant)
            if (moved := await self._move(self.pool, row, action, actor, now, policy, justification)) is not None:
                return moved

    async def update_justification(self, tenant: str, request_id: str, text: str, actor: Actor, now: datetime,
                                   etag: str = "") -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._locked(conn, tenant, request_id, etag)
            current = effective(State(row["status"]), row["valid_until"], now)
            if current is not State.PENDING:
                raise NotPending(current)
            updated = await conn.fetchrow(
                f"UPDATE {TABLE} SET request_justification = $3, modified_at = $4, version = version + 1 "
                "WHERE tenant_id = $1 AND id = $2 RETURNING *", tenant, row["id"], text, now)  # nosec B608 # constant table, bound values
            await audit(conn, tenant, actor, now, "Patch ElevationRequest", "Patch", row["id"],
                        resource_name=row["file_name"], old_state=current.value, new_state=current.value,
                        reason=text)
            return updated

    async def delete(self, tenant: str, request_id: str, actor: Actor, now: datetime, etag: str = "") -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._locked(conn, tenant, request_id, etag)
            await conn.execute(f"DELETE FROM {TABLE} WHERE tenant_id = $1 AND id = $2", tenant, row["id"])  # nosec B608 # constant table, bound values
            await audit(conn, tenant, actor, now, "Delete ElevationRequest", "Delete", row["id"],
                        resource_name=row["file_name"],
                        old_state=effective(State(row["status"]), row["valid_until"], now).value)

    async def close(self, tenant: str, request_id: str, source: str, actions_taken: str, actor: Actor,
                    now: datetime, only_by: str = "") -> asyncpg.Record:
        """Ends a request of `source` (Action.CLOSE), saying what was done; with `only_by`, only that
        requester's own (anyone else's does not exist for them)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._locked(conn, tenant, request_id, "")
            if row["source"] != source or (only_by and row["requested_by_user_id"].lower() != only_by.lower()):
                raise NotFound
            await self._move(conn, row, Action.CLOSE, actor, now, await self.policy(conn, tenant), actions_taken)
            return await conn.fetchrow(
                f"UPDATE {TABLE} SET actions_taken = $3, closing_agent_upn = $4 WHERE tenant_id = $1 AND id = $2 "
                "RETURNING *", tenant, row["id"], actions_taken, actor.upn)  # nosec B608 # constant table, bound values

    async def complete(self, tenant: str, device_id: str, file_hash: str, used_at: datetime, actor: Actor,
                       now: datetime) -> list[str]:
        """Completes the approved requests for this device and file whose window contains `used_at`."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT * FROM {TABLE} WHERE tenant_id = $1 AND device_id = $2 AND file_hash = $3 "
                "AND status = 'approved' AND reviewed_at <= $4 AND valid_until > $4 FOR UPDATE",  # nosec B608 # constant table, bound values
                tenant, device_id, file_hash.lower(), used_at)
            policy = await self.policy(conn, tenant) if rows else self.defaults
            for row in rows:
                await self._move(conn, row, Action.COMPLETE, actor, now, policy)
            return [str(r["id"]) for r in rows]

    async def expire_due(self, now: datetime, limit: int = 500) -> int:
        """Writes down the expiries that time already decided; safe with many replicas (SKIP LOCKED)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT * FROM {TABLE} WHERE status IN ('pending', 'approved') AND valid_until <= $1 "
                "ORDER BY valid_until LIMIT $2 FOR UPDATE SKIP LOCKED", now, limit)  # nosec B608 # constant table, bound values
            # Device by device: every sweep takes the per-device decision locks in one order (no deadlock).
            for row in sorted(rows, key=lambda r: (r["tenant_id"], r["device_id"])):
                await self._move(conn, row, Action.EXPIRE, SYSTEM, now, self.defaults)
            return len(rows)

    async def list(self, tenant: str, now: datetime, *, filter: str, order_by: str, size: int, token: str,
                   skip: int) -> tuple[list, str]:
        return await listing.fetch_page(
            self.pool, SCOPED, FIELDS, [tenant, now], filter=filter,
            order_by=order_by or "requestCreatedDateTime desc", size=size, token=token, skip=skip,
            unorderable=UNORDERABLE)

    async def count(self, tenant: str, now: datetime, filter: str) -> int:
        return await listing.count(self.pool, SCOPED, FIELDS, [tenant, now], filter)

    async def set_reputation(self, tenant: str, request_id, **summary) -> None:
        """Stores the reputation service's verdict (not a change of the request: no version, no audit)."""
        names = list(summary)
        await self.pool.execute(
            f"UPDATE {TABLE} SET {', '.join(f'{n} = ${i + 3}' for i, n in enumerate(names))} "
            "WHERE tenant_id = $1 AND id = $2", tenant, request_id, *summary.values())  # nosec B608 # callers' constant names

    async def has_asked_on(self, tenant: str, user_id: str, device_id: str) -> bool:
        return await self.pool.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {TABLE} WHERE tenant_id = $1 AND device_id = $2 "
            "AND requested_by_user_id = $3)", tenant, device_id, user_id)  # nosec B608 # constant table, bound values

    async def history(self, tenant: str, now: datetime, since: datetime, user_id: str, device_id: str,
                      exclude: uuid.UUID | None) -> dict[str, dict[str, int]]:
        """Counts of the user's and the device's requests created since `since`, by state at `now`."""
        row = await self.pool.fetchrow(HISTORY, tenant, now, since, user_id, device_id, exclude)
        return {who: {name: row[f"{who}_{name}"] for name in (*HISTORY_COUNTS, "distinct_users")}
                for who in ("user", "device")}

    # --- audit and decisions ------------------------------------------------------------------------

    async def audit_events(self, tenant: str, *, filter: str, order_by: str, size: int, token: str,
                           skip: int) -> tuple[list, str]:
        return await listing.fetch_page(
            self.pool, AUDIT_SCOPED, AUDIT_FIELDS, [tenant], filter=filter,
            order_by=order_by or "activityDateTime desc", size=size, token=token, skip=skip)

    async def count_audit_events(self, tenant: str, filter: str) -> int:
        return await listing.count(self.pool, AUDIT_SCOPED, AUDIT_FIELDS, [tenant], filter)

    async def decisions(self, tenant: str, device_id: str, after: int, limit: int = 500) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM requests.decisions WHERE tenant_id = $1 AND device_id = $2 AND sequence > $3 "
            "ORDER BY sequence LIMIT $4", tenant, device_id, after, limit)

    # --- internals ----------------------------------------------------------------------------------

    async def _locked(self, conn, tenant: str, request_id: str, etag: str) -> asyncpg.Record:
        return _current(await conn.fetchrow(f"SELECT * FROM {TABLE} WHERE tenant_id = $1 AND id = $2 FOR UPDATE",  # nosec B608 # constant table, bound values
                                            tenant, request_id), etag)

    async def _review(self, tenant: str, request_id: str, action: Action, actor: Actor, now: datetime,
                      justification: str, etag: str, forbid_self: bool) -> asyncpg.Record | None:
        """The usual case of a reviewer's action, without reading first; None when it does not apply."""
        sources = [state for (state, act), _ in TRANSITIONS.items() if act is action]
        if len(sources) != 1:
            return None
        new = transition(sources[0], action)
        valid_until = now + (await self.policy(self.pool, tenant)).approval_window if new is State.APPROVED else None
        return await self.pool.fetchrow(
            REVIEW, tenant, request_id, sources[0].value, new.value, now, valid_until, True, actor.id, actor.upn,
            justification, *_audit_values(actor, now, f"{action.value.title()} ElevationRequest", "Action",
                                          sources[0].value, new.value, justification), etag, forbid_self)

    async def _move(self, conn, row, action: Action, actor: Actor, now: datetime, policy: Policy,
                    justification: str = "") -> asyncpg.Record | None:
        """One transition with its audit event and the decision the device will see, in one statement.
        None when the row is no longer the version read (someone else changed it first).
        The state machine decides from the state at `now`, not the last written one."""
        stored = State(row["status"])
        current = effective(stored, row["valid_until"], now)
        # Reviewers act on the state at `now`; the system writes down what already happened (an expiry
        # that time decided, a use inside the window reported late), so it starts from the stored state.
        new = transition(stored if action in (Action.EXPIRE, Action.COMPLETE) else current, action)
        valid_until = now + policy.approval_window if new is State.APPROVED else row["valid_until"]
        if new is State.EXPIRED:
            valid_until = min(row["valid_until"], now)
        review = action in (Action.APPROVE, Action.DENY, Action.REVOKE)
        return await conn.fetchrow(
            MOVE, row["tenant_id"], row["id"], row["version"], new.value, now, valid_until, review, actor.id,
            actor.upn, justification,
            *_audit_values(actor, now, f"{action.value.title()} ElevationRequest", "Action", stored.value,
                           new.value, justification))


def same_request(open_row, fields: dict) -> bool:
    """Whether a new request repeats an open one on its device: an MMD ticket by its partner ticket id, a Graph
    request by its user and file."""
    source = fields.get("source", "graph")
    if source != open_row["source"]:
        return False
    if source == "mmd":
        return open_row["partner_ticket_id"] == fields["partner_ticket_id"]
    return (open_row["requested_by_user_id"], open_row["file_hash"]) == (fields["requested_by_user_id"],
                                                                         fields["file_hash"])


def _current(row: asyncpg.Record | None, etag: str) -> asyncpg.Record:
    """The row read, if it exists and is the version an If-Match ETag (if any) names."""
    if row is None:
        raise NotFound
    if etag and etag != "*" and etag != str(row["version"]):
        raise ETagMismatch
    return row


def _audit_values(actor: Actor, at: datetime, activity: str, operation: str, old_state: str, new_state: str,
                  reason: str) -> tuple:
    """The parameters of AUDIT_FROM, in order."""
    return (uuid.uuid4(), at, activity, operation, actor.type, actor.id, actor.upn, old_state, new_state, reason,
            actor.correlation_id)


async def audit(conn, tenant: str, actor: Actor, at: datetime, activity: str, operation: str, resource_id,
                *, resource_type: str = "ElevationRequest", resource_name: str = "", old_state: str = "",
                new_state: str = "", reason: str = "") -> None:
    await conn.execute(
        "INSERT INTO requests.audit_events (tenant_id, id, at, activity, operation, actor_type, actor_id, "
        "actor_upn, resource_type, resource_id, resource_name, old_state, new_state, reason, correlation_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        tenant, uuid.uuid4(), at, activity, operation, actor.type, actor.id, actor.upn, resource_type,
        str(resource_id), resource_name, old_state, new_state, reason, actor.correlation_id)
