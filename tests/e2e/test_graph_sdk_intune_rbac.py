"""Intune RBAC as Intune does it, through the official SDK: the built-in role definitions, and a role assignment of
Endpoint Privilege Manager that gives its members the right to review elevation requests (the same right a PIM
assignment gives), until they leave it or it is deleted. Every change is audited."""

from __future__ import annotations

import uuid

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta.generated.device_management.elevation_requests.item.approve.approve_post_request_body import (
    ApprovePostRequestBody,
)
from msgraph_beta.generated.device_management.role_assignments.role_assignments_request_builder import (
    RoleAssignmentsRequestBuilder,
)
from msgraph_beta.generated.device_management.role_definitions.role_definitions_request_builder import (
    RoleDefinitionsRequestBuilder,
)
from msgraph_beta.generated.models.device_and_app_management_role_assignment import (
    DeviceAndAppManagementRoleAssignment,
)
from msgraph_beta.generated.models.device_and_app_management_role_definition import (
    DeviceAndAppManagementRoleDefinition,
)
from msgraph_beta.generated.models.elevation_request_state import ElevationRequestState
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.role_definition import RoleDefinition

from services.common.auth import CONFIG_READ, INTUNE_ADMINISTRATOR
from services.requests.intune_roles import RESOURCE_ACTIONS
from tests.claims import ROLE_ADMIN

from .test_graph_sdk_requests import ask
from .test_role_assignments import MANAGER, READER, assign, auth, call

RBAC_WRITE, RBAC_READ = "DeviceManagementRBAC.ReadWrite.All", "DeviceManagementRBAC.Read.All"
INTUNE_ADMIN = {"scopes": [RBAC_WRITE], "wids": [INTUNE_ADMINISTRATOR]}
VIEW, MODIFY = RESOURCE_ACTIONS["elevationRequests.view"], RESOURCE_ACTIONS["elevationRequests.modify"]
ASSIGNMENTS = "/beta/deviceManagement/roleAssignments"
BUILT_IN = {"Endpoint Privilege Manager": {VIEW, MODIFY}, "Endpoint Privilege Reader": {VIEW},
            "Endpoint Security Manager": {VIEW, MODIFY}, "Read Only Operator": {VIEW}}


def definitions_where(text: str) -> RequestConfiguration:
    return RequestConfiguration(
        query_parameters=RoleDefinitionsRequestBuilder.RoleDefinitionsRequestBuilderGetQueryParameters(filter=text))


def bound(role_id: str) -> dict:
    """The binding as Intune scripts send it."""
    return {"roleDefinition@odata.bind": f"https://graph.microsoft.com/beta/deviceManagement/roleDefinitions/{role_id}"}


async def refused(call_, status: int, text: str) -> None:
    with pytest.raises(ODataError) as err:
        await call_
    assert err.value.response_status_code == status, err.value.error.message
    assert text in err.value.error.message, err.value.error.message


async def approvable(sdk, token, requester, reviewer_oid: str) -> tuple[bool, str]:
    """Whether the user may approve a fresh request now (and the refusal's message)."""
    tag = uuid.uuid4().hex[:8]
    created = await requester.device_management.elevation_requests.post(ask(f"tool-{tag}.exe", f"SDK-{tag}"))
    reviewer = sdk(token(oid=reviewer_oid, upn="megan@contoso.example"))
    item = reviewer.device_management.elevation_requests.by_privilege_management_elevation_request_id(created.id)
    try:
        approved = await item.approve.post(ApprovePostRequestBody(reviewer_justification="Approved for INC-21"))
    except ODataError as err:
        assert err.response_status_code == 403, err.error.message
        return False, err.error.message
    assert approved.status == ElevationRequestState.Approved
    return True, ""


async def test_the_sdk_lists_the_built_in_role_definitions_intune_style(sdk, token):
    definitions = sdk(token(scopes=[RBAC_READ])).device_management.role_definitions
    every = (await definitions.get()).value
    assert {d.display_name: set(d.role_permissions[0].resource_actions[0].allowed_resource_actions)
            for d in every} == BUILT_IN
    assert all(isinstance(d, DeviceAndAppManagementRoleDefinition) and d.is_built_in and d.role_scope_tag_ids == ["0"]
               for d in every)
    [manager] = (await definitions.get(definitions_where("displayName eq 'Endpoint Privilege Manager'"))).value
    assert manager.id == MANAGER
    assert (await definitions.by_role_definition_id(MANAGER).get()).display_name == "Endpoint Privilege Manager"
    assert (await definitions.get(definitions_where("isBuiltIn eq false"))).value == []
    assert len((await definitions.get(definitions_where("isBuiltIn eq true"))).value) == len(BUILT_IN)
    assert await definitions.count.get() == len(BUILT_IN)
    await refused(definitions.get(definitions_where("rank eq 1")), 400, "rank")
    await refused(definitions.by_role_definition_id(str(uuid.uuid4())).get(), 404, "No role definition")


