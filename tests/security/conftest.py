"""What the security tests share: a tenant holding one of every resource (built once, through the real gateway),
tokens of every bad kind, the gateway's routes and the services' RPC methods as tables, and proof that a refused
call reached no backend and changed no row."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import json
import pkgutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import asyncpg
import epm
import grpc
import jwt
import pytest
from epm.reputation.v1 import file_reputation_service_pb2 as reputation_pb
from epm.reputation.v1 import file_reputation_service_pb2_grpc as reputation_grpc
from google.protobuf.message_factory import GetMessageClass
from prometheus_client import REGISTRY

from gateway import (
    batch,
    elevation_requests,
    elevations,
    intune_roles,
    managed_devices,
    metadata,
    provisioning,
    reputation,
    role_assignments,
    siem,
    subscriptions,
    support,
)
from gateway.app import create_app
from services.common.auth import CONFIG_READ, CONFIG_WRITE, DEVICES_READ, DEVICES_WRITE, MMD_DEVICE_READ, MMD_SUPPORT
from services.common.metrics import GRPC_REQUESTS

from .. import feed_data
from ..receiver import Receiver

MANAGER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"  # Endpoint Privilege Manager: view + modify
READER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000002"   # Endpoint Privilege Reader: view
ROLE_WRITE, ROLE_READ = "RoleManagement.ReadWrite.Directory", "RoleManagement.Read.Directory"
RBAC_WRITE, RBAC_READ = "DeviceManagementRBAC.ReadWrite.All", "DeviceManagementRBAC.Read.All"
EVERYTHING = (CONFIG_WRITE, DEVICES_WRITE, ROLE_WRITE, RBAC_WRITE, MMD_SUPPORT)  # every family's write permission
READ_ONLY = (CONFIG_READ, DEVICES_READ, ROLE_READ, RBAC_READ, MMD_DEVICE_READ)  # every family's read permission
USER_SCOPES = (CONFIG_WRITE, DEVICES_WRITE)  # what a signed-in requester or reviewer holds
DEVICE_NAME = "SEC-01"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- tokens ------------------------------------------------------------------------------------------------

def claims(tenant: str, *, scopes=(), roles=(), oid: str = "", **extra) -> dict:
    """An Entra ID v2 style access token's claims, valid for an hour."""
    now = int(time.time())
    out = {"aud": "https://graph.microsoft.com", "iss": f"https://sts.windows.net/{tenant}/", "iat": now, "nbf": now,
           "exp": now + 3600, "tid": tenant, "oid": oid or str(uuid.uuid4()), "upn": "", **extra}
    if scopes:
        out["scp"] = " ".join(scopes)
    if roles:
        out["roles"] = list(roles)
    return out


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(payload: dict, **header) -> str:
    """alg=none: no signature at all."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT', **header})}.{_b64(payload)}."


def bad_tokens(sign, good: dict) -> dict[str, str | None]:
    """Authorization header values a verifier must refuse (None: no header), for a verifier that accepts
    `sign(good)`. Each is `good` (full access) but for one flaw."""
    now = int(time.time())
    head, _, signature = sign(good).split(".")
    without = {k: {c: v for c, v in good.items() if c != k} for k in ("tid", "exp")}
    forged = {**good, "tid": str(uuid.uuid4())}  # a payload the signature was not made for
    return {
        "no header": None,
        "empty bearer": "Bearer ",
        "basic scheme": "Basic " + base64.b64encode(b"admin:admin").decode(),
        "not a JWT": "Bearer not-a-token",
        "bad signature": "Bearer " + sign(good).rsplit(".", 1)[0] + ".c2lnbmF0dXJl",
        "other key": "Bearer " + jwt.encode(good, "another-secret-that-is-long-enough-!", algorithm="HS256"),
        "tampered payload": f"Bearer {head}.{_b64(forged)}.{signature}",
        "alg none": "Bearer " + unsigned(good),
        "expired": "Bearer " + sign({**good, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "not yet valid (nbf)": "Bearer " + sign({**good, "nbf": now + 3600, "exp": now + 7200}),
        "issued in the future (iat)": "Bearer " + sign({**good, "iat": now + 3600, "exp": now + 7200}),
        "no exp": "Bearer " + sign(without["exp"]),
        "no tid": "Bearer " + sign(without["tid"]),
        "empty tid": "Bearer " + sign({**good, "tid": ""}),
        "malformed scp": "Bearer " + sign({**good, "scp": 123}),
        "exp as text": "Bearer " + sign({**good, "exp": str(good["exp"])}),
        "nbf as text": "Bearer " + sign({**good, "nbf": str(good["nbf"])}),
        "iat as text": "Bearer " + sign({**good, "iat": str(good["iat"])}),
        "exp true": "Bearer " + sign({**good, "exp": True}),
        # a user's token carries its Graph permissions in scp; with roles alone it is no application
        "user without scp (idtyp)": "Bearer " + sign({**good, "idtyp": "user"}),
        "user without scp (upn)": "Bearer " + sign({**good, "upn": "mallory@contoso.example"}),
        "unknown idtyp": "Bearer " + sign({**good, "idtyp": "device"}),
    }


# --- no backend reached, no row changed ----------------------------------------------------------------------

def backend_calls() -> float:
    """gRPC calls the services have answered so far (they run in this process)."""
    return sum(s.value for m in GRPC_REQUESTS.collect() for s in m.samples if s.name.endswith("_total"))


async def settled() -> None:
    """Until no best-effort call between services is in flight (verdicts, usage, seen devices)."""
    for _ in range(400):
        if not REGISTRY.get_sample_value("epm_background_tasks"):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("background calls did not settle")


# written by the Deliverer as it works, not by any API call
DELIVERY_BOOKKEEPING = frozenset({"cursor_txid", "cursor_id", "next_attempt_at", "failed_attempts", "last_error",
                                  "paused_reason"})
TENANT_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
WHERE n.nspname IN ('events', 'requests', 'reputation') AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1, 2"""


