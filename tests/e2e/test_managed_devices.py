"""deviceManagement/managedDevices through the real gateway, requests service and PostgreSQL: registration, Graph
shapes, OData options, permissions, tenant isolation, and devices that join the inventory from elevation events
(the events service reports them in the background)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.events.v1 import elevation_event_service_pb2_grpc as events_grpc
from epm.requests.v1 import managed_device_service_pb2 as devices_pb
from epm.requests.v1 import managed_device_service_pb2_grpc as devices_grpc
from google.protobuf import timestamp_pb2

from .test_elevations import NOW, error_of, event, post, sha
from .test_role_assignments import auth

PATH = "/beta/deviceManagement/managedDevices"
TYPE = "#microsoft.graph.managedDevice"
GRAPH_KEYS = {
    "@odata.type", "id", "deviceName", "operatingSystem", "osVersion", "complianceState", "azureADDeviceId",
    "userPrincipalName", "userId", "enrolledDateTime", "lastSyncDateTime", "serialNumber", "model", "manufacturer"}
DEVICES_READ = "DeviceManagementManagedDevices.Read.All"
DEVICES_WRITE = "DeviceManagementManagedDevices.ReadWrite.All"
WAIT = 5.0  # seconds: the bound on the background report of seen devices


def device(**overrides) -> dict:
    body = {
        "@odata.type": TYPE, "deviceName": "LAPTOP-01", "operatingSystem": "Windows", "osVersion": "10.0.22631.4460",
        "complianceState": "compliant", "azureADDeviceId": str(uuid.uuid4()),
        "userPrincipalName": "adele@contoso.example", "userId": str(uuid.uuid4()),
        "enrolledDateTime": "2026-01-05T08:00:00Z", "lastSyncDateTime": "2026-11-20T07:30:00Z",
        "serialNumber": "PF3ABCDE", "model": "ThinkPad X1 Carbon Gen 11", "manufacturer": "Lenovo"}
    body.update(overrides)
    return body


async def register(http, **overrides) -> dict:
    async with http.post(PATH, json=device(**overrides)) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def fetch(http, device_id: str, status: int = 200) -> dict:
    """GET the device; `device_id` may also be OData key syntax: ('{id}')."""
    separator = "" if device_id.startswith("(") else "/"
    async with http.get(f"{PATH}{separator}{device_id}") as resp:
        if status != 200:
            return {"message": await error_of(resp, status)}
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def names(http, query: str) -> list[str]:
    async with http.get(f"{PATH}?{query}") as resp:
        assert resp.status == 200, await resp.text()
        return [d["deviceName"] for d in (await resp.json())["value"]]


async def seen(http, device_id: str, until=lambda d: True) -> dict:
    """The device once the background report of its elevation event has landed (and `until` holds)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        async with http.get(f"{PATH}/{device_id}") as resp:
            if resp.status == 200 and until(found := await resp.json()):
                return found
        assert asyncio.get_running_loop().time() < deadline, f"device {device_id} was not reported in time"
        await asyncio.sleep(0.05)


# --- registration --------------------------------------------------------------------------------------


async def test_register_get_and_delete_a_device(http):
    body = device(id=str(uuid.uuid4()).upper())
    created = await register(http, **body)
    assert created["@odata.context"].endswith("/$metadata#deviceManagement/managedDevices/$entity")
    assert set(created) == GRAPH_KEYS | {"@odata.context", "@epm.discovery"}
    assert created["id"] == body["id"].lower()  # the GUID, canonical
    assert {k: created[k] for k in body if k != "id"} == {k: v for k, v in body.items() if k != "id"}
    assert created["@epm.discovery"] == {"source": "api", "lastSeenDateTime": None}
    found = await fetch(http, created["id"])
    assert {k: v for k, v in found.items() if k != "@odata.context"} == {
        k: v for k, v in created.items() if k != "@odata.context"}
    assert (await fetch(http, f"('{created['id']}')"))["id"] == created["id"]  # OData key syntax
    async with http.delete(f"{PATH}/{created['id']}") as resp:
        assert resp.status == 204
    await fetch(http, created["id"], 404)
    async with http.delete(f"{PATH}/{created['id']}") as resp:
        await error_of(resp, 404)


async def test_a_device_without_an_id_gets_one_and_unknown_dates_are_null(http):
    created = await register(http, enrolledDateTime=None, lastSyncDateTime=None, complianceState=None)
    assert uuid.UUID(created["id"]) and created["complianceState"] == "unknown"
    assert created["enrolledDateTime"] is None and created["lastSyncDateTime"] is None


async def test_optional_strings_are_null_when_absent_and_filtered_with_null(http):
    bare = await register(http, deviceName="BARE-PC", serialNumber=None, model=None, manufacturer=None)
    assert bare["serialNumber"] is None and bare["model"] is None and bare["manufacturer"] is None
    assert bare["deviceName"] == "BARE-PC" and bare["operatingSystem"] == "Windows"
    await register(http, deviceName="FULL-PC")
    assert await names(http, "$filter=serialNumber eq null") == ["BARE-PC"]
    assert await names(http, "$filter=model ne null") == ["FULL-PC"]


