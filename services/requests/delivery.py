"""Delivers change notifications: each subscription reads the audit trail (written in the same transaction as
every change: a transactional outbox) from its own cursor, POSTs what matches to its endpoint, and moves the
cursor only after the endpoint said 2xx. A crash between the two sends that batch again, with the same ids.

Any number of replicas may run a Deliverer: a subscription is delivered by whichever holds its session
advisory lock, which dies with the holder's connection, so a killed process hands over at once. The lock is
not a transaction, so a slow endpoint holds back no one's snapshot (and no feed: see common/feed.py).
The search for due subscriptions runs across tenants by design; everything after it is by tenant and id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import socket
from collections.abc import Callable
from datetime import datetime

import aiohttp
import aiohttp.abc
import asyncpg

from ..common import feed
from ..common.metrics import NOTIFICATION_FAILURES, NOTIFICATIONS_DELIVERED
from ..common.odata import compile_filter
from .notifications import (
    CHANGE_FIELDS,
    OPERATIONS,
    DeliveryPolicy,
    notification,
    pause_reason,
    public_host,
    retry_delay,
    url_problem,
)

log = logging.getLogger("epm.requests.delivery")
SUBSCRIPTIONS = "requests.subscriptions"
DUE = f"""
SELECT s.tenant_id, s.id FROM {SUBSCRIPTIONS} s
WHERE s.paused_reason = '' AND s.next_attempt_at <= $1 AND s.expires_at > $1 AND EXISTS (
    SELECT 1 FROM requests.audit_events a WHERE a.tenant_id = s.tenant_id
    AND (a.txid, a.id) > (s.cursor_txid, s.cursor_id) AND a.txid < pg_snapshot_xmin(pg_current_snapshot()))
ORDER BY s.next_attempt_at LIMIT $2"""  # nosec B608 # constant table, bound values
VALIDATION_TIMEOUT = 10.0
# The Deliverer's own connections read the outbox along its (tenant_id, txid, id) index, never by sorting: on a
# table without statistics yet the planner would sort every change after the cursor for each batch.
DELIVERY_SETTINGS = {"enable_sort": "off"}


def changes_query(subscription, position: feed.Position, limit: int) -> tuple[str, list]:
    """The next changes after `position` in the subscription's tenant, each marked whether it is one the
    subscription asked for (its change types and $filter)."""
    params: list = [subscription["tenant_id"],
                    [op for change in subscription["change_types"] for op in OPERATIONS[change]]]
    wanted = compile_filter(subscription["filter"], CHANGE_FIELDS, params)
    after = feed.after(position, params, "a")
    return (
        "SELECT a.txid, a.id, a.operation, a.resource_id, "  # nosec B608 # allowlisted columns, bound values
        f"(a.resource_type = 'ElevationRequest' AND a.operation = ANY($2) AND ({wanted})) IS TRUE AS wanted "
        "FROM requests.audit_events a LEFT JOIN requests.elevation_requests r ON r.tenant_id = a.tenant_id "
        "AND r.id = CASE WHEN a.resource_type = 'ElevationRequest' THEN a.resource_id::uuid END "
        f"WHERE a.tenant_id = $1 AND {after} ORDER BY a.txid, a.id LIMIT {int(limit)}", params)


async def validate_endpoint(http: aiohttp.ClientSession, url: str) -> str | None:
    """Graph's handshake: the endpoint must echo a validationToken within 10 s. None when it did, else why not."""
    token = secrets.token_urlsafe(24)
    try:
        async with http.post(url, params={"validationToken": token}, headers={"Content-Type": "text/plain"},
                             allow_redirects=False, timeout=aiohttp.ClientTimeout(total=VALIDATION_TIMEOUT)) as reply:
            body = await reply.text()
            if reply.status != 200:
                return f"the notification endpoint answered the validation request with HTTP {reply.status}"
            if body != token:
                return "the notification endpoint's answer did not exactly match the validationToken"
            return None
    except (TimeoutError, aiohttp.ClientError, UnicodeDecodeError) as exc:
        return f"the notification endpoint could not be reached ({type(exc).__name__})"


class PublicResolver(aiohttp.abc.AbstractResolver):
    """Resolves names to their public addresses only, at connect time, so that a notification URL can never
    reach into the cluster or the host (not even by a name that resolves differently later)."""

    def __init__(self):
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        found = [a for a in await self._inner.resolve(host, port, family) if public_host(a["host"])]
        if not found:
            raise OSError(f"{host} has no public address")
        return found

    async def close(self) -> None:
        await self._inner.close()


