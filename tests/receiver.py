"""A real local HTTP endpoint for change notifications: it answers Graph's validation handshake, records every
notification it accepts, and can be told to fail, to answer wrongly, or to hold a delivery open."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web


class Receiver:
    def __init__(self):
        self.validations: list[str] = []
        self.batches: list[list[dict]] = []  # accepted, in arrival order
        self.fail_with = 0          # answer notifications with this HTTP status instead of 202
        self.failures_left = -1     # fail this many times, then accept (-1: as long as fail_with is set)
        self.validation_answer: str | None = None  # echo something else than the token
        self.hold = False           # keep the next delivery open until `release` is set
        self.held = asyncio.Event()
        self.held_batch: list[dict] = []
        self.held_request: web.Request | None = None
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()
        self.attempts = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/notify", self._notify)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/notify"
        return self

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _notify(self, request: web.Request) -> web.Response:
        if "validationToken" in request.query:
            token = request.query["validationToken"]
            self.validations.append(request.content_type)
            return web.Response(text=token if self.validation_answer is None else self.validation_answer,
                                content_type="text/plain")
        self.attempts += 1
        body = await request.json()
        if self.fail_with and self.failures_left != 0:
            self.failures_left -= 1
            return web.Response(status=self.fail_with)
        if self.hold:
            self.hold = False
            self.held_batch, self.held_request = body["value"], request
            self.held.set()
            await self.release.wait()
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=202)  # the sender died meanwhile: it never learnt, so it was not taken
        self.batches.append(body["value"])
        self.arrived.set()
        return web.Response(status=202)

    @property
    def notifications(self) -> list[dict]:
        return [n for batch in self.batches for n in batch]

    def duplicates(self) -> set[str]:
        return {i for i, n in Counter(n["id"] for n in self.notifications).items() if n > 1}

    async def wait_for(self, count: int, timeout: float = 20) -> list[dict]:
        """The accepted notifications, once there are at least `count` of them."""
        async def enough():
            while True:
                self.arrived.clear()
                if len(self.notifications) >= count:
                    return
                await self.arrived.wait()
        await asyncio.wait_for(enough(), timeout)
        return self.notifications
