"""gRPC servicer for change notification subscriptions: who may subscribe, the checks, and the rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
import asyncpg
import grpc
from epm.requests.v1 import subscription_service_pb2 as pb
from epm.requests.v1 import subscription_service_pb2_grpc as pb_grpc

from ..common import errors, feed
from ..common.auth import TokenVerifier
from ..common.odata import ODataError, compile_filter
from ..common.timestamps import set_time
from .delivery import SUBSCRIPTIONS, validate_endpoint
from .notifications import (
    CHANGE_FIELDS,
    SubscriptionError,
    client_state_problem,
    expiration_problem,
    parse_change_types,
    parse_resource,
    url_problem,
)
from .servicer import READ, VIEW, caller

NOUN = "subscription"
UPDATABLE = frozenset({"expiration_date_time", "notification_url", "client_state"})
MAX_PER_TENANT = 1000
KEPT_AFTER_EXPIRY = timedelta(days=1)  # an expired subscription can still be read (and renewed) this long


async def delete_expired(pool: asyncpg.Pool, now: datetime) -> int:
    """Removes the subscriptions expired more than a day ago, in every tenant (the sweeper's job, by design)."""
    done = await pool.execute(f"DELETE FROM {SUBSCRIPTIONS} WHERE expires_at < $1", now - KEPT_AFTER_EXPIRY)  # nosec B608 # constant table, bound values
    return int(done.split()[-1])


def to_proto(row, now: datetime) -> pb.Subscription:
    state = (pb.DELIVERY_STATE_EXPIRED if row["expires_at"] <= now else
             pb.DELIVERY_STATE_PAUSED if row["paused_reason"] else pb.DELIVERY_STATE_ACTIVE)
    message = pb.Subscription(
        id=str(row["id"]), resource=row["resource"], change_type=",".join(row["change_types"]),
        client_state=row["client_state"], notification_url=row["notification_url"],
        application_id=row["application_id"], creator_id=row["creator_id"], latest_supported_tls_version="v1_2",
        delivery=pb.Delivery(state=state, paused_reason=row["paused_reason"],
                             failed_attempts=row["failed_attempts"], last_error=row["last_error"]))
    set_time(message.expiration_date_time, row["expires_at"])
    set_time(message.delivery.next_attempt_date_time, row["next_attempt_at"])
    if row["last_delivered_at"] is not None:
        set_time(message.delivery.last_delivered_date_time, row["last_delivered_at"])
    return message


def _checked(problem: str | None) -> None:
    if problem:
        raise errors.invalid(problem)


class SubscriptionServicer(pb_grpc.SubscriptionServiceServicer):
    def __init__(self, pool: asyncpg.Pool, verifier: TokenVerifier, clock: Callable[[], datetime],
                 http: Callable[[], aiohttp.ClientSession], private_allowed: bool = False):
        self.pool, self.verifier, self.clock, self.http = pool, verifier, clock, http
        self.private_allowed = private_allowed

    async def _caller(self, context):
        """Subscribing needs what reading the requests needs (a user: the view right too)."""
        principal, _ = await caller(self.verifier, self.pool, self.clock(), context, READ, VIEW)
        return principal

    async def _validated(self, url: str) -> None:
        _checked(url_problem(url, self.private_allowed))
        if failure := await validate_endpoint(self.http(), url):
            raise errors.invalid(f"Subscription validation request failed: {failure}.")

    async def CreateSubscription(self, request, context):
        principal = await self._caller(context)
        given, now = request.subscription, self.clock()
        try:
            filter_text = parse_resource(given.resource)
            change_types = parse_change_types(given.change_type)
            compile_filter(filter_text, CHANGE_FIELDS, [])
            if filter_text and "deleted" in change_types:
                raise SubscriptionError("A $filter cannot go with changeType deleted: a deleted request has nothing "
                                        "left to filter on. Subscribe to deleted without a filter.")
        except (SubscriptionError, ODataError) as exc:
            raise errors.invalid(str(exc)) from None
        if not given.HasField("expiration_date_time"):
            raise errors.invalid("expirationDateTime is required.")
        expires = given.expiration_date_time.ToDatetime(now.tzinfo)
        _checked(expiration_problem(expires, now) or client_state_problem(given.client_state))
        await self._validated(given.notification_url)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                               f"epm.subscriptions.{principal.tenant_id}")
            if await conn.fetchval(f"SELECT count(*) FROM {SUBSCRIPTIONS} WHERE tenant_id = $1 AND expires_at > $2",  # nosec B608 # constant table, bound values
                                   principal.tenant_id, now) >= MAX_PER_TENANT:
                raise errors.RpcError(grpc.StatusCode.PERMISSION_DENIED, "TOO_MANY_SUBSCRIPTIONS",
                                      f"A tenant may have at most {MAX_PER_TENANT} active subscriptions.")
            start = await feed.head(conn)  # changes from now on
            row = await conn.fetchrow(
                f"INSERT INTO {SUBSCRIPTIONS} (tenant_id, id, creator_id, application_id, resource, filter, "  # nosec B608 # constant table, bound values
                "change_types, notification_url, client_state, expires_at, created_at, cursor_txid, cursor_id, "
                "next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $11) RETURNING *",
                principal.tenant_id, uuid.uuid4(), principal.object_id,
                "" if principal.delegated else principal.object_id, given.resource.strip(), filter_text,
                change_types, given.notification_url, given.client_state, expires, now, start.txid, start.id)
        return to_proto(row, now)

    async def _own(self, context, subscription_id: str):
        """(principal, row) of the caller's own subscription; anyone else's does not exist for them."""
        principal = await self._caller(context)
        row = await self.pool.fetchrow(
            f"SELECT * FROM {SUBSCRIPTIONS} WHERE tenant_id = $1 AND id = $2 AND creator_id = $3",  # nosec B608 # constant table, bound values
            principal.tenant_id, errors.uuid_id(subscription_id, NOUN), principal.object_id)
        if row is None:
            raise errors.no_such(NOUN, subscription_id)
        return principal, row

    async def GetSubscription(self, request, context):
        _, row = await self._own(context, request.id)
        return to_proto(row, self.clock())

    async def ListSubscriptions(self, request, context):
        principal = await self._caller(context)
        rows = await self.pool.fetch(
            f"SELECT * FROM {SUBSCRIPTIONS} WHERE tenant_id = $1 AND creator_id = $2 ORDER BY created_at, id",  # nosec B608 # constant table, bound values
            principal.tenant_id, principal.object_id)
        now = self.clock()
        return pb.ListSubscriptionsResponse(subscriptions=[to_proto(r, now) for r in rows])

    async def UpdateSubscription(self, request, context):
        _, row = await self._own(context, request.id)
        paths = set(request.update_mask.paths)
        if not paths or paths - UPDATABLE:
            raise errors.invalid("Only expirationDateTime, notificationUrl and clientState can be changed.")
        given, now = request.subscription, self.clock()
        expires = given.expiration_date_time.ToDatetime(now.tzinfo) if "expiration_date_time" in paths \
            else row["expires_at"]
        url = given.notification_url if "notification_url" in paths else row["notification_url"]
        state = given.client_state if "client_state" in paths else row["client_state"]
        _checked(expiration_problem(expires, now) or client_state_problem(state))
        if url != row["notification_url"]:
            await self._validated(url)
        updated = await self.pool.fetchrow(  # and delivery resumes, from where it stopped
            f"UPDATE {SUBSCRIPTIONS} SET expires_at = $3, notification_url = $4, client_state = $5, "
            "paused_reason = '', failed_attempts = 0, next_attempt_at = $6, version = version + 1 "  # nosec B608 # constant table, bound values
            "WHERE tenant_id = $1 AND id = $2 RETURNING *", row["tenant_id"], row["id"], expires, url, state, now)
        if updated is None:
            raise errors.no_such(NOUN, request.id)
        return to_proto(updated, now)

    async def DeleteSubscription(self, request, context):
        _, row = await self._own(context, request.id)
        await self.pool.execute(f"DELETE FROM {SUBSCRIPTIONS} WHERE tenant_id = $1 AND id = $2",  # nosec B608 # constant table, bound values
                                row["tenant_id"], row["id"])
        return pb.DeleteSubscriptionResponse()
