"""Hostile input through the live gateway: generated from the gateway's own /openapi.json (schemathesis, positive
and negative), and explicit (body size, malformed JSON, content types, huge options, deep filters, SQL
metacharacters, invalid UTF-8, unknown enum values). Bad input gets a clear Graph error and never a 5xx, and never
loses or changes stored data."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway import batch, elevation_requests, elevations, managed_devices, role_assignments, support
from gateway.openapi import document
from services.common.odata import MAX_LENGTH
from services.events import model as events_model
from services.requests import devices as devices_store
from services.requests import store as requests_store
from services.requests import support as support_store

from ..conftest import ALL

# An application token with every permission the gateway checks: authorised by its permissions alone.
FULL = (*ALL, "RoleManagement.ReadWrite.Directory", "DeviceManagementRBAC.ReadWrite.All", "MmdSupport.ReadWrite")
EXAMPLES = 6  # generated cases per operation and mode: ~900 requests
LIMIT = 4 * 1024 * 1024  # client_max_size in gateway/app.py
META = ("' OR 1=1 --", "'; DROP TABLE requests.elevation_requests; --", "\\", "%", "_", "a\x00b", "\") OR (\"1\"=\"1")
HEX = "0123456789abcdef" * 4
READER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000002"  # Endpoint Privilege Reader


@pytest.fixture
def app_token(token):
    return token(scopes=(), roles=FULL)


@pytest.fixture
async def client(gateway_url, app_token):
    async with aiohttp.ClientSession(base_url=gateway_url, headers={"Authorization": f"Bearer {app_token}"}) as s:
        yield s


def error_problem(status: int, body: str, path: str) -> str | None:
    """Why a 4xx body is not the error shape of its API (Graph's, MMD's under /support), or None."""
    if "Traceback" in body or 'File "' in body:
        return "a stack trace in the body"
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"not a JSON error body: {body[:120]!r}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return "no message"
    if path.startswith(support.PREFIX):
        return None if error.get("code") == str(status) else f"MMD code {error.get('code')!r} for {status}"
    inner = error.get("innerError")
    if not isinstance(error.get("code"), str) or not isinstance(inner, dict) or not inner.get("request-id"):
        return f"not Graph's shape: {error}"
    return None


async def expect_error(response: aiohttp.ClientResponse, *statuses: int) -> dict:
    body = await response.text()
    assert response.status in statuses, (response.status, body[:300])
    assert error_problem(response.status, body, response.url.path) is None, (error_problem(
        response.status, body, response.url.path), body[:300])
    return json.loads(body)["error"]


# --- generated input ----------------------------------------------------------------------------------------------


def _refused_url() -> tuple[socket.socket, str]:
    """A local address that refuses connections at once (bound, not listening): notification URLs go there, so a
    generated subscription never reaches the network."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _call(case, session: requests.Session, base_url: str, headers: dict, refused: str, seen: dict, problems: list):
    """Sends one generated case with the test's token and records its status and whatever is wrong with the answer."""
    label = f"{case.operation.method.upper()} {case.operation.path}"
    case.headers = {**(case.headers or {}), **headers}  # a valid token: auth is not what is tested here
    if str((case.query or {}).get("follow")).lower() == "true":  # a following stream never ends
        case.query["follow"] = "false"
    if isinstance(case.body, dict) and isinstance(case.body.get("notificationUrl"), str):
        case.body["notificationUrl"] = refused
    try:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
    except requests.RequestException as exc:
        problems.append(f"{label}: {type(exc).__name__} {exc}")
        return
    seen[label][response.status_code] += 1
    if case.operation.path == batch.PATH and response.status_code == 200:  # each item is a call of its own
        problems += [f"{label}: item {a['status']}\n{case.as_curl_command()}" for a in response.json()["responses"]
                     if a["status"] >= 500]
    if 400 <= response.status_code < 500 and (
            why := error_problem(response.status_code, response.text, case.operation.path)):
        problems.append(f"{label} {response.status_code}: {why}")
    try:  # no 5xx; a status, content type and body the document gives for this route
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (AssertionError, BaseExceptionGroup) as exc:
        problems.append(f"{label} {response.status_code}: {str(exc)[:400]}\n{case.as_curl_command()}")


