"""Graph's throttling at the gateway: 429 with Retry-After per tenant and per client, before any backend call."""

from __future__ import annotations

import uuid
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app

from .test_elevations import PATH, event

SUPPORT = "/support/odata/v1/tenants/{}/elevationRequests"


@pytest.fixture
async def throttled_url(settings, events_service, requests_service, reputation_address):
    """A gateway that refills almost never: per tenant 6 requests, per client 3."""
    app = create_app(replace(settings, events_addr=f"127.0.0.1:{events_service.port}",
                             requests_addr=f"127.0.0.1:{requests_service.port}", reputation_addr=reputation_address,
                             throttle_tenant="0.001/6", throttle_client="0.001/3"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def statuses(url: str, token: str, n: int, body=None) -> list[tuple[int, dict, dict]]:
    """n requests in a row (POST `body()` when given, else GET): (status, headers, JSON body) of each."""
    results = []
    async with aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {token}"}) as session:
        for _ in range(n):
            call = session.post(PATH, json=body()) if body else session.get(PATH)
            async with call as resp:
                results.append((resp.status, dict(resp.headers), await resp.json()))
    return results


async def test_a_client_over_its_limit_gets_429_with_retry_after(throttled_url, token):
    results = await statuses(throttled_url, token(client_id="app-1"), 5)
    assert [s for s, _, _ in results] == [200, 200, 200, 429, 429]
    _, headers, body = results[3]
    assert int(headers["Retry-After"]) >= 1
    assert body["error"]["code"] == "TooManyRequests"
    assert f"{headers['Retry-After']} seconds" in body["error"]["message"]
    assert body["error"]["innerError"]["request-id"] == headers["request-id"]


async def test_other_clients_of_the_tenant_go_on_until_the_tenant_is_out(throttled_url, token, tenant):
    first = await statuses(throttled_url, token(client_id="app-1"), 5)
    second = await statuses(throttled_url, token(client_id="app-2"), 2)
    third = await statuses(throttled_url, token(client_id="app-3"), 2)
    assert [s for s, _, _ in first + second + third] == [200] * 3 + [429] * 2 + [200] * 2 + [200, 429]
    other_tenant = await statuses(throttled_url, token(client_id="app-1", tenant=str(uuid.uuid4())), 1)
    assert other_tenant[0][0] == 200


async def test_users_without_an_app_id_are_throttled_one_by_one(throttled_url, token):
    adele, lee = token(oid=str(uuid.uuid4())), token(oid=str(uuid.uuid4()))
    assert [s for s, _, _ in await statuses(throttled_url, adele, 4)] == [200, 200, 200, 429]
    assert [s for s, _, _ in await statuses(throttled_url, lee, 1)] == [200]


async def test_a_refused_write_never_reaches_the_service(throttled_url, http, token):
    device = f"device-{uuid.uuid4()}"
    seconds = iter(range(10))  # each event its own time: an event's id is its device and time
    results = await statuses(throttled_url, token(client_id="app-1"), 5,
                             body=lambda: event(deviceId=device, eventDateTime=f"2026-11-30T10:00:0{next(seconds)}Z"))
    assert [s for s, _, _ in results] == [201, 201, 201, 429, 429]
    async with http.get(f"{PATH}/$count", params={"$filter": f"deviceId eq '{device}'"}) as resp:
        assert await resp.text() == "3"


async def test_the_support_api_is_throttled_in_its_own_error_shape(throttled_url, token, tenant):
    mmd = token(scopes=(), roles=["MmdSupport.ReadWrite"], client_id="mmd-app")
    async with aiohttp.ClientSession(base_url=throttled_url, headers={"Authorization": f"Bearer {mmd}"}) as session:
        seen = []
        for _ in range(4):
            async with session.get(SUPPORT.format(tenant)) as resp:
                seen.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
    assert [s for s, _, _ in seen] == [200, 200, 200, 429]
    assert int(seen[3][1]) >= 1 and seen[3][2]["error"]["code"] == "429"


async def test_unauthenticated_calls_take_no_tokens(throttled_url, token):
    async with aiohttp.ClientSession(base_url=throttled_url, headers={"Authorization": "Bearer forged"}) as session:
        for _ in range(10):
            async with session.get(PATH) as resp:
                assert resp.status == 401
    assert [s for s, _, _ in await statuses(throttled_url, token(client_id="app-1"), 3)] == [200] * 3
