"""File reputation through the real gateway, requests, events and reputation services and PostgreSQL, on the real
LOLDrivers and LOLBAS feeds: the analysis of an elevation request, of a file by hash and by description, batch
lookups, publisher rules and their effect, the feed list, and the verdict the requests service attaches to every
new request (best effort: a reputation service that is down never blocks creation)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from services.requests import app as requests_app
from tests.claims import ROLE_ADMIN

from .. import feed_data
from ..certificates import certificate_chain
from .people import Person
from .test_elevation_requests import CONFIG_READ, CONFIG_WRITE, DETAIL_TYPE, TYPE, call, graph_view
from .test_elevations import error_of, sha
from .test_role_assignments import MANAGER, READER, assign, auth

REQUESTS = "/beta/deviceManagement/elevationRequests"
REPUTATIONS = "/beta/security/fileReputations"
RULES = "/beta/security/publisherRules"
FEEDS = "/beta/security/reputationFeeds"
ANALYSIS_TYPE = "#microsoft.graph.fileAnalysis"
ANALYSIS_KEYS = {"@odata.context", "@odata.type", "id", "fileHash", "appReputation", "sources", "publisher",
                 "userRisk", "deviceRisk", "prevalence", "verdict", "riskScore", "recommendation", "evidence",
                 "summary", "analyzedDateTime", "unavailable"}
SOURCE_KEYS = {"@odata.type", "feed", "feedVersion", "tenantOwned", "label", "matchedBy", "name", "title",
               "reference", "tags"}
EVIDENCE_KEYS = {"@odata.type", "signal", "source", "observed", "contribution", "reference"}
RISK_KEYS = {"@odata.type", "score", "level", "factors"}
RULE_KEYS = {"@odata.type", "id", "kind", "value", "blocked", "displayName", "note", "createdDateTime"}
FEED_KEYS = {"@odata.type", "id", "name", "format", "shared", "version", "sourceVersion", "records", "keys",
             "problemCount", "digest", "importedDateTime"}
ANNOTATION_KEYS = {"verdict", "riskScore", "recommendation", "appReputation", "analyzedDateTime"}
REPUTATIONS_ENUM = {"unknown", "knownGood", "knownMalicious", "vulnerableDriver", "dualUse"}
LEVELS = {"none", "low", "medium", "high"}
POWERSHELL = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
VERDICT_DEADLINE = 10.0  # seconds the attached verdict may take to appear


# --- fixtures and helpers -----------------------------------------------------------------------------------

@pytest.fixture
async def client(gateway_url, shared_feeds):
    """A client without a default token (every call names who makes it), on the real shared feeds."""
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


@pytest.fixture
def full(token) -> dict:
    """This tenant's full-access delegated token (no Intune role)."""
    return auth(token())


@pytest.fixture
def curator(manager) -> dict:
    """A user who may change what reviewers rely on (publisher rules): the Intune modify right."""
    return manager.headers


@pytest.fixture
def app(token) -> dict:
    """An application token: its Graph permission is the whole grant (it may read any history)."""
    return auth(token(scopes=(), roles=[CONFIG_WRITE]))


def malicious() -> dict:
    """A real LOLDrivers sample of a malicious driver."""
    return feed_data.driver_samples()["malicious"][0]


def vulnerable() -> dict:
    return feed_data.driver_samples()["vulnerable driver"][0]


def driver_reference(sample: dict) -> str:
    return f"https://www.loldrivers.io/drivers/{sample['Id']}/"


def request_body(file_hash: str, device: str = "device-1", file_name: str = "RWTKrl.sys", **detail) -> dict:
    return {
        "@odata.type": TYPE, "requestedOnDeviceId": device, "deviceName": "LAPTOP-01",
        "requestJustification": "The vendor's installer needs it",
        "applicationDetail": {"@odata.type": DETAIL_TYPE, "fileHash": file_hash, "fileName": file_name,
                              "filePath": r"C:\Program Files\Vendor", **detail},
    }


