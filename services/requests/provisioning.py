"""A tenant's Endpoint Privilege Management provisioning: enableEndpointPrivilegeManagement and
endpointPrivilegeManagementProvisioningStatus.

This system holds no Microsoft licences and is no Microsoft Managed Platform - Cloud, so the status says so, always:
licenseType notPaid, onboardedToMicrosoftManagedPlatform false. Enabling is recorded and audited, nothing more:
no feature waits for it (elevation requests work in every tenant).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg
from epm.requests.v1 import provisioning_service_pb2 as pb
from epm.requests.v1 import provisioning_service_pb2_grpc as pb_grpc

from ..common import errors
from ..common.auth import CONFIG_READ, CONFIG_WRITE, TokenVerifier, authorize
from ..common.timestamps import set_time
from . import roles
from .intune_roles import administrator
from .store import Actor, audit

READ = (CONFIG_READ, CONFIG_WRITE)
WRITE = (CONFIG_WRITE,)
RESOURCE_TYPE = "endpointPrivilegeManagementProvisioningStatus"
FIXED = {"license_type": ("licenseType", pb.LICENSE_TYPE_NOT_PAID,
                          "this system holds no Endpoint Privilege Management licences (notPaid)"),
         "onboarded_to_microsoft_managed_platform": ("onboardedToMicrosoftManagedPlatform", False,
                                                     "this system is not Microsoft Managed Platform - Cloud (false)")}
ENABLED_AT = "SELECT enabled_at FROM requests.epm_provisioning WHERE tenant_id = $1"
ENABLE = ("INSERT INTO requests.epm_provisioning (tenant_id, enabled_at) VALUES ($1, $2) "
          "ON CONFLICT (tenant_id) DO NOTHING")


class ProvisioningServicer(pb_grpc.ProvisioningServiceServicer):
    def __init__(self, pool: asyncpg.Pool, verifier: TokenVerifier, clock: Callable[[], datetime]):
        self.pool = pool
        self.verifier = verifier
        self.clock = clock

    async def _status(self, tenant_id: str) -> pb.ProvisioningStatus:
        enabled_at = await self.pool.fetchval(ENABLED_AT, tenant_id)
        status = pb.ProvisioningStatus(id=tenant_id, license_type=pb.LICENSE_TYPE_NOT_PAID,
                                       onboarded_to_microsoft_managed_platform=False, enabled=enabled_at is not None)
        if enabled_at is not None:
            set_time(status.enabled_date_time, enabled_at)
        return status

    async def GetProvisioningStatus(self, request, context):
        caller = await authorize(self.verifier, context.invocation_metadata(), READ)
        return await self._status(caller.tenant_id)

    async def UpdateProvisioningStatus(self, request, context):
        caller = await authorize(self.verifier, context.invocation_metadata(), WRITE)
        given = request.provisioning_status
        for field in request.update_mask:
            if field not in FIXED:
                raise errors.invalid(f"Property '{field}' cannot be changed.", property=field)
            name, value, why = FIXED[field]
            if getattr(given, field) != value:
                raise errors.invalid(f"Property '{name}' cannot be changed: {why}.", property=name)
        return await self._status(caller.tenant_id)

    async def EnableEndpointPrivilegeManagement(self, request, context):
        """An application, or a user in an administrator role (as for role assignments)."""
        caller = await administrator(self.verifier, context, WRITE)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.execute(ENABLE, caller.tenant_id, now) == "INSERT 0 1":
                actor = Actor("ItPro" if caller.delegated else "Application", caller.object_id, caller.upn,
                              roles._correlation_id(context))
                await audit(conn, caller.tenant_id, actor, now, "Enable EndpointPrivilegeManagement", "Action",
                            caller.tenant_id, resource_type=RESOURCE_TYPE, old_state="disabled", new_state="enabled")
        return pb.EnableEndpointPrivilegeManagementResponse()
