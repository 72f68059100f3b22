"""Expiries written down in tests, as the sweepers write them."""

from __future__ import annotations

import asyncio


async def sweep(store, now) -> None:
    """Every expiry due at `now` written down and committed, as the sweepers do it: a call takes at most 500 rows of
    any tenant (the tests' moved clock leaves many due) and skips those the service's own sweeper holds."""
    for _ in range(400):
        await store.expire_due(now)
        if not await store.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM requests.elevation_requests "
                "WHERE status IN ('pending', 'approved') AND valid_until <= $1)", now):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the expiries due were not written down")
