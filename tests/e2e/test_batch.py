"""POST /beta/$batch (Graph JSON batching) through the real gateway, requests service and PostgreSQL: bulk review,
a status per item, dependsOn and 424, the batch's own 400 and 401, permissions and throttling per item."""

from __future__ import annotations

import base64
import uuid
from collections import Counter

import aiohttp
import pytest

from .people import Person
from .test_elevation_requests import AUDIT, CONFIG_READ, PATH, body, call
from .test_elevations import error_of
from .test_role_assignments import auth
from .test_throttling import throttled_url  # noqa: F401 (a fixture)

BATCH = "/beta/$batch"
REQUESTS = PATH.removeprefix("/beta")  # item URLs are relative to the version root


@pytest.fixture
async def client(gateway_url, requests_service):
    """A client without a default token: every call names who makes it."""
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


def item(item_id: str, method: str, url: str, json_body=None, **fields) -> dict:
    out = {"id": item_id, "method": method, "url": url, **fields}
    if json_body is not None:
        out["body"] = json_body
        out.setdefault("headers", {}).setdefault("Content-Type", "application/json")
    return out


def approve(item_id: str, request_id: str, **fields) -> dict:
    return item(item_id, "POST", f"{REQUESTS}/{request_id}/approve", {"reviewerJustification": "Bulk: INC-9"},
                **fields)


