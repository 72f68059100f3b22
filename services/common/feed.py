"""A table read as a change feed, in commit order, from a cursor that never skips a row.

A row's position is (txid, id): the transaction that wrote it (a column `txid xid8 NOT NULL DEFAULT
pg_current_xact_id()`) and the row's own uuid. A reader sees only rows written by transactions older than the
oldest one still running (`pg_snapshot_xmin`): those are all committed or gone for good, so no row can commit
later behind a cursor that has moved past it. A long transaction therefore delays a feed; it never loses a row.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass

import asyncpg

NIL = uuid.UUID(int=0)


class CursorError(ValueError):
    pass


@dataclass(frozen=True)
class Position:
    txid: int = 0
    id: uuid.UUID = NIL

    def token(self) -> str:
        """An opaque, URL-safe cursor."""
        return base64.urlsafe_b64encode(f"{self.txid}.{self.id.hex}".encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Position:
        """The position of a cursor from `token()`; '' is the start of the feed."""
        if not token:
            return cls()
        try:
            txid, _, hex_id = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(".")
            return cls(int(txid), uuid.UUID(hex=hex_id))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CursorError("The cursor is not one this feed gave out.") from None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Position:
        return cls(int(row["txid"]), row["id"])


def after(position: Position, params: list, table: str = "") -> str:
    """SQL: the settled rows (of `table`, when the query names several) after `position`; appends its two
    parameters to `params`."""
    params += [position.txid, position.id]
    p = f"{table}." if table else ""
    return (f"({p}txid, {p}id) > (${len(params) - 1}::xid8, ${len(params)}::uuid) "
            f"AND {p}txid < pg_snapshot_xmin(pg_current_snapshot())")


async def read(conn: asyncpg.Connection | asyncpg.Pool, source: str, params: list, position: Position,
               limit: int, columns: str = "*") -> list[asyncpg.Record]:
    """Up to `limit` rows of `SELECT {columns} FROM {source}` after `position`, in feed order; `source` is
    "table WHERE <scope>" using `params` (at least the tenant), and `columns` must include txid and id."""
    params = list(params)
    where = after(position, params)
    return await conn.fetch(f"SELECT {columns} FROM {source} AND {where} ORDER BY txid, id LIMIT {int(limit)}",
                            *params)


async def head(conn: asyncpg.Connection | asyncpg.Pool) -> Position:
    """A position from which a new reader sees every change committed from now on (and perhaps a few before)."""
    return Position(int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())")) - 1, uuid.UUID(
        int=(1 << 128) - 1))
