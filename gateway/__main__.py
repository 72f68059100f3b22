"""`python -m gateway`: the Graph REST gateway process."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from services.common.metrics import metrics_cleanups
from services.common.settings import Settings

from .app import create_app

log = logging.getLogger("epm.gateway")


async def run(settings: Settings) -> None:
    runner = web.AppRunner(create_app(settings), access_log=None, handle_signals=False,
                           shutdown_timeout=settings.shutdown_grace)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", settings.gateway_port).start()  # nosec B104 # a container's port, by design
    log.info("gateway listening on port %d", settings.gateway_port)
    stop_metrics = await metrics_cleanups(settings.metrics_port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    for cleanup in stop_metrics:
        await cleanup()


if __name__ == "__main__":
    from services.cli import serve

    serve("gateway")