def http_client(private_allowed: bool) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector() if private_allowed else aiohttp.TCPConnector(resolver=PublicResolver())
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": "epm-notifications/1"})


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, locks: asyncpg.Pool, clock: Callable[[], datetime],
                 policy: DeliveryPolicy = DeliveryPolicy(), concurrency: int = 4, private_allowed: bool = False):
        """`locks`: the Deliverer's own connections (with DELIVERY_SETTINGS), one per subscription at work."""
        self.pool, self.locks, self.clock, self.policy = pool, locks, clock, policy
        self.concurrency, self.private_allowed = concurrency, private_allowed
        self.http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.http = http_client(self.private_allowed)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.http:
            await self.http.close()

    async def _run(self) -> None:
        while True:
            try:
                if await self.deliver_due():
                    continue  # a backlog: straight on
            except Exception:
                log.exception("notification delivery failed")
            await asyncio.sleep(self.policy.poll)

    async def deliver_due(self) -> int:
        """One round: every due subscription with changes waiting gets its backlog (up to a few batches)."""
        due = await self.pool.fetch(DUE, self.clock(), self.concurrency * 4)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(row) -> int:
            async with gate:
                return await self.deliver(row["tenant_id"], row["id"])
        return sum(await asyncio.gather(*(one(row) for row in due)))

    async def deliver(self, tenant: str, subscription_id, rounds: int = 10) -> int:
        """Sends the subscription's waiting notifications, unless another process is already at it; returns
        how many the endpoint accepted. A change made to the subscription meanwhile counts from the next call."""
        key = f"epm.delivery.{tenant}.{subscription_id}"
        async with self.locks.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key):
                return 0
            try:
                sub = await conn.fetchrow(f"SELECT * FROM {SUBSCRIPTIONS} WHERE tenant_id = $1 AND id = $2",  # nosec B608 # constant table, bound values
                                          tenant, subscription_id)
                now = self.clock()
                if sub is None or sub["paused_reason"] or sub["expires_at"] <= now or sub["next_attempt_at"] > now:
                    return 0
                position, failures, sent = feed.Position(int(sub["cursor_txid"]), sub["cursor_id"]), \
                    sub["failed_attempts"], 0
                for _ in range(rounds):
                    moved, accepted, more = await self._batch(conn, sub, position, failures)
                    failures = failures if moved == position else 0  # the cursor moved: a success
                    position, sent = moved, sent + accepted
                    if not more:
                        break
                return sent
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)

    async def _batch(self, conn: asyncpg.Connection, sub, position: feed.Position,
                     failures: int) -> tuple[feed.Position, int, bool]:
        """One batch after `position`, `failures` in a row so far: (the new position, notifications accepted,
        whether there may be more)."""
        now = self.clock()
        sql, params = changes_query(sub, position, self.policy.batch)
        changes = await conn.fetch(sql, *params)
        if not changes:
            return position, 0, False
        wanted = [notification(c, sub) for c in changes if c["wanted"]]
        if wanted and (error := await self._post(sub["notification_url"], wanted)):
            await self._failed(conn, sub, error, now, failures + 1)
            return position, 0, False
        NOTIFICATIONS_DELIVERED.inc(len(wanted))
        last = changes[-1]
        # next_attempt_at = now: to the back of the queue of due subscriptions. No row: it changed meanwhile
        # (renewed, moved, deleted), so this turn ends; the next one reads it again.
        current = await conn.fetchval(
            f"UPDATE {SUBSCRIPTIONS} SET cursor_txid = $3, cursor_id = $4, failed_attempts = 0, last_error = '', "
            "last_delivered_at = CASE WHEN $5 THEN $6 ELSE last_delivered_at END, next_attempt_at = $6 "  # nosec B608 # constant table, bound values
            "WHERE tenant_id = $1 AND id = $2 AND version = $7 RETURNING true", sub["tenant_id"], sub["id"],
            last["txid"], last["id"], bool(wanted), now, sub["version"])
        return feed.Position.of(last), len(wanted), bool(current) and len(changes) == self.policy.batch

    async def _post(self, url: str, notifications: list[dict]) -> str | None:
        """None when the endpoint accepted the batch (any 2xx), else what went wrong. The URL is judged again: an
        IP literal never meets the resolver, and the rule may be stricter than when the URL was accepted."""
        if problem := url_problem(url, self.private_allowed):
            return problem
        try:
            async with self.http.post(
                    url, data=json.dumps({"value": notifications}, separators=(",", ":")),
                    headers={"Content-Type": "application/json"}, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.policy.timeout)) as reply:
                await reply.read()
                return None if 200 <= reply.status < 300 else f"HTTP {reply.status}"
        except TimeoutError:
            return f"no answer within {self.policy.timeout:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]

    async def _failed(self, conn: asyncpg.Connection, sub, error: str, now: datetime, failures: int) -> None:
        NOTIFICATION_FAILURES.inc()
        reason = pause_reason(failures, error, self.policy)
        retry = now + retry_delay(failures, self.policy, random.random())  # nosec B311 # retry jitter, not a secret
        await conn.execute(
            f"UPDATE {SUBSCRIPTIONS} SET failed_attempts = $3, last_error = $4, paused_reason = $5, "
            "next_attempt_at = $6 WHERE tenant_id = $1 AND id = $2 AND version = $7",  # nosec B608 # constant table, bound values
            sub["tenant_id"], sub["id"], failures, error, reason, retry, sub["version"])
        log.warning("notification delivery to %s failed (%d in a row): %s%s", sub["notification_url"], failures,
                    error, "; paused" if reason else "")
