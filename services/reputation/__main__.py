"""`python -m services.reputation`: the reputation process."""

from __future__ import annotations

from ..common.server import run_until_signalled
from ..common.settings import Settings
from .app import start


async def run(settings: Settings) -> None:
    await run_until_signalled(await start(settings), settings.shutdown_grace)


if __name__ == "__main__":
    from ..cli import serve

    serve("reputation")
