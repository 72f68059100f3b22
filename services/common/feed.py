"""A table read as a change feed, in commit order, from a cursor that never skips a row.

A row's position is (txid, id): the transaction that wrote it (a column `txid xid8 NOT NULL DEFAULT
pg_current_xact_id()`) and the row's own uuid. A reader sees only rows written by transactions older than the
oldest one still running (`pg_snapshot_xmin`): those are all committed or gone for good, so no row can commit
later behind a cursor that has moved past it. A long transaction therefore delays a feed; it never loses a row.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import grpc
from google.protobuf.message import Message

from . import errors
from .metrics import track_feed_streams

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
            position = cls(int(txid), uuid.UUID(hex=hex_id))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            position = None
        if position is None or not 0 <= position.txid < 1 << 64 or position.token() != token:  # only our spelling
            raise CursorError("The cursor is not one this feed gave out.")
        return position

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
    "table WHERE <scope>" using `params` (at least the tenant), and `columns` must include txid and id.

    Always along the (tenant_id, txid, id) index, sort disabled: without statistics (a new partition, a table
    not yet analyzed) the planner takes a tenant for small and would fetch and sort every row after the cursor
    for each page, which makes reading a backlog quadratic."""
    params = list(params)
    where = after(position, params)
    sql = f"SELECT {columns} FROM {source} AND {where} ORDER BY txid, id LIMIT {int(limit)}"  # nosec B608 # allowlisted SQL, bound values
    async with _connection(conn) as c, c.transaction(readonly=True):
        await c.execute("SET LOCAL enable_sort = off")
        return await c.fetch(sql, *params)


@contextlib.asynccontextmanager
async def _connection(conn: asyncpg.Connection | asyncpg.Pool):
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            yield acquired
    else:
        yield conn


async def head(conn: asyncpg.Connection | asyncpg.Pool) -> Position:
    """A position from which a new reader sees every change committed from now on (and perhaps a few before)."""
    return Position(int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())")) - 1, uuid.UUID(
        int=(1 << 128) - 1))


# --- a feed served as a gRPC server stream: one loop for every feed -------------------------------------------

BATCH = 500                # rows per query while behind
MESSAGE_BYTES = 1 << 20    # a response stops growing past this (clients take 4 MiB by default)
POLL = 1.0                 # seconds a caught-up follower waits before it reads again
REAUTHORIZE = 60.0         # seconds between a follower's checks that its caller may still read the feed
ACCEPTED = "epm-feed-cursor"  # initial metadata of an accepted stream: the cursor it starts after
LATEST = "latest"  # the cursor of a reader that wants the changes from now on, not the backlog


class FeedStreams:
    """The feed streams of one server. Each reads batches after its cursor. A follower that has caught up reads
    again every `poll` seconds (one index probe; no connection held in between), asks `authorized` again every
    `reauthorize` seconds (a stream lives no longer than its caller's right), and ends with UNAVAILABLE as soon
    as `stopping` is set, so a stopping server need not wait out its grace period for it."""

    def __init__(self, pool: asyncpg.Pool, stopping: asyncio.Event, *, batch: int = BATCH, poll: float = POLL,
                 reauthorize: float = REAUTHORIZE):
        self.pool, self.stopping = pool, stopping
        self.batch, self.poll, self.reauthorize = batch, poll, reauthorize
        self.open = 0  # streams being served now
        track_feed_streams(self)

    async def responses(self, context: grpc.aio.ServicerContext, request, source: str, params: list,
                        authorized: Callable[[], Awaitable], item: Callable[[str, asyncpg.Record], Message],
                        response: Callable[..., Message], columns: str = "*") -> AsyncIterator[Message]:
        """The responses to a stream request (`cursor`, `follow`) whose caller `authorized` has let in:
        `response(items=[item(cursor, row), ...])` for the rows of `source` (see `read`) after the cursor.
        Accepting the cursor sends the initial metadata at once: a client knows the stream stands before any row."""
        try:
            position = await head(self.pool) if request.cursor == LATEST else Position.parse(request.cursor)
        except CursorError as exc:
            raise errors.invalid(f"{exc} Start with an empty cursor (the whole feed) or '{LATEST}' (from now on), "
                                 "or resume from one it sent.") from None
        await context.send_initial_metadata(((ACCEPTED, position.token()),))
        self.open += 1
        checked = time.monotonic()
        try:
            while not self.stopping.is_set():
                if time.monotonic() - checked >= self.reauthorize:
                    await authorized()
                    checked = time.monotonic()
                rows = await read(self.pool, source, params, position, self.batch, columns)
                for message in _messages(rows, item, response):
                    yield message
                if rows:
                    position = Position.of(rows[-1])
                if len(rows) == self.batch:
                    continue
                if not request.follow:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.poll)
            raise errors.RpcError(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN",
                                  "The server is shutting down; resume from the last cursor.")
        finally:
            self.open -= 1


def _messages(rows: list[asyncpg.Record], item, response) -> Iterator[Message]:
    """The rows as few responses as MESSAGE_BYTES allows: one message per gRPC write, not one per row."""
    items, size = [], 0
    for row in rows:
        items.append(entry := item(Position.of(row).token(), row))
        size += entry.ByteSize()
        if size >= MESSAGE_BYTES:
            yield response(items=items)
            items, size = [], 0
    if items:
        yield response(items=items)