async def graph_error(resp: aiohttp.ClientResponse, status: int, code: str) -> str:
    """Checks a Graph error body ({"error": {"code", "message", "innerError": {...}}}); returns its message."""
    message = await error_of(resp, status)
    body = await resp.json()
    assert resp.content_type == "application/json"
    assert body["error"]["code"] == code
    assert set(body["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
    assert message
    return message


async def failure(client, method: str, path: str, who, status: int, code: str, content_type: str = "",
                  **kwargs) -> str:
    """The message of the Graph error of a call expected to fail; `content_type` sends `data` as that type."""
    headers = dict(who.headers if isinstance(who, Person) else who)
    if content_type:
        headers["Content-Type"] = content_type
    async with client.request(method, path, headers=headers, **kwargs) as resp:
        return await graph_error(resp, status, code)


async def annotated(client, who, request_id: str, deadline: float = VERDICT_DEADLINE) -> dict:
    """GET the request until the attached verdict (@epm.reputation) shows; fails after `deadline` seconds."""
    until = time.monotonic() + deadline
    while True:
        found = await call(client, "GET", f"{REQUESTS}/{request_id}", who)
        if "@epm.reputation" in found:
            return found
        assert time.monotonic() < until, f"no verdict on {request_id} after {deadline} s: {found}"
        await asyncio.sleep(0.1)


def check_analysis(analysis: dict) -> None:
    """The Graph shape every analysis has, whatever the file."""
    assert set(analysis) == ANALYSIS_KEYS
    assert analysis["@odata.type"] == ANALYSIS_TYPE
    assert "/beta/$metadata#" in analysis["@odata.context"]
    assert analysis["@odata.context"].endswith("fileReputations/$entity")
    assert analysis["id"] == analysis["fileHash"] == analysis["fileHash"].lower()
    assert analysis["appReputation"] in REPUTATIONS_ENUM
    assert analysis["verdict"] in {"unknown", "clean", "suspicious", "malicious"}
    assert analysis["recommendation"] in {"investigate", "approve", "deny"}
    assert isinstance(analysis["riskScore"], int) and 0 <= analysis["riskScore"] <= 100
    assert analysis["analyzedDateTime"].endswith("Z")
    assert analysis["publisher"]["@odata.type"] == "#microsoft.graph.publisherAssessment"
    assert analysis["publisher"]["trust"] in {"unknown", "known", "trusted", "untrusted", "blocked"}
    for source in analysis["sources"]:
        assert set(source) == SOURCE_KEYS and source["@odata.type"] == "#microsoft.graph.sourceMatch"
    for item in analysis["evidence"]:
        assert set(item) == EVIDENCE_KEYS and item["@odata.type"] == "#microsoft.graph.evidence"
    contributions = [abs(e["contribution"]) for e in analysis["evidence"]]
    assert contributions == sorted(contributions, reverse=True)  # largest first
    for risk in (analysis["userRisk"], analysis["deviceRisk"]):
        if risk is not None:
            assert set(risk) == RISK_KEYS and risk["@odata.type"] == "#microsoft.graph.riskAssessment"
            assert risk["level"] in LEVELS and 0 <= risk["score"] <= 100
    assert isinstance(analysis["summary"], str)


def without_context(entity: dict) -> dict:
    """An entity without @odata.context (which names the gateway it came through)."""
    return {k: v for k, v in entity.items() if k != "@odata.context"}


def signals(analysis: dict) -> dict[str, int]:
    return {e["signal"]: e["contribution"] for e in analysis["evidence"]}


def check_malicious(analysis: dict, sample: dict) -> None:
    check_analysis(analysis)
    assert analysis["fileHash"] == sample["SHA256"].lower()
    assert (analysis["appReputation"], analysis["verdict"], analysis["recommendation"]) == (
        "knownMalicious", "malicious", "deny")
    assert analysis["riskScore"] >= 95
    source = next(s for s in analysis["sources"] if s["label"] == "malicious" and s["feed"] == "loldrivers")
    assert (source["feed"], source["matchedBy"], source["tenantOwned"]) == ("loldrivers", "sha256", False)
    assert source["reference"] == driver_reference(sample)
    assert source["feedVersion"] == feed_data.snapshot(feed_data.loldrivers())
    evidence = next(e for e in analysis["evidence"] if e["signal"] == "feed.malicious")
    assert evidence["contribution"] > 0 and evidence["reference"].startswith("https://www.loldrivers.io/")
    assert analysis["summary"].startswith("Known malicious: LOLDrivers lists it as malicious")
    assert analysis["summary"].endswith(f"Risk {analysis['riskScore']}/100: deny.")


# --- elevationRequests/{id}/analyze ---------------------------------------------------------------------------

async def test_a_reviewer_gets_the_analysis_of_a_request(client, requester, manager, reader, gateway_url):
    sample = malicious()
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body(sample["SHA256"]))
    await annotated(client, manager, created["id"])  # its own verdict is stored: it must not count against it
    for who in (manager, reader):
        for url in (f"{REQUESTS}/{created['id']}/analyze", f"{REQUESTS}('{created['id']}')/analyze"):
            json_null = {"data": b"null", "headers": {**who.headers, "Content-Type": "application/json"}}
            for method, kwargs in (("GET", {}), ("POST", {}), ("POST", {"json": {}}), ("POST", json_null)):
                async with client.request(method, url, **{"headers": who.headers, **kwargs}) as resp:
                    assert resp.status == 200, await resp.text()
                    assert resp.content_type == "application/json"
                    assert resp.headers["OData-Version"] == "4.0"
                    analysis = await resp.json()
                check_malicious(analysis, sample)
                assert analysis["@odata.context"].startswith(gateway_url + "/beta/$metadata#")
                assert analysis["unavailable"] == []  # events and request history both answered
                # the requester and the device are assessed; the request itself is left out of their history
                for risk in (analysis["userRisk"], analysis["deviceRisk"]):
                    assert risk is not None and (risk["score"], risk["level"], risk["factors"]) == (0, "none", [])
                assert analysis["prevalence"]["@odata.type"] == "#microsoft.graph.filePrevalence"
                assert analysis["prevalence"]["devices"] == 0 and analysis["prevalence"]["firstSeenDateTime"] is None
                assert analysis["publisher"]["trust"] == "unknown" and "publisher.unsigned" in signals(analysis)


async def test_a_read_only_reviewer_or_an_application_may_analyze(client, requester, admin, person, app):
    """The view right with a read-only Graph scope is enough; an application needs only its Graph permission."""
    sample = malicious()
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body(sample["SHA256"]))
    read_only = person("rita", scopes=[CONFIG_READ])
    await assign(client, admin, read_only.oid, READER)
    for who in (read_only, app):
        analysis = await call(client, "GET", f"{REQUESTS}/{created['id']}/analyze", who)
        check_malicious(analysis, sample)
        assert analysis["userRisk"] is not None and analysis["deviceRisk"] is not None


async def test_the_request_analysis_carries_the_requesters_history(client, requester, manager):
    """Denied requests of the same user on the same device raise its user and device risk."""
    for i in range(3):
        denied = await call(client, "POST", REQUESTS, requester, 201, json=request_body(sha(f"tool {i}")))
        await call(client, "POST", f"{REQUESTS}/{denied['id']}/deny", manager, json={"reviewerJustification": "no"})
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body(sha("the installer")))
    analysis = await call(client, "GET", f"{REQUESTS}/{created['id']}/analyze", manager)
    check_analysis(analysis)
    assert analysis["userRisk"]["score"] >= 45 and analysis["userRisk"]["level"] in ("medium", "high")
    assert any("3 denied" in factor for factor in analysis["userRisk"]["factors"])
    assert analysis["deviceRisk"]["score"] >= 30
    assert {"user.risk", "device.risk"} <= set(signals(analysis))
    other = await call(client, "POST", REQUESTS, manager, 201,
                       json=request_body(sha("the installer"), device="device-2"))
    fresh = await call(client, "GET", f"{REQUESTS}/{other['id']}/analyze", manager)
    assert fresh["userRisk"]["score"] == 0 and fresh["riskScore"] < analysis["riskScore"]