async def test_an_id_can_be_registered_once(http):
    created = await register(http)
    async with http.post(PATH, json=device(id=created["id"], deviceName="OTHER")) as resp:
        assert created["id"] in await error_of(resp, 409)
    assert (await fetch(http, created["id"]))["deviceName"] == "LAPTOP-01"


@pytest.mark.parametrize("overrides, named", [
    ({"id": "device-1"}, "id must be a GUID"),
    ({"deviceName": ""}, "deviceName is required"),
    ({"deviceName": None}, "deviceName is required"),
    ({"model": "m" * 257}, "model must be at most 256"),
    ({"complianceState": "fine"}, "complianceState"),
    ({"lastSyncDateTime": "yesterday"}, "lastSyncDateTime"),
    ({"nope": 1}, "nope"),
    ({"source": "api"}, "source"),
    ({"lastSeenDateTime": "2026-01-01T00:00:00Z"}, "lastSeenDateTime"),
    ({"@odata.type": "#microsoft.graph.device"}, "microsoft.graph.managedDevice"),
])
async def test_bad_bodies_are_400_naming_the_problem(http, overrides, named):
    async with http.post(PATH, json=device(**overrides)) as resp:
        assert named in await error_of(resp, 400)


async def test_not_json_is_refused(http):
    async with http.post(PATH, data="deviceName=x", headers={"Content-Type": "text/plain"}) as resp:
        await error_of(resp, 415)
    async with http.post(PATH, json=["a list"]) as resp:
        await error_of(resp, 400)


# --- listing -------------------------------------------------------------------------------------------


async def test_filter_orderby_top_skip_select_and_count(http):
    for name, state, os_version in (("PC-A", "compliant", "10.0.1"), ("pc-b", "noncompliant", "10.0.2"),
                                    ("PC-C", "compliant", "11.0.1"), ("MAC-D", "inGracePeriod", "14.1")):
        await register(http, deviceName=name, complianceState=state, osVersion=os_version)
    assert await names(http, "$orderby=deviceName") == ["MAC-D", "PC-A", "PC-C", "pc-b"]
    assert await names(http, "$filter=deviceName eq 'PC-B'") == ["pc-b"]  # names match in any case
    assert await names(http, "$filter=complianceState eq 'compliant'&$orderby=deviceName desc") == ["PC-C", "PC-A"]
    assert await names(http, "$filter=startswith(osVersion,'10.') and complianceState ne 'compliant'") == ["pc-b"]
    assert await names(http, "$filter=contains(deviceName,'c-')&$orderby=osVersion&$top=1&$skip=1") == ["pc-b"]
    async with http.get(f"{PATH}?$select=deviceName,complianceState&$count=true&$top=2&$orderby=deviceName") as resp:
        page = await resp.json()
    assert page["@odata.count"] == 4 and "@odata.nextLink" in page
    assert page["@odata.context"].endswith("/$metadata#deviceManagement/managedDevices(deviceName,complianceState)")
    assert [set(d) for d in page["value"]] == [{"@odata.type", "id", "deviceName", "complianceState"}] * 2
    async with http.get(page["@odata.nextLink"]) as resp:
        assert [d["deviceName"] for d in (await resp.json())["value"]] == ["PC-C", "pc-b"]
    async with http.get(f"{PATH}/$count?$filter=complianceState eq 'compliant'") as resp:
        assert resp.content_type == "text/plain" and await resp.text() == "2"


async def test_paging_by_a_date_some_devices_never_had(http):
    synced = await register(http, lastSyncDateTime="2026-11-20T07:30:00Z")
    never = {(await register(http, lastSyncDateTime=None))["id"] for _ in range(2)}
    url, order = f"{PATH}?$orderby=lastSyncDateTime&$top=1", []
    while url:
        async with http.get(url) as resp:
            page = await resp.json()
        order += [d["id"] for d in page["value"]]
        url = page.get("@odata.nextLink")
    assert set(order[:2]) == never and order[2:] == [synced["id"]]  # never synced sorts first, once each
    assert len(await names(http, "$filter=lastSyncDateTime lt 2026-01-01T00:00:00Z")) == 2


@pytest.mark.parametrize("query, named", [
    ("$filter=colour eq 'red'", "colour"),
    ("$filter=complianceState eq 'fine'", "complianceState"),
    ("$orderby=deviceName sideways", "sideways"),
    ("$select=colour", "colour"),
    ("$expand=users", "$expand"),
])
async def test_bad_query_options_are_400(http, query, named):
    async with http.get(f"{PATH}?{query}") as resp:
        assert named in await error_of(resp, 400)


# --- who may -------------------------------------------------------------------------------------------


