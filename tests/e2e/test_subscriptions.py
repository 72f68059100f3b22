"""/beta/subscriptions through the real gateway, requests service and PostgreSQL, delivering to a real local
HTTP endpoint: the validation handshake, the notifications of each change, filters, retries, pausing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from services.requests.lifecycle import Policy
from services.requests.subscriptions import delete_expired

from ..expiry import sweep
from ..receiver import Receiver
from .test_elevation_requests import AUDIT, act, call, create, failure
from .test_role_assignments import auth

PATH = "/beta/subscriptions"
RESOURCE = "deviceManagement/elevationRequests"


@pytest.fixture
def app(token) -> dict:
    """An application with the Graph permission to read (and here also to review) elevation requests."""
    return auth(token(scopes=(), roles=["DeviceManagementConfiguration.ReadWrite.All"]))


def expiry(clock, minutes: int = 60) -> str:
    return (clock.now() + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def subscription(receiver: Receiver, clock, **overrides) -> dict:
    return {"changeType": "created,updated", "notificationUrl": receiver.url, "resource": RESOURCE,
            "expirationDateTime": expiry(clock), "clientState": "secret-from-the-subscriber", **overrides}


async def subscribe(client, who, receiver, clock, **overrides) -> dict:
    return await call(client, "POST", PATH, who, 201, json=subscription(receiver, clock, **overrides))


async def audit_ids(client, who, request_id: str) -> list[str]:
    page = await call(client, "GET", f"{AUDIT}?$orderby=activityDateTime asc", who)
    return [e["id"] for e in page["value"] if e["resources"][0]["resourceId"] == request_id]


async def test_create_validates_the_endpoint_then_crud(client, app, receiver, clock):
    created = await subscribe(client, app, receiver, clock)
    assert receiver.validations == ["text/plain"]  # the handshake came first, as Graph sends it
    assert created["resource"] == RESOURCE and created["changeType"] == "created,updated"
    assert created["clientState"] == "secret-from-the-subscriber" and created["notificationUrl"] == receiver.url
    assert created["@epm.delivery"]["state"] == "active" and created["@epm.delivery"]["failedAttempts"] == 0
    item = f"{PATH}/{created['id']}"
    assert (await call(client, "GET", item, app))["id"] == created["id"]
    assert [s["id"] for s in (await call(client, "GET", PATH, app))["value"]] == [created["id"]]
    renewed = await call(client, "PATCH", item, app, json={"expirationDateTime": expiry(clock, 120)})
    assert renewed["expirationDateTime"] > created["expirationDateTime"]
    await call(client, "DELETE", item, app, 204)
    await failure(client, "GET", item, app, 404)
    assert (await call(client, "GET", PATH, app))["value"] == []


@pytest.mark.parametrize("answer", ["not-the-token", None])
async def test_an_endpoint_that_fails_the_handshake_is_refused(client, app, receiver, clock, answer):
    if answer is None:
        receiver.url = receiver.url.replace("/notify", "/nowhere")  # 404
    else:
        receiver.validation_answer = answer
    error = await failure(client, "POST", PATH, app, 400, json=subscription(receiver, clock))
    assert error["message"].startswith("Subscription validation request failed")
    assert (await call(client, "GET", PATH, app))["value"] == []


@pytest.mark.parametrize("overrides, message", [
    ({"resource": "deviceManagement/managedDevices"}, "Unsupported resource"),
    ({"resource": f"{RESOURCE}?$top=5"}, "$filter and nothing else"),
    ({"resource": f"{RESOURCE}?$filter=status eq 'nonsense'"}, "nonsense"),
    ({"changeType": "created,exploded"}, "'exploded' is not a valid changeType"),
    ({"changeType": ""}, "changeType is required"),
    ({"notificationUrl": "ftp://example.com/hook"}, "https"),
    ({"notificationUrl": "not a url"}, "https"),
    ({"expirationDateTime": "2020-01-01T00:00:00Z"}, "in the future"),
    ({"expirationDateTime": None}, "expirationDateTime is required"),
    ({"clientState": "x" * 129}, "at most 128"),
    ({"includeResourceData": True}, "includeResourceData can only be false"),
    ({"creatorId": "someone"}, "read-only"),
    ({"colour": "blue"}, "colour"),
    ({"changeType": "created,deleted", "resource": f"{RESOURCE}?$filter=status eq 'pending'"},
     "cannot go with changeType deleted"),
])
async def test_bad_subscriptions_are_400_with_a_reason(client, app, receiver, clock, overrides, message):
    body = {k: v for k, v in subscription(receiver, clock, **overrides).items() if v is not None}
    error = await failure(client, "POST", PATH, app, 400, json=body)
    assert message in error["message"]


async def test_far_expiry_is_refused(client, app, receiver, clock):
    error = await failure(client, "POST", PATH, app, 400,
                          json=subscription(receiver, clock, expirationDateTime=expiry(clock, 4231)))
    assert "at most 4230 minutes" in error["message"]


async def test_each_change_is_notified_once_with_the_audit_event_id(client, app, manager, requester, receiver,
                                                                    clock):
    sub = await subscribe(client, app, receiver, clock)
    request = await create(client, requester)
    await act(client, manager, request["id"], "approve", json={"reviewerJustification": "ok"})
    await act(client, manager, request["id"], "revoke")
    created, approved, revoked = await receiver.wait_for(3)
    assert [n["changeType"] for n in (created, approved, revoked)] == ["created", "updated", "updated"]
    for n in (created, approved, revoked):
        assert n["subscriptionId"] == sub["id"] and n["clientState"] == "secret-from-the-subscriber"
        assert n["resource"] == f"{RESOURCE}/{request['id']}"
        assert n["resourceData"] == {"@odata.type": "#microsoft.graph.privilegeManagementElevationRequest",
                                     "@odata.id": n["resource"], "id": request["id"]}
        assert n["tenantId"] and n["subscriptionExpirationDateTime"] == sub["expirationDateTime"]
    assert [n["id"] for n in (created, approved, revoked)] == await audit_ids(client, manager, request["id"])
    await asyncio.sleep(0.5)  # a few more delivery rounds: nothing is sent again
    assert len(receiver.notifications) == 3 and not receiver.duplicates()
    assert (await call(client, "GET", f"{PATH}/{sub['id']}", app))["@epm.delivery"]["lastDeliveredDateTime"]


async def test_filter_and_change_type_choose_what_is_sent(client, app, manager, requester, receiver, clock):
    approvals = await subscribe(client, app, receiver, clock, changeType="updated",
                                resource=f"{RESOURCE}?$filter=status eq 'approved'")
    denied_only = Receiver()
    await denied_only.start()
    try:
        await subscribe(client, app, denied_only, clock, changeType="created")
        first, second = await create(client, requester, file="a.exe"), await create(client, requester, file="b.exe")
        await act(client, manager, first["id"], "approve")
        await act(client, manager, second["id"], "deny")
        (approved,) = await receiver.wait_for(1)
        assert approved["subscriptionId"] == approvals["id"] and approved["resourceData"]["id"] == first["id"]
        assert {n["resourceData"]["id"] for n in await denied_only.wait_for(2)} == {first["id"], second["id"]}
        assert {n["changeType"] for n in denied_only.notifications} == {"created"}
        await asyncio.sleep(0.5)
        assert len(receiver.notifications) == 1 and len(denied_only.notifications) == 2
    finally:
        await denied_only.close()


async def test_a_failing_endpoint_is_retried_then_paused_and_an_update_resumes_it(client, app, requester,
                                                                                   receiver, clock):
    sub = await subscribe(client, app, receiver, clock)
    item = f"{PATH}/{sub['id']}"
    receiver.fail_with = 503
    request = await create(client, requester)
    attempts = []
    for _ in range(3):  # the test service pauses after 3 failures in a row
        await until(lambda: receiver.attempts > len(attempts))
        attempts.append(receiver.attempts)
        clock.advance(timedelta(minutes=11))  # past the longest backoff
    state = await until_value(lambda: subscription_state(client, app, item),
                              lambda d: d["state"] == "paused")
    assert state["failedAttempts"] == 3 and state["lastError"] == "HTTP 503"
    assert "Paused after 3 failed deliveries in a row" in state["pausedReason"]
    await asyncio.sleep(0.5)
    assert receiver.attempts == 3 and receiver.notifications == []  # paused: no more tries

    receiver.fail_with = 0
    resumed = await call(client, "PATCH", item, app, json={"clientState": "renewed"})
    assert resumed["@epm.delivery"]["state"] == "active" and resumed["@epm.delivery"]["pausedReason"] == ""
    (created,) = await receiver.wait_for(1)  # the change from before the pause, not skipped
    assert created["resourceData"]["id"] == request["id"] and created["clientState"] == "renewed"


async def test_one_failure_then_success_resets_the_count(client, app, requester, receiver, clock):
    sub = await subscribe(client, app, receiver, clock)
    receiver.fail_with, receiver.failures_left = 500, 1
    await create(client, requester)
    await until(lambda: receiver.attempts == 1)
    state = await until_value(lambda: subscription_state(client, app, f"{PATH}/{sub['id']}"),
                              lambda d: d["failedAttempts"] == 1)
    assert datetime.fromisoformat(state["nextAttemptDateTime"]) > clock.now() - timedelta(seconds=1)
    clock.advance(timedelta(minutes=1))
    (delivered,) = await receiver.wait_for(1)
    state = await subscription_state(client, app, f"{PATH}/{sub['id']}")
    assert state["failedAttempts"] == 0 and state["lastError"] == "" and receiver.attempts == 2
    assert delivered["changeType"] == "created"


async def test_expired_subscriptions_get_nothing(client, app, requester, receiver, clock):
    sub = await subscribe(client, app, receiver, clock, expirationDateTime=expiry(clock, 1))
    clock.advance(timedelta(minutes=2))
    await create(client, requester)
    await asyncio.sleep(0.5)
    assert receiver.attempts == 0
    assert (await subscription_state(client, app, f"{PATH}/{sub['id']}"))["state"] == "expired"


async def test_subscriptions_belong_to_their_creator_and_tenant(client, app, token, person, receiver, clock):
    sub = await subscribe(client, app, receiver, clock)
    item = f"{PATH}/{sub['id']}"
    other_app = auth(token(scopes=(), roles=["DeviceManagementConfiguration.Read.All"]))
    other_tenant = auth(token(scopes=(), roles=["DeviceManagementConfiguration.Read.All"],
                              tenant="00000000-0000-4000-8000-0000000000aa"))
    for who in (other_app, other_tenant):
        await failure(client, "GET", item, who, 404)
        await failure(client, "PATCH", item, who, 404, json={"clientState": "x"})
        await failure(client, "DELETE", item, who, 404)
        assert (await call(client, "GET", PATH, who))["value"] == []
    await failure(client, "GET", f"{PATH}/not-a-guid", app, 404)


async def test_subscribing_takes_read_permission_and_for_users_the_view_right(client, token, person, reader,
                                                                              receiver, clock):
    no_scope = auth(token(scopes=["User.Read"]))
    assert "DeviceManagementConfiguration.Read.All" in (
        await failure(client, "POST", PATH, no_scope, 403, json=subscription(receiver, clock)))["message"]
    without_role = person("nobody")
    assert "View elevation requests" in (
        await failure(client, "POST", PATH, without_role, 403, json=subscription(receiver, clock)))["message"]
    await subscribe(client, reader, receiver, clock)  # Endpoint Privilege Reader may watch
    await failure(client, "POST", PATH, {}, 401, json=subscription(receiver, clock))


async def subscription_state(client, who, item: str) -> dict:
    return (await call(client, "GET", item, who))["@epm.delivery"]


async def until(condition, timeout: float = 20) -> None:
    async def wait():
        while not condition():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(wait(), timeout)


async def until_value(read, accept, timeout: float = 20):
    async def wait():
        while not accept(value := await read()):
            await asyncio.sleep(0.05)
        return value
    return await asyncio.wait_for(wait(), timeout)


async def test_expiry_is_notified_once_the_sweep_writes_it_down(client, app, requester, receiver, clock,
                                                                 requests_service, tenant):
    await requests_service.store.set_policy(tenant, Policy(pending_ttl=timedelta(minutes=1)))
    request = await create(client, requester)
    await subscribe(client, app, receiver, clock, changeType="updated",
                    resource=f"{RESOURCE}?$filter=status eq 'expired'")
    clock.advance(timedelta(minutes=1))  # past the pending TTL: expired at once, written down by the next sweep
    assert (await call(client, "GET", f"/beta/deviceManagement/elevationRequests/{request['id']}",
                       app))["status"] == "expired"
    await sweep(requests_service.store, clock.now())
    (expired,) = await receiver.wait_for(1)
    assert expired["resourceData"]["id"] == request["id"] and expired["changeType"] == "updated"


async def test_long_expired_subscriptions_are_dropped_and_do_not_count(client, app, receiver, clock,
                                                                         requests_service):
    sub = await subscribe(client, app, receiver, clock, expirationDateTime=expiry(clock, 1))
    assert await delete_expired(requests_service.store.pool, clock.now()) == 0  # expired or not, kept a day
    assert await delete_expired(requests_service.store.pool, clock.now() + timedelta(days=1, minutes=2)) >= 1
    await failure(client, "GET", f"{PATH}/{sub['id']}", app, 404)
