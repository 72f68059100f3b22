"""`python -m gateway`: the Graph REST gateway process."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from services.common.metrics import metrics_cleanups
from services.common.settings import Settings

from .app import Runner, create_app
from .errors import GraphError

log = logging.getLogger("epm.gateway")


class Drain:
    """The requests in flight, and whether the gateway is stopping: then a new request (on a connection kept
    alive) is a 503, and the stop waits for the ones in flight."""

    def __init__(self):
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False

    @web.middleware
    async def track(self, request: web.Request, handler):
        if self.stopping:
            raise GraphError(503, "The service is shutting down; retry.", retry_after=1)
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            return await handler(request)
        finally:
            self.tasks.discard(task)

    async def stop(self, runner: Runner, grace: float) -> None:
        """Refuses new connections, then waits up to `grace` for the requests in flight. (aiohttp's own shutdown
        stops reading open connections: a request whose body is still arriving would never finish.)"""
        self.stopping = True
        for site in list(runner.sites):
            await site.stop()
        deadline = asyncio.get_running_loop().time() + grace
        while self.tasks and (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=left)


async def run(settings: Settings) -> None:
    app, drain = create_app(settings), Drain()
    app.middlewares.append(drain.track)
    runner = Runner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)  # after the drain
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", settings.gateway_port).start()  # nosec B104 # a container's port, by design
    log.info("gateway listening on port %d", settings.gateway_port)
    stop_metrics = await metrics_cleanups(settings.metrics_port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await drain.stop(runner, settings.shutdown_grace)
    await runner.cleanup()
    for cleanup in stop_metrics:
        await cleanup()


if __name__ == "__main__":
    from services.cli import serve

    serve("gateway")
