"""Every URL form the official SDK emits for the resources the gateway serves, and the OData forms beside them:
functions called as name() (privilegedRoleAssignments/my()), keys as a segment, /x/{id}, and in key syntax,
x('{id}') and x({id})."""

from __future__ import annotations

import uuid

import pytest
from msgraph_beta.generated.models.privileged_role_assignment import PrivilegedRoleAssignment
from msgraph_beta.generated.privileged_role_assignments.item.make_permanent.make_permanent_post_request_body import (  # noqa: E501
    MakePermanentPostRequestBody,
)
from msgraph_beta.generated.privileged_role_assignments.my.my_get_response import MyGetResponse
from msgraph_beta.generated.privileged_roles.item.self_activate.self_activate_post_request_body import (
    SelfActivatePostRequestBody,
)

from tests.claims import ROLE_ADMIN

from .test_elevation_requests import body as request_body
from .test_elevations import event
from .test_role_assignments import MANAGER, assign, auth, call, eligible

ASSIGNMENTS, ROLES = "/beta/privilegedRoleAssignments", "/beta/privilegedRoles"
REQUESTS, AUDIT = "/beta/deviceManagement/elevationRequests", "/beta/deviceManagement/auditEvents"
ELEVATIONS = "/beta/deviceManagement/privilegeManagementElevations"
MINE = "Collection(microsoft.graph.privilegedRoleAssignment)"
FORMS = {  # how a member is addressed: form(collection, key) -> its path
    "segment": lambda collection, key: f"{collection}/{key}",
    "quoted key": lambda collection, key: f"{collection}('{key}')",
    "quoted key, percent-encoded": lambda collection, key: f"{collection}(%27{key}%27)",
    "bare key": lambda collection, key: f"{collection}({key})",
}


@pytest.fixture
def admin(token) -> dict:
    return auth(token(**ROLE_ADMIN))


@pytest.fixture
def user(token):
    """A signed-in user: (object id, their token)."""
    oid = str(uuid.uuid4())
    return oid, token(scopes=["Directory.AccessAsUser.All"], oid=oid, upn="megan@contoso.example")


async def test_the_sdk_calls_my_and_the_role_actions(sdk, token, user):
    oid, user_token = user
    admin, me = sdk(token(**ROLE_ADMIN)), sdk(user_token)
    created = await admin.privileged_role_assignments.post(PrivilegedRoleAssignment(user_id=oid, role_id=MANAGER))
    assert created.id == f"{oid}_{MANAGER}" and created.is_elevated is True
    item = admin.privileged_role_assignments.by_privileged_role_assignment_id(created.id)
    assert (await item.make_eligible.post()).is_elevated is False

    mine = await me.privileged_role_assignments.my.get()  # GET /privilegedRoleAssignments/my()
    assert isinstance(mine, MyGetResponse)
    assert [(a.id, a.user_id, a.role_id, a.is_elevated) for a in mine.value] == [(created.id, oid, MANAGER, False)]

    active = await me.privileged_roles.by_privileged_role_id(MANAGER).self_activate.post(
        SelfActivatePostRequestBody(reason="Reviewing requests", duration="min", ticket_number="INC-9"))
    assert active.id == created.id and active.is_elevated is True and active.expiration_date_time is not None
    assert [a.is_elevated for a in (await me.privileged_role_assignments.my.get()).value] == [True]

    permanent = await item.make_permanent.post(MakePermanentPostRequestBody(reason="Reviews every day"))
    assert permanent.is_elevated is True and permanent.expiration_date_time is None
    assert (await item.get()).expiration_date_time is None
    assert created.id in [a.id for a in (await admin.privileged_role_assignments.get()).value]
    assert MANAGER in [r.id for r in (await admin.privileged_roles.get()).value]
    await item.delete()
    assert (await me.privileged_role_assignments.my.get()).value == []


