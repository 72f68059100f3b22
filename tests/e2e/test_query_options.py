"""OData query options as Graph documents them, through the real gateway, services and PostgreSQL: option names in
any case, functions in $filter, a $top above the page size, $search with ConsistencyLevel, $expand."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest

from gateway import query

from .test_elevation_requests import PATH as REQUESTS
from .test_elevation_requests import call, create, failure
from .test_elevations import NOW, PATH, error_of, event, post

EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.fixture
async def client(gateway_url, requests_service):
    """A client without a default token: every call names who makes it."""
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


async def page_of(http, url: str, headers: dict | None = None) -> dict:
    async with http.get(url, headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def names(http, params: dict | str, headers: dict | None = None) -> list[str]:
    async with http.get(PATH, params=params, headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        return [e["deviceName"] for e in (await resp.json())["value"]]


async def three_events(http) -> None:
    for i, (device, path, upn) in enumerate([
            ("LAPTOP-Alpha", r"C:\Tools\Alpha.exe", "adele@contoso.example"),
            ("laptop-beta", r"C:\Tools\beta-setup.exe", "ben@contoso.example"),
            ("DESKTOP-Gamma", r"D:\Apps\gamma.exe", "adele@fabrikam.example")]):
        await post(http, event(deviceId=f"d{i}", deviceName=device, filePath=path, upn=upn, result=i,
                               eventDateTime=(NOW - timedelta(days=i)).isoformat()))


# --- option names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["$FILTER=result eq 1&$TOP=5", "$Filter=result eq 1&$Top=5",
                                      "FILTER=result eq 1&Top=5", "filter=result eq 1&top=5"])
async def test_option_names_are_case_insensitive(http, spelling):
    await three_events(http)
    assert await names(http, spelling) == ["laptop-beta"]


@pytest.mark.parametrize("twice", ["$filter=result eq 1&$FILTER=result eq 2", "$top=1&Top=1", "$Count=true&count=true"])
async def test_an_option_given_twice_in_any_case_is_400(http, twice):
    async with http.get(f"{PATH}?{twice}") as resp:
        assert "was specified more than once" in await error_of(resp, 400)


# --- functions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filter, expected", [
    ("tolower(deviceName) eq 'laptop-alpha'", ["LAPTOP-Alpha"]),
    ("toupper(deviceName) eq 'LAPTOP-BETA'", ["laptop-beta"]),
    ("startswith(tolower(deviceName), 'laptop')", ["LAPTOP-Alpha", "laptop-beta"]),
    ("endswith(toupper(filePath), '.EXE') and length(deviceName) eq 13", ["DESKTOP-Gamma"]),
    ("length(deviceName) lt 12", ["laptop-beta"]),
    (f"date(eventDateTime) eq {(NOW - timedelta(days=2)).date().isoformat()}", ["DESKTOP-Gamma"]),
    (f"date(eventDateTime) lt {(NOW - timedelta(days=1)).date().isoformat()}", ["DESKTOP-Gamma"]),
])
async def test_filter_functions_select_the_right_rows(http, filter, expected):
    await three_events(http)
    assert sorted(await names(http, {"$filter": filter})) == expected


async def test_filter_date_parts_match_the_stored_time(http):
    when = NOW - timedelta(days=40)
    await post(http, event(deviceName="OLD", eventDateTime=when.isoformat()))
    await post(http, event(deviceName="NEW", eventDateTime=NOW.isoformat()))
    parts = " and ".join(f"{part}(eventDateTime) eq {getattr(when, part)}"
                         for part in ("year", "month", "day", "hour", "minute"))
    assert await names(http, {"$filter": parts}) == ["OLD"]


@pytest.mark.parametrize("filter, named", [
    ("elevationType has microsoft.graph.privilegeManagementElevationType'zeroTouchElevation'",
     "The property 'elevationType' is not a flags enum"),
    ("tolower(result) eq 'a'", "tolower() needs a string property but 'result' is of type int"),
    ("length(deviceName) eq 'a'", "length(deviceName)"),
    ("date(eventDateTime) eq 2026-02-30", "2026-02-30"),
])
async def test_filter_function_errors_are_400_naming_the_problem(http, filter, named):
    async with http.get(PATH, params={"$filter": filter}) as resp:
        assert named in await error_of(resp, 400)


# --- $top above the page size --------------------------------------------------------------------------------


async def ingest(http, count: int, start: int = 0) -> None:
    for first in range(start, start + count, 1000):
        batch = [event(deviceName=f"dev-{i:05}", eventDateTime=(NOW - timedelta(seconds=i)).isoformat())
                 for i in range(first, min(first + 1000, start + count))]
        async with http.post(PATH + "/ingest", json={"value": batch}) as resp:
            assert (await resp.json())["inserted"] == len(batch)


async def follow(http, url: str, headers: dict | None = None) -> tuple[list[dict], list[int]]:
    """Every item of `url` and its nextLinks, and each page's size."""
    items, sizes = [], []
    while url:
        page = await page_of(http, url, headers)
        items += page["value"]
        sizes.append(len(page["value"]))
        url = page.get("@odata.nextLink", "")
    return items, sizes


async def test_a_top_above_the_page_size_pages_until_it_is_reached(http):
    await ingest(http, 2100)
    items, sizes = await follow(http, f"{PATH}?$top=1500&$orderby=deviceName&$count=true")
    assert sizes == [query.MAX_TOP, 1500 - query.MAX_TOP]
    assert [e["deviceName"] for e in items] == [f"dev-{i:05}" for i in range(1500)]  # in order, each once


