"""Bearer tokens on the gateway: 401 for bad tokens, 403 for missing scopes, 404 across tenants."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest

from .test_elevations import PATH, error_of, event, post


@pytest.fixture
async def anonymous(gateway_url):
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_missing_malformed_expired_and_forged_tokens_are_401(anonymous, settings, token):
    expired = jwt.encode({"tid": "t", "exp": int(time.time()) - 3600}, settings.jwt_secret, algorithm="HS256")
    forged = token().rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    other_key = jwt.encode({"tid": "t", "exp": int(time.time()) + 60}, "not-the-secret-but-just-as-long-as-it",
                           algorithm="HS256")
    for headers in ({}, {"Authorization": "Basic abc"}, auth("not-a-jwt"), auth(expired), auth(forged),
                    auth(other_key)):
        async with anonymous.get(PATH, headers=headers) as resp:
            await error_of(resp, 401)
            assert (await resp.json())["error"]["code"] == "InvalidAuthenticationToken"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_token_without_a_tenant_is_401(anonymous, settings):
    no_tenant = jwt.encode({"exp": int(time.time()) + 60, "scp": "x"}, settings.jwt_secret, algorithm="HS256")
    async with anonymous.get(PATH, headers=auth(no_tenant)) as resp:
        assert "tid" in await error_of(resp, 401)


async def test_scopes_are_checked_per_method(anonymous, token):
    reader = auth(token(scopes=["DeviceManagementConfiguration.Read.All"]))
    async with anonymous.get(PATH, headers=reader) as resp:
        assert resp.status == 200
    async with anonymous.post(PATH, json=event(), headers=reader) as resp:
        message = await error_of(resp, 403)
    assert "DeviceManagementConfiguration.ReadWrite.All" in message
    nothing = auth(token(scopes=["User.Read"]))
    async with anonymous.get(PATH, headers=nothing) as resp:
        await error_of(resp, 403)
    app_writer = auth(token(scopes=(), roles=["DeviceManagementManagedDevices.ReadWrite.All"]))
    async with anonymous.post(PATH, json=event(), headers=app_writer) as resp:
        assert resp.status == 201


async def test_another_tenants_event_is_not_found(http, anonymous, token):
    created = await post(http, event())
    stranger = auth(token(tenant="11111111-2222-3333-4444-555555555555"))
    url = f"{PATH}/{created['id']}"
    for method in ("GET", "DELETE"):
        async with anonymous.request(method, url, headers=stranger) as resp:
            await error_of(resp, 404)
    async with anonymous.patch(url, json={"result": 1}, headers=stranger) as resp:
        await error_of(resp, 404)
    async with anonymous.get(PATH, headers=stranger) as resp:
        assert (await resp.json())["value"] == []
    async with http.get(url) as resp:
        assert (await resp.json())["result"] == 0


async def test_health_endpoints_need_no_token(anonymous):
    async with anonymous.get("/healthz") as resp:
        assert resp.status == 200
    async with anonymous.get("/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["backends"] == {"events": "SERVING", "requests": "SERVING",
                                                                       "reputation": "SERVING"}
