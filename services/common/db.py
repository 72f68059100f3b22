"""asyncpg pool and schema migrations (numbered plain SQL files, applied under an advisory lock)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from pathlib import Path

import asyncpg

log = logging.getLogger("epm.db")
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skips asyncpg's per-release RESET round trip: no code here leaves session state behind."""


class FairPool(asyncpg.Pool):
    """An asyncpg pool that hands out its connections first come, first served.

    asyncpg's own pool lets a task that asks just as a connection comes back take it ahead of the ones already
    waiting (its queue wakes the first waiter, a newcomer barges in before that waiter runs, the waiter queues again
    at the back: MagicStack/asyncpg#1247). On a saturated service a call can so lose its turn again and again
    (tests/integration/test_fair_pool.py shows it). Here a turn is taken first from an asyncio.Semaphore, which is
    FIFO and hands a released turn straight to the first waiter; the pool itself then always has a connection free."""

    def __init__(self, *args, max_size: int, **kwargs):
        defaults = {"max_queries": 50_000, "max_inactive_connection_lifetime": 300.0, "loop": None,
                    "connection_class": asyncpg.Connection, "record_class": asyncpg.Record}  # create_pool's
        super().__init__(*args, max_size=max_size, **{**defaults, **kwargs})
        self._turns = asyncio.Semaphore(max_size)
        self._holding: set = set()  # the connections handed out, each with its turn

    async def _acquire(self, timeout):
        async with asyncio.timeout(timeout):  # one deadline for the turn and the connection; None: no limit
            await self._turns.acquire()
            try:
                connection = await super()._acquire(None)
            except BaseException:
                self._turns.release()
                raise
        self._holding.add(connection)
        return connection

    async def release(self, connection, *, timeout=None):
        held = connection in self._holding  # a second release of one connection gives no second turn
        self._holding.discard(connection)
        try:
            return await super().release(connection, timeout=timeout)
        finally:
            if held:
                self._turns.release()


async def create_pool(url: str, size: int = 10, **server_settings: str) -> asyncpg.Pool:
    return await FairPool(url, min_size=1, max_size=size, reset=_no_reset, server_settings=server_settings or None)


def migration_files(directory: Path) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        files.append((int(match.group(1)), path))
    versions = [v for v, _ in files]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return files


async def migrate(url_or_pool: str | asyncpg.Pool, schema: str, directory: Path) -> list[int]:
    """Applies the not yet applied migrations of one schema, each in its own transaction.

    Safe to run from many replicas at once: a session advisory lock per schema serialises them.
    Returns the versions applied by this call.
    """
    conn = await (url_or_pool.acquire() if isinstance(url_or_pool, asyncpg.Pool) else asyncpg.connect(url_or_pool))
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", f"epm.migrate.{schema}")
        try:
            await conn.execute(
                f"CREATE SCHEMA IF NOT EXISTS {schema};"
                f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")}  # nosec B608 # constant schema
            applied = []
            for version, path in migration_files(directory):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)", version, path.name  # nosec B608 # constant schema
                    )
                log.info("applied migration %s", path.name, extra={"fields": {"schema": schema}})
                applied.append(version)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", f"epm.migrate.{schema}")
    finally:
        if isinstance(url_or_pool, asyncpg.Pool):
            await url_or_pool.release(conn)
        else:
            await conn.close()


@contextlib.asynccontextmanager
async def locked_transaction(conn: asyncpg.Connection, key: str):
    """A transaction that holds a transaction-scoped advisory lock on `key` from its start; BEGIN and the lock
    take one round trip (the key is hashed here, so only a number reaches the SQL text)."""
    number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
    await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({number})")
    try:
        yield conn
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