async def test_the_request_analysis_needs_the_view_right(client, requester, person, token):
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body(malicious()["SHA256"]))
    url = f"{REQUESTS}/{created['id']}/analyze"
    for who in (requester, person("nobody")):  # full Graph scopes, but no Intune role
        for method in ("GET", "POST"):
            message = await failure(client, method, url, who, 403, "Forbidden")
            assert "Endpoint Privilege Management Elevation Requests" in message
    no_scope = auth(token(**ROLE_ADMIN))
    await failure(client, "GET", url, no_scope, 403, "Forbidden")
    async with client.get(url) as resp:
        await graph_error(resp, 401, "InvalidAuthenticationToken")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_another_tenants_or_an_unknown_request_is_not_found(client, requester, manager, person, token):
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body(malicious()["SHA256"]))
    elsewhere = str(uuid.uuid4())
    other_admin = auth(token(**ROLE_ADMIN, tenant=elsewhere))
    stranger = person("sam", tenant=elsewhere)
    await assign(client, other_admin, stranger.oid, MANAGER)
    for key in (f"/{created['id']}", f"('{created['id']}')"):
        for method in ("GET", "POST"):
            message = await failure(client, method, f"{REQUESTS}{key}/analyze", stranger, 404, "ResourceNotFound")
            assert created["id"] in message
    unknown = str(uuid.uuid4())
    assert unknown in await failure(client, "GET", f"{REQUESTS}/{unknown}/analyze", manager, 404, "ResourceNotFound")
    await failure(client, "POST", f"{REQUESTS}/not-an-id/analyze", manager, 404, "ResourceNotFound")
    # the owner's reviewer still sees it
    assert (await call(client, "GET", f"{REQUESTS}/{created['id']}/analyze", manager))["verdict"] == "malicious"


async def test_the_analyze_action_takes_no_parameters(client, requester, manager):
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body(malicious()["SHA256"]))
    url = f"{REQUESTS}/{created['id']}/analyze"
    for bad in ({"fileHash": sha("other")}, {"x": 1}, [], [1], "text", 0):
        assert "no parameters" in await failure(client, "POST", url, manager, 400, "BadRequest", json=bad)
    await failure(client, "POST", url, manager, 400, "BadRequest", data=b"{not json",
                  content_type="application/json")
    await failure(client, "POST", url, manager, 415, "UnsupportedMediaType", data=b"{}",
                  content_type="text/plain")


# --- security/fileReputations/{sha256} -----------------------------------------------------------------------

async def test_a_file_by_hash(client, full):
    sample = malicious()
    async with client.get(f"{REPUTATIONS}/{sample['SHA256'].upper()}", headers=full) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["OData-Version"] == "4.0" and resp.headers["request-id"]
        analysis = await resp.json()
    check_malicious(analysis, sample)
    assert analysis["userRisk"] is None and analysis["deviceRisk"] is None  # nobody asked for it
    assert analysis["unavailable"] == []
    driver = await call(client, "GET", f"{REPUTATIONS}/{vulnerable()['SHA256']}", full)
    check_analysis(driver)
    assert (driver["appReputation"], driver["verdict"], driver["recommendation"]) == (
        "vulnerableDriver", "suspicious", "deny")
    assert driver["riskScore"] >= 85
    assert any(s["feed"] == "loldrivers" and s["label"] == "vulnerableDriver" for s in driver["sources"])
    unknown = await call(client, "GET", f"{REPUTATIONS}/{sha(f'nobody knows {uuid.uuid4()}')}", full)
    check_analysis(unknown)
    assert (unknown["appReputation"], unknown["sources"]) == ("unknown", [])
    assert unknown["summary"].startswith("Unknown file:")


@pytest.mark.parametrize("query", [{"fileName": "powershell.exe"}, {"fileName": "PowerShell.EXE"},
                                   {"filePath": POWERSHELL}, {"fileName": "powershell.exe", "filePath": POWERSHELL}])
async def test_a_file_name_makes_a_dual_use_binary(client, full, query):
    file_hash = sha(f"powershell build {uuid.uuid4()}")
    plain = await call(client, "GET", f"{REPUTATIONS}/{file_hash}", full)
    assert plain["appReputation"] == "unknown"
    analysis = await call(client, "GET", f"{REPUTATIONS}/{file_hash}", full, params=query)
    check_analysis(analysis)
    assert (analysis["appReputation"], analysis["verdict"]) == ("dualUse", "suspicious")
    assert analysis["recommendation"] != "approve" and analysis["riskScore"] >= 50  # never approved on its own
    assert "feed.dualUse" in signals(analysis) and analysis["riskScore"] > plain["riskScore"]
    source = next(s for s in analysis["sources"] if s["label"] == "dualUse" and s["feed"] == "lolbas")
    assert (source["matchedBy"], source["tenantOwned"]) == ("fileName", False)
    assert source["feedVersion"] == feed_data.snapshot(feed_data.lolbas())
    assert source["reference"].startswith("https://github.com/LOLBAS-Project/")
    assert analysis["summary"].startswith("Dual-use binary:")


async def test_a_read_only_or_application_token_may_look_files_up(client, token, app):
    for headers in (auth(token(scopes=[CONFIG_READ])), app):
        analysis = await call(client, "GET", f"{REPUTATIONS}/{malicious()['SHA256']}", headers)
        assert analysis["verdict"] == "malicious"