def _fuzz(base_url: str, headers: dict, tenant: str, refused: str) -> tuple[dict, list[str]]:
    """Every operation of the served document, positive and negative, with the test's token (and tenant in MMD
    paths); returns (route -> statuses, problems)."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    seen: dict[str, Counter] = defaultdict(Counter)
    problems: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            fixed = {"tenantId": tenant} if "{tenantId}" in operation.path else None
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
                @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                     phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                def run(case):
                    _call(case, session, base_url, headers, refused, seen, problems)

                try:
                    run()
                except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
                    pass
    return seen, problems


@pytest.mark.slow
async def test_generated_input_never_breaks_the_gateway(gateway_url, app_token, tenant, figures):
    """Schemathesis drives every documented route with generated valid and invalid input: never a 5xx, every
    status documented for its route, every error in its API's error shape, no stack traces."""
    sock, refused = _refused_url()
    try:
        seen, problems = await asyncio.to_thread(_fuzz, gateway_url, {"Authorization": f"Bearer {app_token}"},
                                                 tenant, refused)
    finally:
        sock.close()
    width = max(map(len, seen))
    print(f"\n{'route':<{width}}  tried  statuses")
    for label, statuses in sorted(seen.items()):
        print(f"{label:<{width}}  {sum(statuses.values()):5d}  "
              + " ".join(f"{s}x{n}" for s, n in sorted(statuses.items())))
    total = Counter()
    for statuses in seen.values():
        total.update(statuses)
    figures(f"{sum(total.values())} generated requests on {len(seen)} routes; statuses "
            + ", ".join(f"{s}: {n}" for s, n in sorted(total.items())))
    documented = {f"{method.upper()} {path}" for path, item in document()["paths"].items() for method in item}
    assert set(seen) == documented - {"GET /openapi.json"}  # schemathesis leaves out the document it loaded
    assert not any(status >= 500 for status in total)
    assert problems == [], "\n\n".join(problems[:20])


# --- explicit hostile input ---------------------------------------------------------------------------------------

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
DOC = document()["paths"]
BODY_ROUTES = [(method.upper(), path) for path, item in DOC.items() for method, op in item.items()
               if "requestBody" in op]
FILTER_ROUTES = [path for path, item in DOC.items() if "get" in item
                 and any(p["name"] == "$filter" for p in item["get"]["parameters"])]
COLLECTIONS = {  # each collection's $filter properties, from the service that owns it
    elevations.PATH: events_model.FIELDS, managed_devices.PATH: devices_store.FIELDS,
    elevation_requests.PATH: requests_store.FIELDS, elevation_requests.AUDIT_PATH: requests_store.AUDIT_FIELDS,
    support.PATH: support_store.FIELDS}


def url(path: str, tenant: str, value: str = GUID) -> str:
    """`path` with its parameters filled: the tenant in MMD paths, `value` (URL-quoted) everywhere else."""
    for name in ("id", "roleId", "roleDefinitionId", "sha256", "action"):
        path = path.replace("{" + name + "}", "approve" if name == "action" else quote(value, safe=""))
    return path.replace("{tenantId}", tenant)


def odata_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def test_the_document_is_served_without_a_token(gateway_url):
    async with aiohttp.ClientSession() as anonymous, anonymous.get(gateway_url + "/openapi.json") as response:
        assert response.status == 200
        assert await response.json() == document()


@pytest.mark.parametrize("path", [elevations.PATH, support.PATH])
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_size_limit_is_413_in_the_api_error_shape(client, tenant, path, chunked):
    body = b'{"deviceName": "' + b"x" * LIMIT + b'"}'

    async def chunks():
        for start in range(0, len(body), 1 << 20):
            yield body[start:start + (1 << 20)]

    async with client.post(url(path, tenant), data=chunks() if chunked else body,
                           headers={"Content-Type": "application/json"}) as response:
        error = await expect_error(response, 413)
    assert error["code"] == ("413" if path == support.PATH else "RequestEntityTooLarge")


