"""Faults on the real system (tests/system.py): a backend killed, PostgreSQL restarted, SIGTERM with calls in
flight, duplicate deliveries, racing reviewers. The system fails closed (503 / UNAVAILABLE with Retry-After, never
500 or a hang), recovers by itself, and loses no acknowledged write. Each test prints its figures."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import aiohttp
import asyncpg
import grpc
import pytest
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.events.v1 import elevation_event_service_pb2_grpc as events_grpc

from gateway import graphjson
from tests.claims import ROLE_ADMIN

pytestmark = pytest.mark.slow

EVENTS = "/beta/deviceManagement/privilegeManagementElevations"
REQUESTS = "/beta/deviceManagement/elevationRequests"
AUDIT = "/beta/deviceManagement/auditEvents"
ROLES = "/beta/privilegedRoleAssignments"
MANAGER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"  # Endpoint Privilege Manager
CALL_TIMEOUT = 20  # seconds: a call that takes longer is a hang, and fails the test
TIMEOUT = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
BATCH = 50  # events per ingest batch
_serial = itertools.count()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def event(device: str) -> dict:
    """A valid elevation event, unique by its device (and time)."""
    at = datetime.now(timezone.utc) - timedelta(minutes=5, microseconds=next(_serial))
    return {"@odata.type": "#microsoft.graph.privilegeManagementElevation", "deviceId": device,
            "deviceName": "LAPTOP-01", "eventDateTime": at.isoformat().replace("+00:00", "Z"),
            "elevationType": "userConfirmedElevation", "filePath": r"C:\Tools\tool.exe",
            "upn": "adele@contoso.example", "userType": "azureAd", "hash": sha(device), "result": 0,
            "processType": "parent", "justification": "fault test"}


def event_pb(device: str) -> events_pb.ElevationEvent:
    message = events_pb.ElevationEvent()
    graphjson.from_json(event(device), message, "privilegeManagementElevation")
    return message


def request_body(device: str, file: str = "tool.exe") -> dict:
    return {"@odata.type": "#microsoft.graph.privilegeManagementElevationRequest", "requestedOnDeviceId": device,
            "deviceName": "LAPTOP-01", "requestJustification": "fault test",
            "applicationDetail": {"@odata.type": "#microsoft.graph.elevationRequestApplicationDetail",
                                  "fileHash": sha(file), "fileName": file, "filePath": r"C:\Tools"}}


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def numbers(**figures) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items())


@dataclass
class Outcome:
    kind: str
    key: str      # what was written (a device id), to look for afterwards
    status: int | str  # HTTP status, gRPC code name, or what went wrong on the client ("timeout", ...)
    body: object = None
    retry_after: str | None = None


async def rest(http: aiohttp.ClientSession, kind: str, key: str, method: str, path: str, **kwargs) -> Outcome:
    try:
        async with http.request(method, path, **kwargs) as resp:
            text = await resp.text()
            body = json.loads(text) if resp.content_type == "application/json" else text
            return Outcome(kind, key, resp.status, body, resp.headers.get("Retry-After"))
    except TimeoutError:
        return Outcome(kind, key, "timeout")
    except aiohttp.ClientError as exc:
        return Outcome(kind, key, f"client error {exc!r}")


async def ingest(stub, metadata, key: str, batch: list) -> Outcome:
    try:
        reply = await stub.IngestElevationEvents(
            iter([events_pb.IngestElevationEventsRequest(events=batch)]), metadata=metadata, timeout=CALL_TIMEOUT)
        return Outcome("ingest", key, "OK", reply)
    except grpc.aio.AioRpcError as exc:
        return Outcome("ingest", key, exc.code().name, exc.details())


class Load:
    """Workers calling `ops` (kind -> op(n) -> Outcome) over and over until stopped; every outcome is kept."""

    def __init__(self, ops: dict[str, Callable[[int], Awaitable[Outcome]]], workers: int = 3):
        self.ops, self.workers, self.outcomes = ops, workers, []
        self._counter, self._tasks = itertools.count(), []

    async def _work(self, op) -> None:
        while True:
            self.outcomes.append(await op(next(self._counter)))

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._work(op)) for op in self.ops.values() for _ in range(self.workers)]
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def count(self, kind: str, ok: Callable[[Outcome], bool], since: int = 0) -> int:
        return sum(1 for o in self.outcomes[since:] if o.kind == kind and ok(o))

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        checked = 0
        for _ in range(int(timeout * 20)):
            assert_fails_closed(self.outcomes[checked:])  # fail at the first wrong answer, not at the timeout
            checked = len(self.outcomes)
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not reached in {timeout} s: {what}; outcomes {Counter(self.statuses())}")

    def statuses(self):
        return [(o.kind, o.status) for o in self.outcomes]


def acknowledged(o: Outcome) -> bool:
    return o.status in (200, 201, "OK")


def unavailable(o: Outcome) -> bool:
    return o.status in (503, "UNAVAILABLE")


def assert_fails_closed(outcomes: list[Outcome]) -> None:
    """Every reply is a success or an explicit, retryable 503 / UNAVAILABLE: Graph's error shape with Retry-After."""
    for o in outcomes:
        assert acknowledged(o) or unavailable(o), (o.kind, o.status, o.body)
        if o.status == 503:
            assert o.retry_after and int(o.retry_after) > 0, o
            error = o.body["error"]
            assert error["code"] == "ServiceUnavailable" and error["message"], o.body
            assert error["innerError"]["request-id"], o.body


