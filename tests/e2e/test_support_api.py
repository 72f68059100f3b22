"""Microsoft Managed Desktop's support elevation API (/support/odata/v1/...) through the real gateway, requests
service and PostgreSQL: MMD shapes and errors, devices by name, the per-device cap, tenants in the path,
permissions, and the one lifecycle Graph reviewers share (they see, approve and deny MMD requests)."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from services.requests.lifecycle import Policy

from .people import Person
from .test_elevation_requests import NEW_MEMBERS, call, when
from .test_elevation_requests import PATH as GRAPH
from .test_elevation_requests import create as graph_create
from .test_managed_devices import register
from .test_role_assignments import auth

ENTITY_KEYS = {
    "id", "tenantId", "partnerId", "requestingAgentUpn", "partnerTicketId", "deviceName", "title", "category",
    "subcategory", "planOfAction", "actionsTaken", "closingAgentUpn", "requestCreationTime", "requestClosureTime",
    "requestRenewTime", "isSuccessfulRequest", "viewerUpns", "passwordLastUpdatedTime", "isDeleted", "ttl", "eTag"}
NO_DEVICE = "This device does not exist."
NO_REQUEST = "This elevation request does not exist."
CLOSED = "This elevation request was already closed."
TOO_MANY = "This device has too many open elevation requests."


def path(tenant: str, request_id: str = "") -> str:
    return f"/support/odata/v1/tenants/{tenant}/elevationRequests" + (f"/{request_id}" if request_id else "")


def ticket(**overrides) -> dict:
    """A create body as MMD's example writes it (PascalCase)."""
    body = {"PartnerTicketId": "INC0001", "DeviceName": "MMD-01", "Title": "Install Office",
            "Category": "Office", "Subcategory": "Install", "PlanOfAction": "Run the Office installer elevated"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


async def mmd_error(resp: aiohttp.ClientResponse, status: int) -> str:
    """MMD's error body: the status as a string, a message, no innerError."""
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == str(status)
    return body["error"]["message"]


async def failure(client, method: str, url: str, who, status: int, **kwargs) -> str:
    headers = who.headers if isinstance(who, Person) else who
    async with client.request(method, url, headers=headers, **kwargs) as resp:
        return await mmd_error(resp, status)


@pytest.fixture
def agent(token) -> Person:
    """A partner's support application: MmdSupport.ReadWrite (an application permission), with the agent's upn."""
    oid, upn = str(uuid.uuid4()), "agent@partner.example"
    return Person(oid, upn, auth(token(scopes=(), roles=["MmdSupport.ReadWrite"], oid=oid, upn=upn)))


@pytest.fixture
def viewer(token) -> Person:
    """A signed-in support agent with the delegated MWaaSDevice.Read: list, get and close, not create."""
    oid, upn = str(uuid.uuid4()), "viewer@partner.example"
    return Person(oid, upn, auth(token(scopes=["MWaaSDevice.Read"], oid=oid, upn=upn)))


@pytest.fixture
async def device(http) -> dict:
    return await register(http, deviceName="MMD-01")


async def ask(client, agent, tenant, **overrides) -> dict:
    return await call(client, "POST", path(tenant), agent, 201, json=ticket(**overrides))


# --- create --------------------------------------------------------------------------------------------


async def test_create_returns_the_documented_entity(client, agent, tenant, device):
    created = await ask(client, agent, tenant)
    assert created["@odata.context"].endswith("/support/odata/v1/$metadata#ElevationRequests/$entity")
    assert set(created) == ENTITY_KEYS | {"@odata.context", "@epm.elevationRequest"}
    assert uuid.UUID(created["id"])
    assert {k: created[k] for k in ("tenantId", "partnerId", "requestingAgentUpn", "deviceName")} == {
        "tenantId": tenant, "partnerId": agent.oid, "requestingAgentUpn": agent.upn, "deviceName": "MMD-01"}
    assert {k: created[k[0].lower() + k[1:]] for k in ticket()} == ticket()
    assert created["actionsTaken"] == created["closingAgentUpn"] == ""
    assert created["requestClosureTime"] is None and created["isSuccessfulRequest"] is False
    assert (created["requestRenewTime"], created["viewerUpns"], created["passwordLastUpdatedTime"],
            created["isDeleted"], created["ttl"]) == (None, [], None, False, 7_776_000)
    assert created["eTag"] == '"1"' and when(created["requestCreationTime"])
    assert created["@epm.elevationRequest"] == {"status": "pending", "requestedOnDeviceId": device["id"]}


async def test_camel_case_bodies_and_device_names_in_any_case(client, agent, tenant, device):
    created = await ask(client, agent, tenant, **{"PartnerTicketId": ..., "DeviceName": ..., "partnerTicketId": "T-9",
                                                  "deviceName": "mmd-01"})
    assert created["partnerTicketId"] == "T-9" and created["deviceName"] == "MMD-01"  # the device's own name


async def test_one_open_request_per_ticket_and_device(client, agent, tenant, device):
    first = await ask(client, agent, tenant)
    assert (await ask(client, agent, tenant, Title="Again"))["id"] == first["id"]
    other = await ask(client, agent, tenant, PartnerTicketId="INC0002")
    assert other["id"] != first["id"]
    await call(client, "PATCH", path(tenant, first["id"]), agent, 204, json={"ActionsTaken": "Not needed"})
    assert (await ask(client, agent, tenant))["id"] != first["id"]  # closed: the ticket may ask again


async def test_an_unknown_device_is_404(client, agent, tenant, device):
    assert await failure(client, "POST", path(tenant), agent, 404, json=ticket(DeviceName="NOPE-01")) == NO_DEVICE


async def test_the_per_device_cap_counts_mmd_and_graph_requests(client, agent, tenant, device, requests_service,
                                                                requester):
    await requests_service.store.set_policy(tenant, Policy(max_open_per_device=2))
    await ask(client, agent, tenant)
    await graph_create(client, requester, device=device["id"])  # the same device, through Graph
    too_many = await failure(client, "POST", path(tenant), agent, 403, json=ticket(PartnerTicketId="INC0002"))
    assert too_many == TOO_MANY


@pytest.mark.parametrize("body, named", [
    (ticket(PartnerTicketId=...), "partnerTicketId is required."),
    (ticket(DeviceName="  "), "deviceName is required."),
    (ticket(Title=None), "title is required."),
    (ticket(PlanOfAction=""), "planOfAction is required."),
    (ticket(Title="t" * 257), "title must be at most 256 characters."),
    (ticket(PlanOfAction="p" * 4001), "planOfAction must be at most 4000 characters."),
    (ticket(Category=3), "'category' must be a string."),
    (ticket(Colour="red"), "'Colour' is not a property"),
    (ticket(partnerTicketId="INC0001"), "'partnerTicketId' is given more than once."),
    (["INC0001"], "The request body must be a JSON object."),
])
async def test_bad_bodies_are_400_with_a_clear_message(client, agent, tenant, device, body, named):
    assert named in await failure(client, "POST", path(tenant), agent, 400, json=body)


async def test_not_json_is_415_in_mmd_shape(client, agent, tenant):
    message = await failure(client, "POST", path(tenant), {**agent.headers, "Content-Type": "text/plain"}, 415,
                            data="x")
    assert "application/json" in message


# --- list and get --------------------------------------------------------------------------------------


async def test_list_with_filter_skip_and_top(client, agent, tenant, http):
    await register(http, deviceName="MMD-01")
    await register(http, deviceName="MMD-02")
    for number, (name, category) in enumerate([("MMD-01", "Office"), ("MMD-02", "Office apps"),
                                               ("MMD-01", "Drivers")]):
        await ask(client, agent, tenant, PartnerTicketId=f"INC{number}", DeviceName=name, Category=category)
    listed = await call(client, "GET", path(tenant), agent)
    assert listed["@odata.context"].endswith("/support/odata/v1/$metadata#ElevationRequests")
    assert [r["partnerTicketId"] for r in listed["value"]] == ["INC2", "INC1", "INC0"]  # newest first

    async def tickets(query: str) -> list[str]:
        return [r["partnerTicketId"] for r in (await call(client, "GET", f"{path(tenant)}?{query}", agent))["value"]]

    assert await tickets("$filter=deviceName eq 'mmd-01'") == ["INC2", "INC0"]
    assert await tickets("$filter=contains(category,'Office')") == ["INC1", "INC0"]
    assert await tickets("$filter=contains(category,'Office')&$skip=1") == ["INC0"]
    assert await tickets("$top=1&$skip=1") == ["INC1"]
    assert await tickets("$filter=isSuccessfulRequest eq false and requestingAgentUpn eq 'AGENT@partner.example'"
                         "&$orderby=partnerTicketId") == ["INC0", "INC1", "INC2"]
    page = await call(client, "GET", f"{path(tenant)}?$top=2", agent)
    async with client.get(page["@odata.nextLink"], headers=agent.headers) as resp:
        assert [r["partnerTicketId"] for r in (await resp.json())["value"]] == ["INC0"]


async def test_bad_query_options_are_400_in_mmd_shape(client, agent, tenant):
    assert "colour" in await failure(client, "GET", f"{path(tenant)}?$filter=colour eq 'red'", agent, 400)
    assert "$select" in await failure(client, "GET", f"{path(tenant)}?$select=title", agent, 400)


async def test_get_by_id(client, agent, viewer, tenant, device):
    created = await ask(client, agent, tenant)
    found = await call(client, "GET", path(tenant, created["id"]), viewer)
    assert found == created
    for unknown in (str(uuid.uuid4()), "not-a-guid"):
        assert await failure(client, "GET", path(tenant, unknown), agent, 404) == NO_REQUEST


async def test_graph_requests_are_not_mmd_requests(client, agent, tenant, requester):
    graph = await graph_create(client, requester)
    assert await failure(client, "GET", path(tenant, graph["id"]), agent, 404) == NO_REQUEST
    assert await failure(client, "PATCH", path(tenant, graph["id"]), agent, 404, json={"ActionsTaken": "x"}) == (
        NO_REQUEST)
    assert (await call(client, "GET", path(tenant), agent))["value"] == []


# --- close ---------------------------------------------------------------------------------------------


async def test_closing_a_pending_request_withdraws_it_and_twice_is_400(client, agent, viewer, tenant, device):
    created = await ask(client, agent, tenant)
    # a signed-in agent (MWaaSDevice.Read) may close only its own requests: another's does not exist for it
    assert await failure(client, "PATCH", path(tenant, created["id"]), viewer, 404,
                         json={"ActionsTaken": "not mine"}) == NO_REQUEST
    await call(client, "PATCH", path(tenant, created["id"]), agent, 204, json={"ActionsTaken": "Not needed after all"})
    closed = await call(client, "GET", path(tenant, created["id"]), agent)
    assert closed["actionsTaken"] == "Not needed after all" and closed["closingAgentUpn"] == agent.upn
    assert when(closed["requestClosureTime"]) >= when(created["requestCreationTime"])
    assert closed["isSuccessfulRequest"] is False and closed["@epm.elevationRequest"]["status"] == "revoked"
    again = await failure(client, "PATCH", path(tenant, created["id"]), agent, 400, json={"actionsTaken": "again"})
    assert again == CLOSED
    assert await failure(client, "PATCH", path(tenant, str(uuid.uuid4())), agent, 404,
                         json={"actionsTaken": "x"}) == NO_REQUEST


@pytest.mark.parametrize("body, named", [
    ({}, "actionsTaken is required"),
    ({"ActionsTaken": " "}, "actionsTaken is required"),
    ({"ActionsTaken": "a" * 4001}, "actionsTaken must be at most 4000 characters."),
    ({"ActionsTaken": "x", "Title": "y"}, "'Title' is not a property"),
])
async def test_bad_close_bodies_are_400(client, agent, tenant, device, body, named):
    created = await ask(client, agent, tenant)
    assert named in await failure(client, "PATCH", path(tenant, created["id"]), agent, 400, json=body)


# --- one lifecycle with Graph --------------------------------------------------------------------------


async def test_a_graph_reviewer_approves_and_closing_completes_it(client, agent, tenant, device, manager):
    created = await ask(client, agent, tenant)
    graph = await call(client, "GET", f"{GRAPH}/{created['id']}", manager)
    assert graph["status"] == "pending" and graph["requestedOnDeviceId"] == device["id"]
    assert graph["deviceName"] == "MMD-01" and graph["requestedByUserPrincipalName"] == agent.upn
    assert graph["requestJustification"] == "Install Office: Run the Office installer elevated"
    pending = await call(client, "GET", f"{GRAPH}?$filter=status eq 'pending'", manager)
    assert [r["id"] for r in pending["value"]] == [created["id"]]
    await call(client, "POST", f"{GRAPH}/{created['id']}/approve", manager,
               json={"reviewerJustification": "Known ticket"})
    approved = await call(client, "GET", path(tenant, created["id"]), agent)
    assert approved["isSuccessfulRequest"] is True and approved["requestClosureTime"] is None
    assert approved["@epm.elevationRequest"]["status"] == "approved"
    await call(client, "PATCH", path(tenant, created["id"]), agent, 204, json={"ActionsTaken": "Office installed"})
    completed = await call(client, "GET", path(tenant, created["id"]), agent)
    assert completed["isSuccessfulRequest"] is True and completed["requestClosureTime"] is not None
    assert (await call(client, "GET", f"{GRAPH}/{created['id']}", manager.headers | NEW_MEMBERS))["status"] == \
        "completed"
    audit = await call(client, "GET", "/beta/deviceManagement/auditEvents?$filter=activity eq 'Close ElevationRequest'",
                       manager)
    [event] = audit["value"]
    assert event["resources"][0]["resourceId"] == created["id"]
    assert {p["displayName"]: p["newValue"] for p in event["resources"][0]["modifiedProperties"]} == {
        "status": "completed", "justification": "Office installed"}


async def test_a_denied_request_is_closed_already(client, agent, tenant, device, manager):
    created = await ask(client, agent, tenant)
    denied = await call(client, "POST", f"{GRAPH}/{created['id']}/deny", manager, json={"reviewerJustification": "No"})
    found = await call(client, "GET", path(tenant, created["id"]), agent)
    assert found["requestClosureTime"] == denied["reviewCompletedDateTime"] and found["isSuccessfulRequest"] is False
    assert await failure(client, "PATCH", path(tenant, created["id"]), agent, 400, json={"ActionsTaken": "x"}) == CLOSED


# --- tenants and permissions ---------------------------------------------------------------------------


async def test_another_tenant_in_the_path_is_404(client, agent, tenant, device):
    created = await ask(client, agent, tenant)
    other = str(uuid.uuid4())
    for method, url, kwargs in (("POST", path(other), {"json": ticket()}), ("GET", path(other), {}),
                                ("GET", path(other, created["id"]), {}),
                                ("PATCH", path(other, created["id"]), {"json": {"ActionsTaken": "x"}})):
        await failure(client, method, url, agent, 404, **kwargs)
    assert (await call(client, "GET", path(tenant.upper(), created["id"]), agent))["id"] == created["id"]


async def test_another_tenants_request_is_not_there(client, token, agent, tenant, device):
    created = await ask(client, agent, tenant)
    other_tenant = str(uuid.uuid4())
    other = auth(token(scopes=(), roles=["MmdSupport.ReadWrite"], tenant=other_tenant))
    assert await failure(client, "GET", path(other_tenant, created["id"]), other, 404) == NO_REQUEST
    assert await failure(client, "POST", path(other_tenant), other, 404, json=ticket()) == NO_DEVICE


async def test_permissions(client, token, agent, viewer, tenant, device):
    created = await ask(client, agent, tenant)
    assert "MmdSupport.ReadWrite" in await failure(client, "POST", path(tenant), viewer, 403, json=ticket())
    graph_only = auth(token())  # full Graph DeviceManagement scopes, nothing of MMD's
    for method, url, kwargs in (("GET", path(tenant), {}), ("GET", path(tenant, created["id"]), {}),
                                ("PATCH", path(tenant, created["id"]), {"json": {"ActionsTaken": "x"}})):
        assert "MWaaSDevice.Read" in await failure(client, method, url, graph_only, 403, **kwargs)
    assert (await call(client, "GET", path(tenant), viewer))["value"][0]["id"] == created["id"]
    assert "empty" in await failure(client, "GET", path(tenant), {}, 401)
    assert await failure(client, "GET", path(tenant), {"Authorization": "Bearer nonsense"}, 401)


async def test_unknown_support_routes_are_mmd_errors(client, agent, tenant):
    await failure(client, "GET", f"/support/odata/v1/tenants/{tenant}/tickets", agent, 404)
    await failure(client, "DELETE", path(tenant, str(uuid.uuid4())), agent, 405)
