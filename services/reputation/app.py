"""The reputation process: pool, migrations, the clients of its peers, gRPC server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from epm.reputation.v1 import file_reputation_service_pb2 as pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as pb_grpc

from ..common import db
from ..common.auth import TokenVerifier
from ..common.metrics import metrics_cleanups
from ..common.server import Running, serve
from ..common.settings import Settings
from .peers import Peers
from .servicer import FileReputationServicer
from .store import ReputationStore

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = pb.DESCRIPTOR.services_by_name["FileReputationService"].full_name


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def start(settings: Settings, address: str | None = None,
                clock: Callable[[], datetime] = utc_now) -> Running:
    pool = await db.create_pool(settings.database_url, settings.db_pool_size)
    if settings.migrate_on_start:
        await db.migrate(pool, "reputation", MIGRATIONS)
    verifier = TokenVerifier.from_settings(settings)
    peers = Peers(settings.events_addr, settings.requests_addr)
    servicer = FileReputationServicer(ReputationStore(pool), verifier, peers, clock, settings.operator_tenant)
    running = await serve(
        [(SERVICE, lambda server: pb_grpc.add_FileReputationServiceServicer_to_server(servicer, server))],
        address or f"[::]:{settings.reputation_port}",
    )
    running.cleanups += [pool.close, verifier.close, peers.close, *await metrics_cleanups(settings.metrics_port)]
    return running