async def test_a_file_by_hash_refuses_bad_input(client, full, token):
    for bad in ("xyz", sha("x")[:63], sha("x") + "0", "g" * 64, "analyze", "lookup"):
        message = await failure(client, "GET", f"{REPUTATIONS}/{bad}", full, 400, "BadRequest")
        assert "SHA-256" in message
    url = f"{REPUTATIONS}/{sha('x')}"
    for option in ("colour", "$select", "$filter", "filename"):
        message = await failure(client, "GET", url, full, 400, "BadRequest", params={option: "x"})
        assert f"'{option}'" in message
    async with client.get(url) as resp:
        await graph_error(resp, 401, "InvalidAuthenticationToken")
    async with client.get(url, headers={"Authorization": "Bearer not-a-token"}) as resp:
        await graph_error(resp, 401, "InvalidAuthenticationToken")
    await failure(client, "GET", url, auth(token(scopes=["User.Read"])), 403, "Forbidden")
    async with client.get(url, headers={**full, "client-request-id": "mine-42"}) as resp:
        assert resp.status == 200 and resp.headers["client-request-id"] == "mine-42"


async def test_the_analysis_context_names_its_entity_set_under_security(client, full):
    """The analysis is served at /beta/security/fileReputations/{sha256}, so (as for publisherRules and
    reputationFeeds beside it) its context names security/fileReputations."""
    analysis = await call(client, "GET", f"{REPUTATIONS}/{sha('context')}", full)
    assert analysis["@odata.context"].endswith("/beta/$metadata#security/fileReputations/$entity")


# --- security/fileReputations/analyze -----------------------------------------------------------------------

async def test_analyze_a_file_described_in_the_body(client, app):
    sample = malicious()
    chain, leaf = certificate_chain("Pinchins Technology")
    body = {"@odata.type": "#microsoft.graph.analyzeFileRequest",
            "file": {"@odata.type": "#microsoft.graph.fileDetail", "fileHash": sample["SHA256"],
                     "fileName": "RWTKrl.sys", "publisherCert": chain, "publisherName": "Pinchins Technology"},
            "deviceId": f"device-{uuid.uuid4()}", "deviceName": "LAPTOP-07"}
    async with client.post(f"{REPUTATIONS}/analyze", json=body, headers=app) as resp:
        assert resp.status == 200, await resp.text()
        analysis = await resp.json()
    check_malicious(analysis, sample)
    assert analysis["userRisk"] is None  # no user given
    assert analysis["deviceRisk"] is not None and analysis["deviceRisk"]["level"] == "none"
    assert analysis["unavailable"] == []
    publisher = analysis["publisher"]
    assert (publisher["trust"], publisher["subject"], publisher["issuer"], publisher["thumbprint"]) == (
        "known", "Pinchins Technology", "Pinchins Technology CA", leaf.thumbprint)
    assert publisher["publisherName"] == "Pinchins Technology"
    assert publisher["notBefore"].endswith("Z") and publisher["notAfter"].endswith("Z")
    # sha1 and md5 find a driver whatever the SHA-256 says
    other = await call(client, "POST", f"{REPUTATIONS}/analyze", app, json={
        "file": {"fileHash": sha(f"not the driver {uuid.uuid4()}"), "sha1": sample["SHA1"], "md5": sample["MD5"]}})
    assert other["appReputation"] == "knownMalicious"
    assert {s["matchedBy"] for s in other["sources"] if s["feed"] == "loldrivers"} <= {"sha1", "md5"}


async def test_an_analysis_without_the_view_right_is_partial_not_failed(client, full, manager):
    """A user without a role may analyse a file, but not read a device's history: that source is named."""
    body = {"file": {"fileHash": malicious()["SHA256"]}, "deviceId": "device-1", "userId": manager.oid}
    partial = await call(client, "POST", f"{REPUTATIONS}/analyze", full, json=body)
    check_analysis(partial)
    assert partial["unavailable"] == ["requests"]
    assert partial["userRisk"] is None and partial["deviceRisk"] is None
    assert partial["verdict"] == "malicious"
    whole = await call(client, "POST", f"{REPUTATIONS}/analyze", manager, json=body)
    assert whole["unavailable"] == [] and whole["userRisk"] is not None and whole["deviceRisk"] is not None


async def test_analyze_refuses_bad_bodies(client, full):
    url = f"{REPUTATIONS}/analyze"
    good = {"fileHash": sha("good")}
    for bad, named in (({"file": good, "device": "x"}, "'device'"), ({"file": {**good, "hash": "x"}}, "'hash'"),
                       ({"file": good, "deviceId": 7}, "'deviceId'"), ({"file": {"fileHash": 1}}, "'fileHash'"),
                       ({"file": good, "id": "x"}, "'id'"), ({"file": "abc"}, "microsoft.graph.fileDetail"),
                       ({"file": good, "@odata.type": "#microsoft.graph.fileAnalysis"}, "@odata.type"),
                       ([good], "JSON object"), ({"file": {"fileHash": "abc"}}, "SHA-256"),
                       ({}, "SHA-256"), ({"deviceId": "device-1"}, "SHA-256"),
                       ({"file": {**good, "fileName": "x" * 32_768}}, "file_name is too long"),
                       ({"file": {**good, "publisherCert": "A" * (256 * 1024 + 1)}}, "publisher_cert is too long")):
        message = await failure(client, "POST", url, full, 400, "BadRequest", json=bad)
        assert named in message, (bad, message)
    await failure(client, "POST", url, full, 400, "BadRequest", data=b'{"file": {',
                  content_type="application/json")
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        await failure(client, "POST", url, full, 415, "UnsupportedMediaType", data=json.dumps({"file": good}),
                      content_type=content_type)
    async with client.post(url, json={"file": good}) as resp:
        await graph_error(resp, 401, "InvalidAuthenticationToken")


# --- security/fileReputations/lookup ------------------------------------------------------------------------

