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
        self._stopping = False
        self._conn = await asyncpg.connect(self.url)
        await self._conn.add_listener(CHANNEL, self._notified)
        self._conn.add_termination_listener(self._lost)

    async def stop(self) -> None:
        self._stopping = True
        if self._conn:
            await self._conn.close()

    def _lost(self, conn) -> None:
        """The LISTEN connection died (e.g. a PostgreSQL restart): wake everyone, then listen again."""
        if self._stopping:
            return
        log.warning("decision notifications lost; reconnecting")
        self._wake_all()
        asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        for delay in (0.1, 0.5, 1, 2, 5, 5, 5, 10, 10, 30):
            await asyncio.sleep(delay)
            try:
                await self.start()
                self._wake_all()  # re-read: anything that committed while we were deaf
                return
            except (OSError, asyncpg.PostgresError):
                continue
        log.error("could not listen for decisions again; watchers fall back to polling")

    def _wake_all(self) -> None:
        for watchers in self._watchers.values():
            for wake in watchers:
                wake.set()

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
