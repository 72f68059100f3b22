"""SQL for the reputation service: feed entries and their versions, publisher rules. Every statement filters by
tenant: shared feeds carry tenant_id '' and are read together with the caller's own ('' or $1)."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass

import asyncpg

SHARED = ""
ENTRY_COLUMNS = ("key", "tenant_id", "feed", "version", "kind", "label", "source")
# What the current versions of the feeds say about some keys (the caller's own and the shared ones).
LOOKUP = """
SELECT e.key, e.kind, e.label, e.source
FROM reputation.entries e
JOIN reputation.feeds f ON f.tenant_id = e.tenant_id AND f.name = e.feed AND f.version = e.version
WHERE e.key = ANY($2::text[]) AND (e.tenant_id = '' OR e.tenant_id = $1)"""
# ... and the tenant's publisher rules for some values, in the same shape (a rule has no stored source).
WITH_RULES = f"""
SELECT *, NULL AS name, NULL AS title FROM ({LOOKUP}) AS feeds
UNION ALL
SELECT value, kind, CASE WHEN blocked THEN 'blocked' ELSE 'allowed' END, NULL, display_name, note
FROM reputation.publisher_rules WHERE tenant_id = $1 AND value = ANY($3::text[])"""  # nosec B608 # constant table, bound values
FEED_COLUMNS = "name, format, tenant_id <> '' AS own, version, source_version, records, keys, problem_count, " \
               "digest, imported_at"


class FeedBusy(Exception):
    """Another import of the same feed is running."""


class FeedFormatMismatch(Exception):
    def __init__(self, feed: str, existing: str):
        super().__init__(f"Feed '{feed}' holds {existing} data; import another format under another feed name.")


@dataclass
class Import:
    """One import in progress: rows go in as `version`, invisible until `finish` makes it current."""

    conn: asyncpg.Connection
    tenant: str
    feed: str
    version: int
    current_digest: str
    digest: hashlib._Hash
    records: int = 0
    keys: int = 0
    problems: int = 0

    async def write(self, rows: list[tuple]) -> None:
        """Rows of ENTRY_COLUMNS without tenant, feed and version: (key, kind, label, source)."""
        if rows:
            tenant, feed, version = self.tenant, self.feed, self.version
            await self.conn.copy_records_to_table(
                "entries", schema_name="reputation", columns=ENTRY_COLUMNS,
                records=[(key, tenant, feed, version, kind, label, source) for key, kind, label, source in rows])
            self.keys += len(rows)


class ReputationStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def lookup(self, tenant: str, keys: list[str]) -> list[asyncpg.Record]:
        """(key, kind, label, source) of every current feed entry for `keys`."""
        return await self.pool.fetch(LOOKUP, tenant, keys)

    async def lookup_with_rules(self, tenant: str, keys: list[str], rule_values: list[str]) -> list[asyncpg.Record]:
        """The same, and the tenant's publisher rules for `rule_values` (source NULL, with name and title)."""
        return await self.pool.fetch(WITH_RULES, tenant, keys, rule_values)

    # --- feeds ----------------------------------------------------------------------------------------------

    async def feeds(self, tenant: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT {FEED_COLUMNS} FROM reputation.feeds WHERE (tenant_id = '' OR tenant_id = $1) AND version > 0 "
            "ORDER BY tenant_id <> '', name", tenant)  # nosec B608 # constant table, bound values

    async def feed(self, tenant: str, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"SELECT {FEED_COLUMNS} FROM reputation.feeds WHERE tenant_id = $1 AND name = $2", tenant, name)  # nosec B608 # constant table, bound values

    @contextlib.asynccontextmanager
    async def importing(self, tenant: str, feed: str, format: str):
        """An Import of the next version of `feed`; one at a time per feed (FeedBusy otherwise). Leaving the block
        with an error drops what it wrote; the current version stays as it was."""
        lock = f"epm.reputation.import.{tenant}.{feed}"
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", lock):
                raise FeedBusy
            try:
                job = await self._begin(conn, tenant, feed, format)
                try:
                    yield job
                except BaseException:
                    await conn.execute("DELETE FROM reputation.entries WHERE tenant_id = $1 AND feed = $2 "
                                       "AND version = $3", tenant, feed, job.version)
                    raise
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", lock)

    async def _begin(self, conn, tenant: str, feed: str, format: str) -> Import:
        await conn.execute("INSERT INTO reputation.feeds (tenant_id, name, format) VALUES ($1, $2, $3) "
                           "ON CONFLICT DO NOTHING", tenant, feed, format)
        row = await conn.fetchrow("SELECT version, format, digest FROM reputation.feeds WHERE tenant_id = $1 "
                                  "AND name = $2", tenant, feed)
        if row["format"] != format:
            raise FeedFormatMismatch(feed, row["format"])
        # leftovers of an import that died before it could clean up
        await conn.execute("DELETE FROM reputation.entries WHERE tenant_id = $1 AND feed = $2 AND version <> $3",
                           tenant, feed, row["version"])
        return Import(conn, tenant, feed, row["version"] + 1, row["digest"] if row["version"] else "", hashlib.sha256())

    async def finish(self, job: Import, source_version: str) -> bool:
        """Makes the import's version current and drops the one before; False (and nothing changes) when it holds
        exactly the data of the current version."""
        digest = job.digest.hexdigest()
        if digest == job.current_digest:
            await job.conn.execute("DELETE FROM reputation.entries WHERE tenant_id = $1 AND feed = $2 "
                                   "AND version = $3", job.tenant, job.feed, job.version)
            return False
        await job.conn.execute(
            "UPDATE reputation.feeds SET version = $3, source_version = $4, records = $5, keys = $6, "
            "problem_count = $7, digest = $8, imported_at = now() WHERE tenant_id = $1 AND name = $2",
            job.tenant, job.feed, job.version, source_version, job.records, job.keys, job.problems, digest)
        await job.conn.execute("DELETE FROM reputation.entries WHERE tenant_id = $1 AND feed = $2 AND version < $3",
                               job.tenant, job.feed, job.version)
        return True

    # --- publisher rules ------------------------------------------------------------------------------------

    async def create_rule(self, tenant: str, kind: str, value: str, blocked: bool, display_name: str,
                          note: str) -> tuple[asyncpg.Record, bool]:
        """(rule, created): the same kind and value again returns the stored rule unchanged (the caller tells
        whether it says the same)."""
        row = await self.pool.fetchrow(
            "INSERT INTO reputation.publisher_rules (tenant_id, id, kind, value, blocked, display_name, note) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, kind, value) DO NOTHING RETURNING *",
            tenant, uuid.uuid4(), kind, value, blocked, display_name, note)
        if row is not None:
            return row, True
        return await self.pool.fetchrow("SELECT * FROM reputation.publisher_rules WHERE tenant_id = $1 "
                                        "AND kind = $2 AND value = $3", tenant, kind, value), False

    async def rules(self, tenant: str) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT * FROM reputation.publisher_rules WHERE tenant_id = $1 "
                                     "ORDER BY created_at, id", tenant)

    async def delete_rule(self, tenant: str, rule_id: str) -> bool:
        status = await self.pool.execute("DELETE FROM reputation.publisher_rules WHERE tenant_id = $1 AND id = $2",
                                         tenant, rule_id)
        return status != "DELETE 0"