async def test_lookup_answers_thousands_of_hashes_in_order(client, full):
    samples = feed_data.driver_samples()
    bad = [s["SHA256"] for s in samples["malicious"]]
    weak = [s["SHA256"].upper() for s in samples["vulnerable driver"]]
    unknown = [sha(f"unknown {i} {uuid.uuid4()}") for i in range(2500)]
    hashes = [h for trio in zip(unknown[:1500], bad * 5, weak, strict=False) for h in trio] + unknown[1500:]
    assert len(hashes) > 4000 and len(set(hashes)) < len(hashes)  # repeats too
    async with client.post(f"{REPUTATIONS}/lookup", json={"hashes": hashes}, headers=full) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    assert set(answer) == {"@odata.context", "value"}
    assert answer["@odata.context"].endswith("/beta/$metadata#Collection(microsoft.graph.hashReputation)")
    assert [r["hash"] for r in answer["value"]] == [h.lower() for h in hashes]
    expected = dict.fromkeys(unknown, "unknown") | dict.fromkeys(weak, "vulnerableDriver") | dict.fromkeys(
        bad, "knownMalicious")
    assert [r["appReputation"] for r in answer["value"]] == [expected[h] for h in hashes]
    for result in answer["value"]:
        assert set(result) == {"@odata.type", "hash", "appReputation", "sources"}
        assert result["@odata.type"] == "#microsoft.graph.hashReputation"
        if result["appReputation"] == "unknown":
            assert result["sources"] == []
        else:
            assert result["sources"] and all(s["feed"] == "loldrivers" for s in result["sources"])
    first = answer["value"][1]
    assert first["hash"] == bad[0].lower()
    assert any(s["reference"] == driver_reference(samples["malicious"][0]) for s in first["sources"])
    by_other = await call(client, "POST", f"{REPUTATIONS}/lookup", full, json={
        "hashes": [samples["malicious"][0]["SHA1"].upper(), samples["malicious"][0]["MD5"]]})
    assert [r["appReputation"] for r in by_other["value"]] == ["knownMalicious", "knownMalicious"]
    assert (await call(client, "POST", f"{REPUTATIONS}/lookup", full, json={"hashes": []}))["value"] == []


async def test_lookup_takes_up_to_ten_thousand_hashes(client, full):
    hashes = [sha(f"many {i}") for i in range(10_000)]
    answer = await call(client, "POST", f"{REPUTATIONS}/lookup", full, json={"hashes": hashes})
    assert len(answer["value"]) == 10_000
    message = await failure(client, "POST", f"{REPUTATIONS}/lookup", full, 400, "BadRequest",
                            json={"hashes": [*hashes, sha("one too many")]})
    assert "10000" in message and "10001" in message


async def test_lookup_refuses_bad_bodies(client, full, token):
    url = f"{REPUTATIONS}/lookup"
    good = sha("good")
    for bad, words in ((["a"], '{"hashes"'), ("text", '{"hashes"'), (0, '{"hashes"'), ({}, '{"hashes"'),
                       ({"hashes": [good], "extra": 1}, '{"hashes"'), ({"hashes": good}, '{"hashes"'),
                       ({"hashes": None}, '{"hashes"'), ({"Hashes": [good]}, '{"hashes"'),
                       ({"hashes": [good, 1]}, "string"), ({"hashes": [good, None]}, "string"),
                       ({"hashes": [good, ["x"]]}, "string"),
                       ({"hashes": [good, "not-a-hash"]}, "hashes[1]"), ({"hashes": [good, good[:50]]}, "hashes[1]"),
                       ({"hashes": [""]}, "hashes[0]")):
        message = await failure(client, "POST", url, full, 400, "BadRequest", json=bad)
        assert words in message, (bad, message)
    for raw in (b"[", b"null", b""):
        await failure(client, "POST", url, full, 400, "BadRequest", data=raw, content_type="application/json")
    await failure(client, "POST", url, full, 415, "UnsupportedMediaType", data=good, content_type="text/plain")
    await failure(client, "POST", url, auth(token(scopes=["User.Read"])), 403, "Forbidden", json={"hashes": [good]})


# --- security/publisherRules --------------------------------------------------------------------------------

async def test_publisher_rules_are_created_listed_read_and_deleted(client, curator, gateway_url):
    _, leaf = certificate_chain("Contoso Tools Ltd")
    given = {"@odata.type": "#microsoft.graph.publisherRule", "kind": "certificate",
             "value": leaf.thumbprint.upper(), "blocked": False, "displayName": "Contoso", "note": "ticket 4711"}
    async with client.post(RULES, json=given, headers=curator) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        location = resp.headers["Location"]
    assert set(created) == RULE_KEYS | {"@odata.context"}
    assert created["@odata.context"].endswith("/beta/$metadata#security/publisherRules/$entity")
    assert created["@odata.type"] == "#microsoft.graph.publisherRule"
    assert str(uuid.UUID(created["id"])) == created["id"]
    assert location == f"{gateway_url}{RULES}/{created['id']}"
    assert (created["kind"], created["value"], created["blocked"]) == ("certificate", leaf.thumbprint, False)
    assert (created["displayName"], created["note"]) == ("Contoso", "ticket 4711")
    assert created["createdDateTime"].endswith("Z")

    name_rule = await call(client, "POST", RULES, curator, 201, json={
        "kind": "publisherName", "value": "  Shady   Tools LLC ", "blocked": True, "id": "ignored"})
    assert (name_rule["kind"], name_rule["value"], name_rule["blocked"]) == ("publisherName", "shady tools llc", True)
    assert name_rule["id"] != "ignored" and (name_rule["displayName"], name_rule["note"]) == ("", "")

    listed = await call(client, "GET", RULES, curator)
    assert set(listed) == {"@odata.context", "value"}
    assert listed["@odata.context"].endswith("/beta/$metadata#security/publisherRules")
    assert [r["id"] for r in listed["value"]] == [created["id"], name_rule["id"]]  # in creation order
    assert listed["value"][0] == {k: v for k, v in created.items() if k != "@odata.context"}
    for key in (created["id"], created["id"].upper()):
        assert await call(client, "GET", f"{RULES}/{key}", curator) == created
    async with client.get(location, headers=curator) as resp:
        assert resp.status == 200 and await resp.json() == created

    await failure(client, "PATCH", f"{RULES}/{created['id']}", curator, 405, "MethodNotAllowed", json={"blocked": True})
    async with client.delete(f"{RULES}/{created['id']}", headers=curator) as resp:
        assert resp.status == 204 and await resp.read() == b""
    assert created["id"] in await failure(client, "GET", f"{RULES}/{created['id']}", curator, 404, "ResourceNotFound")
    await failure(client, "DELETE", f"{RULES}/{created['id']}", curator, 404, "ResourceNotFound")
    await failure(client, "DELETE", f"{RULES}/not-a-rule", curator, 404, "ResourceNotFound")
    await failure(client, "GET", f"{RULES}/not-a-rule", curator, 404, "ResourceNotFound")
    assert [r["id"] for r in (await call(client, "GET", RULES, curator))["value"]] == [name_rule["id"]]


