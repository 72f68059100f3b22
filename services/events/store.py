"""SQL for elevation events. Every statement filters by tenant."""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from ..common import paging
from ..common.odata import Field, compile_filter, parse_orderby
from .model import COLUMNS, FIELDS, as_datetime, month_start, months_between, next_month

log = logging.getLogger("epm.events.store")

TABLE = "events.elevations"
SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
# Batch insert: one array parameter per column (model.to_row order), eventDateTime as epoch microseconds.
_CAST = {"id": "uuid", "event_date_time": "int8", "result": "int4", "system_initiated_elevation": "bool"}
_ARRAYS = ", ".join(f"${i + 2}::{_CAST.get(c, 'text')}[]" for i, c in enumerate(COLUMNS))
_VALUES = ", ".join(COLUMNS).replace(
    "event_date_time", "'epoch'::timestamptz + event_date_time * interval '1 microsecond'")
INSERT = (f"INSERT INTO {TABLE} (tenant_id, {', '.join(COLUMNS)}) "
          f"SELECT $1, {_VALUES} FROM unnest({_ARRAYS}) AS u({', '.join(COLUMNS)}) ON CONFLICT DO NOTHING")
DEFAULT_ORDER = [("eventDateTime", True)]
ID_KEY = ("id", Field("id", "string"))  # tie-breaker that makes every order total


class EventStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self._months: set[datetime] = set()  # partitions known to exist

    async def insert(self, tenant: str, rows: list[tuple]) -> int:
        """Stores `rows` (model.to_row tuples) in one transaction; returns how many were new."""
        if not rows:
            return 0
        columns = list(zip(*rows, strict=True))
        times = columns[COLUMNS.index("event_date_time")]
        months = months_between(as_datetime(min(times)), as_datetime(max(times)))
        await self._ensure_partitions(months)
        try:
            status = await self.pool.execute(INSERT, tenant, *columns)
        except asyncpg.CheckViolationError:  # a partition dropped by another replica's retention sweep
            self._months -= months
            await self._ensure_partitions(months)
            status = await self.pool.execute(INSERT, tenant, *columns)
        return int(status.rsplit(" ", 1)[1])

    async def get(self, tenant: str, event_id: str):
        return await self.pool.fetchrow(f"{SELECT} WHERE tenant_id = $1 AND id = $2", tenant, event_id)

    async def list(self, tenant: str, *, filter: str, order_by: str, size: int, token: str, skip: int):
        """One page: (rows, next token). Keyset paging on the sort keys plus id."""
        params: list = [tenant]
        where = compile_filter(filter, FIELDS, params)
        order = [(FIELDS[p], desc) for p, desc in parse_orderby(order_by, FIELDS) or DEFAULT_ORDER]
        keys = [(f.column, desc) for f, desc in order] + [(ID_KEY[0], order[-1][1])]
        key = paging.query_key(filter, order_by)
        if token:
            values = paging.decode_token(token, [f for f, _ in order] + [ID_KEY[1]], key)
            where += " AND " + paging.after(keys, values, params)
        order_sql = ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d in keys)
        sql = f"{SELECT} WHERE tenant_id = $1 AND {where} ORDER BY {order_sql} LIMIT {size + 1}"
        if skip and not token:
            sql += f" OFFSET {int(skip)}"
        rows = await self.pool.fetch(sql, *params)
        if len(rows) <= size:
            return rows, ""
        last = rows[size - 1]
        values = [last[c] for c, _ in keys[:-1]] + [str(last["id"])]
        return rows[:size], paging.encode_token(values, key)

    async def count(self, tenant: str, filter: str) -> int:
        params: list = [tenant]
        where = compile_filter(filter, FIELDS, params)
        return await self.pool.fetchval(f"SELECT count(*) FROM {TABLE} WHERE tenant_id = $1 AND {where}", *params)

    async def update(self, tenant: str, event_id: str, changes: dict):
        names = list(changes)
        sets = ", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))
        return await self.pool.fetchrow(
            f"UPDATE {TABLE} SET {sets} WHERE tenant_id = $1 AND id = $2 RETURNING {', '.join(COLUMNS)}",
            tenant, event_id, *(changes[n] for n in names),
        )

    async def delete(self, tenant: str, event_id: str) -> bool:
        status = await self.pool.execute(f"DELETE FROM {TABLE} WHERE tenant_id = $1 AND id = $2", tenant, event_id)
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
            out["total"] = await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE {where}", *params)
            for name, (expr, limit) in groups.items():
                order = "n DESC, key" if limit else "key"
                rows = await conn.fetch(
                    f"SELECT {expr} AS key, count(*) AS n FROM {TABLE} WHERE {where} AND {expr} <> '' "
                    f"GROUP BY 1 ORDER BY {order}{f' LIMIT {limit}' if limit else ''}", *params)
                out[name] = [(r["key"], r["n"]) for r in rows]
        return out

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