async def test_a_top_above_what_there_is_returns_everything(http):
    await ingest(http, 1200)
    items, sizes = await follow(http, f"{PATH}?$top=5000&$filter=startswith(deviceName, 'dev-0')")
    assert sizes == [query.MAX_TOP, 1200 - query.MAX_TOP] and len({e["id"] for e in items}) == 1200


async def test_a_large_top_refuses_a_forged_skiptoken(http):
    await ingest(http, 1000)
    first = await page_of(http, f"{PATH}?$top=1200")
    token = first["@odata.nextLink"].rsplit("$skiptoken=", 1)[1]
    assert token.startswith("201.")
    for forged in ("5000." + token.split(".", 1)[1], token.split(".", 1)[1], "1.forged"):
        async with http.get(PATH, params={"$top": "1200", "$skiptoken": forged}) as resp:
            assert "$skiptoken" in await error_of(resp, 400)


# --- $search ------------------------------------------------------------------------------------------------


async def test_search_needs_the_consistency_level_header(http):
    await three_events(http)
    async with http.get(PATH, params={"$search": '"alpha"'}) as resp:
        assert await error_of(resp, 400) == ("Request with $search query parameter only works through MSGraph with "
                                             "a special request header: 'ConsistencyLevel: eventual'")


@pytest.mark.parametrize("search, expected", [
    ('"alpha"', ["LAPTOP-Alpha"]),  # the file path, case-insensitively
    ('"LAPTOP"', ["LAPTOP-Alpha", "laptop-beta"]),  # the device name
    ('"fabrikam"', ["DESKTOP-Gamma"]),  # the upn
    ('"upn:adele"', ["DESKTOP-Gamma", "LAPTOP-Alpha"]),
    ('"deviceName:beta" OR "filePath:gamma"', ["DESKTOP-Gamma", "laptop-beta"]),
    ('"adele" AND "tools"', ["LAPTOP-Alpha"]),
    ('"C:\\Tools"', ["LAPTOP-Alpha", "laptop-beta"]),
])
async def test_search_finds_substrings_of_the_searchable_properties(http, search, expected):
    await three_events(http)
    assert sorted(await names(http, {"$search": search}, EVENTUAL)) == expected


async def test_search_combines_with_filter_orderby_count_and_the_count_path(http):
    await three_events(http)
    page = await page_of(http, f'{PATH}?$search="laptop" OR "gamma"&$filter=result ge 1&$orderby=result desc'
                               "&$count=true", EVENTUAL)
    assert [e["deviceName"] for e in page["value"]] == ["DESKTOP-Gamma", "laptop-beta"]
    assert page["@odata.count"] == 2
    async with http.get(PATH + '/$count?$search="laptop"', headers=EVENTUAL) as resp:
        assert await resp.text() == "2"


async def test_search_pages_with_its_terms_in_the_next_link(http):
    await ingest(http, 30)
    items, sizes = await follow(http, f'{PATH}?$search="dev-0001"&$top=4&$orderby=deviceName', EVENTUAL)
    assert [e["deviceName"] for e in items] == [f"dev-{i:05}" for i in range(10, 20)] and sizes == [4, 4, 2]


@pytest.mark.parametrize("search, named", [
    ("alpha", "expected a quoted term"),
    ('"a" "b"', "expected AND or OR"),
    ('"a" OR', "must end with a quoted term"),
    ('""', "empty"),
])
async def test_unsupported_search_syntax_is_400(http, search, named):
    async with http.get(PATH, params={"$search": search}, headers=EVENTUAL) as resp:
        assert named in await error_of(resp, 400)


async def test_search_on_a_resource_without_searchable_properties_is_400(http):
    async with http.get("/beta/deviceManagement/managedDevices", params={"$search": '"x"'}, headers=EVENTUAL) as resp:
        assert "'$search' is not supported on this resource" in await error_of(resp, 400)


async def test_search_on_elevation_requests_looks_where_a_reviewer_looks(client, person, manager):
    alice, bob = person("alice"), person("bob")
    made = {
        "name": await create(client, alice, device="d1", file="putty.exe"),
        "upn": await create(client, bob, device="d2", file="x.exe"),
        "device": await create(client, alice, device="d3", file="y.exe", deviceName="FINANCE-07"),
        "why": await create(client, alice, device="d4", file="z.exe", requestJustification="Quarterly close"),
    }

    async def found(search: str) -> set[str]:
        page = await call(client, "GET", f"{REQUESTS}?$search={search}", {**manager.headers, **EVENTUAL})
        return {r["id"] for r in page["value"]}

    assert await found('"PuTTY"') == {made["name"]["id"]}
    assert await found(f'"{bob.upn.split("@")[0]}"') == {made["upn"]["id"]}
    assert await found('"finance"') == {made["device"]["id"]}
    assert await found('"quarterly"') == {made["why"]["id"]}
    assert await found('"requestedByUserPrincipalName:bob" OR "deviceName:finance"') == {
        made["upn"]["id"], made["device"]["id"]}
    count = await call(client, "GET", f'{REQUESTS}?$search="alice"&$count=true&$top=1',
                       {**manager.headers, **EVENTUAL})
    assert count["@odata.count"] == 3 and len(count["value"]) == 1 and "@odata.nextLink" in count
    await failure(client, "GET", f'{REQUESTS}?$search="putty"', manager, 400)  # no ConsistencyLevel


# --- $expand ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [PATH + "?$expand=device", PATH + "?$EXPAND=device", PATH + "/{id}?$expand=device"])
async def test_expand_of_an_unknown_navigation_is_400_naming_it(http, url):
    created = await post(http, event())
    async with http.get(url.replace("{id}", created["id"])) as resp:
        assert await error_of(resp, 400) == "Could not find a navigation property named 'device' for $expand."
