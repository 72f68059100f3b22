"""The events process: pool, migrations, gRPC server, retention sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from epm.events.v1 import elevation_event_feed_service_pb2 as feed_pb
from epm.events.v1 import elevation_event_feed_service_pb2_grpc as feed_grpc
from epm.events.v1 import elevation_event_service_pb2 as pb
from epm.events.v1 import elevation_event_service_pb2_grpc as pb_grpc

from ..common import db
from ..common.auth import TokenVerifier
from ..common.feed import FeedStreams
from ..common.metrics import metrics_cleanups
from ..common.server import Running, serve
from ..common.settings import Settings
from .feed import ElevationEventFeedServicer
from .seen_devices import SeenDeviceReporter
from .servicer import ElevationEventServicer
from .store import EventStore
from .usage import UsageReporter

log = logging.getLogger("epm.events")
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = pb.DESCRIPTOR.services_by_name["ElevationEventService"].full_name
FEED_SERVICE = feed_pb.DESCRIPTOR.services_by_name["ElevationEventFeedService"].full_name
RETENTION_INTERVAL = 3600.0


async def start(settings: Settings, address: str | None = None) -> Running:
    pool = await db.create_pool(settings.database_url, settings.db_pool_size)
    if settings.migrate_on_start:
        await db.migrate(pool, "events", MIGRATIONS)
    store = EventStore(pool)
    verifier = TokenVerifier.from_settings(settings)
    usage = UsageReporter(settings.requests_addr)
    devices = SeenDeviceReporter(settings.requests_addr)
    servicer = ElevationEventServicer(store, verifier, settings.events_retention_days, usage, devices)
    feeds = FeedStreams(pool, asyncio.Event())
    feed_servicer = ElevationEventFeedServicer(feeds, verifier)
    running = await serve(
        [(SERVICE, lambda server: pb_grpc.add_ElevationEventServiceServicer_to_server(servicer, server)),
         (FEED_SERVICE, lambda server: feed_grpc.add_ElevationEventFeedServiceServicer_to_server(feed_servicer,
                                                                                                 server))],
        address or f"[::]:{settings.events_port}", stopping=feeds.stopping,
    )
    sweeper = asyncio.create_task(_retention(store, settings.events_retention_days))

    async def stop_sweeper():
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper

    running.cleanups += [pool.close, verifier.close, usage.close, devices.close, stop_sweeper,
                         *await metrics_cleanups(settings.metrics_port)]
    running.feeds = feeds  # tests see how many streams are open
    return running


async def _retention(store: EventStore, days: int) -> None:
    """Drops whole months that fell out of the retention window, hourly (any replica may do it)."""
    while True:
        try:
            dropped = await store.drop_partitions_before(datetime.now(timezone.utc) - timedelta(days=days))
            if dropped:
                log.info("retention dropped %s", ", ".join(dropped))
        except Exception:
            log.exception("retention sweep failed")
        await asyncio.sleep(RETENTION_INTERVAL)