async def tenant_rows(database_url: str, tenant: str) -> dict[str, list[str]]:
    """Every row of `tenant` in every service's schema, by table (found from the catalog: new tables count too)."""
    conn = await asyncpg.connect(database_url)
    try:
        out = {}
        for schema, table in await conn.fetch(TENANT_TABLES):
            rows = await conn.fetch(f'SELECT * FROM "{schema}"."{table}" WHERE tenant_id = $1', tenant)  # nosec B608 # catalog names
            out[f"{schema}.{table}"] = sorted(repr({k: v for k, v in r.items() if k not in DELIVERY_BOOKKEEPING})
                                              for r in rows)
        return out
    finally:
        await conn.close()


@dataclass
class Untouched:
    """`async with untouched(tenant, backend=False)`: the block reached no gRPC service (when `backend` is False)
    and changed no row of `tenant`."""
    database_url: str
    tenant: str
    backend: bool = True

    async def __aenter__(self):
        await settled()
        self.calls, self.rows = backend_calls(), await tenant_rows(self.database_url, self.tenant)
        return self

    async def __aexit__(self, *exc):
        if exc[0] is None:
            if not self.backend:
                assert backend_calls() == self.calls, "a refused request reached a backend"
            assert await tenant_rows(self.database_url, self.tenant) == self.rows, "a refused request changed data"


@pytest.fixture
def untouched(database_url):
    return lambda tenant, backend=True: Untouched(database_url, tenant, backend)


# --- the gateway's routes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: object

    @property
    def writes(self) -> bool:
        return self.method != "GET" and self.handler not in READING_POSTS


READING_POSTS = {reputation.analyze_request, reputation.analyze_file, reputation.lookup, elevation_requests.get_all}
# The entity an {id} names, by the longest path prefix it follows.
ID_OF = {
    elevations.PATH: "elevation", elevation_requests.PATH: "request", elevation_requests.AUDIT_PATH: "audit",
    role_assignments.PATH: "assignment", reputation.SECURITY + "/publisherRules": "rule",
    managed_devices.PATH: "device", support.PATH: "support", subscriptions.PATH: "subscription",
    intune_roles.ASSIGNMENTS: "intuneAssignment",
}


