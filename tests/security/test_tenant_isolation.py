"""Another tenant's objects do not exist: every entity route is a 404 (not 403, not 200) with a full-access token of
another tenant, every list and feed there leaves them out, and tenant-owned reputation data judges only its own
tenant's files. The stranger even has the same object id as the owner of the world's subscription."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import jwt
import pytest
from epm.events.v1 import elevation_event_service_pb2 as events_pb
from epm.events.v1 import elevation_event_service_pb2_grpc as events_grpc
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as requests_grpc

from gateway import elevation_requests, elevations, intune_roles, managed_devices, reputation, subscriptions, support

from ..receiver import Receiver
from .conftest import (
    EVERYTHING,
    auth,
    call,
    claims,
    event,
    fill,
    gateway_routes,
    request_body,
    sha,
    subscription_body,
)
from .test_auth_matrix import graph_error, send

FILTERABLE = (elevations.PATH, elevation_requests.PATH, elevation_requests.AUDIT_PATH, managed_devices.PATH,
              intune_roles.ASSIGNMENTS)
OWNED = ("elevation", "device", "request", "assignment", "rule", "support", "subscription", "audit",
         "intuneAssignment")


@pytest.fixture
def stranger(settings, world):
    """(tenant, headers): a full-access application of another tenant, with the world's app's object id."""
    tenant = str(uuid.uuid4())
    token = jwt.encode(claims(tenant, roles=EVERYTHING, oid=world.app_oid), settings.jwt_secret, algorithm="HS256")
    return tenant, auth(token)


def a_secret_of(world, text: str) -> str | None:
    """The first of the world's ids (or its own feed) that `text` shows, if any."""
    return next((world.ids[k] for k in OWNED if world.ids[k] in text), "own-blocklist" if "own-blocklist" in text
                else None)


async def test_every_entity_of_another_tenant_is_not_found(client, settings, world, stranger, untouched, figures):
    other, headers = stranger
    cases = 0
    async with untouched(world.tenant):
        for route in gateway_routes(settings):
            if "{id}" not in route.template and "{tenantId}" not in route.template:
                continue
            paths = fill(route, world)
            if "{tenantId}" in route.template and "{id}" in route.template:  # the stranger's own tenant in the path
                paths += [p.replace(world.tenant, other) for p in paths]
            for path in paths:
                status, text, response_headers = await send(client, route, path, headers["Authorization"], world)
                assert status == 404, f"{route.method} {path} from another tenant: {status} {text}"
                graph_error(path, 404, text, response_headers)
                cases += 1
    figures(f"{cases} entity route cases with another tenant's full-access token: all 404, no row changed")


async def test_lists_feeds_and_filters_in_another_tenant_show_nothing_of_it(client, settings, world, stranger,
                                                                           figures):
    other, headers = stranger
    mine = await call(client, "POST", elevations.PATH, headers, 201, json=event("stranger-device"))
    shown = listed = 0
    for route in gateway_routes(settings):
        if route.method != "GET" or ("{" in route.template and route.template != support.PATH):
            continue
        path = route.template.replace("{tenantId}", other)
        status, text, _ = await send(client, route, path, headers["Authorization"], world)
        assert status == 200, f"GET {path}: {status} {text}"
        assert a_secret_of(world, text) is None, f"GET {path} in another tenant shows {a_secret_of(world, text)}"
        shown += route.template == elevations.PATH and mine["id"] in text  # control: the stranger's own event
        listed += 1
    assert shown == 1
    for path, key in zip(FILTERABLE, ("elevation", "request", "audit", "device", "intuneAssignment"), strict=True):
        query = f"$filter=id eq '{world.ids[key]}'"
        assert (await call(client, "GET", f"{path}?{query}", headers, 200))["value"] == []
        assert await call(client, "GET", f"{path}/$count?{query}", headers, 200) == "0"
        found = await call(client, "GET", f"{path}?{query}", world.app, 200)  # control: the owner finds it
        assert [e["id"] for e in found["value"]] == [world.ids[key]]
    figures(f"{listed} lists and feeds in another tenant: none shows the tenant's items; {len(FILTERABLE)} $filter "
            "on its ids: nothing")


