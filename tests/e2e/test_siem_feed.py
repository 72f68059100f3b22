"""The SIEM JSON-lines streams through the real gateway, services and PostgreSQL: their shape, resumption, follow
mode, errors before the stream, and streams that end because the client or the gateway went away."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp import web

from gateway import siem
from gateway.app import create_app

from ..integration.test_siem_feed import closed
from .people import Person
from .test_role_assignments import auth

ALL = ("DeviceManagementConfiguration.ReadWrite.All", "DeviceManagementManagedDevices.ReadWrite.All")
ELEVATIONS = "/beta/deviceManagement/privilegeManagementElevations"
REQUESTS = "/beta/deviceManagement/elevationRequests"
AUDIT = "/beta/deviceManagement/auditEvents"
ELEVATION_STREAM = "/beta/security/epm/privilegeManagementElevations/stream"
AUDIT_STREAM = "/beta/security/epm/auditEvents/stream"
WAIT = 5.0  # seconds: the bound on anything asynchronous
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
async def client(gateway_url, requests_channel):
    """A client without a default token: every call here names its own."""
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


@pytest.fixture
def app_headers(token) -> dict:
    """An application's token: every permission these streams ask for, and no Intune role needed."""
    return auth(token(scopes=(), roles=ALL))


@pytest.fixture(autouse=True)
def quick_streams(events_service, requests_service, monkeypatch):
    """Followers poll and the gateway sends checkpoints often here; what arrives is what the tests check."""
    for running in (events_service, requests_service):
        monkeypatch.setattr(running.feeds, "poll", 0.05)
    monkeypatch.setattr(siem, "HEARTBEAT", 0.05)


def elevation(device: str) -> dict:
    return {"deviceId": device, "eventDateTime": NOW.isoformat().replace("+00:00", "Z"),
            "elevationType": "userConfirmedElevation", "userType": "azureAd", "processType": "parent",
            "hash": hashlib.sha256(device.encode()).hexdigest(), "upn": "adele@contoso.example"}


async def send(client, method: str, path: str, headers: dict, status: int, **kwargs) -> dict:
    async with client.request(method, path, headers=headers, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def lines(client, path: str, headers: dict, **params) -> list[dict]:
    """Every line of a stream that ends by itself."""
    async with client.get(path, headers=headers, params=params) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "application/x-ndjson" and resp.headers["request-id"]
        body = await asyncio.wait_for(resp.read(), WAIT)
    return [json.loads(line) for line in body.decode().splitlines()]


async def next_event(resp: aiohttp.ClientResponse) -> dict:
    """The next event line of a following stream (checkpoints skipped)."""
    async def read():
        while True:
            line = json.loads(await resp.content.readline())
            if "event" in line:
                return line
    return await asyncio.wait_for(read(), WAIT)


async def graph_error(resp: aiohttp.ClientResponse, status: int) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body["error"]) == {"code", "message", "innerError"}
    return body["error"]["message"]


async def test_elevations_stream_as_json_lines_the_list_shape_and_resume_from_any_cursor(client, app_headers):
    posted = [await send(client, "POST", ELEVATIONS, app_headers, 201, json=elevation(f"pc-{i}")) for i in range(3)]
    listed = {e["id"]: e for e in (await send(client, "GET", ELEVATIONS, app_headers, 200))["value"]}
    *events, last = await lines(client, ELEVATION_STREAM, app_headers)
    assert [e["event"]["id"] for e in events] == [p["id"] for p in posted]
    assert [e["event"] for e in events] == [listed[p["id"]] for p in posted]  # the list's own Graph JSON
    assert all(set(e) == {"cursor", "event"} for e in events) and last == {"cursor": events[-1]["cursor"]}
    *rest, again = await lines(client, ELEVATION_STREAM, app_headers, cursor=events[0]["cursor"])
    assert rest == events[1:] and again == last
    assert await lines(client, ELEVATION_STREAM, app_headers, cursor=last["cursor"]) == [last]


