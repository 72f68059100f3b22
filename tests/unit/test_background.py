"""Best-effort background work: tracked until done, and its failures logged rather than lost."""

from __future__ import annotations

import asyncio
import logging

from services.common.background import Background


async def test_failed_work_is_logged_and_forgotten(caplog):
    background = Background()
    gate = asyncio.Event()

    async def store_verdict():
        await gate.wait()
        raise ConnectionResetError("the database went away")

    with caplog.at_level(logging.WARNING, logger="epm.background"):
        background.start(store_verdict())
        assert background.pending == 1
        gate.set()
        await background.close()
        await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert background.pending == 0
    assert [r.getMessage() for r in caplog.records] == [
        "background work failed: ConnectionResetError('the database went away')"]