async def test_tenant_owned_reputation_data_judges_only_its_tenant(client, world, stranger):
    _, headers = stranger
    lookup = reputation.SECURITY + "/fileReputations/lookup"
    for who, expected in ((world.app, "knownMalicious"), (headers, "unknown")):  # the owner's block list
        found = await call(client, "POST", lookup, who, 200, json={"hashes": [world.ids["hash"]]})
        assert found["value"][0]["appReputation"] == expected
        analysis = await call(client, "GET", f"{reputation.SECURITY}/fileReputations/{world.ids['hash']}", who, 200)
        assert analysis["appReputation"] == expected
    analyze = reputation.SECURITY + "/fileReputations/analyze"
    for who, blocked in ((world.app, True), (headers, False)):  # the owner's publisher rule
        analysis = await call(client, "POST", analyze, who, 200,
                              json={"file": {"fileHash": sha("any.exe"), "publisherName": "Contoso Tools"}})
        assert (analysis["publisher"]["trust"] == "blocked") is blocked


def _watch(channel, metadata, device: str, first_only: bool) -> list[str]:
    """The decisions a device watcher gets: the first (`first_only`), or all it gets in 2 seconds."""
    call = requests_grpc.ElevationRequestServiceStub(channel).WatchDecisions(
        requests_pb.WatchDecisionsRequest(device_id=device), metadata=metadata, timeout=2)
    got = []
    try:
        for decision in call:
            got.append(decision.elevation_request_id)
            if first_only:
                call.cancel()
                break
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
    return got


async def test_backend_methods_for_other_services_keep_to_the_callers_tenant(client, world, stranger, sync_channels,
                                                                           untouched):
    other, headers = stranger
    device = f"watched-{uuid.uuid4()}"
    created = await call(client, "POST", elevation_requests.PATH, world.app, 201,
                         json={**request_body(device), "requestedByUserId": world.requester})
    await call(client, "POST", f"{elevation_requests.PATH}/{created['id']}/approve", world.app, 200, json={})
    owner = tuple(("authorization", v) for v in world.app.values())
    them = tuple(("authorization", v) for v in headers.values())
    requests, events = sync_channels["requests"], sync_channels["events"]
    assert await asyncio.to_thread(_watch, requests, owner, device, True) == [created["id"]]  # control
    assert await asyncio.to_thread(_watch, requests, them, device, False) == []
    async with untouched(world.tenant):
        used = requests_pb.RecordElevationUsageRequest(device_id=device, file_hash=sha("tool.exe"))
        used.used_date_time.GetCurrentTime()
        answer = await asyncio.to_thread(requests_grpc.ElevationRequestServiceStub(requests).RecordElevationUsage,
                                         used, metadata=them)
        assert list(answer.completed_ids) == []
        history = await asyncio.to_thread(requests_grpc.ElevationRequestServiceStub(requests).GetRequestHistory,
                                          requests_pb.GetRequestHistoryRequest(user_id=world.requester,
                                                                               device_id=device), metadata=them)
        assert history.user.total == history.device.total == 0
        stats = await asyncio.to_thread(events_grpc.ElevationEventServiceStub(events).GetElevationStats,
                                        events_pb.GetElevationStatsRequest(file_hash=sha("tool.exe"),
                                                                           device_id="sec-device"), metadata=them)
        assert stats.file.elevations == 0 and stats.device.unmanaged_elevations == 0
    mine = await asyncio.to_thread(events_grpc.ElevationEventServiceStub(events).GetElevationStats,
                                   events_pb.GetElevationStatsRequest(file_hash=sha("tool.exe")), metadata=owner)
    assert mine.file.elevations >= 1  # control: the owner's own event counts


async def test_a_subscription_is_told_of_its_own_tenants_changes_only(client, world, stranger, clock):
    """A change in the world's tenant, then one in the stranger's: the stranger's subscriber gets its own, and
    nothing of the earlier one (delivery follows commit order, so it would have come first)."""
    _, headers = stranger
    endpoint = await Receiver().start()
    try:
        await call(client, "POST", subscriptions.PATH, headers, 201, json=subscription_body(endpoint.url, clock))
        theirs = await call(client, "POST", elevation_requests.PATH, world.app, 201,
                            json={**request_body(f"dev-{uuid.uuid4()}"), "requestedByUserId": world.requester})
        mine = await call(client, "POST", elevation_requests.PATH, headers, 201,
                          json={**request_body(f"dev-{uuid.uuid4()}"), "requestedByUserId": str(uuid.uuid4())})
        notified = await endpoint.wait_for(1)
        assert [n["resourceData"]["id"] for n in notified] == [mine["id"]]
        assert theirs["id"] not in json.dumps(endpoint.batches)
    finally:
        await endpoint.close()