def gateway_routes(settings) -> list[Route]:
    """Every route under /beta and /support, read from the app's router: a new route is covered as it is added.
    But $metadata and the service document, which Graph serves to anyone (metadata.ANONYMOUS: those two only)."""
    app = create_app(settings)
    return [Route(r.method, r.resource.canonical, r.handler) for r in app.router.routes()
            if r.method != "HEAD" and r.resource.canonical.startswith(("/beta/", support.PREFIX))
            and r.resource.canonical not in metadata.ANONYMOUS]


def fill(route: Route, world: World) -> list[str]:
    """The route's paths with real ids of `world` (each action of an {action} route)."""
    paths = [route.template]
    if "{action}" in route.template:
        paths = [route.template.replace("{action}", a) for a in elevation_requests.ACTIONS]
    # {roleId}: the role of ids["assignment"], so that /privilegedRoles/{roleId}/assignments/{assignmentId} exists
    values = {"{tenantId}": world.tenant, "{roleId}": READER, "{assignmentId}": world.ids["assignment"],
              "{roleDefinitionId}": READER,
              "{sha256}": world.ids["hash"]}
    if "{id}" in route.template:
        prefix = max((p for p in ID_OF if route.template.startswith(p)), key=len, default=None)
        assert prefix, f"{route.template}: which entity does its {{id}} name? Add it to ID_OF"
        values["{id}"] = world.ids[ID_OF[prefix]]
    out = []
    for path in paths:
        for name, value in values.items():
            path = path.replace(name, value)
        assert "{" not in path, f"{route.template}: a path parameter without a value"
        out.append(path)
    return out


def body(route: Route, world: World):
    """A valid body for the route (a refusal must be for the token, not the body); None: no body."""
    if route.handler is batch.batch:  # one write: a read permission may not make it
        return batch_of(Route("PATCH", elevation_requests.PATH + "/{id}", elevation_requests.update),
                        f"{elevation_requests.PATH}/{world.ids['request']}", world)
    hash_ = world.ids["hash"]
    bodies = {
        elevations.create: event(f"body-{uuid.uuid4()}"), elevations.update: {"policyName": "Renamed"},
        elevation_requests.create: request_body(f"body-{uuid.uuid4()}"),
        elevation_requests.update: {"requestJustification": "Changed"}, elevation_requests.review: {},
        role_assignments.create: {"userId": str(uuid.uuid4()), "roleId": MANAGER},
        role_assignments.self_activate: {"reason": "On call"},
        role_assignments.update: {"expirationDateTime": (world.clock.now() + timedelta(hours=1)).isoformat()},
        reputation.analyze_file: {"file": {"fileHash": hash_}}, reputation.lookup: {"hashes": [hash_]},
        reputation.create_rule: {"kind": "publisherName", "value": f"Rule {uuid.uuid4()}", "blocked": True},
        managed_devices.create: device_body(f"DEV-{uuid.uuid4().hex[:8]}"),
        support.create: ticket(f"INC-{uuid.uuid4().hex[:8]}"), support.close: {"actionsTaken": "Done"},
        subscriptions.create: subscription_body(world.receiver_url, world.clock),
        subscriptions.update: {"clientState": "x"},
        intune_roles.create_assignment: intune_assignment(), intune_roles.update_assignment: {"description": "x"},
        provisioning.update: {"licenseType": "notPaid"},
    }
    if route.handler in bodies:
        return bodies[route.handler]
    return None if route.method in ("GET", "DELETE") else {}


def batch_of(route: Route, path: str, world: World) -> dict:
    """A batch whose one request is the route's call on `path`, with its body()."""
    request = {"id": "1", "method": route.method, "url": path.removeprefix("/beta")}
    if (payload := body(route, world)) is not None:
        request["body"] = payload  # JSON: taken as application/json
    return {"requests": [request]}


