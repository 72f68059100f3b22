"""Real servers for the tests: PostgreSQL (EPM_TEST_DATABASE_URL or an embedded one), the gRPC services
on ephemeral ports and the gateway on a real socket. Each test gets a tenant of its own."""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import grpc
import pytest
from aiohttp import web
from epm.reputation.v1 import file_reputation_service_pb2 as reputation_pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as reputation_grpc

from gateway.app import Runner, create_app
from services.common import logs
from services.common.auth import mint
from services.common.settings import Settings
from services.events import app as events_app
from services.reputation import app as reputation_app
from services.requests import app as requests_app
from services.requests.notifications import DeliveryPolicy

from . import feed_data

ALL = ("DeviceManagementConfiguration.ReadWrite.All", "DeviceManagementManagedDevices.ReadWrite.All")
OPERATOR_TENANT = "00000000-0000-4000-8000-00000000000f"  # may import feeds shared by every tenant


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def server_url():
    """A PostgreSQL server: the one named by EPM_TEST_DATABASE_URL, else an embedded one for this run."""
    if url := os.environ.get("EPM_TEST_DATABASE_URL"):
        yield url
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="epm-pg-") as directory:
        with pgserver.get_server(directory, cleanup_mode="delete") as server:  # stopped before its directory goes
            yield server.get_uri()


@pytest.fixture(scope="session")
async def database_url(server_url):
    """A fresh database for this run, dropped afterwards."""
    name = f"epm_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    yield _with_database(server_url, name)
    await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await admin.close()


@pytest.fixture(scope="session")
def settings(database_url) -> Settings:
    logs.configure("WARNING")
    return Settings(database_url=database_url, jwt_secret=secrets.token_urlsafe(32), db_pool_size=4,
                    notify_private_networks=True)  # the test receivers listen on 127.0.0.1


@pytest.fixture(scope="session")
def reputation_address():
    """The reputation service's address, known before it starts (requests and reputation call each other)."""
    with tempfile.TemporaryDirectory(prefix="epm-sock-") as directory:
        yield f"unix:{directory}/reputation.sock"


@pytest.fixture(scope="session")
async def reputation_service(settings, events_service, requests_service, reputation_address, clock):
    running = await reputation_app.start(
        replace(settings, events_addr=f"127.0.0.1:{events_service.port}",
                requests_addr=f"127.0.0.1:{requests_service.port}", operator_tenant=OPERATOR_TENANT),
        reputation_address, clock=clock.now)
    yield running
    await running.stop(1)


@pytest.fixture(scope="session")
async def reputation_channel(reputation_service, reputation_address):
    channel = grpc.aio.insecure_channel(reputation_address)
    yield channel
    await channel.close()


@pytest.fixture(scope="session")
async def shared_feeds(reputation_channel, settings) -> dict:
    """The real LOLDrivers and LOLBAS feeds, uploaded once over the gRPC stream as feeds every tenant shares.
    Returns feed name -> the progress messages of its import."""
    stub = reputation_grpc.FileReputationServiceStub(reputation_channel)
    operator = (("authorization", f"Bearer {mint(settings.jwt_secret, tenant=OPERATOR_TENANT, roles=ALL)}"),)
    return {
        "loldrivers": await feed_data.upload(stub, operator, reputation_pb.FEED_FORMAT_LOLDRIVERS,
                                             feed_data.loldrivers(), shared=True,
                                             source_version=feed_data.snapshot(feed_data.loldrivers())),
        "lolbas": await feed_data.upload(stub, operator, reputation_pb.FEED_FORMAT_LOLBAS, feed_data.lolbas(),
                                         shared=True, source_version=feed_data.snapshot(feed_data.lolbas())),
    }


@pytest.fixture(scope="session")
async def events_service(settings, requests_service):
    running = await events_app.start(
        replace(settings, requests_addr=f"127.0.0.1:{requests_service.port}"), "127.0.0.1:0")
    yield running
    await running.stop(1)


@pytest.fixture(scope="session")
async def events_channel(events_service):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{events_service.port}")
    yield channel
    await channel.close()


class Clock:
    """The requests service's clock in tests: real time plus however far a test has moved it."""

    def __init__(self):
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@pytest.fixture(scope="session")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
async def requests_service(settings, clock, reputation_address):
    running = await requests_app.start(replace(settings, reputation_addr=reputation_address), "127.0.0.1:0",
                                       clock=clock.now, delivery=DeliveryPolicy(pause_after=3))
    yield running
    await running.stop(1)


@pytest.fixture(scope="session")
async def requests_channel(requests_service):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{requests_service.port}")
    yield channel
    await channel.close()


@pytest.fixture(scope="session")
async def gateway_url(settings, events_service, requests_service, reputation_service, reputation_address):
    app = create_app(replace(settings, events_addr=f"127.0.0.1:{events_service.port}",
                             requests_addr=f"127.0.0.1:{requests_service.port}", reputation_addr=reputation_address))
    runner = Runner(app, access_log=None)  # as `python -m gateway` runs it
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
def tenant() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def token(settings, tenant):
    """token(scopes=..., roles=..., tenant=...) -> a signed dev token; defaults to full access in this test's tenant."""
    def make(scopes=ALL, roles=(), tenant=tenant, **claims) -> str:
        return mint(settings.jwt_secret, tenant=tenant, scopes=scopes, roles=roles, **claims)
    return make


@pytest.fixture
async def http(gateway_url, token):
    """An HTTP client on the gateway that sends this test's full-access token."""
    async with aiohttp.ClientSession(
        base_url=gateway_url, headers={"Authorization": f"Bearer {token()}"}
    ) as session:
        yield session


_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def figures(request):
    """figures(text): a measured figure of this test (requests tried, faults injected, writes verified), printed
    in the run's summary."""
    return lambda text: _FIGURES.append((request.node.nodeid, text))


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures")
        for nodeid, text in _FIGURES:
            terminalreporter.write_line(f"{nodeid}: {text}")
