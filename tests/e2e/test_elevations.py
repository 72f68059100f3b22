"""privilegeManagementElevations through the real gateway, events service and PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from services.common import paging

PATH = "/beta/deviceManagement/privilegeManagementElevations"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def event(**overrides) -> dict:
    body = {
        "@odata.type": "#microsoft.graph.privilegeManagementElevation",
        "deviceId": "device-1",
        "deviceName": "LAPTOP-01",
        "eventDateTime": (NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "elevationType": "userConfirmedElevation",
        "filePath": r"C:\Program Files\Git\bin\git.exe",
        "upn": "adele@contoso.example",
        "userType": "azureAd",
        "productName": "Git",
        "companyName": "The Git Development Community",
        "fileVersion": "2.45.1",
        "internalName": "git",
        "fileDescription": "Git for Windows",
        "justification": "Installing dev tools",
        "hash": sha("git.exe"),
        "certificatePayload": "cert-hash",
        "result": 0,
        "processType": "parent",
        "ruleId": "rule-1",
        "policyId": "policy-1",
        "policyName": "Dev tools",
        "parentProcessName": "explorer.exe",
        "systemInitiatedElevation": False,
    }
    body.update(overrides)
    return body


async def post(http, body) -> dict:
    async with http.post(PATH, json=body) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def error_of(resp: aiohttp.ClientResponse, status: int) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body["error"]) == {"code", "message", "innerError"}
    assert body["error"]["innerError"]["request-id"] == resp.headers["request-id"]
    return body["error"]["message"]


async def test_create_returns_the_graph_entity_with_a_derived_id(http):
    body = event()
    created = await post(http, body)
    assert created["@odata.context"].endswith("/$metadata#deviceManagement/privilegeManagementElevations/$entity")
    assert created["@odata.type"] == "#microsoft.graph.privilegeManagementElevation"
    micros = int((NOW - timedelta(hours=1)).timestamp()) * 1_000_000
    expected_id = uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "urn:epm:privilegeManagementElevation"),
                             f"device-1|{micros}")
    assert created["id"] == str(expected_id)
    for key, value in body.items():
        if key not in ("@odata.type", "eventDateTime"):
            assert created[key] == value, key
    assert datetime.fromisoformat(created["eventDateTime"]) == NOW - timedelta(hours=1)


async def test_result_takes_every_int32_as_graph_does(http):
    """Exit codes and HRESULTs: E_ACCESSDENIED (0x80070005) is -2147024891 as an Int32."""
    for minute, result in enumerate((-2**31, -2147024891, -1, 0, 2**31 - 1)):
        at = (NOW - timedelta(hours=2, minutes=minute)).isoformat().replace("+00:00", "Z")
        created = await post(http, event(eventDateTime=at, result=result))
        assert created["result"] == result
    async with http.get(PATH, params={"$filter": "result lt 0", "$orderby": "result"}) as resp:
        assert [e["result"] for e in (await resp.json())["value"]] == [-2**31, -2147024891, -1]


async def test_resending_an_event_does_not_duplicate_it(http):
    first = await post(http, event())
    again = await post(http, event(deviceName="renamed"))
    assert again["id"] == first["id"] and again["deviceName"] == "LAPTOP-01"
    async with http.get(PATH + "/$count") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        assert await resp.text() == "1"


async def test_get_update_delete(http):
    created = await post(http, event(justification=None, elevationType="zeroTouchElevation"))
    assert created["justification"] is None
    async with http.get(f"{PATH}/{created['id']}") as resp:
        assert resp.status == 200
        assert (await resp.json())["elevationType"] == "zeroTouchElevation"
    for key_syntax in (f"{PATH}('{created['id']}')", f"{PATH}(%27{created['id']}%27)"):
        async with http.get(key_syntax) as resp:
            assert resp.status == 200 and (await resp.json())["id"] == created["id"]
    async with http.patch(f"{PATH}/{created['id']}", json={"result": 5, "policyName": "Renamed"}) as resp:
        assert resp.status == 200, await resp.text()
        updated = await resp.json()
    assert updated["result"] == 5 and updated["policyName"] == "Renamed" and updated["deviceName"] == "LAPTOP-01"
    async with http.get(f"{PATH}/{created['id']}") as resp:
        assert (await resp.json())["result"] == 5
    async with http.delete(f"{PATH}/{created['id']}") as resp:
        assert resp.status == 204
    async with http.get(f"{PATH}/{created['id']}") as resp:
        await error_of(resp, 404)
    async with http.delete(f"{PATH}/{created['id']}") as resp:
        await error_of(resp, 404)


async def test_patch_cannot_change_the_key_or_break_the_rules(http):
    created = await post(http, event())
    url = f"{PATH}/{created['id']}"
    async with http.patch(url, json={"deviceId": "other"}) as resp:
        assert "deviceId" in await error_of(resp, 400)
    async with http.patch(url, json={"justification": "x" * 257}) as resp:
        assert "justification" in await error_of(resp, 400)
    async with http.patch(url, json={"nope": 1}) as resp:
        assert "nope" in await error_of(resp, 400)
    async with http.patch(url, json={}) as resp:
        await error_of(resp, 400)
    async with http.get(url) as resp:
        assert (await resp.json())["justification"] == "Installing dev tools"


@pytest.mark.parametrize("overrides, named", [
    ({"elevationType": "sudo"}, "elevationType"),
    ({"userType": "robot"}, "userType"),
    ({"processType": 1}, "processType"),
    ({"justification": "x" * 257}, "justification"),
    ({"result": -2**31 - 1}, "result"),
    ({"result": 2**31}, "result"),
    ({"result": "0"}, "result"),
    ({"hash": "abc"}, "hash"),
    ({"eventDateTime": "yesterday"}, "eventDateTime"),
    ({"eventDateTime": None}, "eventDateTime"),
    ({"deviceId": ""}, "deviceId"),
    ({"systemInitiatedElevation": "yes"}, "systemInitiatedElevation"),
    ({"colour": "blue"}, "colour"),
    ({"@odata.type": "#microsoft.graph.user"}, "microsoft.graph.user"),
])
async def test_invalid_events_are_rejected_with_the_property_named(http, overrides, named):
    async with http.post(PATH, json=event(**overrides)) as resp:
        assert named in await error_of(resp, 400)
    async with http.get(PATH + "/$count") as resp:
        assert await resp.text() == "0"


async def test_unknownFutureValue_and_the_justification_limit_are_accepted(http):
    created = await post(http, event(elevationType="unknownFutureValue", justification="x" * 256, result=2**31 - 1))
    assert created["elevationType"] == "unknownFutureValue" and created["result"] == 2**31 - 1


async def test_bad_bodies(http):
    async with http.post(PATH, data="{", headers={"Content-Type": "application/json"}) as resp:
        await error_of(resp, 400)
    async with http.post(PATH, json=[1]) as resp:
        await error_of(resp, 400)
    async with http.post(PATH, data="x", headers={"Content-Type": "text/plain"}) as resp:
        await error_of(resp, 415)


async def seed(http, n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append(await post(http, event(
            deviceId=f"device-{i % 3}", eventDateTime=(NOW - timedelta(minutes=i)).isoformat(),
            elevationType=["userConfirmedElevation", "supportApprovedElevation", "zeroTouchElevation"][i % 3],
            result=i, upn=f"user{i % 2}@contoso.example", hash=sha(f"file{i % 4}"),
            justification="" if i % 2 else f"reason {i}", systemInitiatedElevation=i % 5 == 0)))
    return out


async def values(http, query: str) -> list[dict]:
    async with http.get(PATH + "?" + query) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["value"]


async def test_filters_on_every_kind_of_property(http):
    await seed(http, 12)
    cases = {
        "$filter=elevationType eq 'supportApprovedElevation'": 4,
        "$filter=elevationType ne 'supportApprovedElevation'": 8,
        "$filter=result ge 6 and result lt 9": 3,
        "$filter=not (result gt 2)": 3,
        "$filter=deviceId eq 'device-0' or deviceId eq 'device-1'": 8,
        "$filter=(deviceId eq 'device-0' or deviceId eq 'device-1') and result le 3": 3,
        "$filter=startswith(upn, 'USER1')": 6,
        "$filter=contains(deviceId, '-2')": 4,
        "$filter=deviceId in ('device-0', 'device-2')": 8,
        f"$filter=hash eq '{sha('file1').upper()}'": 3,
        "$filter=systemInitiatedElevation eq true": 3,
        "$filter=justification eq null": 6,
        f"$filter=eventDateTime gt {(NOW - timedelta(minutes=3)).isoformat().replace('+00:00', 'Z')}": 3,
        "filter=result eq 11": 1,  # the $ is optional on beta
    }
    for query, expected in cases.items():
        assert len(await values(http, query)) == expected, query


async def test_orderby_select_top_skip_and_count(http):
    await seed(http, 7)
    newest_first = await values(http, "")
    assert [e["result"] for e in newest_first] == list(range(7))
    by_result = await values(http, "$orderby=result desc&$select=result,deviceId")
    assert [e["result"] for e in by_result] == list(range(6, -1, -1))
    assert set(by_result[0]) == {"@odata.type", "id", "result", "deviceId"}
    mixed = await values(http, "$orderby=deviceId asc, result desc")
    assert [(e["deviceId"], e["result"]) for e in mixed] == [
        ("device-0", 6), ("device-0", 3), ("device-0", 0), ("device-1", 4), ("device-1", 1),
        ("device-2", 5), ("device-2", 2)]
    assert [e["result"] for e in await values(http, "$orderby=result&$skip=5")] == [5, 6]
    async with http.get(PATH + "?$count=true&$top=2&$filter=result gt 1") as resp:
        body = await resp.json()
    assert body["@odata.count"] == 5 and len(body["value"]) == 2 and "@odata.nextLink" in body


async def test_paging_follows_nextLink_to_the_end_without_gaps_or_repeats(http):
    created = await seed(http, 11)
    for order in ("", "&$orderby=deviceId,result desc", "&$orderby=upn desc, systemInitiatedElevation"):
        seen, url, pages = [], f"{PATH}?$top=3{order}", 0
        while url:
            async with http.get(url) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
            seen += [e["id"] for e in body["value"]]
            url = body.get("@odata.nextLink")
            pages += 1
            if url:
                assert "$skiptoken=" in url and url.startswith("http://127.0.0.1")
        assert pages == 4 and sorted(seen) == sorted(e["id"] for e in created), order


async def test_a_skiptoken_is_bound_to_its_query(http):
    await seed(http, 4)
    async with http.get(PATH + "?$top=2") as resp:
        link = (await resp.json())["@odata.nextLink"]
    token = link.split("$skiptoken=")[1]
    async with http.get(f"{PATH}?$top=2&$orderby=result&$skiptoken={token}") as resp:
        assert "skiptoken" in await error_of(resp, 400)
    async with http.get(f"{PATH}?$skiptoken=garbage") as resp:
        await error_of(resp, 400)
    forged = paging.encode_token([NOW.isoformat(), "not-a-uuid"], paging.query_key("", ""))
    async with http.get(f"{PATH}?$skiptoken={forged}") as resp:
        await error_of(resp, 400)


@pytest.mark.parametrize("query, named", [
    ("$filter=colour eq 'blue'", "colour"),
    ("$filter=result eq 'five'", "result"),
    ("$filter=elevationType eq 'sudo'", "sudo"),
    ("$filter=result eq", "end"),
    ("$filter=startswith(result, '1')", "startswith"),
    ("$orderby=colour", "colour"),
    ("$orderby=result sideways", "sideways"),
    ("$top=-1", "$top"),
    ("$top=abc", "$top"),
    ("$top=2147483648", "$top"),
    ("$skip=-3", "$skip"),
    ("$count=maybe", "$count"),
    ("$select=colour", "colour"),
    ("$expand=device", "$expand"),
    ("$search=git", "$search"),
    ("$frobnicate=1", "$frobnicate"),
    ("$top=1&top=2", "$top"),
])
async def test_invalid_query_options_are_400_naming_the_problem(http, query, named):
    async with http.get(PATH + "?" + query) as resp:
        assert named in await error_of(resp, 400), query


async def test_summary_for_reports(http):
    await seed(http, 12)
    async with http.get(PATH + "/summary?$top=2&$filter=result lt 12") as resp:
        assert resp.status == 200, await resp.text()
        summary = await resp.json()
    assert summary["total"] == 12
    assert {b["key"]: b["count"] for b in summary["byElevationType"]} == {
        "supportApprovedElevation": 4, "userConfirmedElevation": 4, "zeroTouchElevation": 4}
    assert sum(b["count"] for b in summary["byResult"]) == 12
    assert sum(b["count"] for b in summary["byDay"]) == 12
    assert len(summary["topFiles"]) == 2 and summary["topFiles"][0]["count"] == 3
    assert {b["key"] for b in summary["topUsers"]} == {"user0@contoso.example", "user1@contoso.example"}
    assert summary["topPublishers"] == [{"key": "The Git Development Community", "count": 12}]
    assert summary["topDevices"][0]["count"] == 4


async def test_headers_request_ids_and_unknown_routes(http):
    async with http.get(PATH, headers={"client-request-id": "my-id-1"}) as resp:
        assert resp.status == 200
        assert resp.headers["client-request-id"] == "my-id-1"
        uuid.UUID(resp.headers["request-id"])
    async with http.get("/beta/deviceManagement/nothingHere") as resp:
        await error_of(resp, 404)
    async with http.put(PATH) as resp:
        await error_of(resp, 405)


def at(hours: int) -> str:
    return (NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


async def test_ingest_stores_a_batch_and_names_each_rejected_event(http):
    batch = [event(eventDateTime=at(1)), event(colour="blue"), event(eventDateTime=at(2)),
             event(deviceId="", eventDateTime=at(3)), event(eventDateTime=at(1)), event(eventDateTime=at(4))]
    async with http.post(PATH + "/ingest", json={"value": batch}) as resp:
        assert resp.status == 200, await resp.text()
        result = await resp.json()
    assert (result["received"], result["inserted"], result["duplicates"]) == (6, 3, 1)
    assert [r["index"] for r in result["rejected"]] == [1, 3]
    assert "colour" in result["rejected"][0]["reason"] and "deviceId" in result["rejected"][1]["reason"]
    async with http.get(PATH, params={"$orderby": "eventDateTime desc"}) as resp:
        stored = (await resp.json())["value"]
    assert [e["eventDateTime"] for e in stored] == [at(1), at(2), at(4)]
    assert stored[0]["id"] == (await post(http, event(eventDateTime=at(1))))["id"]  # the same event, not a copy

    async with http.post(PATH + "/ingest", json={"value": batch}) as resp:  # delivered again: nothing new
        again = await resp.json()
    assert (again["inserted"], again["duplicates"], len(again["rejected"])) == (0, 4, 2)


@pytest.mark.parametrize("body", [{"value": []}, {"value": [{}] * 1001}, {"value": {}}, [event()], {"events": []}])
async def test_ingest_refuses_a_body_that_is_no_batch(http, body):
    async with http.post(PATH + "/ingest", json=body) as resp:
        assert "1 to 1000" in await error_of(resp, 400)
    async with http.get(PATH + "/$count") as resp:
        assert await resp.text() == "0"


OPTIONAL = ("productName", "companyName", "fileVersion", "internalName", "fileDescription", "justification",
            "certificatePayload", "ruleId", "policyId", "policyName", "parentProcessName")


async def test_optional_strings_are_null_when_absent_written_as_null_and_filtered_with_null(http):
    bare = await post(http, {k: v for k, v in event(deviceId="device-n").items() if k not in OPTIONAL})
    assert all(bare[name] is None for name in OPTIONAL), bare
    assert bare["deviceId"] == "device-n" and bare["upn"] == "adele@contoso.example"
    full = await post(http, event(deviceId="device-n", eventDateTime=(NOW - timedelta(hours=2)).isoformat()))
    async with http.patch(f"{PATH}/{full['id']}", json={"ruleId": None, "productName": "Git 2"}) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["ruleId"] is None
    fetched = {k: v for k, v in bare.items() if not k.startswith("@odata.context")}
    async with http.patch(f"{PATH}/{bare['id']}", json={**fetched, "policyName": "Sent back"}) as resp:
        assert resp.status == 200, await resp.text()  # its nulls are the stored values: not changes
    cases = {
        "productName eq null": {bare["id"]},
        "productName ne null": {full["id"]},
        "ruleId eq null": {bare["id"], full["id"]},
        "policyId in (null, 'nothing')": {bare["id"]},
        "companyName eq ''": set(),  # no value is '': an absent one is null
        "tolower(parentProcessName) eq 'explorer.exe'": {full["id"]},
    }
    for query, expected in cases.items():
        found = await values(http, f"$filter=deviceId eq 'device-n' and ({query})")
        assert {e["id"] for e in found} == expected, query