def batchable(route: Route) -> bool:
    """Whether the route's calls may be a batch's items (not the batch itself, nor a stream, nor the MMD API)."""
    return route.template.startswith("/beta/") and route.handler is not batch.batch and not (
        route.template.startswith(siem.ROOT + "/"))


# --- resource bodies --------------------------------------------------------------------------------------------

def event(device: str, file: str = "tool.exe") -> dict:
    return {"@odata.type": "#microsoft.graph.privilegeManagementElevation", "deviceId": device,
            "deviceName": DEVICE_NAME, "eventDateTime": _from_now(hours=-1),
            "elevationType": "userConfirmedElevation", "filePath": rf"C:\Tools\{file}", "upn": "adele@contoso.example",
            "userType": "azureAd", "hash": sha(file), "result": 0, "processType": "parent",
            "justification": "Installing tools"}


def _from_now(**delta) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def request_body(device: str, file: str = "tool.exe") -> dict:
    return {"requestedOnDeviceId": device, "deviceName": DEVICE_NAME, "requestJustification": "Installing tools",
            "applicationDetail": {"fileHash": sha(file), "fileName": file, "filePath": r"C:\Tools",
                                  "publisherName": "Contoso Tools"}}


def device_body(name: str) -> dict:
    return {"deviceName": name, "operatingSystem": "Windows", "userPrincipalName": "adele@contoso.example"}


def intune_assignment() -> dict:
    return {"displayName": "Reviewers", "members": [str(uuid.uuid4())],
            "roleDefinition@odata.bind": f"{intune_roles.DEFINITIONS}/{READER}"}


def ticket(number: str) -> dict:
    return {"PartnerTicketId": number, "DeviceName": DEVICE_NAME, "Title": "Install", "Category": "Office",
            "Subcategory": "Install", "PlanOfAction": "Run the installer elevated"}


