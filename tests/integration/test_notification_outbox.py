"""The outbox under a crash: the process delivering notifications is killed (SIGKILL) while its endpoint holds
a batch open; a new process takes over, and every change reaches the endpoint, the killed batch perhaps twice
(same ids), everything else exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import datetime, timedelta, timezone

import asyncpg
import grpc
import pytest
from epm.requests.v1 import elevation_request_service_pb2_grpc as pb_grpc
from epm.requests.v1 import subscription_service_pb2 as subscriptions_pb
from epm.requests.v1 import subscription_service_pb2_grpc as subscriptions_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import CONFIG_WRITE
from services.requests.delivery import Deliverer, http_client
from services.requests.notifications import DeliveryPolicy

from ..receiver import Receiver
from .test_processes import free_port, spawn
from .test_requests_grpc import create, md

CHANGES = 250  # two and a half batches of 100


async def serving(port: int, timeout: float = 30) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(int(timeout * 10)):
            try:
                if (await health.Check(health_pb2.HealthCheckRequest(), timeout=1)).status == 1:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the requests process on {port} never became healthy")


@pytest.fixture
async def receiver():
    endpoint = await Receiver().start()
    yield endpoint
    endpoint.release.set()
    await endpoint.close()


async def test_killing_the_delivering_process_mid_batch_loses_nothing(
        requests_channel, requests_service, settings, token, tenant, receiver):
    await requests_service.deliverer.close()  # from here on, only the spawned processes deliver
    try:
        await _kill_mid_batch(requests_channel, settings, tenant, token, receiver)
    finally:
        requests_service.deliverer.start()


async def _kill_mid_batch(requests_channel, settings, tenant, token, receiver):
    agent = md(token(scopes=(), roles=[CONFIG_WRITE]))
    port = free_port()
    env = dict(os.environ, EPM_DATABASE_URL=settings.database_url, EPM_JWT_SECRET=settings.jwt_secret,
               EPM_REQUESTS_PORT=str(port), EPM_REPUTATION_ADDR="127.0.0.1:1", EPM_LOG_LEVEL="WARNING",
               EPM_NOTIFY_PRIVATE_NETWORKS="true")
    first = await spawn("requests", env)
    try:
        await serving(port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:  # its clock, not the tests' one
            await subscribe(subscriptions_grpc.SubscriptionServiceStub(channel), agent, receiver.url)
        first.send_signal(signal.SIGSTOP)  # frozen while a backlog builds up in the outbox
        requests = pb_grpc.ElevationRequestServiceStub(requests_channel)
        for i in range(CHANGES):
            await create(requests, agent, device=f"device-{i % 25}", file=f"tool-{i}.exe")
        receiver.hold = True
        first.send_signal(signal.SIGCONT)
        await asyncio.wait_for(receiver.held.wait(), 20)  # the first batch is at the endpoint, unanswered
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        await until_closed(receiver.held_request)  # the endpoint sees the sender gone: that batch is not taken
    finally:
        if first.returncode is None:
            first.kill()
    receiver.release.set()

    second = await spawn("requests", dict(env, EPM_REQUESTS_PORT=str(free_port())))
    try:
        await receiver.wait_for(CHANGES, timeout=30)
        await asyncio.sleep(0.5)  # a few more rounds: nothing more comes
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 10)

    conn = await asyncpg.connect(settings.database_url)
    try:
        created = {str(r["id"]) for r in await conn.fetch(
            "SELECT id FROM requests.audit_events WHERE tenant_id = $1 AND operation = 'Create'", tenant)}
    finally:
        await conn.close()
    received = [n["id"] for n in receiver.notifications]
    held = {n["id"] for n in receiver.held_batch}
    assert len(held) == 100 and held <= set(received)  # the batch in flight when the sender died came again
    assert len(created) == CHANGES and set(received) == created  # nothing lost
    assert not receiver.duplicates() and len(received) == CHANGES  # and nothing twice
    print(f"\noutbox fault test: {CHANGES} changes, 1 SIGKILL with a batch of {len(held)} in flight, "
          f"{len(set(received))} accepted, each once")


async def until_closed(request, timeout: float = 10) -> None:
    async def closed():
        while not (request.transport is None or request.transport.is_closing()):
            await asyncio.sleep(0.01)
    await asyncio.wait_for(closed(), timeout)


async def subscribe(stub, agent, url: str, now: datetime | None = None) -> None:
    """A subscription to new requests, expiring an hour after `now` (the service's clock; default: real time)."""
    given = subscriptions_pb.Subscription(resource="deviceManagement/elevationRequests", change_type="created",
                                          notification_url=url)
    given.expiration_date_time.FromDatetime((now or datetime.now(timezone.utc)) + timedelta(hours=1))
    await stub.CreateSubscription(subscriptions_pb.CreateSubscriptionRequest(subscription=given), metadata=agent)


async def test_a_stored_url_the_rule_now_refuses_gets_nothing(requests_channel, requests_service, clock, token,
                                                              tenant, receiver):
    """A subscription to a loopback URL, accepted while private networks were allowed (as in these tests), is not
    delivered by a Deliverer that refuses them: an IP literal never meets the resolver, so the URL is judged again
    before each POST, and the failure is recorded like any other."""
    agent = md(token(scopes=(), roles=[CONFIG_WRITE]))
    await subscribe(subscriptions_grpc.SubscriptionServiceStub(requests_channel), agent, receiver.url, clock.now())
    await requests_service.deliverer.close()  # only the strict Deliverer below delivers
    pool = requests_service.store.pool
    strict = Deliverer(pool, requests_service.deliverer.locks, clock.now, DeliveryPolicy(), private_allowed=False)
    strict.http = http_client(False)
    try:
        await create(pb_grpc.ElevationRequestServiceStub(requests_channel), agent, device="strict-1")
        sub = await pool.fetchrow(
            "SELECT id FROM requests.subscriptions WHERE tenant_id = $1", tenant)
        assert await strict.deliver(tenant, sub["id"]) == 0
        row = await pool.fetchrow(
            "SELECT failed_attempts, last_error FROM requests.subscriptions WHERE tenant_id = $1", tenant)
        assert row["failed_attempts"] == 1 and row["last_error"].startswith("notificationUrl must"), dict(row)
        assert receiver.batches == [] and receiver.attempts == 0
    finally:
        await strict.http.close()
        requests_service.deliverer.start()
