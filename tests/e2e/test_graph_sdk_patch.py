"""PATCH as the official SDK is used: GET an entity, change one property, patch the object back. Read-only and key
properties that come back unchanged (in whatever form: GUID case, DateTimeOffset written otherwise, annotations
the object carries) are accepted; a real change to one is a 400 naming it, and nothing is stored."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from msgraph_beta.generated.models.elevation_request_state import ElevationRequestState
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError

from tests.claims import ROLE_ADMIN

from .test_elevation_requests import body as request_body
from .test_elevations import event
from .test_graph_sdk import elevation
from .test_graph_sdk_requests import ask
from .test_role_assignments import assign, auth, call

REQUESTS = "/beta/deviceManagement/elevationRequests"
ELEVATIONS = "/beta/deviceManagement/privilegeManagementElevations"


@pytest.fixture
async def reviewer(client, token) -> str:
    """The token of a user holding Endpoint Privilege Manager."""
    oid = str(uuid.uuid4())
    await assign(client, auth(token(**ROLE_ADMIN)), oid)
    return token(oid=oid, upn="megan@contoso.example")


async def refused(call_, named: str) -> None:
    with pytest.raises(ODataError) as err:
        await call_
    assert err.value.response_status_code == 400 and err.value.error.code == "BadRequest"
    assert f"'{named}' is read-only" in err.value.error.message


async def test_the_sdk_patches_a_fetched_elevation_request(sdk, token, reviewer):
    requester = sdk(token(oid=str(uuid.uuid4()), upn="adele@contoso.example"))
    created = await requester.device_management.elevation_requests.post(ask("git.exe"))
    item = sdk(reviewer).device_management.elevation_requests.by_privilege_management_elevation_request_id(
        created.id)

    fetched = await item.get()
    assert "@odata.etag" in fetched.additional_data  # sent back as it came
    fetched.request_justification = "For INC-8"
    patched = await item.patch(fetched)
    assert patched.request_justification == "For INC-8" and patched.status == ElevationRequestState.Pending
    assert (await item.get()).request_justification == "For INC-8"

    for change, named in ((lambda r: setattr(r, "device_name", "OTHER-PC"), "deviceName"),
                          (lambda r: setattr(r, "status", ElevationRequestState.Approved), "status"),
                          (lambda r: setattr(r, "id", str(uuid.uuid4())), "id"),
                          (lambda r: setattr(r, "request_created_date_time",
                                             r.request_created_date_time - timedelta(seconds=1)),
                           "requestCreatedDateTime"),
                          (lambda r: setattr(r.application_detail, "file_name", "evil.exe"), "applicationDetail")):
        fetched = await item.get()
        fetched.request_justification = "Not stored"
        change(fetched)
        await refused(item.patch(fetched), named)
    stored = await item.get()
    assert (stored.request_justification, stored.device_name, stored.status) == (
        "For INC-8", "SDK-PC", ElevationRequestState.Pending)
    assert stored.application_detail.file_name == "git.exe"


async def test_the_sdk_patches_a_fetched_elevation_event(sdk, token):
    elevations = sdk(token()).device_management.privilege_management_elevations
    created = await elevations.post(elevation(1))
    item = elevations.by_privilege_management_elevation_id(created.id)

    fetched = await item.get()
    fetched.policy_name = "Patched from a fetched event"
    patched = await item.patch(fetched)
    assert patched.policy_name == "Patched from a fetched event" and patched.device_id == created.device_id
    assert (await item.get()).policy_name == "Patched from a fetched event"

    for change, named in ((lambda e: setattr(e, "device_id", "another-device"), "deviceId"),
                          (lambda e: setattr(e, "event_date_time", e.event_date_time + timedelta(seconds=1)),
                           "eventDateTime"),
                          (lambda e: setattr(e, "id", str(uuid.uuid4())), "id")):
        fetched = await item.get()
        fetched.policy_name = "Not stored"
        change(fetched)
        await refused(item.patch(fetched), named)
    stored = await item.get()
    assert (stored.policy_name, stored.device_id, stored.event_date_time) == (
        "Patched from a fetched event", created.device_id, created.event_date_time)


async def test_unchanged_values_are_compared_as_values(client, token, reviewer):
    created = await call(client, "POST", REQUESTS, auth(token(oid=str(uuid.uuid4()))), 201, json=request_body())
    url, headers = f"{REQUESTS}/{created['id']}", auth(reviewer)
    fetched = await call(client, "GET", url, headers)
    same = {**fetched, "id": fetched["id"].upper(), "@odata.context": "elsewhere", "@epm.reputation": {"x": 1},
            "requestCreatedDateTime": fetched["requestCreatedDateTime"].replace("Z", ".000Z"),
            "requestExpiryDateTime": fetched["requestExpiryDateTime"].replace("Z", "+00:00"),
            "applicationDetail": {**fetched["applicationDetail"],
                                  "fileHash": fetched["applicationDetail"]["fileHash"].lower()},
            "requestJustification": "Changed alone"}
    assert (await call(client, "PATCH", url, headers, json=same))["requestJustification"] == "Changed alone"
    for bad, message in (({"requestJustification": "x", "etag": "1"}, "'etag' does not exist"),
                         ({"requestJustification": "x", "reputation": {}}, "'reputation' does not exist"),
                         ({"id": fetched["id"]}, "no property that can be changed"),
                         ({"requestedByUserId": str(uuid.uuid4())}, "'requestedByUserId' is read-only")):
        async with client.patch(url, json=bad, headers=headers) as resp:
            assert resp.status == 400 and message in (await resp.json())["error"]["message"], bad
    assert (await call(client, "GET", url, headers))["requestJustification"] == "Changed alone"

    headers = auth(token())
    made = await call(client, "POST", ELEVATIONS, headers, 201, json=event())
    url = f"{ELEVATIONS}/{made['id']}"
    same = {**made, "id": made["id"].upper(), "eventDateTime": made["eventDateTime"].replace("Z", ".000000Z"),
            "result": 7}
    assert (await call(client, "PATCH", url, headers, json=same))["result"] == 7
    async with client.patch(url, json={"deviceId": made["deviceId"]}, headers=headers) as resp:
        assert resp.status == 400 and "no property that can be changed" in (await resp.json())["error"]["message"]
    assert (await call(client, "GET", url, headers)) == {**made, "result": 7}
