"""Nobody gets in: every gateway route and every gRPC method, against every kind of bad token, in dev (HS256) and
production (RS256 from a JWKS server, audience and issuer checked) configurations; permissions per method; and the
reviewer rights that Intune role assignments grant."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

import aiohttp
import grpc
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from epm.requests.v1 import elevation_request_service_pb2 as requests_pb
from epm.requests.v1 import elevation_request_service_pb2_grpc as requests_grpc
from epm.requests.v1 import managed_device_service_pb2 as devices_pb

from gateway import batch, elevation_requests, managed_devices, reputation, role_assignments, subscriptions, support
from gateway.app import create_app
from services.common.auth import CONFIG_READ, CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE, MMD_SUPPORT
from tests.claims import ROLE_ADMIN

from .conftest import (
    DEVICE_NAME,
    EVERYTHING,
    MANAGER,
    READ_ONLY,
    READER,
    ROLE_WRITE,
    USER_SCOPES,
    Route,
    auth,
    backend_of,
    bad_tokens,
    batch_of,
    batchable,
    body,
    call,
    claims,
    device_body,
    fill,
    gateway_routes,
    invoke,
    request_body,
    rpc_methods,
    sha,
    ticket,
)

UNAUTHENTICATED, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
# Writes a read permission may make, and why (every other write needs a write permission).
READ_MAY_WRITE = {subscriptions.create: "Graph: subscribing takes the resource's read permission",
                  subscriptions.update: "the subscriber's own subscription", subscriptions.delete: "the same"}
RPC_READ_MAY_WRITE = {"CreateSubscription", "UpdateSubscription", "DeleteSubscription"}
READ_VERBS = ("Get", "List", "Count", "Stream", "Watch", "Lookup", "Analyze", "Summarize")  # any other verb writes
CODES = {401: "InvalidAuthenticationToken", 403: "Forbidden", 404: "ResourceNotFound"}
AUDIENCE, ISSUER = "api://epm-security-tests", "https://login.example/epm/v2.0"
BATCH = Route("POST", batch.PATH, batch.batch)


def dev_signer(settings):
    return lambda payload: jwt.encode(payload, settings.jwt_secret, algorithm="HS256")


def graph_error(path: str, status: int, text: str, headers) -> dict:
    """The error body of a refusal: Graph's under /beta, MMD's under /support; a bearer challenge on 401."""
    error = json.loads(text)["error"]
    if path.startswith(support.PREFIX):
        assert set(error) == {"code", "message"} and error["code"] == str(status), text
    else:
        assert set(error) == {"code", "message", "innerError"}, text
        assert error["code"] == CODES[status], text
        assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}, text
    assert error["message"], text
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer "), headers
    return error


async def send(client, route, path: str, header: str | None, world, batched: bool = False) -> tuple[int, str, dict]:
    """The route's call on `path` (`batched`: as the one item of a batch, where the route may be); a batch's answer
    is its item's status, body and headers."""
    payload = body(route, world)
    if batched and batchable(route):
        route, path, payload = BATCH, batch.PATH, batch_of(route, path, world)
    headers = {} if header is None else {"Authorization": header}
    kwargs = {} if payload is None else {"json": payload}
    async with client.request(route.method, path, headers=headers, **kwargs) as resp:
        status, text, headers = resp.status, await resp.text(), dict(resp.headers)
    if route == BATCH and status == 200:
        [answer] = json.loads(text)["responses"]
        return answer["status"], json.dumps(answer["body"]), answer["headers"]
    return status, text, headers


async def refuse_everywhere(client, settings, world, tokens: dict, status: int, batched: bool = False) -> int:
    """Every route, every token: `status` in the error shape of its API; returns the number of cases."""
    cases = 0
    for route in gateway_routes(settings):
        for path in fill(route, world):
            for name, header in tokens.items():
                got, text, headers = await send(client, route, path, header, world, batched)
                assert got == status, f"{route.method} {path} with {name}: {got} {text}"
                graph_error(path, status, text, headers)
                cases += 1
    return cases


# --- the gateway -----------------------------------------------------------------------------------------------

