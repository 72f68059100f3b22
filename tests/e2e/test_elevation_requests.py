"""deviceManagement/elevationRequests and deviceManagement/auditEvents through the real gateway, requests service
and PostgreSQL: Graph shapes, OData options, the review state machine, ETags, authorisation and the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import aiohttp
import pytest

from services.requests.lifecycle import Policy
from tests.claims import ROLE_ADMIN

from .people import Person
from .test_elevations import error_of, sha
from .test_role_assignments import MANAGER, assign, auth

PATH = "/beta/deviceManagement/elevationRequests"
AUDIT = "/beta/deviceManagement/auditEvents"
TYPE = "#microsoft.graph.privilegeManagementElevationRequest"
DETAIL_TYPE = "#microsoft.graph.elevationRequestApplicationDetail"
CONFIG_WRITE = "DeviceManagementConfiguration.ReadWrite.All"
CONFIG_READ = "DeviceManagementConfiguration.Read.All"
ENTITY_KEYS = {
    "@odata.type", "@odata.etag", "id", "requestedByUserId", "requestedByUserPrincipalName",
    "requestedOnDeviceId", "deviceName", "requestCreatedDateTime", "requestLastModifiedDateTime",
    "requestJustification", "applicationDetail", "status", "reviewCompletedByUserId",
    "reviewCompletedByUserPrincipalName", "reviewCompletedDateTime", "requestExpiryDateTime",
    "reviewerJustification"}
DETAIL_KEYS = {"@odata.type", "fileHash", "fileName", "filePath", "fileDescription", "publisherName",
               "publisherCert", "productName", "productInternalName", "productVersion"}
AUDIT_KEYS = {"@odata.type", "id", "displayName", "componentName", "actor", "activity", "activityDateTime",
              "activityType", "activityOperationType", "activityResult", "correlationId", "resources", "category"}
TOO_MANY = "This device has too many open elevation requests."


NEW_MEMBERS = {"Prefer": "include-unknown-enum-members"}  # statuses after unknownFutureValue (revoked) by name


def graph_view(entity: dict) -> dict:
    """The entity without our instance annotations (@epm.reputation arrives once the verdict is attached)."""
    return {k: v for k, v in entity.items() if not k.startswith("@epm.")}


def graph_keys(entity: dict) -> set[str]:
    return set(graph_view(entity))


@pytest.fixture
async def client(gateway_url, requests_service):
    """A client without a default token: every call names who makes it."""
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


@pytest.fixture
def app(token) -> dict:
    """An application token: Graph permission in `roles`, no user, no Intune role needed."""
    return auth(token(scopes=(), roles=[CONFIG_WRITE]))


def body(device: str = "device-1", file: str = "git.exe", **overrides) -> dict:
    out = {
        "@odata.type": TYPE,
        "requestedOnDeviceId": device,
        "deviceName": "LAPTOP-01",
        "requestJustification": "Installing dev tools",
        "applicationDetail": {
            "@odata.type": DETAIL_TYPE,
            "fileHash": sha(file),
            "fileName": file,
            "filePath": r"C:\Program Files\Git\bin",
            "fileDescription": "Git for Windows",
            "publisherName": "Sectigo Public Code Signing CA R36",
            "publisherCert": "MIIGSjCCBLKgAwIBAgIQ",
            "productName": "Git",
            "productInternalName": "git",
            "productVersion": "2.45.1.0",
        },
    }
    out.update(overrides)
    return out


def when(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def call(client, method: str, path: str, who, status: int = 200, **kwargs):
    headers = who.headers if isinstance(who, Person) else who
    async with client.request(method, path, headers=headers, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        if status == 204:
            assert await resp.read() == b""
            return {}
        return await resp.json()


async def create(client, who, **overrides) -> dict:
    return await call(client, "POST", PATH, who, 201, json=body(**overrides))


async def act(client, who, request_id: str, action: str, status: int = 200, **kwargs) -> dict:
    """POST {PATH}/{id}/{action}; `request_id` may also be OData key syntax: ('{id}')."""
    separator = "" if request_id.startswith("(") else "/"
    return await call(client, "POST", f"{PATH}{separator}{request_id}/{action}", who, status, **kwargs)


async def failure(client, method: str, path: str, who, status: int, **kwargs) -> dict:
    """The Graph error of a call expected to fail with `status`."""
    headers = who.headers if isinstance(who, Person) else who
    async with client.request(method, path, headers=headers, **kwargs) as resp:
        await error_of(resp, status)
        return (await resp.json())["error"]


async def listed(client, who, query: str = "", path: str = PATH) -> list[dict]:
    page = await call(client, "GET", f"{path}?{query}" if query else path, who)
    return page["value"]


# --- create --------------------------------------------------------------------------------------------


async def test_create_returns_the_graph_entity(client, requester, manager, clock):
    before = clock.now()
    given = body(requestedByUserId="someone-else", status="approved", id="ignored")
    async with client.post(PATH, json=given, headers=requester.headers) as resp:
        assert resp.status == 201, await resp.text()
        assert resp.content_type == "application/json"
        created = await resp.json()
        location, etag = resp.headers["Location"], resp.headers["ETag"]
    after = clock.now()
    assert set(created) == ENTITY_KEYS | {"@odata.context"}
    assert created["@odata.context"].endswith("/beta/$metadata#deviceManagement/elevationRequests/$entity")
    assert created["@odata.type"] == TYPE
    assert created["@odata.etag"] == etag and etag.startswith('W/"')
    assert location.endswith(f"{PATH}/{created['id']}") and location.startswith("http")
    assert str(uuid.UUID(created["id"])) == created["id"]
    # the requester is the signed-in user, whatever the body says
    assert (created["requestedByUserId"], created["requestedByUserPrincipalName"]) == (requester.oid, requester.upn)
    assert created["status"] == "pending"
    assert created["reviewCompletedByUserId"] is None and created["reviewCompletedByUserPrincipalName"] is None
    assert created["reviewCompletedDateTime"] is None and created["reviewerJustification"] is None
    assert (created["requestedOnDeviceId"], created["deviceName"]) == ("device-1", "LAPTOP-01")
    assert created["requestJustification"] == "Installing dev tools"
    assert set(created["applicationDetail"]) == DETAIL_KEYS
    assert created["applicationDetail"] == given["applicationDetail"]
    made = when(created["requestCreatedDateTime"])
    assert before <= made <= after
    assert when(created["requestLastModifiedDateTime"]) == made
    assert when(created["requestExpiryDateTime"]) == made + timedelta(days=7)  # the default pending TTL
    async with client.get(location, headers=manager.headers) as resp:
        assert resp.status == 200 and graph_view(await resp.json()) == graph_view(created)


@pytest.mark.parametrize("legacy", ["microsoft.graph.applicationDetail", "#microsoft.graph.applicationDetail",
                                    "microsoft.graph.elevationRequestApplicationDetail"])
async def test_the_legacy_application_detail_type_is_accepted(client, requester, legacy):
    given = body()
    given["applicationDetail"]["@odata.type"] = legacy
    created = await create(client, requester, applicationDetail=given["applicationDetail"])
    assert created["applicationDetail"]["@odata.type"] == DETAIL_TYPE
    assert created["applicationDetail"]["fileName"] == "git.exe"


async def test_without_any_odata_type_a_minimal_request_is_enough(client, requester):
    created = await call(client, "POST", PATH, requester, 201, json={
        "requestedOnDeviceId": "device-9", "applicationDetail": {"fileHash": sha("a.exe").upper()}})
    assert created["applicationDetail"]["fileHash"] == sha("a.exe")
    assert created["applicationDetail"]["fileName"] == "" and created["requestJustification"] == ""
    assert created["applicationDetail"]["@odata.type"] == DETAIL_TYPE
    assert created["applicationDetail"]["productName"] is None  # optional in Graph: absent is null


async def test_optional_strings_are_null_written_as_null_and_filtered_with_null(client, requester, manager):
    detail = {**body()["applicationDetail"], "productName": None, "publisherName": None}
    bare = await create(client, requester, device="d-null", applicationDetail=detail)
    assert bare["applicationDetail"]["productName"] is None and bare["applicationDetail"]["publisherName"] is None
    named = await create(client, requester, device="d-null", file="code.exe")
    await act(client, manager, named["id"], "approve", json={"reviewerJustification": "INC-7"})
    cases = {
        "reviewCompletedByUserId eq null": {bare["id"]},
        "reviewCompletedByUserId ne null": {named["id"]},
        "reviewerJustification in (null, 'INC-7')": {bare["id"], named["id"]},
        "reviewerJustification eq ''": set(),  # no value is '': an absent one is null
        "applicationDetail/productName eq null": {bare["id"]},
        "applicationDetail/productName ne null": {named["id"]},
        "length(applicationDetail/publisherName) gt 0": {named["id"]},
    }
    for query, expected in cases.items():
        found = await listed(client, manager, f"$filter=requestedOnDeviceId eq 'd-null' and ({query})")
        assert {r["id"] for r in found} == expected, query


async def test_an_application_must_name_the_requester(client, app):
    message = (await failure(client, "POST", PATH, app, 400, json=body()))["message"]
    assert "requestedByUserId" in message
    user = str(uuid.uuid4())
    created = await call(client, "POST", PATH, app, 201, json=body(
        requestedByUserId=user, requestedByUserPrincipalName="adele@contoso.example"))
    assert (created["requestedByUserId"], created["requestedByUserPrincipalName"]) == (
        user, "adele@contoso.example")
    assert created["status"] == "pending"


async def test_creating_an_open_request_again_returns_it(client, requester):
    first = await create(client, requester)
    again = await create(client, requester, requestJustification="Second try")
    assert again["id"] == first["id"] and again["requestJustification"] == "Installing dev tools"


@pytest.mark.parametrize("overrides, named", [
    ({"requestedOnDeviceId": ""}, "requestedOnDeviceId"),
    ({"requestedOnDeviceId": None}, "requestedOnDeviceId"),
    ({"requestJustification": "x" * 257}, "requestJustification"),
    ({"requestJustification": 5}, "requestJustification"),
    ({"applicationDetail": {"fileHash": "abc"}}, "fileHash"),
    ({"applicationDetail": {"fileHash": sha("x"), "colour": "blue"}}, "colour"),
    ({"applicationDetail": {"@odata.type": "#microsoft.graph.user", "fileHash": sha("x")}}, "microsoft.graph.user"),
    ({"applicationDetail": "git.exe"}, "JSON object"),
    ({"colour": "blue"}, "colour"),
    ({"@odata.type": "#microsoft.graph.privilegeManagementElevation"}, "privilegeManagementElevation"),
])
async def test_bad_creates_are_400_naming_the_problem(client, requester, manager, overrides, named):
    error = await failure(client, "POST", PATH, requester, 400, json=body(**overrides))
    assert named in error["message"] and error["code"] == "BadRequest"
    assert await listed(client, manager) == []


async def test_a_justification_of_256_characters_is_accepted(client, requester):
    created = await create(client, requester, requestJustification="x" * 256)
    assert len(created["requestJustification"]) == 256


async def test_bad_bodies(client, requester):
    as_json, as_text = requester.headers | {"Content-Type": "application/json"}, requester.headers | {
        "Content-Type": "text/plain"}
    await failure(client, "POST", PATH, as_json, 400, data="{")
    assert "JSON object" in (await failure(client, "POST", PATH, requester, 400, json=[body()]))["message"]
    await failure(client, "POST", PATH, as_text, 415, data="x")


async def test_too_many_open_requests_on_one_device_is_403(client, requester, manager, requests_service, tenant):
    await requests_service.store.set_policy(tenant, Policy(max_open_per_device=2))
    first = await create(client, requester, device="crowded", file="a.exe")
    await create(client, requester, device="crowded", file="b.exe")
    error = await failure(client, "POST", PATH, requester, 403, json=body(device="crowded", file="c.exe"))
    assert error["message"] == TOO_MANY and error["code"] == "Forbidden"
    assert (await create(client, requester, device="crowded", file="a.exe"))["id"] == first["id"]  # same request
    await create(client, requester, device="roomy", file="c.exe")  # another device is not affected
    await act(client, manager, first["id"], "deny")  # closed: a place is free again
    created = await create(client, requester, device="crowded", file="c.exe")
    assert created["status"] == "pending"
    assert len(await listed(client, manager, "$filter=requestedOnDeviceId eq 'crowded'")) == 3


# --- read ----------------------------------------------------------------------------------------------


async def test_get_list_count_and_key_syntax(client, requester, manager):
    made = [await create(client, requester, device=f"device-{i}", file=f"tool{i}.exe") for i in range(3)]
    page = await call(client, "GET", PATH, manager)
    assert page["@odata.context"].endswith("/beta/$metadata#deviceManagement/elevationRequests")
    assert set(page) == {"@odata.context", "value"}
    assert [r["id"] for r in page["value"]] == [r["id"] for r in reversed(made)]  # newest first
    assert all(graph_keys(r) == ENTITY_KEYS for r in page["value"])
    assert graph_view(page["value"][-1]) == graph_view({k: v for k, v in made[0].items() if k != "@odata.context"})
    async with client.get(f"{PATH}/$count", headers=manager.headers) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        assert await resp.text() == "3"
    one = made[1]["id"]
    for url in (f"{PATH}/{one}", f"{PATH}('{one}')", f"{PATH}(%27{one}%27)", f"{PATH}/{one.upper()}"):
        async with client.get(url, headers=manager.headers) as resp:
            assert resp.status == 200, url
            assert resp.headers["ETag"] == made[1]["@odata.etag"]
            assert graph_view(await resp.json()) == graph_view(made[1])
    selected = await call(client, "GET", f"{PATH}/{one}?$select=status,applicationDetail", manager)
    assert set(selected) == {"@odata.context", "@odata.type", "@odata.etag", "id", "status", "applicationDetail"}
    assert selected["@odata.context"].endswith("#deviceManagement/elevationRequests(status,applicationDetail)/$entity")
    for unknown in (str(uuid.uuid4()), "not-a-guid"):
        error = await failure(client, "GET", f"{PATH}/{unknown}", manager, 404)
        assert error["code"] == "ResourceNotFound" and unknown in error["message"]


async def test_filters(client, requester, manager, app):
    first = await create(client, requester, device="d-1", file="git.exe")
    second = await create(client, requester, device="d-1", file="code.exe")
    third = await create(client, requester, device="d-2", file="git.exe")
    other_user = str(uuid.uuid4())
    fourth = await call(client, "POST", PATH, app, 201, json=body(device="d-3", file="zip.exe",
                                                                  requestedByUserId=other_user))
    await act(client, manager, second["id"], "approve")
    await act(client, manager, fourth["id"], "deny")
    cases = {
        "$filter=status eq 'pending'": {first["id"], third["id"]},
        "$filter=status eq 'approved'": {second["id"]},
        "$filter=status ne 'pending'": {second["id"], fourth["id"]},
        "$filter=applicationDetail/fileName eq 'git.exe'": {first["id"], third["id"]},
        f"$filter=applicationDetail/fileHash eq '{sha('zip.exe').upper()}'": {fourth["id"]},
        "$filter=requestedOnDeviceId eq 'd-1'": {first["id"], second["id"]},
        "$filter=requestedOnDeviceId eq 'd-1' and status eq 'pending'": {first["id"]},
        f"$filter=requestedByUserId eq '{other_user}'": {fourth["id"]},
        f"$filter=reviewCompletedByUserId eq '{manager.oid}'": {second["id"], fourth["id"]},
        "$filter=startswith(applicationDetail/fileName, 'co')": {second["id"]},
        "filter=requestedOnDeviceId eq 'd-2'": {third["id"]},  # the $ is optional on beta
    }
    for query, expected in cases.items():
        assert {r["id"] for r in await listed(client, manager, query)} == expected, query
        async with client.get(f"{PATH}/$count?{query}", headers=manager.headers) as resp:
            assert await resp.text() == str(len(expected)), query
    for bad, named in (("colour eq 'blue'", "colour"), ("status eq 'sleeping'", "sleeping"),
                       ("status eq", "")):
        error = await failure(client, "GET", f"{PATH}?$filter={bad}", manager, 400)
        assert named in error["message"]


async def test_orderby_top_paging_select_and_count(client, requester, manager):
    files = ["d.exe", "b.exe", "e.exe", "a.exe", "c.exe"]
    made = {f: await create(client, requester, device=f"dev-{f}", file=f) for f in files}
    by_name = await listed(client, manager, "$orderby=applicationDetail/fileName")
    assert [r["applicationDetail"]["fileName"] for r in by_name] == sorted(files)
    oldest = await listed(client, manager, "$orderby=requestCreatedDateTime asc")
    assert [r["applicationDetail"]["fileName"] for r in oldest] == files
    page = await call(client, "GET", f"{PATH}?$orderby=applicationDetail/fileName desc&$top=2&$count=true"
                                     "&$select=applicationDetail,status", manager)
    assert page["@odata.count"] == 5 and len(page["value"]) == 2
    assert page["@odata.context"].endswith("#deviceManagement/elevationRequests(applicationDetail,status)")
    assert set(page["value"][0]) == {"@odata.type", "@odata.etag", "id", "applicationDetail", "status"}
    seen = [r["applicationDetail"]["fileName"] for r in page["value"]]
    pages = 1
    while "@odata.nextLink" in page:
        next_link = page["@odata.nextLink"]
        assert next_link.startswith("http") and "$skiptoken=" in next_link and "$top=2" in next_link
        async with client.get(next_link, headers=manager.headers) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        seen += [r["applicationDetail"]["fileName"] for r in page["value"]]
        pages += 1
    assert seen == sorted(files, reverse=True) and pages == 3
    skipped = await listed(client, manager, "$orderby=applicationDetail/fileName&$skip=3")
    assert [r["id"] for r in skipped] == [made["d.exe"]["id"], made["e.exe"]["id"]]
    for bad in ("$top=0", "$top=x", "$orderby=colour", "$select=colour", "$count=maybe", "$expand=x",
                "$skiptoken=forged", "$top=1&$top=2"):
        await failure(client, "GET", f"{PATH}?{bad}", manager, 400)


# --- update and delete ---------------------------------------------------------------------------------


async def test_patch_changes_only_the_justification_of_a_pending_request(client, requester, manager, clock):
    created = await create(client, requester)
    url = f"{PATH}/{created['id']}"
    clock.advance(timedelta(seconds=1))
    async with client.patch(url, json={"requestJustification": "Needed for build tools"},
                            headers=manager.headers) as resp:
        assert resp.status == 200, await resp.text()
        updated = await resp.json()
        assert resp.headers["ETag"] == updated["@odata.etag"] != created["@odata.etag"]
    assert updated["@odata.context"].endswith("#deviceManagement/elevationRequests/$entity")
    assert updated["requestJustification"] == "Needed for build tools"
    assert when(updated["requestLastModifiedDateTime"]) > when(created["requestLastModifiedDateTime"])
    changing = ("requestJustification", "requestLastModifiedDateTime", "@odata.etag")
    assert {k: v for k, v in graph_view(updated).items() if k not in changing} == {
        k: v for k, v in graph_view(created).items() if k not in changing}
    assert graph_view(await call(client, "GET", url, manager)) == graph_view(updated)
    for bad, named in (({"status": "approved"}, "status"), ({"deviceName": "x"}, "deviceName"),
                       ({"requestJustification": "ok", "applicationDetail": {"fileName": "x"}}, "applicationDetail"),
                       ({"colour": "blue"}, "colour"), ({}, "no property"),
                       ({"requestJustification": "x" * 257}, "requestJustification"),
                       ({"requestJustification": 7}, "requestJustification")):
        assert named in (await failure(client, "PATCH", url, manager, 400, json=bad))["message"], bad
    await act(client, manager, created["id"], "approve")
    error = await failure(client, "PATCH", url, manager, 409, json={"requestJustification": "Too late"})
    assert "approved" in error["message"] and error["code"] == "Conflict"
    assert (await call(client, "GET", url, manager))["requestJustification"] == "Needed for build tools"


async def test_delete(client, requester, manager):
    created = await create(client, requester)
    kept = await create(client, requester, file="kept.exe")
    url = f"{PATH}/{created['id']}"
    async with client.delete(url, headers=manager.headers) as resp:
        assert resp.status == 204 and await resp.read() == b""
    await failure(client, "GET", url, manager, 404)
    await failure(client, "DELETE", url, manager, 404)
    await failure(client, "POST", url + "/approve", manager, 404, json={})
    assert [r["id"] for r in await listed(client, manager)] == [kept["id"]]
    await call(client, "DELETE", f"{PATH}('{kept['id']}')", manager, 204)
    assert await listed(client, manager) == []


# --- review actions ------------------------------------------------------------------------------------


async def test_approve_then_revoke(client, requester, manager, clock):
    created = await create(client, requester)
    # The session clock is shared and only moves forward (the integration tests need it under 20 h ahead):
    # a minute is plenty to tell the service's clock from the wall clock.
    clock.advance(timedelta(minutes=1))  # the service's clock, not the wall clock, stamps the review
    before = clock.now()
    async with client.post(f"{PATH}/{created['id']}/approve", json={"reviewerJustification": "Ticket INC-42"},
                           headers=manager.headers) as resp:
        assert resp.status == 200, await resp.text()
        approved = await resp.json()
        assert resp.headers["ETag"] == approved["@odata.etag"]
    after = clock.now()
    assert graph_keys(approved) == ENTITY_KEYS | {"@odata.context"}
    assert approved["@odata.context"].endswith("#deviceManagement/elevationRequests/$entity")
    assert approved["status"] == "approved" and approved["reviewerJustification"] == "Ticket INC-42"
    assert (approved["reviewCompletedByUserId"], approved["reviewCompletedByUserPrincipalName"]) == (
        manager.oid, manager.upn)
    reviewed = when(approved["reviewCompletedDateTime"])
    assert before <= reviewed <= after
    assert when(approved["requestExpiryDateTime"]) == reviewed + timedelta(hours=24)
    assert when(approved["requestLastModifiedDateTime"]) == reviewed
    assert approved["requestCreatedDateTime"] == created["requestCreatedDateTime"]
    assert approved["requestedByUserId"] == requester.oid  # unchanged
    assert graph_view(await call(client, "GET", f"{PATH}/{created['id']}", manager)) == graph_view(approved)

    revoked = await act(client, manager.headers | NEW_MEMBERS, created["id"], "revoke")  # no body at all
    assert revoked["status"] == "revoked" and revoked["reviewerJustification"] is None
    assert revoked["reviewCompletedByUserId"] == manager.oid


async def test_deny_with_every_kind_of_empty_body(client, requester, manager):
    bodies = [{}, {"reviewerJustification": None}, {"reviewerJustification": ""}]
    for i, given in enumerate(bodies):
        created = await create(client, requester, file=f"f{i}.exe")
        denied = await act(client, manager, created["id"], "deny", json=given)
        assert denied["status"] == "denied" and denied["reviewerJustification"] is None
        assert denied["reviewCompletedByUserId"] == manager.oid
        assert when(denied["requestExpiryDateTime"]) == when(created["requestExpiryDateTime"])  # no window
    created = await create(client, requester, file="empty.exe")
    as_json = manager.headers | {"Content-Type": "application/json"}
    denied = await act(client, as_json, created["id"], "deny", data=b"")
    assert denied["status"] == "denied"
    created = await create(client, requester, file="key.exe")
    denied = await act(client, manager, f"('{created['id']}')", "deny",
                       json={"reviewerJustification": "Not on the allow list"})
    assert denied["reviewerJustification"] == "Not on the allow list"
    assert "denied" in (await failure(client, "POST", f"{PATH}/{created['id']}/approve", manager, 409,
                                      json={}))["message"]


@pytest.mark.parametrize("given, named", [
    ({"reviewerJustification": "x" * 257}, "reviewerJustification"),
    ({"reviewerJustification": 5}, "reviewerJustification"),
    ({"reviewerJustification": False}, "reviewerJustification"),
    ({"reason": "x"}, "reason"),
    (["x"], "not an object"),
])
async def test_bad_action_bodies_are_400(client, requester, manager, given, named):
    created = await create(client, requester)
    error = await failure(client, "POST", f"{PATH}/{created['id']}/approve", manager, 400, json=given)
    assert named in error["message"]
    assert (await call(client, "GET", f"{PATH}/{created['id']}", manager))["status"] == "pending"


async def test_a_justification_of_256_characters_is_accepted_on_review(client, requester, manager):
    created = await create(client, requester)
    approved = await act(client, manager, created["id"], "approve", json={"reviewerJustification": "y" * 256})
    assert approved["reviewerJustification"] == "y" * 256


async def test_invalid_transitions_are_409_naming_the_current_state(client, requester, manager):
    pending = await create(client, requester, file="p.exe")
    denied = await create(client, requester, file="d.exe")
    approved = await create(client, requester, file="a.exe")
    revoked = await create(client, requester, file="r.exe")
    await act(client, manager, denied["id"], "deny")
    await act(client, manager, approved["id"], "approve")
    await act(client, manager, revoked["id"], "approve")
    await act(client, manager, revoked["id"], "revoke")
    cases = [(pending, "revoke", "pending"), (denied, "approve", "denied"), (denied, "deny", "denied"),
             (denied, "revoke", "denied"), (approved, "approve", "approved"), (approved, "deny", "approved"),
             (revoked, "approve", "revoked"), (revoked, "revoke", "revoked")]
    for request, action, state in cases:
        error = await failure(client, "POST", f"{PATH}/{request['id']}/{action}", manager, 409,
                              json={"reviewerJustification": "again"})
        assert error["code"] == "Conflict"
        assert state in error["message"] and action in error["message"], (action, state, error["message"])
    after = {r["id"]: r["status"] for r in await listed(client, manager.headers | NEW_MEMBERS)}
    assert after == {pending["id"]: "pending", denied["id"]: "denied", approved["id"]: "approved",
                     revoked["id"]: "revoked"}


async def test_an_approval_expires_when_its_window_ends(client, requester, manager, clock, requests_service, tenant):
    created = await create(client, requester)
    # a short window, so the shared clock need not move a day (the 24 h default is checked above)
    await requests_service.store.set_policy(tenant, Policy(approval_window=timedelta(seconds=30)))
    approved = await act(client, manager, created["id"], "approve")
    assert when(approved["requestExpiryDateTime"]) == when(approved["reviewCompletedDateTime"]) + timedelta(seconds=30)
    clock.advance(timedelta(seconds=31))
    got = await call(client, "GET", f"{PATH}/{created['id']}", manager)
    assert got["status"] == "expired"
    assert [r["id"] for r in await listed(client, manager, "$filter=status eq 'expired'")] == [created["id"]]
    error = await failure(client, "POST", f"{PATH}/{created['id']}/revoke", manager, 409, json={})
    assert "expired" in error["message"]


# --- ETags ---------------------------------------------------------------------------------------------


async def test_if_match(client, requester, manager):
    created = await create(client, requester)
    url = f"{PATH}/{created['id']}"
    stale = created["@odata.etag"]
    patched = await call(client, "PATCH", url, manager.headers | {"If-Match": stale},
                         json={"requestJustification": "v2"})
    current = patched["@odata.etag"]
    assert current != stale
    error = await failure(client, "PATCH", url, manager.headers | {"If-Match": stale}, 412,
                          json={"requestJustification": "v3"})
    assert error["code"] == "PreconditionFailed"
    await failure(client, "POST", url + "/approve", manager.headers | {"If-Match": stale}, 412, json={})
    await failure(client, "DELETE", url, manager.headers | {"If-Match": stale}, 412)
    await failure(client, "PATCH", url, manager.headers | {"If-Match": "not-an-etag"}, 400,
                  json={"requestJustification": "v3"})
    assert (await call(client, "GET", url, manager))["requestJustification"] == "v2"
    strong = current.removeprefix("W/")
    approved = await act(client, manager.headers | {"If-Match": strong}, created["id"], "approve", json={})
    assert approved["status"] == "approved"
    revoked = await act(client, manager.headers | {"If-Match": "*"} | NEW_MEMBERS, created["id"], "revoke", json={})
    assert revoked["status"] == "revoked"
    await call(client, "DELETE", url, manager.headers | {"If-Match": revoked["@odata.etag"]}, 204)
    other = await create(client, requester, file="other.exe")
    await call(client, "PATCH", f"{PATH}/{other['id']}", manager.headers | {"If-Match": "*"},
               json={"requestJustification": "any version"})
    await call(client, "DELETE", f"{PATH}/{other['id']}", manager.headers | {"If-Match": "*"}, 204)


# --- getAllElevationRequests ---------------------------------------------------------------------------


async def test_get_all_elevation_requests(client, requester, manager):
    made = [await create(client, requester, file=f"all{i}.exe") for i in range(3)]
    url = f"{PATH}/{made[0]['id']}/getAllElevationRequests"
    everything = await call(client, "POST", url, manager)
    assert "@odata.context" in everything
    assert [r["id"] for r in everything["value"]] == [r["id"] for r in reversed(made)]
    assert all(graph_keys(r) == ENTITY_KEYS for r in everything["value"])
    assert all(r["@odata.type"] == TYPE for r in everything["value"])
    page = await call(client, "POST", url + "?$top=2", manager)
    ids = [r["id"] for r in page["value"]]
    assert len(ids) == 2 and "@odata.nextLink" in page
    async with client.post(page["@odata.nextLink"], headers=manager.headers) as resp:
        assert resp.status == 200, await resp.text()
        rest = await resp.json()
    assert ids + [r["id"] for r in rest["value"]] == [r["id"] for r in everything["value"]]
    assert "@odata.nextLink" not in rest
    keyed = await call(client, "POST", f"{PATH}('{made[1]['id']}')/getAllElevationRequests", manager, json={})
    assert len(keyed["value"]) == 3
    await failure(client, "POST", f"{PATH}/{uuid.uuid4()}/getAllElevationRequests", manager, 404)
    await failure(client, "POST", url, requester, 403)


# --- who may do what -----------------------------------------------------------------------------------


async def test_scopes_and_tokens_are_checked(client, token, requester, manager):
    created = await create(client, requester)
    url = f"{PATH}/{created['id']}"
    await failure(client, "GET", PATH, {}, 401)
    await failure(client, "POST", PATH, {}, 401, json=body())
    no_scope = auth(token(scopes=["User.Read"], oid=manager.oid))
    for method, path, given in (("GET", PATH, None), ("GET", url, None), ("GET", f"{PATH}/$count", None),
                                ("POST", PATH, body(file="n.exe")), ("PATCH", url, {"requestJustification": "x"}),
                                ("DELETE", url, None), ("POST", url + "/approve", {}),
                                ("POST", url + "/getAllElevationRequests", None), ("GET", AUDIT, None)):
        error = await failure(client, method, path, no_scope, 403, json=given)
        assert "DeviceManagementConfiguration" in error["message"] and error["code"] == "Forbidden", (method, path)
    read_only = auth(token(scopes=[CONFIG_READ], oid=manager.oid, upn=manager.upn))
    assert len(await listed(client, read_only)) == 1  # reading needs Read.All (and the role)
    for method, path, given in (("POST", PATH, body(file="r.exe")), ("PATCH", url, {"requestJustification": "x"}),
                                ("DELETE", url, None), ("POST", url + "/approve", {}),
                                ("POST", url + "/deny", {}), ("POST", url + "/revoke", {})):
        error = await failure(client, method, path, read_only, 403, json=given)
        assert CONFIG_WRITE in error["message"], (method, path)
    assert (await call(client, "GET", url, manager))["status"] == "pending"


async def test_a_user_without_a_role_can_create_but_not_read_or_review(client, requester, http):
    created = await create(client, requester)
    url = f"{PATH}/{created['id']}"
    for method, path, given in (("GET", PATH, None), ("GET", url, None), ("GET", f"{PATH}/$count", None),
                                ("PATCH", url, {"requestJustification": "x"}), ("DELETE", url, None),
                                ("POST", url + "/approve", {}), ("POST", url + "/deny", {}),
                                ("POST", url + "/revoke", {}), ("POST", url + "/getAllElevationRequests", None),
                                ("GET", AUDIT, None)):
        error = await failure(client, method, path, requester, 403, json=given)
        assert "Endpoint Privilege Management Elevation Requests" in error["message"], (method, path)
        assert error["code"] == "Forbidden"
    async with http.post(PATH, json=body(file="from-http.exe")) as resp:  # the shared full-access token
        assert resp.status == 201, await resp.text()
    async with http.get(PATH) as resp:
        await error_of(resp, 403)


async def test_a_reader_can_read_but_not_change(client, requester, reader, manager):
    created = await create(client, requester)
    url = f"{PATH}/{created['id']}"
    assert (await call(client, "GET", url, reader))["id"] == created["id"]
    assert len(await listed(client, reader)) == 1
    assert len((await call(client, "POST", url + "/getAllElevationRequests", reader))["value"]) == 1
    assert len(await listed(client, reader, path=AUDIT)) >= 1
    for method, path, given in (("PATCH", url, {"requestJustification": "x"}), ("DELETE", url, None),
                                ("POST", url + "/approve", {}), ("POST", url + "/deny", {}),
                                ("POST", url + "/revoke", {})):
        error = await failure(client, method, path, reader, 403, json=given)
        assert "Modify elevation requests" in error["message"], (method, path)
    assert (await call(client, "GET", url, manager))["status"] == "pending"


async def test_reviewers_cannot_approve_their_own_request(client, manager, person, admin):
    own = await create(client, manager)
    error = await failure(client, "POST", f"{PATH}/{own['id']}/approve", manager, 403,
                          json={"reviewerJustification": "Trust me"})
    assert "own" in error["message"]
    assert (await call(client, "GET", f"{PATH}/{own['id']}", manager))["status"] == "pending"
    colleague = person("nestor")
    await assign(client, admin, colleague.oid, MANAGER)
    approved = await act(client, colleague, own["id"], "approve")
    assert approved["reviewCompletedByUserId"] == colleague.oid


async def test_an_application_reviews_without_a_role(client, requester, app):
    created = await create(client, requester)
    assert [r["id"] for r in await listed(client, app)] == [created["id"]]
    approved = await act(client, app, created["id"], "approve", json={"reviewerJustification": "Automation"})
    assert approved["status"] == "approved" and approved["reviewCompletedByUserPrincipalName"] is None  # no UPN
    assert approved["reviewCompletedByUserId"]  # the application's object id


async def test_another_tenants_request_is_not_found(client, requester, manager, token, admin):
    created = await create(client, requester)
    url = f"{PATH}/{created['id']}"
    stranger_tenant = str(uuid.uuid4())
    stranger_app = auth(token(scopes=(), roles=[CONFIG_WRITE], tenant=stranger_tenant))
    stranger_oid = str(uuid.uuid4())
    stranger_admin = auth(token(**ROLE_ADMIN, tenant=stranger_tenant))
    await assign(client, stranger_admin, stranger_oid, MANAGER)
    stranger_user = auth(token(tenant=stranger_tenant, oid=stranger_oid, upn="eve@fabrikam.example"))
    for who in (stranger_app, stranger_user):
        for method, path, given in (("GET", url, None), ("GET", f"{PATH}('{created['id']}')", None),
                                    ("PATCH", url, {"requestJustification": "x"}), ("DELETE", url, None),
                                    ("POST", url + "/approve", {}), ("POST", url + "/deny", {}),
                                    ("POST", url + "/revoke", {}), ("POST", url + "/getAllElevationRequests", None)):
            await failure(client, method, path, who, 404, json=given)
        assert await listed(client, who) == []
        theirs = await listed(client, who, path=AUDIT)  # only the stranger tenant's own role assignment
        assert all(e["resources"][0]["resourceId"] != created["id"] for e in theirs)
        assert [e["activity"] for e in theirs] == ["Create PrivilegedRoleAssignment"]
        async with client.get(f"{PATH}/$count", headers=who) as resp:
            assert await resp.text() == "0"
    unchanged = await call(client, "GET", url, manager)
    assert graph_view(unchanged) == graph_view(created)


# --- audit trail ---------------------------------------------------------------------------------------


async def test_the_audit_trail_records_every_change_with_its_request_id(client, requester, manager, app):
    steps = []

    async def step(method, path, who, status, given=None):
        async with client.request(method, path, json=given, headers=who.headers if isinstance(who, Person) else who) \
                as resp:
            assert resp.status == status, await resp.text()
            steps.append(resp.headers["request-id"])
            return await resp.json() if status != 204 else {}

    created = await step("POST", PATH, requester, 201, body())
    url = f"{PATH}/{created['id']}"
    await step("PATCH", url, manager, 200, {"requestJustification": "Build tools for INC-7"})
    await step("POST", url + "/approve", manager, 200, {"reviewerJustification": "Approved for INC-7"})
    await step("POST", url + "/revoke", manager, 200)
    await step("DELETE", url, manager, 204)
    other_user = str(uuid.uuid4())
    by_app = await step("POST", PATH, app, 201, body(file="agent.exe", requestedByUserId=other_user))
    await step("POST", f"{PATH}/{by_app['id']}/deny", app, 200, {"reviewerJustification": "No"})

    page = await call(client, "GET", AUDIT + "?$filter=category eq 'ElevationRequests'", manager)
    assert page["@odata.context"].endswith("/beta/$metadata#deviceManagement/auditEvents")
    events = [e for e in page["value"] if e["resources"][0]["type"] == "ElevationRequest"]
    assert [e["correlationId"] for e in events] == list(reversed(steps))  # newest first
    assert all(set(e) == AUDIT_KEYS for e in events)
    by_id = {e["correlationId"]: e for e in events}
    approve = by_id[steps[2]]
    assert approve["@odata.type"] == "#microsoft.graph.auditEvent"
    assert (approve["activity"], approve["activityOperationType"], approve["activityResult"]) == (
        "Approve ElevationRequest", "Action", "Success")
    assert approve["displayName"] == "Approve ElevationRequest"
    assert approve["componentName"] and approve["category"] == "ElevationRequests"
    assert approve["actor"]["@odata.type"] == "#microsoft.graph.auditActor"
    assert (approve["actor"]["type"], approve["actor"]["userId"], approve["actor"]["userPrincipalName"]) == (
        "ItPro", manager.oid, manager.upn)
    resource = approve["resources"][0]
    assert resource["@odata.type"] == "#microsoft.graph.auditResource"
    assert resource["resourceId"] == created["id"] and resource["displayName"] == "git.exe"
    properties = {p["displayName"]: p for p in resource["modifiedProperties"]}
    assert properties["status"]["@odata.type"] == "#microsoft.graph.auditProperty"
    assert (properties["status"]["oldValue"], properties["status"]["newValue"]) == ("pending", "approved")
    assert properties["justification"]["newValue"] == "Approved for INC-7"
    assert when(approve["activityDateTime"]) == when(
        (await call(client, "GET", AUDIT + f"?$filter=correlationId eq '{steps[2]}'", manager))["value"][0][
            "activityDateTime"])
    assert [by_id[s]["activity"] for s in steps] == [
        "Create ElevationRequest", "Patch ElevationRequest", "Approve ElevationRequest", "Revoke ElevationRequest",
        "Delete ElevationRequest", "Create ElevationRequest", "Deny ElevationRequest"]
    assert [by_id[s]["activityOperationType"] for s in steps] == [
        "Create", "Patch", "Action", "Action", "Delete", "Create", "Action"]
    assert by_id[steps[0]]["actor"]["userId"] == requester.oid
    assert by_id[steps[5]]["actor"]["type"] == "Application" and by_id[steps[6]]["actor"]["type"] == "Application"
    delete = {p["displayName"]: p for p in by_id[steps[4]]["resources"][0]["modifiedProperties"]}
    assert delete["status"]["oldValue"] == "revoked"

    approvals = await listed(client, manager, "$filter=activity eq 'Approve ElevationRequest'", path=AUDIT)
    assert [e["correlationId"] for e in approvals] == [steps[2]]
    actions = await listed(client, manager, f"$filter=activityOperationType eq 'Action' and actor/userId eq "
                                            f"'{manager.oid}'", path=AUDIT)
    assert [e["correlationId"] for e in actions] == [steps[3], steps[2]]
    oldest_first = await listed(client, manager, "$filter=category eq 'ElevationRequests'"
                                                 "&$orderby=activityDateTime asc", path=AUDIT)
    assert [e["correlationId"] for e in oldest_first if e["resources"][0]["type"] == "ElevationRequest"] == steps
    selected = await listed(client, manager, "$select=activity,correlationId&$top=1", path=AUDIT)
    assert set(selected[0]) == {"@odata.type", "id", "activity", "correlationId"}
    await failure(client, "GET", AUDIT + "?$filter=colour eq 'blue'", manager, 400)


async def test_audit_events_page_with_nextLink_and_count(client, requester, manager):
    for i in range(3):
        created = await create(client, requester, file=f"audit{i}.exe")
        await act(client, manager, created["id"], "deny")
    query = "$filter=activity eq 'Create ElevationRequest' or activity eq 'Deny ElevationRequest'"
    everything = await listed(client, manager, query, path=AUDIT)
    assert len(everything) == 6
    page = await call(client, "GET", f"{AUDIT}?{query}&$top=4&$count=true", manager)
    assert page["@odata.count"] == 6 and len(page["value"]) == 4
    async with client.get(page["@odata.nextLink"], headers=manager.headers) as resp:
        assert resp.status == 200, await resp.text()
        rest = await resp.json()
    assert "@odata.nextLink" not in rest and rest["@odata.count"] == 6
    assert [e["id"] for e in page["value"] + rest["value"]] == [e["id"] for e in everything]
    async with client.get(f"{AUDIT}/$count?{query}", headers=manager.headers) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain" and await resp.text() == "6"
    one = everything[2]
    for url in (f"{AUDIT}/{one['id']}", f"{AUDIT}('{one['id']}')"):
        got = await call(client, "GET", url, manager)
        assert got["@odata.context"].endswith("/beta/$metadata#deviceManagement/auditEvents/$entity")
        assert {k: v for k, v in got.items() if k != "@odata.context"} == one
    selected = await call(client, "GET", f"{AUDIT}/{one['id']}?$select=activity", manager)
    assert set(selected) == {"@odata.context", "@odata.type", "id", "activity"}
    for unknown in (str(uuid.uuid4()), "nope", "x' or id ne 'y"):
        await failure(client, "GET", f"{AUDIT}/{unknown}", manager, 404)


async def test_an_expiry_is_audited_as_the_system(client, requester, manager, requests_service, tenant, clock):
    await requests_service.store.set_policy(tenant, Policy(pending_ttl=timedelta(seconds=20)))
    created = await create(client, requester, device="sleepy")
    clock.advance(timedelta(seconds=21))
    assert (await call(client, "GET", f"{PATH}/{created['id']}", manager))["status"] == "expired"
    await create(client, requester, device="sleepy", file="next.exe")  # writes the expiry down first
    expiry = await listed(client, manager, "$filter=activity eq 'Expire ElevationRequest'", path=AUDIT)
    assert len(expiry) == 1
    event = expiry[0]
    assert event["actor"]["type"] == "System" and event["actor"]["userId"] == ""
    assert str(uuid.UUID(event["correlationId"])) == event["correlationId"]  # a Guid, as Graph types it
    properties = {p["displayName"]: p for p in event["resources"][0]["modifiedProperties"]}
    assert (properties["status"]["oldValue"], properties["status"]["newValue"]) == ("pending", "expired")