async def test_built_in_role_definitions_cannot_be_changed(sdk, token):
    definitions = sdk(token(**INTUNE_ADMIN)).device_management.role_definitions
    custom = DeviceAndAppManagementRoleDefinition(display_name="Custom reviewer")
    await refused(definitions.post(custom), 400, "Custom role definitions are not supported")
    await refused(definitions.by_role_definition_id(MANAGER).patch(custom), 403,
                  "Built-in role definitions cannot be modified")
    await refused(definitions.by_role_definition_id(MANAGER).delete(), 403,
                  "Built-in role definitions cannot be modified")
    reader = sdk(token(scopes=[RBAC_READ])).device_management.role_definitions  # the permission comes first
    await refused(reader.by_role_definition_id(MANAGER).delete(), 403, RBAC_WRITE)
    assert (await definitions.by_role_definition_id(MANAGER).get()).display_name == "Endpoint Privilege Manager"


async def test_an_intune_role_assignment_grants_the_right_to_review_until_it_is_deleted(sdk, token, client):
    admin = sdk(token(**INTUNE_ADMIN)).device_management.role_assignments
    requester = sdk(token(oid=str(uuid.uuid4()), upn="adele@contoso.example"))
    megan, nestor = str(uuid.uuid4()), str(uuid.uuid4())
    allowed, message = await approvable(sdk, token, requester, megan)
    assert not allowed and "Endpoint Privilege Manager" in message

    created = await admin.post(DeviceAndAppManagementRoleAssignment(
        display_name="EPM reviewers", description="Helpdesk tier 2", members=[megan.upper()],
        additional_data=bound(MANAGER)))
    assert (created.display_name, created.members, created.role_scope_tag_ids) == (
        "EPM reviewers", [megan], ["0"])
    item = admin.by_device_and_app_management_role_assignment_id(created.id)
    assert (await item.get()).description == "Helpdesk tier 2"
    assert (await item.role_definition.get()).id == MANAGER
    assert [a.id for a in (await admin.get()).value] == [created.id]
    assert await admin.count.get() == 1
    assert (await approvable(sdk, token, requester, megan))[0]
    assert not (await approvable(sdk, token, requester, nestor))[0]
    mine = await call(client, "GET", "/beta/privilegedRoleAssignments/myPermissions",
                      auth(token(oid=megan, upn="megan@contoso.example")))  # what the console reads
    assert "elevationRequests.modify" in mine["permissions"], mine

    patched = await item.patch(DeviceAndAppManagementRoleAssignment(members=[nestor]))
    assert (patched.members, patched.display_name) == ([nestor], "EPM reviewers")
    assert not (await approvable(sdk, token, requester, megan))[0]
    assert (await approvable(sdk, token, requester, nestor))[0]

    await item.delete()
    assert not (await approvable(sdk, token, requester, nestor))[0]
    await refused(item.get(), 404, "No role assignment")
    assert (await admin.get()).value == []

    audit = await call(client, "GET", "/beta/deviceManagement/auditEvents", auth(token(scopes=(), roles=[CONFIG_READ])))
    changes = [(e["activity"], e["resources"][0]["resourceId"]) for e in audit["value"]
               if e["resources"][0]["type"] == "deviceAndAppManagementRoleAssignment"]
    assert sorted(changes) == sorted((f"{verb} DeviceAndAppManagementRoleAssignment", created.id)
                                     for verb in ("Create", "Update", "Delete"))


async def test_the_sdk_model_binding_and_filters(sdk, token):
    admin = sdk(token(**INTUNE_ADMIN)).device_management.role_assignments
    reader_role = RoleDefinition(id=READER)  # the SDK's model serialises the navigation property as an object
    created = await admin.post(DeviceAndAppManagementRoleAssignment(
        display_name="EPM readers", members=[str(uuid.uuid4())], role_definition=reader_role))
    await admin.post(DeviceAndAppManagementRoleAssignment(display_name="Other", additional_data=bound(MANAGER)))
    where = RoleAssignmentsRequestBuilder.RoleAssignmentsRequestBuilderGetQueryParameters(
        filter="displayName eq 'EPM readers'")
    [found] = (await admin.get(RequestConfiguration(query_parameters=where))).value
    assert found.id == created.id
    item = admin.by_device_and_app_management_role_assignment_id(created.id)
    assert (await item.role_definition.get()).display_name == "Endpoint Privilege Reader"
    await refused(item.patch(DeviceAndAppManagementRoleAssignment(role_definition=RoleDefinition(id=MANAGER))),
                  400, "cannot be changed")
    assert (await item.role_definition.get()).id == READER