async def send(client, who, *requests: dict) -> dict[str, dict]:
    """One batch of `requests`, which must be answered 200; returns its responses by id (checking each id once)."""
    headers = who.headers if isinstance(who, Person) else who
    async with client.post(BATCH, json={"requests": list(requests)}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        responses = (await resp.json())["responses"]
    assert sorted(r["id"] for r in responses) == sorted(r["id"] for r in requests)
    return {r["id"]: r for r in responses}


async def refused(client, who, requests, status: int) -> str:
    """A batch refused as a whole: `status` with Graph's error body; returns its message."""
    headers = who.headers if isinstance(who, Person) else who
    async with client.post(BATCH, json={"requests": requests}, headers=headers) as resp:
        return await error_of(resp, status)


def error(answer: dict, status: int, code: str) -> str:
    """An item's Graph error: its status, code, and request ids matching its headers; returns its message."""
    assert answer["status"] == status, answer
    assert answer["headers"]["Content-Type"].startswith("application/json"), answer
    graph = answer["body"]["error"]
    assert set(graph) == {"code", "message", "innerError"} and graph["code"] == code, answer
    assert graph["innerError"]["request-id"] == answer["headers"]["request-id"]
    assert graph["innerError"]["client-request-id"] == answer["headers"]["client-request-id"]
    return graph["message"]


async def status_of(client, who, request_id: str) -> str:
    return (await call(client, "GET", f"{PATH}/{request_id}", who))["status"]


async def ask_for(client, requester, n: int) -> list[str]:
    """`n` pending requests of `requester`, asked for in one batch (201 each, with its Location)."""
    answers = await send(client, requester, *(
        item(str(k), "POST", REQUESTS, body(device=f"bulk-{k % 2}", file=f"tool-{k}.exe")) for k in range(n)))
    assert {a["status"] for a in answers.values()} == {201}
    for answer in answers.values():
        assert answer["headers"]["Location"].endswith(f"{PATH}/{answer['body']['id']}")
        assert answer["body"]["status"] == "pending"
    return [answers[str(k)]["body"]["id"] for k in range(n)]


async def test_a_reviewer_approves_twenty_pending_requests_in_one_batch(client, requester, manager):
    ids = await ask_for(client, requester, 20)
    answers = await send(client, manager, *(approve(f"a{k}", request_id) for k, request_id in enumerate(ids)))
    for k, request_id in enumerate(ids):
        answer = answers[f"a{k}"]
        assert answer["status"] == 200, answer
        assert answer["headers"]["Content-Type"].startswith("application/json")
        approved = answer["body"]
        assert (approved["id"], approved["status"]) == (request_id, "approved")
        assert approved["reviewCompletedByUserId"] == manager.oid
        assert approved["reviewerJustification"] == "Bulk: INC-9"
        assert answer["headers"]["ETag"] == approved["@odata.etag"]
    assert len({a["headers"]["request-id"] for a in answers.values()}) == 20  # each item a request of its own
    listed = await call(client, "GET", f"{PATH}?$filter=status eq 'approved'&$count=true&$top=50", manager)
    assert listed["@odata.count"] == 20 and {r["id"] for r in listed["value"]} == set(ids)
    audit = await call(client, "GET", f"{AUDIT}?$filter=activity eq 'Approve ElevationRequest'&$count=true&$top=50",
                       manager)
    assert audit["@odata.count"] == 20
    assert {e["resources"][0]["resourceId"] for e in audit["value"]} == set(ids)
    assert {e["actor"]["userId"] for e in audit["value"]} == {manager.oid}


async def test_each_item_has_its_own_status_headers_and_body(client, requester, manager):
    pending, done = await ask_for(client, requester, 2)
    await call(client, "POST", f"{PATH}/{done}/approve", manager, json={})
    answers = await send(
        client, manager,
        approve("ok", pending, headers={"Content-Type": "application/json", "client-request-id": "mine-1"}),
        approve("missing", str(uuid.uuid4())),
        item("bad", "POST", f"{REQUESTS}/{pending}/deny", {"reviewerJustification": 5}),
        approve("again", done),
        item("count", "GET", f"{REQUESTS}/$count?$filter=status eq 'approved'", dependsOn=["ok"]),
        item("select", "GET", f"{REQUESTS.removeprefix('/')}/{done}?$select=status"),
        item("nowhere", "GET", "/deviceManagement/nothingHere"),
        item("put", "PUT", f"{REQUESTS}/{pending}", {"requestJustification": "x"}),
        item("text", "PATCH", f"{REQUESTS}/{pending}", base64.b64encode(b"justification").decode(),
             headers={"Content-Type": "text/plain"}))
    assert answers["ok"]["status"] == 200 and answers["ok"]["body"]["status"] == "approved"
    assert answers["ok"]["headers"]["client-request-id"] == "mine-1"
    assert "elevation request" in error(answers["missing"], 404, "ResourceNotFound").lower()
    assert "reviewerJustification must be a string" in error(answers["bad"], 400, "BadRequest")
    assert "approved" in error(answers["again"], 409, "Conflict")
    # a non-JSON body comes back base64, as Graph sends it
    count = answers["count"]
    assert count["status"] == 200 and count["headers"]["Content-Type"].startswith("text/plain")
    assert base64.b64decode(count["body"]) == b"2"
    assert answers["select"]["status"] == 200 and answers["select"]["body"]["status"] == "approved"
    assert "mine-1" not in {a["headers"]["client-request-id"] for k, a in answers.items() if k != "ok"}
    error(answers["nowhere"], 404, "ResourceNotFound")
    error(answers["put"], 405, "MethodNotAllowed")
    error(answers["text"], 415, "UnsupportedMediaType")
    assert await status_of(client, manager, pending) == "approved"  # the failed deny did not run


async def test_items_a_batch_does_not_run_are_refused_each_on_its_own(client, requester, manager):
    [pending] = await ask_for(client, requester, 1)
    url = f"{REQUESTS}/{pending}/approve"
    answers = await send(
        client, manager,
        item("absolute", "POST", f"https://graph.microsoft.com/beta{url}", {}),
        item("v1", "POST", f"/v1.0{url}", {}),
        item("nested", "POST", "/$batch", {"requests": [approve("inner", pending)]}),
        item("stream", "GET", "/security/epm/auditEvents/stream?follow=true"),
        item("someone", "POST", url, {}, headers={"Authorization": auth("forged")["Authorization"],
                                                  "Content-Type": "application/json"}),
        item("read", "GET", f"{REQUESTS}/{pending}"))
    assert "not an absolute URL" in error(answers["absolute"], 400, "BadRequest")
    assert "leave out '/v1.0'" in error(answers["v1"], 400, "BadRequest")
    assert "cannot hold a batch" in error(answers["nested"], 400, "BadRequest")
    assert "SIEM streams" in error(answers["stream"], 400, "BadRequest")
    assert "the batch's own Authorization" in error(answers["someone"], 400, "BadRequest")
    assert answers["read"]["status"] == 200
    assert await status_of(client, manager, pending) == "pending"


async def test_depends_on_orders_items_and_a_failed_dependency_is_424(client, requester, manager):
    first, second, third = await ask_for(client, requester, 3)
    answers = await send(
        client, manager,
        # named before what it depends on: it still runs after it, and sees its effect
        item("check", "GET", f"{REQUESTS}/{first}", dependsOn=["approve"]),
        approve("approve", first),
        approve("missing", str(uuid.uuid4())),
        approve("after-missing", second, dependsOn=["missing"]),
        approve("after-that", third, dependsOn=["after-missing"]),
        item("after-both", "GET", f"{REQUESTS}/{first}", dependsOn=["approve", "missing"]))
    assert answers["approve"]["status"] == 200
    assert answers["check"]["status"] == 200 and answers["check"]["body"]["status"] == "approved"
    error(answers["missing"], 404, "ResourceNotFound")
    assert "'missing'" in error(answers["after-missing"], 424, "FailedDependency")
    assert "'after-missing'" in error(answers["after-that"], 424, "FailedDependency")
    assert "'missing'" in error(answers["after-both"], 424, "FailedDependency")
    assert [await status_of(client, manager, r) for r in (second, third)] == ["pending", "pending"]


async def test_a_malformed_batch_is_a_400_and_runs_nothing(client, requester, manager):
    ids = await ask_for(client, requester, 2)
    twenty_one = [approve(str(k), ids[k % 2]) for k in range(21)]
    assert "1 to 20 requests, not 21" in await refused(client, manager, twenty_one, 400)
    cases = {
        "is given more than once": [approve("1", ids[0]), approve("1", ids[1])],
        "depends on 'nine', which is not in the batch": [approve("1", ids[0], dependsOn=["nine"])],
        "dependsOn makes a cycle: 1 -> 2 -> 1": [approve("1", ids[0], dependsOn=["2"]),
                                                approve("2", ids[1], dependsOn=["1"])],
        "needs an id": [{"method": "POST", "url": f"{REQUESTS}/{ids[0]}/approve"}],
    }
    for why, requests in cases.items():
        assert why in await refused(client, manager, requests, 400)
    async with client.post(BATCH, data=b'{"requests": [', headers={**manager.headers,
                                                                  "Content-Type": "application/json"}) as resp:
        await error_of(resp, 400)
    async with client.post(BATCH, data=b"{}", headers={**manager.headers, "Content-Type": "text/plain"}) as resp:
        await error_of(resp, 415)
    assert [await status_of(client, manager, r) for r in ids] == ["pending", "pending"]


async def test_a_bad_token_is_a_401_for_the_whole_batch(client, token, requester, manager):
    [pending] = await ask_for(client, requester, 1)
    for headers in ({}, auth("forged"), auth(token(hours=-1, oid=manager.oid, upn=manager.upn))):
        async with client.post(BATCH, json={"requests": [approve("1", pending)]}, headers=headers) as resp:
            await error_of(resp, 401)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    # an item's own Authorization does not stand in for the batch's
    async with client.post(BATCH, json={"requests": [approve("1", pending, headers={
            **manager.headers, "Content-Type": "application/json"})]}) as resp:
        await error_of(resp, 401)
    assert await status_of(client, manager, pending) == "pending"


async def test_an_item_needing_a_permission_the_caller_lacks_is_403_alone(client, token, requester, reader, manager):
    [pending] = await ask_for(client, requester, 1)
    read_only = auth(token(scopes=[CONFIG_READ], oid=manager.oid, upn=manager.upn))
    for who, why in ((reader, "Modify elevation requests"), (read_only, "DeviceManagementConfiguration.ReadWrite")):
        answers = await send(client, who, item("read", "GET", f"{REQUESTS}/{pending}"), approve("decide", pending),
                             item("audit", "GET", AUDIT.removeprefix("/beta")))
        assert answers["read"]["status"] == 200 and answers["read"]["body"]["status"] == "pending"
        assert answers["audit"]["status"] == 200
        assert why in error(answers["decide"], 403, "Forbidden")
    assert await status_of(client, manager, pending) == "pending"


async def test_the_throttle_counts_each_item(throttled_url, token):  # noqa: F811
    """Per client 3 at once: the batch takes one, two of its four items pass and two get 429 with Retry-After."""
    headers = auth(token(client_id="app-1"))
    elevations = "/deviceManagement/privilegeManagementElevations"
    async with aiohttp.ClientSession(base_url=throttled_url) as session:
        answers = await send(session, headers, *(item(str(k), "GET", elevations) for k in range(4)))
        assert Counter(a["status"] for a in answers.values()) == {200: 2, 429: 2}
        for answer in answers.values():
            if answer["status"] == 429:
                assert int(answer["headers"]["Retry-After"]) >= 1
                assert "Retry after" in error(answer, 429, "TooManyRequests")
        assert "Retry after" in await refused(session, headers, [item("1", "GET", elevations)], 429)
        other = auth(token(client_id="app-2"))  # the tenant's bucket (6) still holds one for the next client
        answers = await send(session, other, item("1", "GET", elevations))  # its batch takes 1, the item the last
        assert answers["1"]["status"] == 200
