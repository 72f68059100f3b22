"""Notification URLs as production sees them (notify_private_networks off, unlike the rest of the tests): a
requests service and a gateway of their own, on the same PostgreSQL, refuse an IPv6 address that carries a
loopback, private or link-local IPv4 address."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from services.requests import app as requests_app

from .test_elevation_requests import call, failure
from .test_role_assignments import auth
from .test_subscriptions import PATH, subscription


@pytest.fixture(scope="module")
async def client(settings, clock, reputation_address):
    production = replace(settings, notify_private_networks=False, reputation_addr=reputation_address)
    requests = await requests_app.start(production, "127.0.0.1:0", clock=clock.now)
    runner = web.AppRunner(create_app(replace(production, requests_addr=f"127.0.0.1:{requests.port}")),
                           access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}") as session:
        yield session
    await runner.cleanup()
    await requests.stop(1)


@pytest.mark.parametrize("url", ["https://[::127.0.0.1]/x", "https://[64:ff9b::7f00:1]/x",
                                 "https://[::ffff:10.0.0.1]/x", "https://[2002:a9fe:a9fe::1]/x"])
async def test_an_ipv6_address_carrying_a_private_one_is_refused(client, token, clock, url):
    app = auth(token(scopes=(), roles=["DeviceManagementConfiguration.ReadWrite.All"]))
    error = await failure(client, "POST", PATH, app, 400, json=subscription(SimpleNamespace(url=url), clock))
    assert error["message"] == "notificationUrl must not point to a loopback, private or link-local address."
    assert (await call(client, "GET", PATH, app))["value"] == []
