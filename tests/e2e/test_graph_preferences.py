"""Prefer (RFC 7240) as Graph takes it, through the real gateway and services: include-unknown-enum-members (the
statuses Graph added after unknownFutureValue), odata.maxpagesize and return=minimal, each answered with
Preference-Applied when honoured."""

from __future__ import annotations

import uuid

import pytest
from yarl import URL

from tests.claims import ROLE_ADMIN

from .test_elevation_requests import body as request_body
from .test_elevations import event
from .test_role_assignments import assign, auth

REQUESTS = "/beta/deviceManagement/elevationRequests"
ELEVATIONS = "/beta/deviceManagement/privilegeManagementElevations"
NEW_MEMBERS = "include-unknown-enum-members"


@pytest.fixture
async def reviewer(client, token) -> dict:
    oid = str(uuid.uuid4())
    await assign(client, auth(token(**ROLE_ADMIN)), oid)
    return auth(token(oid=oid, upn="megan@contoso.example"))


async def send(client, method: str, path: str, headers: dict, status: int = 200, prefer: str = "", **kwargs):
    """(the JSON body or None, Preference-Applied or None) of a call expected to answer `status`."""
    async with client.request(method, path, headers=headers | ({"Prefer": prefer} if prefer else {}),
                              **kwargs) as resp:
        assert resp.status == status, await resp.text()
        return (await resp.json() if status != 204 else None), resp.headers.get("Preference-Applied")


async def test_statuses_after_unknown_future_value_are_named_for_clients_that_ask(client, token, reviewer):
    requester = auth(token(oid=str(uuid.uuid4())))
    pending, _ = await send(client, "POST", REQUESTS, requester, 201, json=request_body(file="p.exe"))
    revoked, _ = await send(client, "POST", REQUESTS, requester, 201, json=request_body(file="r.exe"))
    await send(client, "POST", f"{REQUESTS}/{revoked['id']}/approve", reviewer)
    shown, applied = await send(client, "POST", f"{REQUESTS}/{revoked['id']}/revoke", reviewer)
    assert (shown["status"], applied) == ("unknownFutureValue", None)
    shown, applied = await send(client, "GET", f"{REQUESTS}/{revoked['id']}", reviewer, prefer=NEW_MEMBERS)
    assert (shown["status"], applied) == ("revoked", NEW_MEMBERS)

    for prefer, name, honoured in (("", "unknownFutureValue", None), (NEW_MEMBERS, "revoked", NEW_MEMBERS),
                                   (f'odata.maxpagesize=50, {NEW_MEMBERS.upper()};x="y"', "revoked",
                                    f"odata.maxpagesize=50, {NEW_MEMBERS}")):
        page, applied = await send(client, "GET", REQUESTS, reviewer, prefer=prefer)
        assert {r["id"]: r["status"] for r in page["value"]} == {pending["id"]: "pending", revoked["id"]: name}
        assert applied == honoured
        # the $filter names the member either way: the client knows it, as it wrote it
        page, _ = await send(client, "GET", f"{REQUESTS}?$filter=status eq 'revoked'", reviewer, prefer=prefer)
        assert [(r["id"], r["status"]) for r in page["value"]] == [(revoked["id"], name)]
        page, _ = await send(client, "GET", f"{REQUESTS}?$filter=status ne 'revoked'", reviewer, prefer=prefer)
        assert [r["id"] for r in page["value"]] == [pending["id"]]
    everything, applied = await send(client, "POST", f"{REQUESTS}/{pending['id']}/getAllElevationRequests",
                                     reviewer, prefer=NEW_MEMBERS)
    assert {r["status"] for r in everything["value"]} == {"pending", "revoked"} and applied == NEW_MEMBERS


async def test_odata_maxpagesize_bounds_the_page(client, token):
    headers = auth(token())
    for minutes in range(3):
        await send(client, "POST", ELEVATIONS, headers, 201, json=event(deviceId=f"paged-{minutes}"))
    page, applied = await send(client, "GET", f"{ELEVATIONS}?$orderby=deviceId", headers,
                               prefer="odata.maxpagesize=2")
    assert [e["deviceId"] for e in page["value"]] == ["paged-0", "paged-1"]
    assert applied == "odata.maxpagesize=2"
    rest, _ = await send(client, "GET", str(URL(page["@odata.nextLink"]).relative()), headers,
                         prefer="odata.maxpagesize=2")
    assert [e["deviceId"] for e in rest["value"]] == ["paged-2"] and "@odata.nextLink" not in rest
    page, _ = await send(client, "GET", f"{ELEVATIONS}?$top=1", headers, prefer="odata.maxpagesize=2")
    assert len(page["value"]) == 1  # the smaller bound wins
    page, applied = await send(client, "GET", ELEVATIONS, headers, prefer="odata.maxpagesize=" + "9" * 5000)
    assert len(page["value"]) == 3 and applied == "odata.maxpagesize=999"  # at most what $top may ask
    for ignored in ("odata.maxpagesize=0", "odata.maxpagesize=two", "odata.maxpagesize", "odata.maxpagesize=-1"):
        page, applied = await send(client, "GET", ELEVATIONS, headers, prefer=ignored)
        assert len(page["value"]) == 3 and applied is None, ignored


async def test_return_minimal_answers_a_write_with_204(client, token, reviewer, gateway_url):
    requester = auth(token(oid=str(uuid.uuid4())))
    async with client.post(REQUESTS, json=request_body(), headers=requester | {"Prefer": "return=minimal"}) as resp:
        assert resp.status == 204 and await resp.read() == b""
        assert resp.headers["Preference-Applied"] == "return=minimal"
        location, etag = resp.headers["Location"], resp.headers["ETag"]
        assert resp.headers["OData-EntityId"] == location and location.startswith(f"{gateway_url}{REQUESTS}/")
    path = location.removeprefix(gateway_url)
    stored, _ = await send(client, "GET", path, reviewer)
    assert stored["@odata.etag"] == etag and stored["requestJustification"] == "Installing dev tools"
    async with client.patch(path, json={"requestJustification": "Minimal"},
                            headers=reviewer | {"Prefer": "return=minimal"}) as resp:
        assert resp.status == 204 and await resp.read() == b""
        assert resp.headers["Preference-Applied"] == "return=minimal" and resp.headers["ETag"] != etag
    assert (await send(client, "GET", path, reviewer))[0]["requestJustification"] == "Minimal"
    shown, applied = await send(client, "PATCH", path, reviewer, prefer="return=representation",
                                json={"requestJustification": "Whole"})
    assert shown["requestJustification"] == "Whole" and applied is None  # the default, as asked

    headers = auth(token())
    _, applied = await send(client, "POST", ELEVATIONS, headers, 204, prefer="return=minimal", json=event())
    assert applied == "return=minimal"
    (stored,) = (await send(client, "GET", ELEVATIONS, headers))[0]["value"]
    _, applied = await send(client, "PATCH", f"{ELEVATIONS}/{stored['id']}", headers, 204, prefer="return=minimal",
                            json={"result": 9})
    assert applied == "return=minimal"
    assert (await send(client, "GET", f"{ELEVATIONS}/{stored['id']}", headers))[0]["result"] == 9