async def test_only_a_reviewer_who_may_decide_changes_the_rules(client, requester, reader, curator, app):
    """Else anyone who may ask for an elevation could vouch for their own publisher."""
    rule = {"kind": "publisherName", "value": f"Self Vouched {uuid.uuid4()}"}
    for who in (requester, reader):  # Graph write scope, but no (or only the view) Intune right
        message = await failure(client, "POST", RULES, who, 403, "Forbidden", json=rule)
        assert "Modify elevation requests" in message
    created = await call(client, "POST", RULES, curator, 201, json=rule)
    await failure(client, "DELETE", f"{RULES}/{created['id']}", requester, 403, "Forbidden")
    await call(client, "DELETE", f"{RULES}/{created['id']}", app, 204)  # an application: its permission suffices


async def test_the_same_rule_twice_is_one_rule(client, curator):
    first = await call(client, "POST", RULES, curator, 201, json={"kind": "publisherName", "value": "Fabrikam"})
    again = await call(client, "POST", RULES, curator, 201, json={"kind": "publisherName", "value": "FABRIKAM "})
    assert again["id"] == first["id"]
    # the same publisher with the opposite decision is a conflict, never a silent no-op
    conflict = await call(client, "POST", RULES, curator, 409, json={"kind": "publisherName", "value": "fabrikam",
                                                                  "blocked": True})
    assert conflict["error"]["code"] == "Conflict" and "already trusts" in conflict["error"]["message"]
    rules = (await call(client, "GET", RULES, curator))["value"]
    assert len(rules) == 1 and rules[0]["blocked"] is False


async def test_bad_publisher_rules_are_refused(client, curator):
    thumbprint = "ab" * 20
    for bad, words in (({"kind": "certificate", "value": "abc"}, "thumbprint"),
                       ({"kind": "certificate", "value": "zz" * 20}, "thumbprint"),
                       ({"kind": "certificate"}, "thumbprint"),
                       ({"kind": "publisherName", "value": "   "}, "publisher name"),
                       ({"kind": "publisherName", "value": "x" * 1025}, "publisher name"),
                       ({"value": thumbprint}, "kind"),
                       ({"kind": "thumbprint", "value": thumbprint}, "'thumbprint' is not a valid value for kind"),
                       ({"kind": "certificate", "value": thumbprint, "blocked": "yes"}, "'blocked'"),
                       ({"kind": "certificate", "value": thumbprint, "colour": "blue"}, "'colour'"),
                       ({"kind": "certificate", "value": 42}, "'value'"),
                       ({"kind": "certificate", "value": thumbprint, "displayName": "x" * 257}, "displayName"),
                       ({"kind": "certificate", "value": thumbprint, "note": "x" * 1025}, "note"),
                       ({"kind": "certificate", "value": thumbprint, "@odata.type": "#microsoft.graph.user"},
                        "@odata.type"),
                       ([{"kind": "certificate", "value": thumbprint}], "JSON object")):
        message = await failure(client, "POST", RULES, curator, 400, "BadRequest", json=bad)
        assert words in message, (bad, message)
    await failure(client, "POST", RULES, curator, 400, "BadRequest", data=b"{", content_type="application/json")
    await failure(client, "POST", RULES, curator, 415, "UnsupportedMediaType", data=b"{}", content_type="text/plain")
    assert (await call(client, "GET", RULES, curator))["value"] == []  # nothing was stored


async def test_the_rule_and_feed_collections_refuse_query_options_they_ignore(client, curator):
    """As on every other gateway collection (gateway/query.py): an OData option the resource does not support is a
    400 that names it, never silently ignored (a $filter=blocked eq true must not answer trusted rules too)."""
    await call(client, "POST", RULES, curator, 201, json={"kind": "publisherName", "value": "Trusted Co"})
    await call(client, "POST", RULES, curator, 201, json={"kind": "publisherName", "value": "Blocked Co",
                                                       "blocked": True})
    for path in (RULES, FEEDS):
        for option in ({"$filter": "blocked eq true"}, {"$top": "1"}, {"$orderby": "value"}):
            message = await failure(client, "GET", path, curator, 400, "BadRequest", params=option)
            assert next(iter(option)) in message


async def test_a_read_only_token_reads_rules_but_cannot_change_them(client, curator, token):
    created = await call(client, "POST", RULES, curator, 201, json={"kind": "publisherName", "value": "Contoso"})
    read_only = auth(token(scopes=[CONFIG_READ]))
    assert [r["id"] for r in (await call(client, "GET", RULES, read_only))["value"]] == [created["id"]]
    assert (await call(client, "GET", f"{RULES}/{created['id']}", read_only))["id"] == created["id"]
    await failure(client, "POST", RULES, read_only, 403, "Forbidden", json={"kind": "publisherName", "value": "x"})
    await failure(client, "DELETE", f"{RULES}/{created['id']}", read_only, 403, "Forbidden")
    async with client.get(RULES) as resp:
        await graph_error(resp, 401, "InvalidAuthenticationToken")
    assert [r["id"] for r in (await call(client, "GET", RULES, curator))["value"]] == [created["id"]]