async def test_every_route_refuses_every_bad_token_before_any_backend(client, settings, world, untouched, figures):
    tokens = bad_tokens(dev_signer(settings), claims(world.tenant, roles=EVERYTHING))
    async with untouched(world.tenant, backend=False):
        cases = await refuse_everywhere(client, settings, world, tokens, 401)
    figures(f"{len(gateway_routes(settings))} gateway routes x {len(tokens)} bad tokens (HS256 gateway): "
            f"{cases} cases, all 401, no backend reached, no row changed")


@pytest.mark.parametrize("batched", [False, True], ids=["on its own", "in a batch"])
async def test_every_route_needs_a_permission_and_a_read_permission_cannot_write(client, settings, world,
                                                                                untouched, figures, batched):
    """Each call on its own, then (`batched`) as the one item of a batch, which authorises it the same way."""
    sign = dev_signer(settings)
    nothing = {"no permission (User.Read)": "Bearer " + sign(claims(world.tenant, scopes=["User.Read"]))}
    async with untouched(world.tenant):
        cases = await refuse_everywhere(client, settings, world, nothing, 403, batched)
    # an application (no Intune role involved), the one that created the subscription (which only it sees)
    reader = "Bearer " + sign(claims(world.tenant, roles=READ_ONLY, oid=world.app_oid))
    refused = allowed = 0
    async with untouched(world.tenant):
        for route in gateway_routes(settings):
            if route.handler in READ_MAY_WRITE:
                continue
            for path in fill(route, world):
                status, text, headers = await send(client, route, path, reader, world, batched)
                if route.writes:
                    assert status == 403, f"{route.method} {path} with a read permission: {status} {text}"
                    graph_error(path, 403, text, headers)
                    refused += 1
                else:  # the same token reads: the refusals are for the permission, not the token or the route
                    assert status < 300, f"{route.method} {path} with a read permission: {status} {text}"
                    allowed += 1
    figures(f"gateway{' batch items' if batched else ''}: {cases} route cases without a permission, all 403; "
            f"{refused} write cases with a read "
            f"permission, all 403; {allowed} read cases with it, all 2xx (control); no row changed")


