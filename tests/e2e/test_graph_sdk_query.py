"""The official msgraph-beta-sdk's request configuration against the gateway: $filter with functions, $search with
the ConsistencyLevel header, and a $top above the page size followed through odata_next_link."""

from __future__ import annotations

from datetime import timedelta

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta.generated.device_management.privilege_management_elevations.privilege_management_elevations_request_builder import (  # noqa: E501
    PrivilegeManagementElevationsRequestBuilder,
)
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError

from gateway import query

from .test_elevations import NOW, PATH, event
from .test_graph_sdk import graph  # noqa: F401 (a fixture)

Query = PrivilegeManagementElevationsRequestBuilder.PrivilegeManagementElevationsRequestBuilderGetQueryParameters


async def ingest(http, devices: list[str]) -> None:
    """Stores one event per device name, a second apart, in batches of the gateway's ingest extension."""
    for first in range(0, len(devices), 1000):
        batch = [event(deviceName=name, eventDateTime=(NOW - timedelta(seconds=first + i)).isoformat())
                 for i, name in enumerate(devices[first:first + 1000])]
        async with http.post(PATH + "/ingest", json={"value": batch}) as resp:
            assert (await resp.json())["inserted"] == len(batch)


def eventual(parameters: Query) -> RequestConfiguration:
    config = RequestConfiguration(query_parameters=parameters)
    config.headers.add("ConsistencyLevel", "eventual")
    return config


async def test_filter_with_tolower_through_the_sdk(graph, http):  # noqa: F811 (the fixture)
    await ingest(http, ["FINANCE-01", "finance-02", "HR-01"])
    elevations = graph.device_management.privilege_management_elevations
    page = await elevations.get(RequestConfiguration(query_parameters=Query(
        filter="startswith(tolower(deviceName), 'finance') and length(deviceName) eq 10", orderby=["deviceName"])))
    assert [e.device_name for e in page.value] == ["FINANCE-01", "finance-02"]


async def test_search_with_the_consistency_level_header_through_the_sdk(graph, http):  # noqa: F811
    await ingest(http, ["FINANCE-01", "finance-02", "HR-01"])
    elevations = graph.device_management.privilege_management_elevations
    page = await elevations.get(eventual(Query(search='"finance"', count=True, orderby=["deviceName desc"])))
    assert [e.device_name for e in page.value] == ["finance-02", "FINANCE-01"] and page.odata_count == 2
    with pytest.raises(ODataError) as caught:
        await elevations.get(RequestConfiguration(query_parameters=Query(search='"finance"')))
    assert caught.value.response_status_code == 400
    assert caught.value.error.message == query.CONSISTENCY_MESSAGE


async def test_top_above_the_page_size_through_the_sdk(graph, http):  # noqa: F811
    names = [f"pc-{i:04}" for i in range(1100)]
    await ingest(http, names)
    elevations = graph.device_management.privilege_management_elevations
    page = await elevations.get(RequestConfiguration(query_parameters=Query(top=1050, orderby=["deviceName"])))
    seen, sizes = [e.device_name for e in page.value], [len(page.value)]
    while page.odata_next_link:
        page = await elevations.with_url(page.odata_next_link).get()
        seen += [e.device_name for e in page.value]
        sizes.append(len(page.value))
    assert sizes == [query.MAX_TOP, 1050 - query.MAX_TOP] and seen == names[:1050]
