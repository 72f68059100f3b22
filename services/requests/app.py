"""The requests process: elevation requests, reviewer roles, audit, decisions, and the expiry sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from epm.requests.v1 import audit_feed_service_pb2 as audit_feed_pb
from epm.requests.v1 import audit_feed_service_pb2_grpc as audit_feed_grpc
from epm.requests.v1 import elevation_request_service_pb2 as pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as pb_grpc
from epm.requests.v1 import intune_role_service_pb2 as intune_pb
from epm.requests.v1 import intune_role_service_pb2_grpc as intune_grpc
from epm.requests.v1 import managed_device_service_pb2 as devices_pb
from epm.requests.v1 import managed_device_service_pb2_grpc as devices_grpc
from epm.requests.v1 import provisioning_service_pb2 as provisioning_pb
from epm.requests.v1 import provisioning_service_pb2_grpc as provisioning_grpc
from epm.requests.v1 import role_assignment_service_pb2 as roles_pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as roles_grpc
from epm.requests.v1 import subscription_service_pb2 as subscriptions_pb
from epm.requests.v1 import subscription_service_pb2_grpc as subscriptions_grpc
from epm.requests.v1 import support_elevation_service_pb2 as support_pb
from epm.requests.v1 import support_elevation_service_pb2_grpc as support_grpc

from ..common import db
from ..common.auth import TokenVerifier
from ..common.feed import FeedStreams
from ..common.metrics import metrics_cleanups
from ..common.server import Running, serve
from ..common.settings import Settings
from .audit_feed import AuditFeedServicer
from .decisions import DecisionHub
from .delivery import DELIVERY_SETTINGS, Deliverer
from .devices import DeviceStore, ManagedDeviceServicer
from .intune_roles import IntuneRoleServicer
from .lifecycle import Policy
from .notifications import DeliveryPolicy
from .provisioning import ProvisioningServicer
from .roles import RoleAssignmentServicer
from .servicer import ElevationRequestServicer
from .store import RequestStore
from .subscriptions import SubscriptionServicer, delete_expired
from .support import SupportElevationServicer
from .verdicts import VerdictAttacher

log = logging.getLogger("epm.requests")
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = pb.DESCRIPTOR.services_by_name["ElevationRequestService"].full_name
ROLES_SERVICE = roles_pb.DESCRIPTOR.services_by_name["RoleAssignmentService"].full_name
AUDIT_FEED_SERVICE = audit_feed_pb.DESCRIPTOR.services_by_name["AuditFeedService"].full_name
DEVICES_SERVICE = devices_pb.DESCRIPTOR.services_by_name["ManagedDeviceService"].full_name
SUPPORT_SERVICE = support_pb.DESCRIPTOR.services_by_name["SupportElevationService"].full_name
INTUNE_ROLES_SERVICE = intune_pb.DESCRIPTOR.services_by_name["IntuneRoleService"].full_name
PROVISIONING_SERVICE = provisioning_pb.DESCRIPTOR.services_by_name["ProvisioningService"].full_name
SUBSCRIPTIONS_SERVICE = subscriptions_pb.DESCRIPTOR.services_by_name["SubscriptionService"].full_name
SWEEP_INTERVAL = 30.0
DELIVERY_CONCURRENCY = 4  # subscriptions delivered at once (each holds a connection of its own)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def default_policy(settings: Settings) -> Policy:
    return Policy(approval_window=timedelta(hours=settings.approval_window_hours),
                  pending_ttl=timedelta(days=settings.pending_ttl_days),
                  max_open_per_device=settings.max_open_per_device)


async def start(settings: Settings, address: str | None = None,
                clock: Callable[[], datetime] = utc_now, delivery: DeliveryPolicy = DeliveryPolicy()) -> Running:
    pool = await db.create_pool(settings.database_url, settings.db_pool_size)
    if settings.migrate_on_start:
        await db.migrate(pool, "requests", MIGRATIONS)
    store = RequestStore(pool, default_policy(settings))
    verifier = TokenVerifier.from_settings(settings)
    hub = DecisionHub(settings.database_url)
    await hub.start()
    verdicts = VerdictAttacher(settings.reputation_addr, store)
    requests_servicer = ElevationRequestServicer(store, verifier, hub, clock, verdicts)
    roles_servicer = RoleAssignmentServicer(pool, verifier, clock)
    feeds = FeedStreams(pool, asyncio.Event())
    audit_feed = AuditFeedServicer(feeds, verifier, clock)
    devices = DeviceStore(pool)
    devices_servicer = ManagedDeviceServicer(devices, verifier, clock)
    support_servicer = SupportElevationServicer(store, devices, verifier, clock)
    deliverer = Deliverer(pool, await db.create_pool(settings.database_url, DELIVERY_CONCURRENCY, **DELIVERY_SETTINGS),
                          clock, delivery, DELIVERY_CONCURRENCY, settings.notify_private_networks)
    deliverer.start()
    subscriptions_servicer = SubscriptionServicer(pool, verifier, clock, lambda: deliverer.http,
                                                  settings.notify_private_networks)
    running = await serve(
        [(SERVICE, lambda server: pb_grpc.add_ElevationRequestServiceServicer_to_server(requests_servicer, server)),
         (AUDIT_FEED_SERVICE, lambda server: audit_feed_grpc.add_AuditFeedServiceServicer_to_server(audit_feed,
                                                                                                    server)),
         (DEVICES_SERVICE, lambda server: devices_grpc.add_ManagedDeviceServiceServicer_to_server(devices_servicer,
                                                                                                 server)),
         (SUPPORT_SERVICE, lambda server: support_grpc.add_SupportElevationServiceServicer_to_server(
             support_servicer, server)),
         (ROLES_SERVICE, lambda server: roles_grpc.add_RoleAssignmentServiceServicer_to_server(roles_servicer,
                                                                                             server)),
         (INTUNE_ROLES_SERVICE, lambda server: intune_grpc.add_IntuneRoleServiceServicer_to_server(
             IntuneRoleServicer(pool, verifier, clock), server)),
         (PROVISIONING_SERVICE, lambda server: provisioning_grpc.add_ProvisioningServiceServicer_to_server(
             ProvisioningServicer(pool, verifier, clock), server)),
         (SUBSCRIPTIONS_SERVICE, lambda server: subscriptions_grpc.add_SubscriptionServiceServicer_to_server(
             subscriptions_servicer, server))],
        address or f"[::]:{settings.requests_port}", stopping=feeds.stopping,
    )
    sweeper = asyncio.create_task(_sweep(store, clock))

    async def stop_sweeper():
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper

    running.cleanups += [pool.close, deliverer.locks.close, verifier.close, hub.stop, stop_sweeper, verdicts.close,
                         deliverer.close, *await metrics_cleanups(settings.metrics_port)]  # run in reverse
    running.deliverer = deliverer  # tests deliver on demand
    running.feeds = feeds  # tests see how many streams are open
    running.store = store  # tests drive the sweeper and tenant policies through it
    return running


async def _sweep(store: RequestStore, clock: Callable[[], datetime]) -> None:
    """Writes down (and audits) the expiries time has decided, and drops long-expired subscriptions; any number
    of replicas may run it."""
    while True:
        try:
            while await store.expire_due(clock()) == 500:
                pass
            await delete_expired(store.pool, clock())
        except Exception:
            log.exception("expiry sweep failed")
        await asyncio.sleep(SWEEP_INTERVAL)
