"""Listing with OData options: one keyset page, or a count, of rows a caller has already scoped."""

from __future__ import annotations

import uuid

import asyncpg

from . import paging
from .odata import Field, ODataError, compile_filter, parse_orderby

TIE_BREAKER = Field("id", "string")  # every table listed here has a unique `id` within its scope


async def fetch_page(pool: asyncpg.Pool, source: str, fields: dict[str, Field], params: list, *, filter: str,
                     order_by: str, size: int, token: str, skip: int,
                     unorderable: frozenset[str] = frozenset()) -> tuple[list[asyncpg.Record], str]:
    """(rows, next page token) of `SELECT * FROM {source}`, where `source` is "table WHERE <scope>" using
    `params` (at least the tenant). Sorted by `order_by` then id; resumes after the token's last row."""
    where = compile_filter(filter, fields, params)
    order = parse_orderby(order_by, fields)
    if bad := [name for name, _ in order if name in unorderable]:
        raise ODataError(f"$orderby cannot use {bad[0]}.")
    keys = [(fields[name].column, desc) for name, desc in order] + [(TIE_BREAKER.column, order[-1][1])]
    key = paging.query_key(filter, order_by)
    if token:
        values = paging.decode_token(token, [fields[name] for name, _ in order] + [TIE_BREAKER], key)
        where += " AND " + paging.after(keys, values, params)
    sort = ", ".join(f"{column} AS _sort{i}" for i, (column, _) in enumerate(keys))
    order_sql = ", ".join(f"{column} {'DESC' if desc else 'ASC'}" for column, desc in keys)
    sql = f"SELECT *, {sort} FROM {source} AND {where} ORDER BY {order_sql} LIMIT {size + 1}"  # nosec B608 # allowlisted columns, bound values
    if skip and not token:
        sql += f" OFFSET {int(skip)}"
    rows = await pool.fetch(sql, *params)
    if len(rows) <= size:
        return rows, ""
    last = rows[size - 1]
    values = [last[f"_sort{i}"] for i in range(len(keys))]
    return rows[:size], paging.encode_token([str(v) if isinstance(v, uuid.UUID) else v for v in values], key)


async def count(pool: asyncpg.Pool, source: str, fields: dict[str, Field], params: list, filter: str) -> int:
    where = compile_filter(filter, fields, params)
    return await pool.fetchval(f"SELECT count(*) FROM {source} AND {where}", *params)  # nosec B608 # allowlisted columns, bound values