@pytest.fixture(scope="module")
async def production_gateway(settings, events_service, requests_service, reputation_address):
    """A second gateway as production runs it: RS256 keys from a JWKS endpoint (a real local HTTP server),
    audience and issuer checked. Yields (url, private key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig"}
    async def keys(request: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    jwks = web.Application()
    jwks.router.add_get("/keys", keys)
    runners = [web.AppRunner(jwks, access_log=None)]
    await runners[0].setup()
    await web.TCPSite(runners[0], "127.0.0.1", 0).start()
    keys_url = f"http://127.0.0.1:{runners[0].addresses[0][1]}/keys"
    app = create_app(replace(settings, jwt_secret="", jwks_url=keys_url, jwt_audience=AUDIENCE, jwt_issuer=ISSUER,
                             events_addr=f"127.0.0.1:{events_service.port}",
                             requests_addr=f"127.0.0.1:{requests_service.port}", reputation_addr=reputation_address))
    runners.append(web.AppRunner(app, access_log=None))
    await runners[1].setup()
    await web.TCPSite(runners[1], "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runners[1].addresses[0][1]}", key
    for runner in reversed(runners):
        await runner.cleanup()


def _hs256(payload: dict, secret: bytes) -> str:
    """HS256 made by hand with the RSA public key as the secret (the algorithm confusion attack)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'k1'}).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing}.{b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


async def test_production_tokens_need_the_right_key_audience_and_issuer(production_gateway, settings, world,
                                                                       untouched, figures):
    url, key = production_gateway
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(payload, signer=key, kid="k1"):
        return jwt.encode(payload, signer, algorithm="RS256", headers={"kid": kid})

    good = claims(world.tenant, roles=EVERYTHING, aud=AUDIENCE, iss=ISSUER)
    tokens = bad_tokens(sign, good) | {f"{name}": "Bearer " + token for name, token in {
        "wrong audience": sign({**good, "aud": "https://graph.microsoft.com"}),
        "no audience": sign({k: v for k, v in good.items() if k != "aud"}),
        "wrong issuer": sign({**good, "iss": f"https://sts.windows.net/{world.tenant}/"}),
        "no issuer": sign({k: v for k, v in good.items() if k != "iss"}),
        "unknown kid": sign(good, kid="k2"),
        "another key, same kid": sign(good, signer=stranger_key),
        "HS256 with the public key": _hs256(good, public_pem),
        "the dev secret": dev_signer(settings)(good),
    }.items()}
    async with aiohttp.ClientSession(base_url=url) as client:
        async with client.get("/beta/no-such-resource", headers=auth(sign(good))) as resp:
            assert resp.status == 404, await resp.text()  # the good token passes (control): unknown path, not 401
        async with untouched(world.tenant, backend=False):
            cases = await refuse_everywhere(client, settings, world, tokens, 401)
    figures(f"gateway routes x {len(tokens)} bad tokens (RS256 gateway, audience and issuer): {cases} cases, "
            "all 401, no backend reached")


# --- the gRPC services -------------------------------------------------------------------------------------------

def each(channel, method, metadata: dict) -> dict:
    return {name: invoke(channel, method, md) for name, md in metadata.items()}


def _expected_control(method) -> bool:
    # an application cannot activate (or deactivate) a role for itself: checked below
    return method.name not in ("SelfActivate", "SelfDeactivate")


async def test_every_rpc_refuses_every_bad_token_and_checks_its_permission(sync_channels, settings, untouched, figures):
    tenant, control_tenant = str(uuid.uuid4()), str(uuid.uuid4())
    sign = dev_signer(settings)
    metadata = {name: () if header is None else (("authorization", header),)
                for name, header in bad_tokens(sign, claims(tenant, roles=EVERYTHING)).items()}
    nothing = (("authorization", "Bearer " + sign(claims(tenant, scopes=["User.Read"]))),)
    reader = (("authorization", "Bearer " + sign(claims(tenant, roles=READ_ONLY))),)
    full = (("authorization", "Bearer " + sign(claims(control_tenant, roles=EVERYTHING))),)
    user = (("authorization", "Bearer " + sign(claims(control_tenant, scopes=[ROLE_WRITE, *USER_SCOPES]))),)
    counts = {"bad": 0, "nothing": 0, "read-only": 0}
    methods = rpc_methods()
    async with untouched(tenant):
        for method in methods:
            channel = sync_channels[backend_of(method)]
            codes = await asyncio.to_thread(each, channel, method, metadata)
            assert codes == dict.fromkeys(metadata, UNAUTHENTICATED), method.full_name
            counts["bad"] += len(codes)
            assert await asyncio.to_thread(invoke, channel, method, nothing) == DENIED, method.full_name
            counts["nothing"] += 1
            if not method.name.startswith(READ_VERBS) and method.name not in RPC_READ_MAY_WRITE:
                assert await asyncio.to_thread(invoke, channel, method, reader) == DENIED, method.full_name
                counts["read-only"] += 1
    for method in methods:  # control: the same empty requests with a good token get past authorization
        token = full if _expected_control(method) else user
        code = await asyncio.to_thread(invoke, sync_channels[backend_of(method)], method, token)
        assert code not in (UNAUTHENTICATED, DENIED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), \
            f"{method.full_name}: {code}"
    figures(f"{len(methods)} gRPC methods x {len(metadata)} bad tokens: {counts['bad']} cases, all UNAUTHENTICATED; "
            f"{counts['nothing']} without a permission and {counts['read-only']} writes with a read permission, all "
            "PERMISSION_DENIED; no row changed")


async def test_service_to_service_methods_take_the_callers_own_rights(sync_channels, settings, client, world):
    """History, usage and seen devices are called by one service for a caller, with the caller's token: a user
    token gets only what its own rights give."""
    sign = dev_signer(settings)
    requests, events = sync_channels["requests"], sync_channels["events"]
    methods = {m.name: m for m in rpc_methods()}

    def as_user(*scopes, oid=None):
        return (("authorization", "Bearer " + sign(claims(world.tenant, scopes=scopes, oid=oid or str(uuid.uuid4())))),)

    async def code(name, metadata, request=None):
        channel = events if name == "GetElevationStats" else requests
        return await asyncio.to_thread(invoke, channel, methods[name], metadata, request)

    someone = as_user(*USER_SCOPES)  # may ask for elevations, holds no Intune role
    assert await code("GetRequestHistory", someone, requests_pb.GetRequestHistoryRequest(user_id=world.requester)) \
        == DENIED  # another user's history needs the view right
    assert await code("GetRequestHistory", someone, requests_pb.GetRequestHistoryRequest(device_id="sec-device")) \
        == DENIED  # so does a device it never asked on
    own = as_user(*USER_SCOPES, oid=world.requester)
    assert await code("GetRequestHistory", own, requests_pb.GetRequestHistoryRequest(
        user_id=world.requester, device_id="sec-device")) == grpc.StatusCode.OK  # control: its own
    read_only = as_user(CONFIG_READ, DEVICES_READ)
    assert await code("RecordElevationUsage", read_only, requests_pb.RecordElevationUsageRequest(
        device_id="sec-device", file_hash=sha("tool.exe"))) == DENIED
    assert await code("RecordSeenDevices", read_only, devices_pb.RecordSeenDevicesRequest()) == DENIED
    assert await code("GetElevationStats", as_user("User.Read")) == DENIED
    # an analysis asks for the history with the caller's token: without the view right, another user's is left out
    analyze = {"file": {"fileHash": sha("tool.exe")}, "userId": world.requester}
    for who, left_out in ((someone, True), (tuple(("authorization", v) for v in world.app.values()), False)):
        found = await call(client, "POST", reputation.SECURITY + "/fileReputations/analyze", dict(who), 200,
                           json=analyze)
        assert ("requests" in found["unavailable"], found["userRisk"] is None) == (left_out, left_out), found
    # what reviewers rely on: reputation asks requests for the caller's Intune rights (GetMyPermissions)
    async with client.post(reputation.SECURITY + "/publisherRules", headers=auth(sign(claims(
            world.tenant, scopes=USER_SCOPES))), json={"kind": "publisherName", "value": "Vouched"}) as resp:
        assert resp.status == 403 and "Modify elevation requests" in await resp.text()


# --- reviewer rights (Intune roles) through the gateway ----------------------------------------------------------

PATH = elevation_requests.PATH
DECISIONS = tuple(elevation_requests.ACTIONS)


@dataclass
class Tenant:
    """A new tenant: its id, its role admin's headers, and `user(oid, *scopes)`: headers of a signed-in user."""
    id: str
    admin: dict
    sign: object

    def user(self, oid: str = "", *scopes) -> dict:
        return auth(self.sign(claims(self.id, scopes=scopes or USER_SCOPES, oid=oid or str(uuid.uuid4()))))


@pytest.fixture
def fresh(settings) -> Tenant:
    tenant, sign = str(uuid.uuid4()), dev_signer(settings)
    return Tenant(tenant, auth(sign(claims(tenant, scopes=[ROLE_WRITE], wids=ROLE_ADMIN["wids"]))), sign)


SELF_ACTIVATE = f"{role_assignments.ROLES_PATH}/{MANAGER}/selfActivate"
ACTIVATING = "Directory.AccessAsUser.All"  # what selfActivate takes


async def assign(client, admin, oid: str, role: str) -> str:
    created = await call(client, "POST", role_assignments.PATH, admin, 201, json={"userId": oid, "roleId": role})
    return created["id"]


async def decisions_refused(client, who: dict, request_id: str) -> None:
    for action in DECISIONS:
        async with client.post(f"{PATH}/{request_id}/{action}", headers=who, json={}) as resp:
            assert resp.status == 403, f"{action}: {resp.status} {await resp.text()}"
            graph_error(PATH, 403, await resp.text(), resp.headers)


async def test_a_reviewer_without_a_role_can_neither_view_nor_decide(client, fresh, untouched):
    created = await call(client, "POST", PATH, fresh.user(), 201, json=request_body("dev-1"))
    reviewer = fresh.user()
    async with untouched(fresh.id):
        await decisions_refused(client, reviewer, created["id"])
        for path in (PATH, f"{PATH}/{created['id']}", f"{PATH}/{created['id']}/analyze",
                     elevation_requests.AUDIT_PATH):
            await call(client, "GET", path, reviewer, 403)


async def test_a_reader_views_but_cannot_decide(client, fresh, untouched):
    oid = str(uuid.uuid4())
    await assign(client, fresh.admin, oid, READER)
    created = await call(client, "POST", PATH, fresh.user(), 201, json=request_body("dev-1"))
    reader = fresh.user(oid)
    assert (await call(client, "GET", f"{PATH}/{created['id']}", reader, 200))["status"] == "pending"
    async with untouched(fresh.id):
        await decisions_refused(client, reader, created["id"])
        await call(client, "PATCH", f"{PATH}/{created['id']}", reader, 403, json={"requestJustification": "x"})
        await call(client, "DELETE", f"{PATH}/{created['id']}", reader, 403)


async def test_a_reviewer_cannot_approve_or_deny_their_own_request(client, fresh, untouched):
    mine, colleague = str(uuid.uuid4()), str(uuid.uuid4())
    for oid in (mine, colleague):
        await assign(client, fresh.admin, oid, MANAGER)
    own = await call(client, "POST", PATH, fresh.user(mine), 201, json=request_body("dev-1"))
    async with untouched(fresh.id):
        for action in ("approve", "deny"):
            async with client.post(f"{PATH}/{own['id']}/{action}", headers=fresh.user(mine), json={}) as resp:
                assert resp.status == 403, f"{action}: {resp.status} {await resp.text()}"
                assert "own" in graph_error(PATH, 403, await resp.text(), resp.headers)["message"]
    approved = await call(client, "POST", f"{PATH}/{own['id']}/approve", fresh.user(colleague), 200, json={})
    assert approved["reviewCompletedByUserId"] == colleague  # control: another manager decides


async def test_an_expired_or_inactive_assignment_grants_nothing(client, fresh, clock):
    """Assignments end in time only as activations (eligible, then selfActivate for a duration): one activated
    for 36 seconds grants while active and nothing once the requests service's clock has passed its end."""
    created = await call(client, "POST", PATH, fresh.user(), 201, json=request_body("dev-1"))
    oid = str(uuid.uuid4())
    reviewer = fresh.user(oid)
    assignment = await assign(client, fresh.admin, oid, MANAGER)
    await call(client, "POST", f"{role_assignments.PATH}/{assignment}/makeEligible", fresh.admin, 200)
    await call(client, "GET", f"{PATH}/{created['id']}", reviewer, 403)  # eligible, not active: nothing
    active = await call(client, "POST", SELF_ACTIVATE, fresh.user(oid, ACTIVATING), 200,
                        json={"reason": "On call", "duration": "0.01"})
    assert active["isElevated"] is True
    await call(client, "GET", f"{PATH}/{created['id']}", reviewer, 200)  # control: while active, it grants
    clock.advance(timedelta(minutes=1))  # past its end (the test clock's total offset stays far below 20 h)
    item = f"{role_assignments.PATH}/{assignment}"
    assert (await call(client, "GET", item, fresh.admin, 200))["isElevated"] is False
    await call(client, "GET", f"{PATH}/{created['id']}", reviewer, 403)
    await decisions_refused(client, reviewer, created["id"])


async def test_nobody_grants_themselves_a_role_and_assignments_have_no_scopes(client, fresh, untouched):
    oid = str(uuid.uuid4())
    assignment = await assign(client, fresh.admin, oid, READER)
    user = fresh.user(oid)  # may ask for elevations: no role management permission
    async with untouched(fresh.id):
        await call(client, "POST", role_assignments.PATH, user, 403, json={"userId": oid, "roleId": MANAGER})
        await call(client, "POST", f"{role_assignments.PATH}/{assignment}/makePermanent", user, 403, json={})
        # nor moves the end of an activation: only a role administrator does (with the activating scope too)
        later = {"expirationDateTime": "2099-01-01T00:00:00Z"}
        for who in (user, fresh.user(oid, ACTIVATING)):
            await call(client, "PATCH", f"{role_assignments.PATH}/{assignment}", who, 403, json=later)
        await call(client, "POST", SELF_ACTIVATE, fresh.user(oid), 403, json={"reason": "x"})  # not its scope
        # a reader cannot activate a role it does not hold
        await call(client, "POST", SELF_ACTIVATE, fresh.user(oid, ACTIVATING), 404, json={"reason": "Let me in"})
        # the model has no scopes (PIM v1 assignments are tenant-wide): a scoped one is refused, never widened
        await call(client, "POST", role_assignments.PATH, fresh.admin, 400,
                   json={"userId": oid, "roleId": MANAGER, "directoryScopeId": "/administrativeUnits/1"})


# --- who is a user, and nobody decides a request made with their own object id ---------------------------------

def _app(tenant: Tenant, oid: str, *roles) -> dict:
    return auth(tenant.sign(claims(tenant.id, roles=roles or (CONFIG_WRITE,), oid=oid)))


async def test_a_user_token_without_scp_is_refused_not_taken_for_an_application(client, fresh, untouched):
    """The reported hole: user U's token with `roles` and no `scp` approved U's own request as an application."""
    user = str(uuid.uuid4())
    own = await call(client, "POST", PATH, fresh.user(user), 201, json=request_body("dev-1"))
    forged = {"tid": fresh.id, "oid": user, "upn": "mallory@contoso.example", "idtyp": "user",
              "roles": [CONFIG_WRITE]}
    tokens = {"idtyp user": forged, "upn, no idtyp": {k: v for k, v in forged.items() if k != "idtyp"},
              "unique_name": {**{k: v for k, v in forged.items() if k not in ("idtyp", "upn")},
                              "unique_name": "mallory@contoso.example"}}
    async with untouched(fresh.id):
        for name, payload in tokens.items():
            header = auth(fresh.sign({**claims(fresh.id), **payload}))
            for action in ("approve", "deny"):
                async with client.post(f"{PATH}/{own['id']}/{action}", headers=header, json={}) as resp:
                    text = await resp.text()
                    assert resp.status == 401, f"{name} {action}: {resp.status} {text}"
                    assert "scp" in graph_error(PATH, 401, text, resp.headers)["message"]
    assert (await call(client, "GET", f"{PATH}/{own['id']}", _app(fresh, str(uuid.uuid4()), CONFIG_READ),
                       200))["status"] == "pending"


async def test_no_caller_decides_a_request_made_with_its_own_object_id(client, fresh, sync_channels, untouched):
    """Self-review is refused by object id whatever the token type: an application asking on behalf of a user
    with its own oid (Graph), an MMD agent approving its ticket's request on the Graph path, and the same over
    gRPC; another application decides them (control)."""
    app = str(uuid.uuid4())
    graph = await call(client, "POST", PATH, _app(fresh, app), 201,
                       json={**request_body("dev-1"), "requestedByUserId": app})
    agent = str(uuid.uuid4())
    agent_headers = _app(fresh, agent, CONFIG_WRITE, MMD_SUPPORT)
    await call(client, "POST", managed_devices.PATH, _app(fresh, str(uuid.uuid4()), CONFIG_WRITE, DEVICES_WRITE),
               201, json=device_body(DEVICE_NAME))
    mmd = await call(client, "POST", support.PATH.format(tenantId=fresh.id), agent_headers, 201,
                     json=ticket("INC-SELF"))
    async with untouched(fresh.id):
        for request_id, headers in ((graph["id"], _app(fresh, app)), (mmd["id"], agent_headers)):
            for action in ("approve", "deny"):
                async with client.post(f"{PATH}/{request_id}/{action}", headers=headers, json={}) as resp:
                    text = await resp.text()
                    assert resp.status == 403, f"{action}: {resp.status} {text}"
                    assert "own" in graph_error(PATH, 403, text, resp.headers)["message"]
        stub = requests_grpc.ElevationRequestServiceStub(sync_channels["requests"])
        metadata = tuple((k.lower(), v) for k, v in _app(fresh, app).items())
        with pytest.raises(grpc.RpcError) as refused:
            await asyncio.to_thread(stub.ApproveElevationRequest,
                                    requests_pb.ReviewElevationRequestRequest(id=graph["id"]), metadata=metadata)
        assert refused.value.code() == DENIED and "own" in refused.value.details()
    for request_id in (graph["id"], mmd["id"]):
        approved = await call(client, "POST", f"{PATH}/{request_id}/approve", _app(fresh, str(uuid.uuid4())), 200,
                              json={})
        assert approved["status"] == "approved"
