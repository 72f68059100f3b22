"""SQL for elevation events. Every statement filters by tenant."""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from ..common import listing
from ..common.coalesce import Coalescer
from ..common.odata import compile_filter
from .model import COLUMNS, FIELDS, as_datetime, month_start, months_between, next_month

log = logging.getLogger("epm.events.store")

TABLE = "events.elevations"
SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"  # nosec B608 # constant table, bound values
DEFAULT_ORDER = "eventDateTime desc"

# Rows arrive as (tenant_id, *model.to_row(event)): eventDateTime in epoch microseconds, converted in SQL.
_TYPES = {"id": "uuid", "event_date_time": "int8", "result": "int4", "system_initiated_elevation": "bool"}
_NAMES = ("tenant_id", *COLUMNS)
_VALUES = ", ".join(_NAMES).replace(
    "event_date_time", "'epoch'::timestamptz + event_date_time * interval '1 microsecond'")
_INSERT = f"INSERT INTO {TABLE} ({', '.join(_NAMES)}) SELECT {_VALUES} FROM"
# Big batches: binary COPY into a session-local staging table, then one INSERT ... SELECT.
CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS elevations_staging ("
    + ", ".join(f"{n} {_TYPES.get(n, 'text')}" for n in _NAMES) + ") ON COMMIT DELETE ROWS")
FROM_STAGING = f"{_INSERT} elevations_staging ON CONFLICT DO NOTHING"
# A few rows (coalesced single writes): one statement over arrays, which says which rows were new.
_ARRAYS = ", ".join(f"${i + 1}::{_TYPES.get(n, 'text')}[]" for i, n in enumerate(_NAMES))
FROM_ARRAYS = f"{_INSERT} unnest({_ARRAYS}) AS u({', '.join(_NAMES)}) ON CONFLICT DO NOTHING RETURNING id::text"


class EventStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self._months: set[datetime] = set()  # partitions known to exist
        self._single = Coalescer(self._insert_few, in_flight=1)

    async def insert(self, rows: list[tuple]) -> int:
        """Stores (tenant_id, *model.to_row) rows in one transaction; returns how many were new."""
        if not rows:
            return 0

        async def write():
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(CREATE_STAGING)
                await conn.copy_records_to_table("elevations_staging", records=rows, columns=_NAMES)
                return int((await conn.execute(FROM_STAGING)).rsplit(" ", 1)[1])

        return await self._into_partitions(rows, write)

    async def insert_one(self, row: tuple) -> bool:
        """Stores one (tenant_id, *model.to_row) row; True when it was new. Concurrent calls share a statement."""
        return await self._single.submit(row)

    async def _insert_few(self, rows: list[tuple]) -> list[bool]:
        async def write():
            return {r[0] for r in await self.pool.fetch(FROM_ARRAYS, *zip(*rows, strict=True))}

        new = await self._into_partitions(rows, write)
        return [row[1] in new for row in rows]

    async def _into_partitions(self, rows: list[tuple], write):
        times = [row[4] for row in rows]  # event_date_time
        months = months_between(as_datetime(min(times)), as_datetime(max(times)))
        await self._ensure_partitions(months)
        try:
            return await write()
        except asyncpg.CheckViolationError:  # a partition dropped by another replica's retention sweep
            self._months -= months
            await self._ensure_partitions(months)
            return await write()

    async def get(self, tenant: str, event_id: str):
        return await self.pool.fetchrow(f"{SELECT} WHERE tenant_id = $1 AND id = $2", tenant, event_id)

    async def list(self, tenant: str, *, filter: str, order_by: str, size: int, token: str, skip: int):
        """One page: (rows, next token), newest first unless `order_by` says otherwise."""
        return await listing.fetch_page(self.pool, f"{TABLE} WHERE tenant_id = $1", FIELDS, [tenant],
                                        filter=filter, order_by=order_by or DEFAULT_ORDER, size=size,
                                        token=token, skip=skip)

    async def count(self, tenant: str, filter: str) -> int:
        return await listing.count(self.pool, f"{TABLE} WHERE tenant_id = $1", FIELDS, [tenant], filter)

    async def update(self, tenant: str, event_id: str, changes: dict):
        names = list(changes)
        sets = ", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))
        sets += ", txid = pg_current_xact_id()"  # a changed event moves to the end of the feed (sent again)
        return await self.pool.fetchrow(
            f"UPDATE {TABLE} SET {sets} WHERE tenant_id = $1 AND id = $2 RETURNING {', '.join(COLUMNS)}",  # nosec B608 # UPDATABLE columns, bound values
            tenant, event_id, *(changes[n] for n in names),
        )

    async def delete(self, tenant: str, event_id: str) -> bool:
        status = await self.pool.execute(f"DELETE FROM {TABLE} WHERE tenant_id = $1 AND id = $2", tenant, event_id)  # nosec B608 # constant table, bound values
        return status != "DELETE 0"

    async def summarize(self, tenant: str, filter: str, top: int) -> dict:
        params: list = [tenant]
        where = f"tenant_id = $1 AND {compile_filter(filter, FIELDS, params)}"
        groups = {
            "by_elevation_type": ("elevation_type", None),
            "by_result": ("result::text", None),
            "by_day": ("to_char(event_date_time AT TIME ZONE 'UTC', 'YYYY-MM-DD')", None),
            "top_files": ("hash", top),
            "top_publishers": ("company_name", top),
            "top_users": ("upn", top),
            "top_devices": ("device_id", top),
        }
        out: dict = {}
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            out["total"] = await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE {where}", *params)  # nosec B608 # allowlisted columns, bound values
            for name, (expr, limit) in groups.items():
                order = "n DESC, key" if limit else "key"
                rows = await conn.fetch(
                    f"SELECT {expr} AS key, count(*) AS n FROM {TABLE} WHERE {where} AND {expr} <> '' "
                    f"GROUP BY 1 ORDER BY {order}{f' LIMIT {limit}' if limit else ''}", *params)  # nosec B608 # constant SQL, int limit
                out[name] = [(r["key"], r["n"]) for r in rows]
        return out

    async def stats(self, tenant: str, file_hash: str, device_id: str, since: datetime) -> dict:
        """Prevalence of a file and activity of a device since `since`: counts, and the file's first and last
        elevation (ever, not only in the window)."""
        file = await self.pool.fetchrow(
            f"SELECT count(*) FILTER (WHERE event_date_time >= $3) AS elevations, "  # nosec B608 # constant table, bound values
            "count(DISTINCT device_id) FILTER (WHERE event_date_time >= $3) AS devices, "
            "count(DISTINCT upn) FILTER (WHERE event_date_time >= $3 AND upn <> '') AS users, "
            f"min(event_date_time) AS first_seen, max(event_date_time) AS last_seen FROM {TABLE} "
            "WHERE tenant_id = $1 AND hash = $2", tenant, file_hash, since) if file_hash else None
        device = await self.pool.fetchrow(
            "SELECT count(*) AS elevations, "  # nosec B608 # constant table, bound values
            "count(*) FILTER (WHERE elevation_type = 'unmanagedElevation') AS unmanaged_elevations, "
            "count(*) FILTER (WHERE result <> 0) AS failed_elevations, count(DISTINCT hash) AS distinct_files, "
            f"count(DISTINCT upn) FILTER (WHERE upn <> '') AS distinct_users FROM {TABLE} "
            "WHERE tenant_id = $1 AND device_id = $2 AND event_date_time >= $3",
            tenant, device_id, since) if device_id else None
        return {"file": file, "device": device}

    async def _ensure_partitions(self, months: set[datetime]) -> None:
        missing = months - self._months
        if not missing:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('epm.events.partitions', 0))")
            for start in sorted(missing):
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE}_p{start:%Y%m} PARTITION OF {TABLE} "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{next_month(start).isoformat()}')"
                )
        self._months |= missing

    async def drop_partitions_before(self, cutoff: datetime) -> list[str]:
        """Drops the monthly partitions whose whole month lies before `cutoff` (retention)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('epm.events.partitions', 0))")
            names = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = $1::regclass", TABLE)
            dropped = []
            for (name,) in names:
                start = datetime.strptime(name[-6:], "%Y%m").replace(tzinfo=month_start(cutoff).tzinfo)
                if next_month(start) <= cutoff:
                    await conn.execute(f"DROP TABLE events.{name}")
                    dropped.append(name)
        self._months = {m for m in self._months if next_month(m) > cutoff}
        return dropped
