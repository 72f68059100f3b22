"""Coalescing of concurrent small writes: under load many callers share one statement and one commit;
a caller alone waits for nothing (the first write starts at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    def __init__(self, write: Callable[[list[Item]], Awaitable[list[Result]]], *, in_flight: int = 2,
                 max_batch: int = 500):
        self._write, self._limit, self._max_batch = write, in_flight, max_batch
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._running = 0

    async def submit(self, item: Item) -> Result:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start()
        return await future

    def _start(self) -> None:
        while self._queue and self._running < self._limit:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch:]
            self._running += 1
            asyncio.ensure_future(self._run(batch))

    async def _run(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as exc:  # every caller of the batch learns it failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._running -= 1
            self._start()
