"""The gateway as it runs (`python -m gateway`, on tests/system.py) gives nothing away: a 267 kB token is Graph's 431
with none of it in the answer or the log; a killed backend is a generic 503, and a SIEM stream it cuts ends with a
generic error line, their detail in the gateway's JSON log under the request id; no response names aiohttp."""

from __future__ import annotations

import contextlib
import json
import uuid

import aiohttp
import pytest

from gateway import elevations, errors, siem
from tests.security.test_leaks import APP_ROLES, HUGE, SECRET, assert_hardened, assert_no_internals, raw

pytestmark = pytest.mark.slow


def logged(system, rid: str) -> list[str]:
    """The messages the gateway process logged under request id `rid`."""
    entries = [json.loads(line) for line in system.log("gateway").splitlines() if line.startswith("{")]
    return [entry["message"] for entry in entries if entry.get("request_id") == rid]


async def test_a_huge_token_is_a_431_that_repeats_none_of_it(system):
    await system.ready()
    before = len(system.log("gateway"))
    request = f"GET {elevations.PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {HUGE}\r\n\r\n"
    status, headers, body = await raw(system.url, request.encode())
    assert status == 431, body[:300]
    assert json.loads(body)["error"]["code"] == "RequestHeaderFieldsTooLarge"
    assert_hardened("431", headers)
    assert SECRET[:16].encode() not in body
    assert [m for m in logged(system, headers["request-id"]) if m.startswith("refused by the HTTP parser: 431")]
    written = system.log("gateway")[before:]
    assert SECRET[:16] not in written and "Traceback" not in written, written[-2000:]


@contextlib.asynccontextmanager
async def killed(system, name: str):
    """`name` killed for the block, then started again."""
    system.kill(name)
    try:
        yield
    finally:
        system.start(name)
        await system.ready()


async def test_a_killed_backend_is_told_in_generic_words_and_logged_in_detail(system):
    await system.ready()
    auth = {"Authorization": f"Bearer {system.token(str(uuid.uuid4()), scopes=(), roles=APP_ROLES)}"}
    events = system.address("events")
    async with aiohttp.ClientSession(base_url=system.url, timeout=aiohttp.ClientTimeout(total=30)) as http, \
            http.get(siem.ROOT + "/privilegeManagementElevations/stream?cursor=latest&follow=true",
                     headers=auth) as stream:
        assert stream.status == 200, await stream.text()
        assert "cursor" in json.loads(await stream.content.readline())
        async with killed(system, "events"):
            text = (await stream.content.read()).decode()
            async with http.get(elevations.PATH, headers=auth) as response:
                body, rid = await response.text(), response.headers["request-id"]
                assert response.status == 503, body
                assert json.loads(body)["error"]["message"] == errors.GENERIC[503]
                assert_hardened("503", response.headers)
        assert_hardened("stream", stream.headers)
    last = json.loads(text.splitlines()[-1])
    assert last["error"] == {"code": "ServiceUnavailable", "message": errors.GENERIC[503]}, last
    for answer in (text, body):
        assert_no_internals(answer, events)
    assert [m for m in logged(system, stream.headers["request-id"]) if m.startswith("backend call failed: UNAVAILABLE")]
    assert [m for m in logged(system, rid) if m.startswith("backend call failed: UNAVAILABLE") and events in m]
