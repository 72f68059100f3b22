"""GET /beta/$metadata and GET /beta through the real gateway and services: served without a token as Graph
serves them, and describing exactly what the gateway writes: every entity the gateway returns has the properties
its type declares in $metadata, no more and no fewer, and so do the objects inside it."""

from __future__ import annotations

import uuid

import pytest

from ..unit.test_metadata import EDM, NS, declared, properties, schema_of, unresolved
from .test_elevation_requests import AUDIT, PATH, call, create
from .test_elevations import event, post
from .test_managed_devices import register
from .test_role_assignments import ROLES, assign, auth
from .test_subscriptions import subscribe

METADATA = "/beta/$metadata"
GET_ALL = f"$metadata#Collection({NS}.privilegeManagementElevationRequest)"


@pytest.fixture
def app(token) -> dict:
    return auth(token(scopes=(), roles=["DeviceManagementConfiguration.ReadWrite.All"]))


async def served_schema(client):
    async with client.get(METADATA) as resp:  # no token, as Graph serves it
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/xml" and resp.headers["OData-Version"] == "4.0"
        document = await resp.read()
    assert unresolved(document) == []
    return schema_of(document)


def typed(schema, entity: dict, type_name: str = "") -> set[str]:
    """Checks `entity` and every object in it against their types' properties; the names of the types checked."""
    type_name = type_name or entity["@odata.type"].removeprefix("#")
    assert {k for k in entity if "@" not in k} == set(properties(schema, type_name)), type_name
    checked = {type_name}
    for value in entity.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and "@odata.type" in item:
                checked |= typed(schema, item)
    return checked


async def test_metadata_and_the_service_document_need_no_token(client, gateway_url, admin, app):
    readers = {"subscriptions": app}  # an application reads subscriptions (a user needs an Intune role)
    schema = await served_schema(client)
    async with client.get("/beta") as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        service = await resp.json()
    assert service["@odata.context"] == f"{gateway_url}/beta/$metadata"
    (container,) = schema.findall(EDM + "EntityContainer")
    assert {(s["name"], s["kind"]) for s in service["value"]} == {(e.get("Name"), e.tag.removeprefix(EDM))
                                                                 for e in container}
    for entry in service["value"]:
        if entry["kind"] == "EntitySet":  # each is served, as its own set
            async with client.get(f"/beta/{entry['url']}") as resp:
                assert resp.status == 401  # the exemption is those two paths only
            listed = await call(client, "GET", f"/beta/{entry['url']}", readers.get(entry["name"], admin))
            assert listed["@odata.context"] == f"{service['@odata.context']}#{entry['name']}"


async def test_every_entity_the_gateway_returns_matches_its_type(client, http, admin, app, requester, manager,
                                                                 receiver, clock):
    schema = await served_schema(client)
    request = await create(client, requester)
    entities = [
        request,
        (await call(client, "GET", AUDIT, manager))["value"][0],
        await post(http, event(deviceId=str(uuid.uuid4()))),
        await register(http),
        await assign(client, admin, str(uuid.uuid4())),
        (await call(client, "GET", ROLES, admin))["value"][0],
        await subscribe(client, app, receiver, clock),
    ]
    checked = set().union(*(typed(schema, entity) for entity in entities))
    permissions = await call(client, "GET", "/beta/privilegedRoleAssignments/myPermissions()", manager)
    assert permissions["@odata.context"].endswith(f"$metadata#{NS}.epmPermissions")
    checked |= typed(schema, permissions, f"{NS}.epmPermissions")
    abstract = {f"{NS}.entity", f"{NS}.deviceManagement"}  # the key's base type; the singleton's container
    assert checked == set(declared(schema, "EntityType", "ComplexType")) - abstract


async def test_collection_results_of_actions_name_their_type(client, requester, manager):
    request = await create(client, requester)
    everything = await call(client, "POST", f"{PATH}/{request['id']}/getAllElevationRequests", manager)
    assert everything["@odata.context"].endswith(GET_ALL)
