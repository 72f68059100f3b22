"""Wakes the watchers of a device when a decision for it commits: one LISTEN connection per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import asyncpg

log = logging.getLogger("epm.requests.decisions")
CHANNEL = "epm_decisions"  # payload: "<tenant> <device> <sequence>", sent by a trigger on requests.decisions


class DecisionHub:
    def __init__(self, url: str):
        self.url = url
        self._conn: asyncpg.Connection | None = None
        self._watchers: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self.url)
        await self._conn.add_listener(CHANNEL, self._notified)

    async def stop(self) -> None:
        if self._conn:
            await self._conn.close()

    def _notified(self, conn, pid, channel, payload: str) -> None:
        tenant, rest = payload.split(" ", 1)
        device = rest.rsplit(" ", 1)[0]
        for wake in self._watchers.get((tenant, device), ()):
            wake.set()

    @contextlib.contextmanager
    def watch(self, tenant: str, device: str):
        """An event set whenever a decision for this device commits (watchers re-read from their cursor,
        so a lost notification costs latency, never a decision)."""
        wake = asyncio.Event()
        key = (tenant, device)
        self._watchers[key].add(wake)
        try:
            yield wake
        finally:
            self._watchers[key].discard(wake)
            if not self._watchers[key]:
                del self._watchers[key]
