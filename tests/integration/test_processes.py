"""The real processes as `epm serve` runs them: readiness, request ids across hops, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

import aiohttp
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def spawn(name: str, env: dict) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "serve", name, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def wait_for(url: str, status: int, timeout: float = 30) -> dict:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(timeout * 10)):
            try:
                async with http.get(url) as resp:
                    if resp.status == status:
                        return await resp.json()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}")


@pytest.fixture
async def processes(settings):
    events_port, requests_port, reputation_port, gateway_port = free_port(), free_port(), free_port(), free_port()
    env = dict(os.environ, EPM_DATABASE_URL=settings.database_url, EPM_JWT_SECRET=settings.jwt_secret,
               EPM_EVENTS_PORT=str(events_port), EPM_EVENTS_ADDR=f"127.0.0.1:{events_port}",
               EPM_REQUESTS_PORT=str(requests_port), EPM_REQUESTS_ADDR=f"127.0.0.1:{requests_port}",
               EPM_REPUTATION_PORT=str(reputation_port), EPM_REPUTATION_ADDR=f"127.0.0.1:{reputation_port}",
               EPM_GATEWAY_PORT=str(gateway_port), EPM_SHUTDOWN_GRACE="2", EPM_LOG_LEVEL="INFO")
    events = await spawn("events", env)
    requests = await spawn("requests", env)
    reputation = await spawn("reputation", env)
    gateway = await spawn("gateway", env)
    yield events, gateway, f"http://127.0.0.1:{gateway_port}"
    requests.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(requests.wait(), 10) == 0
    for proc in (gateway, events, reputation):
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_ready_then_logs_share_the_request_id_then_sigterm_stops_cleanly(processes, token):
    events, gateway, url = processes
    assert (await wait_for(f"{url}/readyz", 200))["backends"] == {"events": "SERVING", "requests": "SERVING",
                                                                   "reputation": "SERVING"}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token()}"}) as http:
        async with http.get(f"{url}/beta/deviceManagement/privilegeManagementElevations/$count") as resp:
            assert resp.status == 200
            rid = resp.headers["request-id"]

    events.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(events.wait(), 10) == 0
    assert (await wait_for(f"{url}/readyz", 503))["backends"]["events"] == "UNAVAILABLE"
    gateway.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(gateway.wait(), 10) == 0

    events_log, gateway_log = [
        [json.loads(line) for line in (await proc.stdout.read()).decode().splitlines() if line.startswith("{")]
        for proc in (events, gateway)]
    served = [e for e in events_log if e.get("request_id") == rid]
    assert served[0]["method"].endswith("/CountElevationEvents") and served[0]["code"] == "OK"
    assert [e["status"] for e in gateway_log if e.get("request_id") == rid] == [200]
    assert any(e["message"].startswith("shutting down") for e in events_log)
