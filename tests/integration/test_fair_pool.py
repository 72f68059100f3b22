"""The connection pool hands out connections in the order they were asked for (MagicStack/asyncpg#1247)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.common import db


async def _grant_order(pool: asyncpg.Pool) -> list[str]:
    """Who gets the one connection when it comes back: B and C have waited for it; N asks for it from a task
    that starts while it is being given back (as a new call does on a busy server)."""
    order: list[str] = []
    held = await pool.acquire()

    async def use(name: str) -> None:
        async with pool.acquire():
            order.append(name)

    waiters = [asyncio.create_task(use(name)) for name in "BC"]
    await asyncio.sleep(0.05)  # both are waiting now
    newcomers: list[asyncio.Task] = []

    async def start_newcomer() -> None:  # runs after the release has begun, so N's first step comes after it
        newcomers.append(asyncio.create_task(use("N")))

    starter = asyncio.create_task(start_newcomer())
    await pool.release(held)
    await starter
    await asyncio.gather(*waiters, *newcomers)
    return order


async def test_a_connection_goes_to_the_first_waiter_not_to_whoever_asks_next(database_url):
    plain = await asyncpg.create_pool(database_url, min_size=1, max_size=1, reset=db._no_reset)
    fair = await db.create_pool(database_url, 1)
    try:
        # asyncpg's own: N barges in, and B, woken for it and finding none, queues again behind C
        assert await _grant_order(plain) == ["N", "C", "B"]
        assert await _grant_order(fair) == ["B", "C", "N"]
        assert not fair._turns.locked()  # every turn came back (else the query below would wait forever)
        assert await fair.fetchval("SELECT 1") == 1
    finally:  # terminate: close would wait for a connection a failed assertion left out
        plain.terminate()
        fair.terminate()


async def test_a_second_release_or_a_timeout_keeps_the_turns_whole(database_url):
    pool = await db.create_pool(database_url, 1)
    try:
        connection = await pool.acquire()
        with pytest.raises(TimeoutError):  # waits for the one turn, gives up
            await pool.acquire(timeout=0.05)
        await pool.release(connection)
        await pool.release(connection)  # asyncpg ignores it; it must not free a second turn
        async with pool.acquire():
            assert pool._turns.locked()  # its one turn is taken: a second caller would wait for it
        assert not pool._turns.locked()
        assert await pool.fetchval("SELECT 2") == 2
    finally:
        pool.terminate()