async def test_publisher_rules_stay_in_their_tenant(client, curator, token):
    created = await call(client, "POST", RULES, curator, 201, json={"kind": "publisherName", "value": "Shady Tools",
                                                                 "blocked": True})
    other = auth(token(tenant=str(uuid.uuid4()), scopes=(), roles=[CONFIG_WRITE]))  # may write in its own tenant
    assert (await call(client, "GET", RULES, other))["value"] == []
    await failure(client, "GET", f"{RULES}/{created['id']}", other, 404, "ResourceNotFound")
    await failure(client, "DELETE", f"{RULES}/{created['id']}", other, 404, "ResourceNotFound")
    file = {"file": {"fileHash": sha("shady"), "publisherName": "Shady Tools"}}
    mine = await call(client, "POST", f"{REPUTATIONS}/analyze", curator, json=file)
    theirs = await call(client, "POST", f"{REPUTATIONS}/analyze", other, json=file)
    assert (mine["publisher"]["trust"], mine["verdict"]) == ("blocked", "malicious")
    assert theirs["publisher"]["trust"] == "known" and theirs["verdict"] != "malicious"
    assert await call(client, "GET", f"{RULES}/{created['id']}", curator) == created  # still there


async def test_a_trusted_certificate_lowers_the_risk_and_a_blocked_name_makes_it_malicious(client, curator):
    chain, leaf = certificate_chain(f"Contoso Tools {uuid.uuid4().hex[:8]}")
    file = {"fileHash": sha(f"tool {uuid.uuid4()}"), "fileName": "tool.exe", "filePath": r"C:\Tools\tool.exe"}
    unsigned = await call(client, "POST", f"{REPUTATIONS}/analyze", curator, json={"file": file})
    signed = await call(client, "POST", f"{REPUTATIONS}/analyze", curator,
                        json={"file": {**file, "publisherCert": chain}})
    assert unsigned["publisher"]["trust"] == "unknown" and signed["publisher"]["trust"] == "known"

    rule = await call(client, "POST", RULES, curator, 201, json={"kind": "certificate", "value": leaf.thumbprint,
                                                              "displayName": "Contoso"})
    trusted = await call(client, "POST", f"{REPUTATIONS}/analyze", curator,
                         json={"file": {**file, "publisherCert": chain}})
    check_analysis(trusted)
    assert trusted["publisher"]["trust"] == "trusted" and trusted["publisher"]["thumbprint"] == leaf.thumbprint
    assert "publisher.trusted.certificate" in signals(trusted)
    assert trusted["riskScore"] < signed["riskScore"] < unsigned["riskScore"]
    assert (trusted["verdict"], trusted["recommendation"]) == ("clean", "approve")
    assert trusted["summary"].startswith("Unknown file:") and "Publisher trusted" in trusted["summary"]
    again_unsigned = await call(client, "POST", f"{REPUTATIONS}/analyze", curator, json={"file": file})
    assert again_unsigned["riskScore"] == unsigned["riskScore"]  # the rule needs the certificate
    # a SHA-256 thumbprint rule works too
    other_chain, other_leaf = certificate_chain(f"Northwind {uuid.uuid4().hex[:8]}")
    await call(client, "POST", RULES, curator, 201, json={"kind": "certificate", "value": other_leaf.thumbprint_sha256})
    by_sha256 = await call(client, "POST", f"{REPUTATIONS}/analyze", curator,
                           json={"file": {**file, "publisherCert": other_chain}})
    assert by_sha256["publisher"]["trust"] == "trusted"

    await call(client, "POST", RULES, curator, 201, json={"kind": "publisherName", "value": "Shady Tools LLC",
                                                       "blocked": True})
    blocked = await call(client, "POST", f"{REPUTATIONS}/analyze", curator,
                         json={"file": {**file, "publisherName": "SHADY TOOLS LLC"}})
    assert blocked["publisher"]["trust"] == "blocked"
    assert (blocked["verdict"], blocked["recommendation"], blocked["riskScore"]) == ("malicious", "deny", 100)

    await call(client, "DELETE", f"{RULES}/{rule['id']}", curator, 204)
    after = await call(client, "POST", f"{REPUTATIONS}/analyze", curator,
                       json={"file": {**file, "publisherCert": chain}})
    assert after["publisher"]["trust"] == "known" and after["riskScore"] == signed["riskScore"]


# --- security/reputationFeeds -------------------------------------------------------------------------------

async def test_the_shared_feeds_are_listed_with_their_versions(client, full, token, shared_feeds):
    for headers in (full, auth(token(scopes=[CONFIG_READ], tenant=str(uuid.uuid4())))):
        listed = await call(client, "GET", FEEDS, headers)
        assert set(listed) == {"@odata.context", "value"}
        assert listed["@odata.context"].endswith("/beta/$metadata#security/reputationFeeds")
        feeds = {f["id"]: f for f in listed["value"]}
        for name, folder in (("loldrivers", feed_data.loldrivers()), ("lolbas", feed_data.lolbas())):
            feed = feeds[f"shared.{name}"]
            assert set(feed) == FEED_KEYS and feed["@odata.type"] == "#microsoft.graph.feed"
            assert (feed["name"], feed["format"], feed["shared"]) == (name, name, True)
            assert feed["version"] >= 1 and feed["sourceVersion"] == feed_data.snapshot(folder)
            assert feed["records"] > 0 and feed["keys"] > 0 and feed["problemCount"] == 0
            assert len(feed["digest"]) == 64 and feed["importedDateTime"].endswith("Z")
            done = shared_feeds[name][-1]
            assert (feed["records"], feed["keys"]) == (done.feed.records, done.feed.keys)
        assert all(f["shared"] for f in feeds.values() if f["id"].startswith("shared."))
    async with client.get(FEEDS) as resp:
        await graph_error(resp, 401, "InvalidAuthenticationToken")
    await failure(client, "GET", FEEDS, auth(token(scopes=["User.Read"])), 403, "Forbidden")


# --- the verdict attached to new requests -------------------------------------------------------------------