async def test_permissions(client, token, http):
    created = await register(http)
    reader = auth(token(scopes=[DEVICES_READ]))
    config_only = auth(token(scopes=["DeviceManagementConfiguration.ReadWrite.All"]))
    app = auth(token(scopes=(), roles=[DEVICES_WRITE]))
    async with client.get(f"{PATH}/{created['id']}", headers=reader) as resp:
        assert resp.status == 200
    async with client.post(PATH, json=device(), headers=reader) as resp:
        assert DEVICES_WRITE in await error_of(resp, 403)
    async with client.delete(f"{PATH}/{created['id']}", headers=reader) as resp:
        await error_of(resp, 403)
    async with client.get(PATH, headers=config_only) as resp:
        assert DEVICES_READ in await error_of(resp, 403)
    async with client.post(PATH, json=device(), headers=app) as resp:
        assert resp.status == 201
    async with client.get(PATH) as resp:
        await error_of(resp, 401)


async def test_another_tenants_device_is_not_there(client, token, http):
    created = await register(http)
    other = auth(token(tenant=str(uuid.uuid4())))
    async with client.get(f"{PATH}/{created['id']}", headers=other) as resp:
        await error_of(resp, 404)
    async with client.delete(f"{PATH}/{created['id']}", headers=other) as resp:
        await error_of(resp, 404)
    async with client.get(PATH, headers=other) as resp:
        assert (await resp.json())["value"] == []
    async with client.post(PATH, json=device(id=created["id"]), headers=other) as resp:
        assert resp.status == 201  # ids are the tenant's own
    assert (await fetch(http, created["id"]))["@epm.discovery"]["source"] == "api"


# --- seen in elevation events --------------------------------------------------------------------------


async def test_a_device_seen_only_in_an_elevation_event_joins_the_inventory(http):
    device_id = str(uuid.uuid4())
    await post(http, event(deviceId=device_id.upper(), deviceName="EVENT-PC", upn="lee@contoso.example"))
    found = await seen(http, device_id)
    assert found["deviceName"] == "EVENT-PC" and found["userPrincipalName"] == "lee@contoso.example"
    assert found["@epm.discovery"]["source"] == "elevationEvents"
    assert found["@epm.discovery"]["lastSeenDateTime"] == event()["eventDateTime"]
    assert found["complianceState"] == "unknown" and found["enrolledDateTime"] is None
    assert await names(http, "$filter=deviceName eq 'event-pc'") == ["EVENT-PC"]


async def test_events_never_overwrite_what_an_admin_set(http):
    registered = await register(http, deviceName="ADMIN-NAME", userPrincipalName="")
    await post(http, event(deviceId=registered["id"], deviceName="EVENT-NAME", upn="lee@contoso.example"))
    found = await seen(http, registered["id"], until=lambda d: d["@epm.discovery"]["lastSeenDateTime"])
    assert found["deviceName"] == "ADMIN-NAME"  # set by the admin: kept
    assert found["userPrincipalName"] == "lee@contoso.example"  # left empty: filled in
    assert found["@epm.discovery"]["source"] == "api"


async def test_an_admin_takes_over_a_device_seen_in_events(http):
    device_id = str(uuid.uuid4())
    await post(http, event(deviceId=device_id, deviceName="EVENT-PC"))
    before = await seen(http, device_id)
    taken = await register(http, id=device_id, deviceName="REGISTERED-PC")
    assert taken["deviceName"] == "REGISTERED-PC" and taken["@epm.discovery"] == {
        "source": "api", "lastSeenDateTime": before["@epm.discovery"]["lastSeenDateTime"]}


async def test_events_from_ids_that_are_not_guids_do_not_become_devices(http, requests_channel, token):
    stub = devices_grpc.ManagedDeviceServiceStub(requests_channel)
    answer = await stub.RecordSeenDevices(devices_pb.RecordSeenDevicesRequest(devices=[
        devices_pb.SeenDevice(device_id="not-a-guid", device_name="ODD-PC")]),
        metadata=(("authorization", f"Bearer {token()}"),))
    assert (answer.recorded, answer.ignored) == (0, 1)  # refused by the service, not lost on the way
    await post(http, event(deviceId="not-a-guid", deviceName="ODD-PC"))
    marker = str(uuid.uuid4())  # reported after the odd one: once it is in, the odd one was handled
    await post(http, event(deviceId=marker, deviceName="MARKER-PC"))
    await seen(http, marker)
    assert await names(http, "$filter=deviceName eq 'ODD-PC'") == []


async def test_a_batch_ingested_over_grpc_reports_each_device_once_with_its_latest_event(http, events_channel, token):
    device_id = str(uuid.uuid4())

    def one(hours: int, name: str) -> events_pb.ElevationEvent:
        at = timestamp_pb2.Timestamp()
        at.FromDatetime(NOW - timedelta(hours=hours))
        return events_pb.ElevationEvent(device_id=device_id, device_name=name, event_date_time=at, hash=sha(name),
                                        upn=f"{name}@contoso.example")

    batch = events_pb.IngestElevationEventsRequest(events=[one(3, "older"), one(1, "newest"), one(2, "middle")])

    async def stream():
        yield batch

    stub = events_grpc.ElevationEventServiceStub(events_channel)
    result = await stub.IngestElevationEvents(stream(), metadata=(("authorization", f"Bearer {token()}"),))
    assert result.inserted == 3
    found = await seen(http, device_id)
    assert found["deviceName"] == "newest" and found["userPrincipalName"] == "newest@contoso.example"
