"""Calls made on a caller's behalf, off the path of its request: tracked, so a clean stop waits for them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from .channels import connect
from .metrics import track_background

log = logging.getLogger("epm.background")

FORWARDED = ("authorization", "x-request-id")


def forwarded(metadata) -> tuple[tuple[str, str], ...]:
    """The caller's token and request id, to call another service on its behalf (with its rights, in its logs)."""
    return tuple((k, v) for k, v in metadata or () if k in FORWARDED)


class Background:
    def __init__(self):
        self._running: set[asyncio.Task] = set()
        track_background(self)

    @property
    def pending(self) -> int:
        return len(self._running)

    def start(self, work: Coroutine) -> None:
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        """Best-effort work that failed (e.g. its database was down) is logged here, once."""
        self._running.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("background work failed: %r", exc)

    async def close(self, timeout: float = 5) -> None:
        """Waits (at most `timeout` seconds) for the work still running."""
        if self._running:
            await asyncio.wait(self._running, timeout=timeout)


class Forwarder:
    """Best-effort calls to another service on callers' behalf: one channel and stub, and the calls in flight
    tracked so that `close` waits for them."""

    def __init__(self, address: str, stub_class):
        self._channel = connect(address)
        self._stub = stub_class(self._channel)
        self._background = Background()

    async def close(self) -> None:
        await self._background.close()
        await self._channel.close()
