"""A tenant's Endpoint Privilege Management provisioning through the official SDK: the status says what this system
is (no Microsoft licence: notPaid; not Microsoft Managed Platform), and enabling is recorded once and audited."""

from __future__ import annotations

import uuid

from msgraph_beta.generated.models.endpoint_privilege_management_provisioning_status import (
    EndpointPrivilegeManagementProvisioningStatus,
)
from msgraph_beta.generated.models.license_type import LicenseType

from services.common.auth import CONFIG_READ, CONFIG_WRITE, INTUNE_ADMINISTRATOR

from .test_graph_sdk_intune_rbac import refused
from .test_role_assignments import auth, call

INTUNE_ADMIN = {"scopes": [CONFIG_WRITE], "wids": [INTUNE_ADMINISTRATOR]}
ENABLE = "/beta/deviceManagement/enableEndpointPrivilegeManagement"
STATUS = "/beta/deviceManagement/endpointPrivilegeManagementProvisioningStatus"


async def test_enabling_is_recorded_once_and_audited(sdk, token, client, tenant):
    management = sdk(token(**INTUNE_ADMIN)).device_management
    before = await management.endpoint_privilege_management_provisioning_status.get()
    assert (before.license_type, before.onboarded_to_microsoft_managed_platform, before.id) == (
        LicenseType.NotPaid, False, tenant)
    assert before.additional_data["@epm.provisioning"] == {"enabled": False, "enabledDateTime": None}

    assert await management.enable_endpoint_privilege_management.post() is None
    after = await management.endpoint_privilege_management_provisioning_status.get()
    assert after.additional_data["@epm.provisioning"]["enabled"] is True
    enabled_at = after.additional_data["@epm.provisioning"]["enabledDateTime"]
    await management.enable_endpoint_privilege_management.post()  # again: nothing changes
    again = await management.endpoint_privilege_management_provisioning_status.get()
    assert again.additional_data["@epm.provisioning"] == {"enabled": True, "enabledDateTime": enabled_at}

    audit = await call(client, "GET", "/beta/deviceManagement/auditEvents", auth(token(scopes=(), roles=[CONFIG_READ])))
    assert [e["activity"] for e in audit["value"]] == ["Enable EndpointPrivilegeManagement"]
    other = await call(client, "GET", STATUS, auth(token(tenant=str(uuid.uuid4()))))  # another tenant: its own
    assert other["@epm.provisioning"]["enabled"] is False


async def test_enabling_takes_an_administrator_and_no_parameters(sdk, token, client):
    someone = sdk(token(scopes=[CONFIG_WRITE])).device_management  # the permission, no directory role
    await refused(someone.enable_endpoint_privilege_management.post(), 403, "Intune Administrator")
    reader = auth(token(scopes=(), roles=[CONFIG_READ]))
    await call(client, "POST", ENABLE, reader, 403)
    app = auth(token(scopes=(), roles=[CONFIG_WRITE]))
    await call(client, "POST", ENABLE, app, 400, json={"licenseType": "paid"})
    assert (await call(client, "GET", STATUS, reader))["@epm.provisioning"]["enabled"] is False
    await call(client, "POST", ENABLE, app, 204, json={})
    assert (await call(client, "GET", STATUS, reader))["@epm.provisioning"]["enabled"] is True


async def test_the_status_is_what_this_system_is(sdk, token, client):
    status = sdk(token(**INTUNE_ADMIN)).device_management.endpoint_privilege_management_provisioning_status
    fetched = await status.get()
    patched = await status.patch(fetched)  # sent back as it came: accepted
    assert patched.license_type == LicenseType.NotPaid
    await refused(status.patch(EndpointPrivilegeManagementProvisioningStatus(license_type=LicenseType.Paid)), 400,
                  "no Endpoint Privilege Management licences")
    await refused(status.patch(EndpointPrivilegeManagementProvisioningStatus(
        onboarded_to_microsoft_managed_platform=True)), 400, "not Microsoft Managed Platform")
    admin = auth(token(**INTUNE_ADMIN))
    for body, text in (({}, "names no property"), ({"enabled": True}, "enabled"), ({"licenseType": "gold"}, "gold")):
        async with client.patch(STATUS, headers=admin, json=body) as resp:
            assert resp.status == 400 and text in (await resp.json())["error"]["message"]
    assert (await status.get()).license_type == LicenseType.NotPaid