@contextlib.asynccontextmanager
async def database(system):
    conn = await asyncpg.connect(system.database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def stored_events(system, tenant: str) -> Counter:
    """device id -> how many events of this tenant are stored for it."""
    async with database(system) as conn:
        rows = await conn.fetch("SELECT device_id, count(*) AS n FROM events.elevations WHERE tenant_id = $1 "
                                "GROUP BY device_id", tenant)
    return Counter({r["device_id"]: r["n"] for r in rows})


async def stored_requests(system, tenant: str) -> tuple[dict, Counter]:
    """(device id -> request id, request id -> how many Create audit events it has), from one snapshot: a create
    the load abandoned may still commit on the server between two reads."""
    async with database(system) as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch("SELECT id::text, device_id FROM requests.elevation_requests WHERE tenant_id = $1",
                                tenant)
        audits = await conn.fetch("SELECT resource_id FROM requests.audit_events WHERE tenant_id = $1 "
                                  "AND operation = 'Create' AND resource_type = 'ElevationRequest'", tenant)
    return {r["device_id"]: r["id"] for r in rows}, Counter(r["resource_id"] for r in audits)


def assert_requests_whole(devices: dict, audits: Counter) -> None:
    """No partial write: every stored request has exactly one Create audit event, and no audit event is orphaned."""
    assert set(audits) == set(devices.values()) and set(audits.values()) <= {1}, (len(devices), audits)


class Tenant:
    """A fresh tenant on the system: a requester's headers, an admin's, and REST write ops for Load."""

    def __init__(self, system):
        self.system, self.id = system, str(uuid.uuid4())
        self.requester_oid = str(uuid.uuid4())
        self.requester = auth(system.token(self.id, oid=self.requester_oid, upn="adele@contoso.example"))
        self.admin = auth(system.token(self.id, **ROLE_ADMIN))

    def post_event(self, http, prefix: str):
        async def op(n: int) -> Outcome:
            device = f"{prefix}-e{n}"
            return await rest(http, "event", device, "POST", EVENTS, json=event(device), headers=self.requester)
        return op

    def create_request(self, http, prefix: str):
        async def op(n: int) -> Outcome:
            device = f"{prefix}-r{n}"
            return await rest(http, "request", device, "POST", REQUESTS, json=request_body(device),
                              headers=self.requester)
        return op

    async def reviewer(self, http) -> dict:
        oid = str(uuid.uuid4())
        async with http.post(ROLES, json={"userId": oid, "roleId": MANAGER}, headers=self.admin) as resp:
            assert resp.status == 201, await resp.text()
        return auth(self.system.token(self.id, oid=oid, upn=f"megan-{oid[:8]}@contoso.example")) | {
            "Prefer": "include-unknown-enum-members"}  # reads a revoked request's status by name


@pytest.fixture
async def http(system):
    await system.ready()  # a test that failed half way may have left a part stopped: start from a whole system
    async with aiohttp.ClientSession(base_url=system.url, timeout=TIMEOUT) as session:
        yield session


async def verify_writes(system, tenant: Tenant, outcomes: list[Outcome]) -> dict:
    """Every acknowledged write is stored once, and whole; returns counts for the figures."""
    events = await stored_events(system, tenant.id)
    devices, audits = await stored_requests(system, tenant.id)
    assert_requests_whole(devices, audits)
    counts = Counter()
    for o in outcomes:
        stored = events[o.key] if o.kind in ("event", "ingest") else int(o.key in devices)
        if o.kind == "ingest":  # a batch commits as one: all of it or none
            assert stored in (0, BATCH), (o.key, stored)
            stored = bool(stored)
        if acknowledged(o):
            assert stored == 1, (o.kind, o.key, o.status)
            if o.kind == "request":
                assert o.body["id"] == devices[o.key]
            counts["acknowledged_writes_verified"] += 1
        else:
            counts["unacknowledged_writes_stored_anyway"] += stored
    return counts


# --- a. a backend killed during load --------------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["requests", "events"])
async def test_a_killed_backend_answers_503_then_the_gateway_recovers_by_itself(system, http, figures, victim):
    tenant = Tenant(system)
    gateway_pid = system.pid("gateway")
    hit = {"requests": "request", "events": "event"}[victim]
    other = {"request": "event", "event": "request"}[hit]
    ops = {"event": tenant.post_event(http, victim), "request": tenant.create_request(http, victim)}
    async with Load(ops) as load:
        await load.until(lambda: load.count(hit, acknowledged) >= 20, "writes before the fault")
        system.kill(victim)
        killed_at = len(load.outcomes)
        await load.until(lambda: load.count(hit, unavailable, killed_at) >= 20 and load.count(
            other, acknowledged, killed_at) >= 3, f"503s while {victim} is down, and the other backend serving")
        down = load.count(other, acknowledged, killed_at)
        system.start(victim)
        restarted_at = len(load.outcomes)
        await load.until(lambda: load.count(hit, acknowledged, restarted_at) >= 20, "writes after the restart")
    assert system.pid("gateway") == gateway_pid  # the same gateway recovered by itself
    assert_fails_closed(load.outcomes)
    written = await verify_writes(system, tenant, load.outcomes)
    figures(numbers(requests_tried=len(load.outcomes), faults_injected=1, answered_503=load.count(hit, unavailable),
                    other_backend_ok_meanwhile=down, **written))


# --- b. PostgreSQL restarted during load ----------------------------------------------------------------------


async def test_b_postgres_restarts_lose_no_acknowledged_write(system, http, figures):
    tenant = Tenant(system)
    channel = grpc.aio.insecure_channel(system.address("events"))
    stub = events_grpc.ElevationEventServiceStub(channel)
    metadata = (("authorization", tenant.requester["Authorization"]),)

    async def ingest_batch(n: int) -> Outcome:
        device = f"pg-b{n}"
        return await ingest(stub, metadata, device, [event_pb(device) for _ in range(BATCH)])

    ops = {"event": tenant.post_event(http, "pg"), "request": tenant.create_request(http, "pg"),
           "ingest": ingest_batch}
    faults = 0
    try:
        async with Load(ops) as load:
            for mode in ("fast", "immediate"):  # a restart, then a crash
                start = len(load.outcomes)
                await load.until(lambda s=start: all(load.count(k, acknowledged, s) >= 5 for k in ops),
                                 "writes with the database up")
                system.stop_postgres(mode)
                faults += 1
                stopped = len(load.outcomes)
                await load.until(lambda s=stopped: all(load.count(k, unavailable, s) >= 3 for k in ops),
                                 f"errors with the database stopped ({mode})")
                system.start_postgres()
                restarted = len(load.outcomes)
                await load.until(lambda s=restarted: all(load.count(k, acknowledged, s) >= 5 for k in ops),
                                 "services reconnected by themselves")
    finally:
        await channel.close()
    assert_fails_closed(load.outcomes)
    written = await verify_writes(system, tenant, load.outcomes)
    figures(numbers(requests_tried=len(load.outcomes), faults_injected=faults,
                    errors_answered=sum(map(unavailable, load.outcomes)), **written))


# --- c. SIGTERM with calls in flight --------------------------------------------------------------------------


async def test_c_sigterm_to_the_gateway_completes_the_calls_in_flight(system, http, figures):
    tenant = Tenant(system)
    in_flight, release = [], asyncio.Event()

    async def held_body(device: str):
        in_flight.append(device)  # the gateway answered 100 Continue: it is handling this request
        await release.wait()
        yield json.dumps(event(device)).encode()

    async def held_post(device: str) -> Outcome:
        return await rest(http, "event", device, "POST", EVENTS, data=held_body(device), expect100=True,
                          headers={**tenant.requester, "Content-Type": "application/json"})

    devices = [f"term-gw-{i}" for i in range(20)]
    calls = [asyncio.create_task(held_post(device)) for device in devices]
    await until(lambda: len(in_flight) == len(devices), "every request in flight")
    system.terminate("gateway")
    try:
        # shutdown starts: new requests are answered 503, or their connection is refused or closed before any
        # answer, while the held requests are still open
        late = []
        async with aiohttp.ClientSession(base_url=system.url, timeout=TIMEOUT) as fresh:
            for n in itertools.count():
                o = await rest(fresh, "event", f"term-gw-late-{n}", "POST", EVENTS, json=event(f"term-gw-late-{n}"),
                               headers=tenant.requester)
                late.append(o)
                if not acknowledged(o):
                    break
                await asyncio.sleep(0.02)
        refused = ("Connect", "Can not write request body", "Server disconnected")
        assert late[-1].status == 503 or any(r in str(late[-1].status) for r in refused), late[-1]
        assert not any(c.done() for c in calls)
        release.set()
        done = await asyncio.gather(*calls)
        assert [o.status for o in done] == [201] * len(devices), [(o.status, o.body) for o in done]
        assert system.wait_exit("gateway", timeout=float(system.env["EPM_SHUTDOWN_GRACE"]) + 20) == 0
        stored = await stored_events(system, tenant.id)
        assert all(stored[d] == 1 for d in devices)
        assert stored[late[-1].key] == 0  # the refused one left nothing behind
    finally:
        release.set()
        system.wait_exit("gateway", timeout=float(system.env["EPM_SHUTDOWN_GRACE"]) + 20)
        system.start("gateway")  # the next tests need a whole system, also after a failure here
        await system.ready()
    figures(numbers(requests_tried=len(devices) + len(late), faults_injected=1, in_flight_completed=len(done),
                    new_requests_before_the_listener_closed=len(late) - 1, writes_verified=len(devices)))


async def test_c_sigterm_to_a_backend_completes_the_streams_in_flight(system, http, figures):
    tenant = Tenant(system)
    metadata = (("authorization", tenant.requester["Authorization"]),)
    channel = grpc.aio.insecure_channel(system.address("events"))
    stub = events_grpc.ElevationEventServiceStub(channel)
    release, streams, batches = asyncio.Event(), 4, 5

    async def batches_of(device: str):
        yield events_pb.IngestElevationEventsRequest(events=[event_pb(device) for _ in range(BATCH)])
        await release.wait()  # the rest only once the service is shutting down
        for _ in range(batches - 1):
            yield events_pb.IngestElevationEventsRequest(events=[event_pb(device) for _ in range(BATCH)])

    devices = [f"term-ev-{i}" for i in range(streams)]
    try:
        async def stream(device: str):
            return await stub.IngestElevationEvents(batches_of(device), metadata=metadata, timeout=CALL_TIMEOUT)

        calls = [asyncio.create_task(stream(d)) for d in devices]
        # each stream's first batch is committed: the service is in the middle of every call
        async with database(system) as conn:
            await until_async(lambda: conn.fetchval(
                "SELECT count(*) FROM events.elevations WHERE tenant_id = $1", tenant.id), streams * BATCH)
        system.terminate("events")
        # new calls through the gateway get 503 while the streams are still open
        late = []
        for n in itertools.count():
            late.append(o := await rest(http, "count", str(n), "GET", EVENTS + "/$count", headers=tenant.requester))
            if not acknowledged(o):
                break
            await asyncio.sleep(0.02)
        assert_fails_closed(late)
        assert not any(c.done() for c in calls)
        release.set()
        replies = await asyncio.gather(*calls)
    finally:
        await channel.close()
    assert [(r.received, r.inserted, r.duplicates) for r in replies] == [(batches * BATCH,) * 2 + (0,)] * streams
    assert system.wait_exit("events", timeout=float(system.env["EPM_SHUTDOWN_GRACE"]) + 20) == 0
    assert "shutting down" in system.log("events")
    stored = await stored_events(system, tenant.id)
    assert [stored[d] for d in devices] == [batches * BATCH] * streams
    system.start("events")
    await system.ready()
    figures(numbers(requests_tried=streams + len(late), faults_injected=1, streams_completed=len(replies),
                    answered_503_after_sigterm=sum(map(unavailable, late)), writes_verified=sum(stored.values())))


async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    for _ in range(int(timeout * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached in {timeout} s: {what}")


async def until_async(read: Callable[[], Awaitable], expected, timeout: float = 30) -> None:
    for _ in range(int(timeout * 20)):
        if (value := await read()) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{value} is not {expected} after {timeout} s")


# --- d. duplicate deliveries ----------------------------------------------------------------------------------


async def test_d_duplicate_deliveries_are_stored_once(system, http, figures):
    tenant = Tenant(system)
    metadata = (("authorization", tenant.requester["Authorization"]),)
    batch = [event_pb(f"dup-b{i}") for i in range(200)]
    async with grpc.aio.insecure_channel(system.address("events")) as channel:
        stub = events_grpc.ElevationEventServiceStub(channel)
        send = [ingest(stub, metadata, "batch", batch) for _ in range(4)]
        concurrent = await asyncio.gather(*send)
        again = await ingest(stub, metadata, "batch", batch)
    replies = [o.body for o in [*concurrent, again]]
    assert all(o.status == "OK" for o in [*concurrent, again]), [o.body for o in concurrent]
    assert all(r.received == 200 and r.inserted + r.duplicates == 200 for r in replies)
    assert sum(r.inserted for r in replies) == 200 and again.body.duplicates == 200

    one = event("dup-rest")
    posted = await asyncio.gather(*[rest(http, "event", "dup-rest", "POST", EVENTS, json=one,
                                         headers=tenant.requester) for _ in range(8)])
    assert {o.status for o in posted} == {201} and len({json.dumps(o.body, sort_keys=True) for o in posted}) == 1

    body = request_body("dup-device", "dup.exe")
    created = await asyncio.gather(*[rest(http, "request", "dup-device", "POST", REQUESTS, json=body,
                                          headers=tenant.requester) for _ in range(8)])
    retried = await rest(http, "request", "dup-device", "POST", REQUESTS, json=body, headers=tenant.requester)
    assert {o.status for o in [*created, retried]} == {201}, [o.body for o in created]
    assert len({o.body["id"] for o in [*created, retried]}) == 1

    events = await stored_events(system, tenant.id)
    devices, audits = await stored_requests(system, tenant.id)
    assert all(events[f"dup-b{i}"] == 1 for i in range(200)) and events["dup-rest"] == 1
    assert list(devices) == ["dup-device"] and audits == Counter({devices["dup-device"]: 1})
    figures(numbers(requests_tried=len(send) + 1 + len(posted) + len(created) + 1, duplicates_delivered=(
        len(send) * 200 + len(posted) - 1 + len(created)), writes_verified=sum(events.values()) + len(devices)))


# --- e. racing reviewers ---------------------------------------------------------------------------------------


async def test_e_concurrent_reviews_make_exactly_one_transition(system, http, figures):
    tenant = Tenant(system)
    reviewers = [await tenant.reviewer(http) for _ in range(10)]
    tried = transitions = 0
    for round_ in range(4):
        async with http.post(REQUESTS, json=request_body(f"race-{round_}"), headers=tenant.requester) as resp:
            assert resp.status == 201, await resp.text()
            request_id = (await resp.json())["id"]
        url = f"{REQUESTS}/{request_id}"
        actions = ["approve", "deny", "revoke"] if round_ % 2 else ["deny", "approve", "revoke"]
        first = await asyncio.gather(*[
            rest(http, actions[i % 3], request_id, "POST", f"{url}/{actions[i % 3]}",
                 json={"reviewerJustification": f"reviewer {i}"}, headers=who) for i, who in enumerate(reviewers)])
        revokes = await asyncio.gather(*[
            rest(http, "revoke", request_id, "POST", f"{url}/revoke", json={}, headers=who) for who in reviewers])
        tried += len(first) + len(revokes)
        won = [o for o in first if o.status == 200 and o.kind != "revoke"]
        assert len(won) == 1, [(o.kind, o.status) for o in first]  # of approve and deny, exactly one
        state = {"approve": "approved", "deny": "denied"}[won[0].kind]
        revoked = [o for o in [*first, *revokes] if o.status == 200 and o.kind == "revoke"]
        assert len(revoked) == (state == "approved")  # an approval is revoked once; a denial never
        for o in [*first, *revokes]:
            if o is not won[0] and o not in revoked:
                assert o.status == 409 and o.body["error"]["code"] == "Conflict", o
        final = "revoked" if revoked else state
        async with http.get(url, headers=reviewers[0]) as resp:
            assert (await resp.json())["status"] == final
        async with http.get(AUDIT, params={"$filter": "activityOperationType eq 'Action'", "$top": "100"},
                            headers=reviewers[0]) as resp:
            assert resp.status == 200, await resp.text()
            decisions = [e["activity"] for e in (await resp.json())["value"]
                         if e["resources"][0]["resourceId"] == request_id]
        assert sorted(decisions) == sorted([f"{won[0].kind.capitalize()} ElevationRequest"]
                                           + ["Revoke ElevationRequest"] * len(revoked)), decisions
        transitions += len(decisions)
    figures(numbers(requests_tried=tried, concurrent_rounds=4 * 2, transitions=transitions,
                    refused_409=tried - transitions, audit_decisions_verified=transitions))