BAD_BODIES = {
    "malformed JSON": (b'{"deviceName": ', 400),
    "trailing garbage": (b'{} {}', 400),
    "an array": (b'[{"deviceName": "x"}]', 400),
    "a string": (b'"deviceName"', 400),
    "a number": (b'42', 400),
    "true": (b'true', 400),
    "invalid UTF-8": (b'{"deviceName": "\xff\xfe"}', 400),
    "an encoded surrogate": (b'{"deviceName": "\xed\xa0\x80"}', 400),
    "an escaped lone surrogate": (b'{"deviceName": "\\ud800"}', 400),
    "deep nesting": (b'[' * 100_000 + b']' * 100_000, 400),
}


@pytest.mark.parametrize("method,path", BODY_ROUTES)
async def test_bodies_that_are_not_json_objects_are_refused(client, tenant, method, path):
    target = url(path, tenant)
    for what, (body, status) in BAD_BODIES.items():
        async with client.request(method, target, data=body, headers={"Content-Type": "application/json"}) as r:
            error = await expect_error(r, status)
            assert error["message"], what
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        async with client.request(method, target, data=b'{"deviceName": "x"}',
                                  headers={"Content-Type": content_type}) as response:
            await expect_error(response, 415)


@pytest.mark.parametrize("option", ["$top", "top", "$skip", "skip", "$count"])
async def test_bad_paging_options_are_400(client, tenant, option):
    values = ["1000000000000", "-1", "abc", "²", "٣", "9" * 5000, "", "1.5", " 5", "0x10", "true"]
    if option == "$count":
        values = ["yes", "1", "TRUE", "", "²"]
    for path in (elevations.PATH, elevation_requests.PATH, managed_devices.PATH, elevation_requests.AUDIT_PATH):
        for value in values:
            if option in ("$skip", "skip") and value == "":
                continue  # an empty $skip is refused too, but is not a number: checked with the others
            async with client.get(path, params={option: value}) as response:
                error = await expect_error(response, 400)
                assert option.lstrip("$") in error["message"], error
    async with client.get(elevations.PATH + "?$top=5&top=5") as response:
        await expect_error(response, 400)