async def test_a_new_request_gets_the_verdict_of_its_file(client, requester, manager):
    sample = malicious()
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body(sample["SHA256"]))
    assert "@epm.reputation" not in created
    found = await annotated(client, manager, created["id"])
    verdict = found["@epm.reputation"]
    assert set(verdict) == ANNOTATION_KEYS
    assert (verdict["verdict"], verdict["recommendation"], verdict["appReputation"]) == (
        "malicious", "deny", "knownMalicious")
    assert isinstance(verdict["riskScore"], int) and 95 <= verdict["riskScore"] <= 100
    assert verdict["analyzedDateTime"].endswith("Z")
    # not a change of the request: same version, same properties
    assert found["@odata.etag"] == created["@odata.etag"]
    assert graph_view(found) == created
    async with client.get(f"{REQUESTS}/{created['id']}", headers=manager.headers) as resp:
        assert resp.headers["ETag"] == created["@odata.etag"]
    page = await call(client, "GET", REQUESTS, manager)
    listed = next(r for r in page["value"] if r["id"] == created["id"])
    assert listed["@epm.reputation"] == verdict
    # the same score as the analysis a reviewer reads
    analysis = await call(client, "GET", f"{REQUESTS}/{created['id']}/analyze", manager)
    assert (analysis["verdict"], analysis["recommendation"], analysis["appReputation"]) == (
        verdict["verdict"], verdict["recommendation"], verdict["appReputation"])
    # a dual-use binary and an unknown file get theirs too
    dual = await call(client, "POST", REQUESTS, requester, 201,
                      json=request_body(sha(f"ps {uuid.uuid4()}"), device="device-2", file_name="powershell.exe"))
    unknown = await call(client, "POST", REQUESTS, requester, 201,
                         json=request_body(sha(f"tool {uuid.uuid4()}"), device="device-3", file_name="tool.exe"))
    dual_verdict = (await annotated(client, manager, dual["id"]))["@epm.reputation"]
    assert (dual_verdict["appReputation"], dual_verdict["verdict"]) == ("dualUse", "suspicious")
    assert (await annotated(client, manager, unknown["id"]))["@epm.reputation"]["appReputation"] == "unknown"


async def test_the_tenants_rules_decide_the_attached_verdict(client, requester, manager):
    await call(client, "POST", RULES, manager, 201, json={"kind": "publisherName", "value": "Shady Tools LLC",
                                                          "blocked": True})
    created = await call(client, "POST", REQUESTS, requester, 201, json=request_body(
        sha(f"shady {uuid.uuid4()}"), file_name="setup.exe", publisherName="Shady Tools LLC"))
    verdict = (await annotated(client, manager, created["id"]))["@epm.reputation"]
    assert (verdict["verdict"], verdict["recommendation"], verdict["riskScore"]) == ("malicious", "deny", 100)
    assert verdict["appReputation"] == "unknown"  # no feed knows the file: the tenant's rule decides


async def test_the_attached_verdict_weighs_the_requesters_history(client, person, manager):
    """The verdict is computed with the requester's own token (services/requests/verdicts.py), and a user may read
    their own history and that of a device they asked on (GetRequestHistory): a user whose last three requests were
    denied is riskier than a newcomer asking for the same file on a fresh device."""
    file_hash = sha(f"installer {uuid.uuid4()}")
    repeat, newcomer = person("rob"), person("nina")
    for i in range(3):
        denied = await call(client, "POST", REQUESTS, repeat, 201,
                            json=request_body(sha(f"tool {i} {uuid.uuid4()}"), device=f"old-{i}"))
        await call(client, "POST", f"{REQUESTS}/{denied['id']}/deny", manager, json={})
    asked = await call(client, "POST", REQUESTS, repeat, 201, json=request_body(file_hash, device="fresh-1"))
    fresh = await call(client, "POST", REQUESTS, newcomer, 201, json=request_body(file_hash, device="fresh-2"))
    analysis = await call(client, "GET", f"{REQUESTS}/{asked['id']}/analyze", manager)
    assert analysis["userRisk"]["score"] >= 45  # what a reviewer sees
    risky = (await annotated(client, manager, asked["id"]))["@epm.reputation"]
    plain = (await annotated(client, manager, fresh["id"]))["@epm.reputation"]
    assert risky["riskScore"] > plain["riskScore"], (risky, plain, analysis["riskScore"])


async def test_a_down_reputation_service_never_blocks_creation(client, requester, manager, settings, clock,
                                                               events_service, reputation_address):
    second = await requests_app.start(replace(settings, reputation_addr="127.0.0.1:9"), "127.0.0.1:0",
                                      clock=clock.now)
    gateway = create_app(replace(settings, events_addr=f"127.0.0.1:{events_service.port}",
                                 requests_addr=f"127.0.0.1:{second.port}", reputation_addr=reputation_address))
    runner = web.AppRunner(gateway, access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}") as other:
            created = await call(other, "POST", REQUESTS, requester, 201,
                                 json=request_body(malicious()["SHA256"], device="device-down"))
            assert created["status"] == "pending" and "@epm.reputation" not in created
            # the same request through the usual path gets its verdict: by then the other has had its chance
            control = await call(client, "POST", REQUESTS, requester, 201,
                                 json=request_body(malicious()["SHA256"], device="device-up"))
            assert control["id"] != created["id"]
            await annotated(client, manager, control["id"])
            until = time.monotonic() + 3
            while time.monotonic() < until:
                for gateway_client in (other, client):
                    found = await call(gateway_client, "GET", f"{REQUESTS}/{created['id']}", manager)
                    assert "@epm.reputation" not in found
                    assert without_context(found) == without_context(created)
                await asyncio.sleep(0.2)
            # the service without reputation still works otherwise
            approved = await call(other, "POST", f"{REQUESTS}/{created['id']}/approve", manager, json={})
            assert approved["status"] == "approved"
    finally:
        await runner.cleanup()
        await second.stop(1)
    # stopped: nothing can attach a verdict any more
    found = await call(client, "GET", f"{REQUESTS}/{created['id']}", manager)
    assert "@epm.reputation" not in found and found["status"] == "approved"