def subscription_body(url: str, clock) -> dict:
    """Expiring an hour from the requests service's (test) clock."""
    expires = (clock.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    return {"changeType": "created,updated", "notificationUrl": url, "resource": elevation_requests.PATH[6:],
            "expirationDateTime": expires, "clientState": "secret"}


# --- a tenant with one of everything --------------------------------------------------------------------------

@dataclass
class World:
    tenant: str
    ids: dict[str, str]       # entity -> the id of one of it
    app: dict                 # headers: a full-access application of the tenant
    app_oid: str              # its object id (the subscription's creator)
    requester: str            # the object id of the user who asked for ids["request"]
    receiver_url: str
    clock: object


async def call(client: aiohttp.ClientSession, method: str, path: str, headers: dict, status: int, **kwargs):
    async with client.request(method, path, headers=headers, **kwargs) as resp:
        assert resp.status == status, f"{method} {path}: {resp.status} {await resp.text()}"
        return await resp.json() if resp.content_type == "application/json" else await resp.text()


async def build_world(client, settings, reputation_channel, receiver_url: str, clock, tmp: Path) -> World:
    tenant, app_oid, requester = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    app = auth(jwt.encode(claims(tenant, roles=EVERYTHING, oid=app_oid), settings.jwt_secret, algorithm="HS256"))
    user = auth(jwt.encode(claims(tenant, scopes=USER_SCOPES, oid=requester, upn="adele@contoso.example"),
                           settings.jwt_secret, algorithm="HS256"))
    ids = {"tenant": tenant, "hash": sha(f"blocked-in-{tenant}")}
    ids["elevation"] = (await call(client, "POST", elevations.PATH, app, 201, json=event("sec-device")))["id"]
    ids["device"] = (await call(client, "POST", managed_devices.PATH, app, 201, json=device_body(DEVICE_NAME)))["id"]
    ids["request"] = (await call(client, "POST", elevation_requests.PATH, user, 201,
                                 json=request_body("sec-device")))["id"]
    ids["assignment"] = (await call(client, "POST", role_assignments.PATH, app, 201,
                                    json={"userId": str(uuid.uuid4()), "roleId": READER}))["id"]
    ids["intuneAssignment"] = (await call(client, "POST", intune_roles.ASSIGNMENTS, app, 201,
                                          json=intune_assignment()))["id"]
    ids["rule"] = (await call(client, "POST", reputation.SECURITY + "/publisherRules", app, 201,
                              json={"kind": "publisherName", "value": "Contoso Tools", "blocked": True}))["id"]
    ids["support"] = (await call(client, "POST", support.PATH.format(tenantId=tenant), app, 201,
                                 json=ticket("INC-1")))["id"]
    ids["subscription"] = (await call(client, "POST", subscriptions.PATH, app, 201,
                                      json=subscription_body(receiver_url, clock)))["id"]
    audit = await call(client, "GET", elevation_requests.AUDIT_PATH, app, 200)
    ids["audit"] = audit["value"][0]["id"]
    blocklist = tmp / "blocklist.csv"  # the tenant's own list: blocks ids["hash"] for this tenant alone
    blocklist.write_text(f"hash,verdict\n{ids['hash']},block\n")
    stub = reputation_grpc.FileReputationServiceStub(reputation_channel)
    progress = await feed_data.upload(stub, tuple(("authorization", v) for v in app.values()),
                                      reputation_pb.FEED_FORMAT_HASH_LIST, blocklist, feed="own-blocklist")
    assert progress[-1].records == 1
    await settled()
    return World(tenant, ids, app, app_oid, requester, receiver_url, clock)


@pytest.fixture(scope="session")
async def receiver():
    endpoint = await Receiver().start()
    yield endpoint
    await endpoint.close()


@pytest.fixture(scope="session")
async def world(gateway_url, settings, reputation_channel, receiver, clock, tmp_path_factory) -> World:
    async with aiohttp.ClientSession(base_url=gateway_url) as client:
        return await build_world(client, settings, reputation_channel, receiver.url, clock,
                                 tmp_path_factory.mktemp("world"))


@pytest.fixture
async def client(gateway_url):
    """An HTTP client on the gateway without a default token."""
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


# --- the services' RPC methods --------------------------------------------------------------------------------

def rpc_methods():
    """Every method of every service in the generated descriptors (gen/epm/<service>/v1): a new one is covered."""
    found = {}
    for info in pkgutil.walk_packages(epm.__path__, "epm."):
        if info.name.endswith("_pb2"):
            for service in importlib.import_module(info.name).DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    found[f"/{service.full_name}/{method.name}"] = method
    return [found[k] for k in sorted(found)]


def backend_of(method) -> str:
    return method.containing_service.full_name.split(".")[1]  # epm.<backend>.v1.<Service>


def invoke(channel: grpc.Channel, method, metadata, request=None) -> grpc.StatusCode:
    """One call (the sync client: grpc.aio misreports a refused client stream as INTERNAL, grpc/grpc#36066)."""
    request_type, response_type = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
    kind = {(False, False): channel.unary_unary, (True, False): channel.stream_unary,
            (False, True): channel.unary_stream, (True, True): channel.stream_stream}
    rpc = kind[method.client_streaming, method.server_streaming](
        f"/{method.containing_service.full_name}/{method.name}", request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString)
    message = request if request is not None else request_type()
    try:
        answer = rpc(iter([message]) if method.client_streaming else message, metadata=metadata, timeout=15)
        if method.server_streaming:
            list(answer)
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


@pytest.fixture(scope="session")
def sync_channels(events_service, requests_service, reputation_address):
    channels = {"events": grpc.insecure_channel(f"127.0.0.1:{events_service.port}"),
                "requests": grpc.insecure_channel(f"127.0.0.1:{requests_service.port}"),
                "reputation": grpc.insecure_channel(reputation_address)}
    yield channels
    for channel in channels.values():
        channel.close()