async def _hostile_filters(client: aiohttp.ClientSession, path: str, name: str) -> None:
    depth, limit = 50, MAX_LENGTH
    refused = {
        "deep parentheses": "(" * 3000 + f"{name} eq 'a'" + ")" * 3000,
        "parentheses past the depth limit": "(" * (depth + 1) + f"{name} eq 'a'" + ")" * (depth + 1),
        "not not not": "not " * 1000 + f"({name} eq 'a')",
        "an or chain past the length limit": " or ".join([f"{name} eq 'a'"] * (limit // len(f"{name} eq 'a' or "))
                                                          + [f"{name} eq 'a'"] * 20),
        "100 kB": f"{name} eq '" + "a" * 100_000 + "'",
        "100 kB of parentheses": "(" * 100_000,
        "unbalanced": f"({name} eq 'a'",
        "unterminated string": f"{name} eq 'a",
        "an operator only": "eq eq eq",
        "a NUL outside a string": f"{name} eq\x00'a'",
        "functions in functions": "contains(" * 500 + name + ", 'a')" * 500,
    }
    for what, text in refused.items():
        async with client.get(path, params={"$filter": text}) as response:
            error = await expect_error(response, 400)
            assert "Recursion" not in error["message"], what
    accepted = {  # at the limits, still fine
        "parentheses at the depth limit": "(" * (depth - 1) + f"{name} eq 'a'" + ")" * (depth - 1),
        "an or chain at the length limit": " or ".join([f"{name} eq 'a'"] * ((limit + 4) // len(f"{name} eq 'a' or "))),
    }
    for what, text in accepted.items():
        assert len(text) <= limit, what
        async with client.get(path, params={"$filter": text}) as response:
            assert response.status == 200, (what, await response.text())


async def _with_parent(client, path: str) -> str:
    """`path` naming a real assignment (and its role) when it is a navigation of one or of a role: a missing parent
    is a 404, whatever the $filter."""
    pim = path.startswith((role_assignments.PATH, role_assignments.ROLES_PATH))
    if not (pim and ("{id}" in path or "{roleId}" in path)):
        return path
    async with client.post(role_assignments.PATH, json={"userId": str(uuid.uuid4()), "roleId": READER}) as made:
        assert made.status == 201, await made.text()
        return path.replace("{id}", (await made.json())["id"]).replace("{roleId}", READER)


@pytest.mark.parametrize("path", FILTER_ROUTES)
async def test_hostile_filters_are_a_clean_400(client, tenant, path):
    collection = path.removesuffix("/$count").removesuffix("/summary")
    fields = COLLECTIONS.get(collection, {"id": None})
    await _hostile_filters(client, url(await _with_parent(client, path), tenant),
                           "id" if "id" in fields else next(iter(fields)))


async def test_invalid_utf8_in_the_query_string_and_path(client, gateway_url, app_token):
    for encoded in ("%FF", "%ED%A0%80", "%C0%AF", "%F4%90%80%80"):  # bad byte, surrogate, overlong, past U+10FFFF
        async with client.get(f"{elevations.PATH}?$filter=deviceName%20eq%20%27{encoded}%27") as response:
            assert response.status in (200, 400), await response.text()
            if response.status == 200:
                assert (await response.json())["value"] == []
            else:
                await expect_error(response, 400)
        async with client.get(f"{elevations.PATH}/{encoded}") as response:
            await expect_error(response, 404)
        async with client.get(f"{elevations.PATH}?$top={encoded}") as response:
            await expect_error(response, 400)
    # A raw invalid byte in the request line never reaches the handlers: the HTTP parser refuses it, and the
    # gateway's Runner answers a Graph 400 that repeats nothing of the request, with no stack trace.
    host, port = gateway_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {elevations.PATH}?$filter=x%20eq%20'".encode() + b"\xff" + b"' HTTP/1.1\r\nHost: x\r\n"
                 + f"Authorization: Bearer {app_token}\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    assert b"Traceback" not in answer and app_token.encode() not in answer
    assert b'"error"' in answer and b"application/json" in answer


async def test_unknown_enum_values_are_400(client, tenant):
    for method, path in BODY_ROUTES:
        schema = DOC[path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
        enums = [name for name, prop in schema.get("properties", {}).items() if "enum" in prop and name[0] != "@"]
        for name in enums:
            for value in ("notAValue", "PENDING", 1, ["pending"], {"x": 1}, True):
                async with client.request(method, url(path, tenant), json={name: value}) as response:
                    error = await expect_error(response, 400)
                    assert name in error["message"], (path, name, value, error)
    for collection, fields in COLLECTIONS.items():
        for name, field in fields.items():
            if field.type != "enum":
                continue
            for text in (f"{name} eq 'notAValue'", f"{name} in ('{field.enum_values[0]}', 'notAValue')",
                         f"{name} eq '{field.enum_values[0].upper()}'", f"{name} eq 1"):
                async with client.get(url(collection, tenant), params={"$filter": text}) as response:
                    error = await expect_error(response, 400)
                    assert name in error["message"] or "notAValue" in error["message"], (text, error)


# --- SQL metacharacters: plain data, or a 400; stored data intact -------------------------------------------------


async def _tenant_rows(database_url: str, tenant: str) -> dict[str, int]:
    """Rows per table of every schema that belong to `tenant`."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch("SELECT DISTINCT c.table_schema, c.table_name FROM information_schema.columns c "
                                  "JOIN information_schema.tables t USING (table_schema, table_name) "
                                  "WHERE c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE' "
                                  "AND c.table_schema IN ('events', 'requests', 'reputation')")
        return {f"{s}.{t}": await conn.fetchval(f'SELECT count(*) FROM "{s}"."{t}" WHERE tenant_id::text = $1',  # nosec B608
                                                tenant) for s, t in tables}
    finally:
        await conn.close()


def _plain(entity: dict) -> dict:
    """An entity without the annotations background work fills in later (@epm.reputation, @epm.discovery)."""
    return {k: v for k, v in entity.items() if not k.startswith("@epm.")}


def _value(entity: dict, name: str):
    for part in name.split("/"):
        entity = (entity or {}).get(part)
    return entity


async def _seed(client: aiohttp.ClientSession, tenant: str) -> dict[str, str]:
    """One of everything in `tenant`; returns path -> entity URL."""
    device = str(uuid.uuid4())
    now = datetime.now(timezone.utc).replace(microsecond=0)
    bodies = {
        managed_devices.PATH: {"id": device, "deviceName": "LAPTOP-01", "operatingSystem": "Windows"},
        elevations.PATH: {"deviceId": device, "deviceName": "LAPTOP-01", "eventDateTime": now.isoformat(),
                          "elevationType": "userConfirmedElevation", "filePath": "C:\\Program Files\\Git\\git.exe",
                          "upn": "adele@contoso.example", "userType": "azureAd", "hash": HEX, "result": 0,
                          "justification": "Installing dev tools", "processType": "parent"},
        elevation_requests.PATH: {"requestedOnDeviceId": device, "requestedByUserId": str(uuid.uuid4()),
                                  "deviceName": "LAPTOP-01", "requestJustification": "VPN client",
                                  "applicationDetail": {"fileName": "vpn.exe", "fileHash": HEX,
                                                        "filePath": "C:\\Users\\adele\\vpn.exe"}},
        url(support.PATH, tenant): {"partnerTicketId": "T-1", "deviceName": "LAPTOP-01", "title": "Printer",
                                    "planOfAction": "Install the driver"},
    }
    seeded = {}
    for path, body in bodies.items():
        async with client.post(path, json=body) as response:
            assert response.status == 201, await response.text()
            seeded[path] = f"{path}/{(await response.json())['id']}"
    return seeded


async def _entities(client: aiohttp.ClientSession, urls) -> dict[str, dict]:
    found = {}
    for entity_url in urls:
        async with client.get(entity_url) as response:
            assert response.status == 200, await response.text()
            found[entity_url] = _plain(await response.json())
    return found


async def _check_filter(client, path: str, name: str, text: str, casefold: bool) -> int:
    """200 with only matching entities (the value taken as plain text), or a 400; returns the status."""
    fold = str.lower if casefold else str
    for expression, matches in ((f"{name} eq {odata_string(text)}", lambda v: fold(v) == fold(text)),
                                (f"contains({name}, {odata_string(text)})", lambda v: text.lower() in v.lower())):
        async with client.get(path, params={"$filter": expression}) as response:
            if response.status == 400:
                await expect_error(response, 400)
                continue
            assert response.status == 200, (expression, await response.text())
            for entity in (await response.json())["value"]:
                assert matches(_value(entity, name) or ""), (expression, entity)
    return response.status


async def _each(jobs, limit: int = 8):
    gate = asyncio.Semaphore(limit)

    async def run(job):
        async with gate:
            return await job

    return await asyncio.gather(*map(run, jobs))


async def test_sql_metacharacters_are_plain_data_and_stored_data_stays_intact(client, gateway_url, token, tenant,
                                                                              settings, figures):
    seeded = await _seed(client, tenant)
    rows, entities = await _tenant_rows(settings.database_url, tenant), await _entities(client, seeded.values())
    # every string property of every collection's $filter, compared and searched with each metacharacter
    jobs = [_check_filter(client, url(path, tenant), name, meta, field.casefold)
            for path, fields in COLLECTIONS.items() for name, field in fields.items() if field.type == "string"
            for meta in META]
    statuses = Counter(await _each(jobs))
    # every path parameter of every route and method: nothing found, nothing changed
    attempts = 0
    for path, item in DOC.items():
        if "{" not in path.replace("{tenantId}", ""):
            continue
        for method in item:
            for meta in META:
                kwargs = {"json": {}} if method in ("post", "patch") else {}
                async with client.request(method, url(path, tenant, meta), **kwargs) as response:
                    await expect_error(response, 400, 403, 404)
                attempts += 1
    # every string property of every body, in another tenant: refused, or stored and read back as sent
    other_tenant = str(uuid.uuid4())
    async with aiohttp.ClientSession(base_url=gateway_url, headers={
            "Authorization": f"Bearer {token(scopes=(), roles=FULL, tenant=other_tenant)}"}) as other:
        stored = await _round_trips(other, other_tenant)
    assert await _tenant_rows(settings.database_url, tenant) == rows
    assert await _entities(client, seeded.values()) == entities
    figures(f"{len(jobs) * 2} metacharacter filters (statuses {dict(statuses)}), {attempts} metacharacter path ids, "
            f"{stored} metacharacter values stored and read back verbatim; {sum(rows.values())} rows intact")


async def _round_trips(client: aiohttp.ClientSession, tenant: str) -> int:
    """Creates entities whose every string is a metacharacter text, reads them back and finds them by filter."""
    stored = 0
    for meta in META:
        device = str(uuid.uuid4())
        strings = {n: f"{meta}{n}" for n in ("deviceName", "operatingSystem", "osVersion", "serialNumber", "model",
                                              "manufacturer", "userPrincipalName")}
        now = datetime.now(timezone.utc).replace(microsecond=0)
        creates = {
            managed_devices.PATH: {"id": device, **strings},
            elevations.PATH: {"deviceId": device, "eventDateTime": now.isoformat(), "hash": HEX,
                              **{n: f"{meta}{n}" for n in ("deviceName", "filePath", "upn", "productName",
                                                           "justification", "parentProcessName", "policyName")}},
            elevation_requests.PATH: {"requestedOnDeviceId": device, "requestedByUserId": str(uuid.uuid4()),
                                      "deviceName": meta, "requestJustification": meta,
                                      "applicationDetail": {"fileHash": HEX, "fileName": meta, "filePath": meta}},
            url(support.PATH, tenant): {"partnerTicketId": meta, "deviceName": strings["deviceName"],
                                        "title": meta, "planOfAction": meta},
        }
        for path, body in creates.items():
            async with client.post(path, json=body) as response:
                if "\x00" in meta:  # PostgreSQL text holds no NUL: refused, named
                    error = await expect_error(response, 400)
                    assert "0x00" in error["message"]
                    continue
                assert response.status == 201, (path, meta, await response.text())
                created = await response.json()
            async with client.get(f"{path}/{created['id']}") as response:
                read = await response.json()
            for name, value in body.items():
                if isinstance(value, dict):
                    assert {k: read[name][k] for k in value} == value
                elif name not in ("id", "eventDateTime"):
                    assert read[name] == value, (path, name)
                stored += 1
            name = "deviceName" if path != url(support.PATH, tenant) else "title"
            for expression in (f"{name} eq {odata_string(body[name])}", f"contains({name}, {odata_string(meta)})"):
                async with client.get(path, params={"$filter": expression}) as response:
                    found = [e["id"] for e in (await response.json())["value"]]
                assert created["id"] in found, (path, expression)
                assert all(meta in _value(e, name) for e in (await _entities(client, [
                    f"{path}/{i}" for i in found])).values())
    return stored


async def test_an_if_match_that_is_no_etag_is_400(client):
    for value in ('W/"²"', 'W/"٣"', '"1 OR 1=1"', "W/", '"\\u0000"'):
        async with client.patch(f"{elevation_requests.PATH}/{GUID}", json={"requestJustification": "x"},
                                headers={"If-Match": value}) as response:
            await expect_error(response, 400)