async def test_audit_events_follow_with_checkpoints_until_the_client_leaves(client, app_headers, requests_service):
    body = {"requestedOnDeviceId": "pc-1", "requestedByUserId": "user-1", "requestJustification": "Need it",
            "applicationDetail": {"fileName": "vpn.exe", "fileHash": hashlib.sha256(b"vpn").hexdigest()}}
    created = await send(client, "POST", REQUESTS, app_headers, 201, json=body)
    async with client.get(AUDIT_STREAM, headers=app_headers, params={"follow": "true"}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
        first = await next_event(resp)
        listed = (await send(client, "GET", AUDIT, app_headers, 200))["value"]
        assert [first["event"]] == listed and first["event"]["resources"][0]["resourceId"] == created["id"]
        checkpoint = json.loads(await asyncio.wait_for(resp.content.readline(), WAIT))
        assert checkpoint == {"cursor": first["cursor"]}  # while it waits
        await send(client, "POST", f"{REQUESTS}/{created['id']}/deny", app_headers, 200, json={})
        denied = await next_event(resp)
        assert denied["event"]["activity"] == "Deny ElevationRequest"
    await closed(requests_service.feeds)  # the client left: so did the backend stream


async def test_latest_skips_the_backlog_and_gives_a_cursor_to_resume_from(client, app_headers):
    body = {"requestedOnDeviceId": "pc-2", "requestedByUserId": "user-2", "requestJustification": "Need it",
            "applicationDetail": {"fileName": "old.exe", "fileHash": hashlib.sha256(b"old").hexdigest()}}
    old = await send(client, "POST", REQUESTS, app_headers, 201, json=body)
    async with client.get(AUDIT_STREAM, headers=app_headers, params={"cursor": "latest", "follow": "true"}) as resp:
        now = json.loads(await asyncio.wait_for(resp.content.readline(), WAIT))
        assert set(now) == {"cursor"}  # a checkpoint first: "now" as a cursor
        await send(client, "POST", f"{REQUESTS}/{old['id']}/deny", app_headers, 200, json={})
        denied = await next_event(resp)
    assert denied["event"]["activity"] == "Deny ElevationRequest"  # not the older Create
    *resumed, _ = await lines(client, AUDIT_STREAM, app_headers, cursor=now["cursor"])
    assert [line["event"]["id"] for line in resumed] == [denied["event"]["id"]]


async def test_the_stream_of_another_tenant_is_empty(client, app_headers, token):
    await send(client, "POST", ELEVATIONS, app_headers, 201, json=elevation("mine"))
    other = auth(token(scopes=(), roles=ALL, tenant=str(uuid.uuid4())))
    (only,) = await lines(client, ELEVATION_STREAM, other)
    assert set(only) == {"cursor"}


async def test_bad_requests_and_missing_rights_are_graph_errors_before_the_stream(client, token, person):
    reader = auth(token(scopes=(), roles=["DeviceManagementConfiguration.Read.All"]))  # an app: no role needed
    for params, wanted in (({"cursor": "junk"}, "The cursor is not one this feed gave out."),
                           ({"follow": "maybe"}, "follow must be true or false, not 'maybe'."),
                           ({"$top": "5"}, "Unknown query parameter '$top'")):
        for path in (ELEVATION_STREAM, AUDIT_STREAM):
            async with client.get(path, headers=reader, params=params) as resp:
                assert wanted in await graph_error(resp, 400)
    nobody = auth(token(scopes=["User.Read"]))
    for path in (ELEVATION_STREAM, AUDIT_STREAM):
        async with client.get(path, headers=nobody) as resp:
            assert "DeviceManagementConfiguration.Read.All" in await graph_error(resp, 403)
        async with client.get(path) as resp:
            await graph_error(resp, 401)
    user: Person = person("noah")  # a user with the scopes but no Intune role: no audit trail
    async with client.get(AUDIT_STREAM, headers=user.headers) as resp:
        assert "Endpoint Privilege Management Elevation Requests" in await graph_error(resp, 403)


async def test_a_stopping_gateway_ends_its_streams_with_a_last_cursor(settings, events_service, requests_service,
                                                                     app_headers, client):
    posted = await send(client, "POST", ELEVATIONS, app_headers, 201, json=elevation("before-stop"))
    app = create_app(replace(settings, events_addr=f"127.0.0.1:{events_service.port}",
                             requests_addr=f"127.0.0.1:{requests_service.port}"))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=60)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}{ELEVATION_STREAM}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=app_headers,
                                                               params={"follow": "true"}) as resp:
        seen = await next_event(resp)
        assert seen["event"]["id"] == posted["id"]
        await asyncio.wait_for(runner.cleanup(), WAIT)  # not the 60 s shutdown timeout: the stream ends itself
        *_, last = [json.loads(line) for line in (await resp.read()).decode().splitlines()]
    assert last["cursor"] == seen["cursor"] and last["error"]["code"] == "ServiceUnavailable"
    await closed(events_service.feeds)