async def test_a_pim_assignment_and_an_intune_one_are_independent(sdk, token, client):
    admin = sdk(token(**INTUNE_ADMIN)).device_management.role_assignments
    requester = sdk(token(oid=str(uuid.uuid4()), upn="adele@contoso.example"))
    user = str(uuid.uuid4())
    pim = await assign(client, auth(token(**ROLE_ADMIN)), user)
    intune = await admin.post(DeviceAndAppManagementRoleAssignment(display_name="Both", members=[user],
                                                                   additional_data=bound(MANAGER)))
    await admin.by_device_and_app_management_role_assignment_id(intune.id).delete()
    assert (await approvable(sdk, token, requester, user))[0]  # the PIM assignment still holds
    await call(client, "GET", f"/beta/privilegedRoleAssignments/{pim['id']}", auth(token(**ROLE_ADMIN)))
    await call(client, "DELETE", f"/beta/privilegedRoleAssignments/{pim['id']}", auth(token(**ROLE_ADMIN)), 204)
    assert not (await approvable(sdk, token, requester, user))[0]


async def test_writes_take_an_administrator(sdk, token, client):
    someone = sdk(token(scopes=[RBAC_WRITE])).device_management.role_assignments  # the permission, no directory role
    await refused(someone.post(DeviceAndAppManagementRoleAssignment(display_name="Me", members=[str(uuid.uuid4())],
                                                                    additional_data=bound(MANAGER))),
                  403, "Intune Administrator")
    reader = sdk(token(scopes=[RBAC_READ])).device_management.role_assignments
    await refused(reader.post(DeviceAndAppManagementRoleAssignment(display_name="Me", additional_data=bound(MANAGER))),
                  403, RBAC_WRITE)
    app = auth(token(scopes=(), roles=[RBAC_WRITE]))  # an application's permission is enough, as in Graph
    created = await call(client, "POST", ASSIGNMENTS, app, 201, json={"displayName": "By app", **bound(MANAGER)})
    assert created["@odata.type"] == "#microsoft.graph.deviceAndAppManagementRoleAssignment"


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"members": [str(uuid.uuid4())], **bound(MANAGER)}, 400, "'displayName' is required"),
    ({"displayName": "X"}, 400, "role definition is required"),
    ({"displayName": "X", "members": ["megan"], **bound(MANAGER)}, 400, "'members' must be a GUID"),
    ({"displayName": "X", "members": "megan", **bound(MANAGER)}, 400, "'members' must be a list of strings"),
    ({"displayName": "X", "roleDefinition@odata.bind": "https://example.org/users/1"}, 400, "must be the URL"),
    ({"displayName": "X", **bound(str(uuid.uuid4()))}, 404, "No role definition"),
    ({"displayName": "X", "roleScopeTagIds": ["default"], **bound(MANAGER)}, 400, "scope tag ids"),
    ({"displayName": "X", "rank": 1, **bound(MANAGER)}, 400, "'rank' does not exist"),
    ({"displayName": "X" * 129, **bound(MANAGER)}, 400, "at most 128"),
    ({"@odata.type": "#microsoft.graph.user", "displayName": "X", **bound(MANAGER)}, 400, "not microsoft.graph"),
], ids=["no name", "no role", "member not a GUID", "members not a list", "bound elsewhere", "unknown role",
        "bad scope tag", "unknown property", "name too long", "other type"])
async def test_bad_assignments_are_refused_and_nothing_is_stored(client, token, body, status, text):
    admin = auth(token(**INTUNE_ADMIN))
    async with client.post(ASSIGNMENTS, headers=admin, json=body) as resp:
        error = (await resp.json())["error"]
        assert resp.status == status and text in error["message"], error
        assert set(error) == {"code", "message", "innerError"}
    assert (await call(client, "GET", ASSIGNMENTS, admin))["value"] == []


async def test_a_patch_that_changes_nothing_or_breaks_the_assignment_is_refused(client, token):
    admin = auth(token(**INTUNE_ADMIN))
    created = await call(client, "POST", ASSIGNMENTS, admin, 201, json={"displayName": "Keep", **bound(MANAGER)})
    path = f"{ASSIGNMENTS}/{created['id']}"
    for body, text in (({}, "names no property"), ({"displayName": ""}, "'displayName' is required"),
                       ({"members": ["x"]}, "must be a GUID")):
        async with client.patch(path, headers=admin, json=body) as resp:
            assert resp.status == 400 and text in (await resp.json())["error"]["message"]
    assert (await call(client, "GET", path, admin))["displayName"] == "Keep"
    await call(client, "PATCH", f"{ASSIGNMENTS}/{uuid.uuid4()}", admin, 404, json={"displayName": "Y"})
    await call(client, "DELETE", f"{ASSIGNMENTS}/not-an-id", admin, 404)