async def test_my_is_a_function_with_a_collection_result(client, admin, user):
    oid, user_token = user
    mine = await assign(client, admin, oid)
    await assign(client, admin, str(uuid.uuid4()))  # someone else's
    for url in (f"{ASSIGNMENTS}/my()", f"{ASSIGNMENTS}/my"):
        got = await call(client, "GET", url, auth(user_token))
        assert got["@odata.context"].endswith(f"/beta/$metadata#{MINE}"), url
        assert [a["id"] for a in got["value"]] == [mine["id"]], url
    selected = await call(client, "GET", f"{ASSIGNMENTS}/my()?$select=isElevated", auth(user_token))
    assert selected["value"] == [{"@odata.type": "#microsoft.graph.privilegedRoleAssignment", "id": mine["id"],
                                  "isElevated": True}]
    for url in (f"{ASSIGNMENTS}/myPermissions()", f"{ASSIGNMENTS}/myPermissions"):
        rights = await call(client, "GET", url, auth(user_token))
        assert rights["permissions"] == ["elevationRequests.modify", "elevationRequests.view"], url


@pytest.mark.parametrize("form", FORMS)
async def test_role_assignments_and_roles_in_every_form(client, admin, user, form):
    oid, user_token = user
    me, at = auth(user_token), FORMS[form]
    created = await eligible(client, admin, oid)
    assert await call(client, "GET", at(ASSIGNMENTS, created["id"]), admin) == created
    active = await call(client, "POST", at(ROLES, MANAGER) + "/selfActivate", me, json={"reason": "On call"})
    assert active["isElevated"] is True and active["expirationDateTime"] is not None
    made = await call(client, "POST", at(ASSIGNMENTS, created["id"]) + "/makePermanent", admin)
    assert made["isElevated"] is True and made["expirationDateTime"] is None
    assert (await call(client, "POST", at(ASSIGNMENTS, created["id"]) + "/makeEligible", admin))["isElevated"] is False
    await call(client, "DELETE", at(ASSIGNMENTS, created["id"]), admin, 204)
    await call(client, "GET", f"{ASSIGNMENTS}/{created['id']}", admin, 404)


@pytest.mark.parametrize("form", FORMS)
async def test_elevation_requests_and_audit_events_in_every_form(client, token, admin, form):
    requester, manager, at = auth(token(oid=str(uuid.uuid4()))), str(uuid.uuid4()), FORMS[form]
    await assign(client, admin, manager)
    reviewer = auth(token(oid=manager, upn="megan@contoso.example"))
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body())
    url = at(REQUESTS, created["id"])
    assert (await call(client, "GET", url, reviewer))["id"] == created["id"]
    patched = await call(client, "PATCH", url, reviewer, json={"requestJustification": "For INC-3"})
    assert patched["requestJustification"] == "For INC-3"
    everything = await call(client, "POST", url + "/getAllElevationRequests", reviewer)
    assert [r["id"] for r in everything["value"]] == [created["id"]]
    assert (await call(client, "POST", url + "/approve", reviewer, json={}))["status"] == "approved"
    assert (await call(client, "POST", url + "/revoke", reviewer))["status"] == "unknownFutureValue"  # revoked
    assert (await call(client, "GET", url + "/analyze", reviewer))["@odata.type"]
    audit = await call(client, "GET", AUDIT + "?$filter=activity eq 'Approve ElevationRequest'", reviewer)
    (approval,) = audit["value"]
    assert (await call(client, "GET", at(AUDIT, approval["id"]), reviewer))["id"] == approval["id"]
    other = await call(client, "POST", REQUESTS, requester, 201, json=request_body(file="deny.exe"))
    assert (await call(client, "POST", at(REQUESTS, other["id"]) + "/deny", reviewer))["status"] == "denied"
    await call(client, "DELETE", at(REQUESTS, other["id"]), reviewer, 204)
    await call(client, "GET", f"{REQUESTS}/{other['id']}", reviewer, 404)


@pytest.mark.parametrize("form", FORMS)
async def test_elevations_in_every_form(client, token, form):
    headers, at = auth(token()), FORMS[form]
    created = await call(client, "POST", ELEVATIONS, headers, 201, json=event())
    url = at(ELEVATIONS, created["id"])
    assert await call(client, "GET", url, headers) == created
    assert (await call(client, "PATCH", url, headers, json={"policyName": "Renamed"}))["policyName"] == "Renamed"
    await call(client, "DELETE", url, headers, 204)
    await call(client, "GET", f"{ELEVATIONS}/{created['id']}", headers, 404)

