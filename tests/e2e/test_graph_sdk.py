"""The official msgraph-beta-sdk, unchanged, against the gateway: create, filter, page, get, update, delete."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.device_management.privilege_management_elevations.privilege_management_elevations_request_builder import (  # noqa: E501
    PrivilegeManagementElevationsRequestBuilder,
)
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.privilege_management_elevation import PrivilegeManagementElevation
from msgraph_beta.generated.models.privilege_management_elevation_type import PrivilegeManagementElevationType
from msgraph_beta.generated.models.privilege_management_end_user_type import PrivilegeManagementEndUserType

from .test_elevations import sha

NOW = datetime.now(timezone.utc).replace(microsecond=0)


class StaticToken(AccessTokenProvider):
    def __init__(self, token: str, host: str):
        self.token, self.host = token, host

    async def get_authorization_token(self, uri, additional_authentication_context=None) -> str:
        return self.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([self.host])


@pytest.fixture
def graph(gateway_url, token) -> GraphServiceClient:
    provider = StaticToken(token(), gateway_url.removeprefix("http://"))
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(provider))
    adapter.base_url = f"{gateway_url}/beta"
    return GraphServiceClient(request_adapter=adapter)


def elevation(i: int) -> PrivilegeManagementElevation:
    return PrivilegeManagementElevation(
        device_id=f"sdk-device-{i % 2}", device_name="SDK-PC", event_date_time=NOW - timedelta(minutes=i),
        elevation_type=PrivilegeManagementElevationType.SupportApprovedElevation if i % 2
        else PrivilegeManagementElevationType.UserConfirmedElevation,
        user_type=PrivilegeManagementEndUserType.AzureAd, upn="megan@contoso.example",
        file_path=r"C:\tools\setup.exe", hash=sha(f"sdk{i}"), result=i, justification=f"ticket {i}",
        system_initiated_elevation=False,
    )


async def test_the_official_sdk_works_unchanged(graph):
    elevations = graph.device_management.privilege_management_elevations
    created = [await elevations.post(elevation(i)) for i in range(5)]
    assert created[1].elevation_type == PrivilegeManagementElevationType.SupportApprovedElevation
    assert created[0].event_date_time == NOW and created[0].id

    query = PrivilegeManagementElevationsRequestBuilder.PrivilegeManagementElevationsRequestBuilderGetQueryParameters(
        filter="elevationType eq 'supportApprovedElevation'", orderby=["result desc"], top=1, count=True)
    page = await elevations.get(RequestConfiguration(query_parameters=query))
    assert page.odata_count == 2 and [e.result for e in page.value] == [3]
    results = [e.result for e in page.value]
    while page.odata_next_link:
        page = await elevations.with_url(page.odata_next_link).get()
        results += [e.result for e in page.value]
    assert results == [3, 1]
    assert await elevations.count.get() == 5

    item = elevations.by_privilege_management_elevation_id(created[2].id)
    fetched = await item.get()
    assert fetched.upn == "megan@contoso.example" and fetched.user_type == PrivilegeManagementEndUserType.AzureAd
    updated = await item.patch(PrivilegeManagementElevation(policy_name="Patched by SDK", result=42))
    assert updated.policy_name == "Patched by SDK" and updated.result == 42 and updated.device_id == "sdk-device-0"
    await item.delete()
    with pytest.raises(ODataError) as err:
        await item.get()
    assert err.value.response_status_code == 404 and err.value.error.code == "ResourceNotFound"
    assert await elevations.count.get() == 4
