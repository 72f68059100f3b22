"""Migrations under an advisory lock, and retention by dropping monthly partitions."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from services.common import db
from services.events.model import month_start
from services.events.store import EventStore


async def test_concurrent_migrations_apply_each_file_once(database_url, tmp_path):
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE migtest.t (x int);")
    (tmp_path / "0002_second.sql").write_text("INSERT INTO migtest.t VALUES (1);")
    results = await asyncio.gather(*(db.migrate(database_url, "migtest", tmp_path) for _ in range(4)))
    assert sorted(map(tuple, results)) == [(), (), (), (1, 2)]
    (tmp_path / "0003_third.sql").write_text("INSERT INTO migtest.t VALUES (3);")
    assert await db.migrate(database_url, "migtest", tmp_path) == [3]
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM migtest.schema_migrations") == 3
        assert await conn.fetchval("SELECT sum(x) FROM migtest.t") == 4
    finally:
        await conn.execute("DROP SCHEMA migtest CASCADE")
        await conn.close()


async def test_retention_drops_whole_months_only(database_url, events_service):
    pool = await db.create_pool(database_url, 2)
    store = EventStore(pool)
    now = datetime.now(timezone.utc)
    old = month_start(now - timedelta(days=100))
    await store._ensure_partitions({old, month_start(now)})
    dropped = await store.drop_partitions_before(now - timedelta(days=40))
    assert f"elevations_p{old:%Y%m}" in dropped
    assert f"elevations_p{now:%Y%m}" not in dropped
    left = await pool.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events.elevations'::regclass "
        "AND inhrelid = $1::regclass", f"events.elevations_p{now:%Y%m}")
    assert left == 1
    await pool.close()


def test_migration_files_must_be_numbered(tmp_path):
    (tmp_path / "create_things.sql").write_text("")
    with pytest.raises(ValueError):
        db.migration_files(tmp_path)
