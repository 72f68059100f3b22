"""privilegedRoleAssignments and privilegedRoles (PIM v1 shape) through the real gateway, requests service and
PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import aiohttp
import asyncpg
import pytest

from services.common.auth import GLOBAL_ADMINISTRATOR, INTUNE_ADMINISTRATOR
from tests.claims import ROLE_ADMIN

from .test_elevations import error_of

PATH = "/beta/privilegedRoleAssignments"
ROLES = "/beta/privilegedRoles"
MANAGER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"  # view + modify
READER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000002"   # view
ENTITY_KEYS = {"@odata.context", "@odata.type", "id", "userId", "roleId", "isElevated", "expirationDateTime",
               "resultMessage"}


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(gateway_url, requests_channel):
    """A client without a default token: every call here names its own."""
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


@pytest.fixture
def admin(token) -> dict:
    return auth(token(**ROLE_ADMIN))


@pytest.fixture
def user(token):
    """A signed-in user of this tenant: (object id, headers)."""
    oid = str(uuid.uuid4())
    return oid, auth(token(scopes=["Directory.AccessAsUser.All"], oid=oid, upn="megan@contoso.example"))


async def call(client, method: str, path: str, headers: dict, status: int = 200, **kwargs) -> dict:
    async with client.request(method, path, headers=headers, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json() if status != 204 else {}


async def assign(client, headers, user_id: str, role_id: str = MANAGER) -> dict:
    return await call(client, "POST", PATH, headers, 201, json={"userId": user_id, "roleId": role_id})


async def eligible(client, headers, user_id: str, role_id: str = MANAGER) -> dict:
    created = await assign(client, headers, user_id, role_id)
    return await call(client, "POST", f"{PATH}/{created['id']}/makeEligible", headers)


def expiry(entity: dict) -> datetime:
    assert entity["expirationDateTime"].endswith("Z")
    return datetime.fromisoformat(entity["expirationDateTime"])


async def test_create_returns_the_entity_and_is_idempotent(client, admin):
    user_id = str(uuid.uuid4())
    async with client.post(PATH, json={"userId": user_id, "roleId": MANAGER}, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        location = resp.headers["Location"]
    assert set(created) == ENTITY_KEYS
    assert created["@odata.context"].endswith("/beta/$metadata#privilegedRoleAssignments/$entity")
    assert created["@odata.type"] == "#microsoft.graph.privilegedRoleAssignment"
    assert created["id"] == f"{user_id}_{MANAGER}" and location.endswith(f"{PATH}/{created['id']}")
    assert (created["userId"], created["roleId"], created["isElevated"]) == (user_id, MANAGER, True)
    assert created["expirationDateTime"] is None and created["resultMessage"] is None
    await call(client, "POST", f"{PATH}/{created['id']}/makeEligible", admin)
    again = await assign(client, admin, user_id)
    assert again["id"] == created["id"] and again["isElevated"] is False  # the existing one, unchanged


async def test_get_list_my_and_delete(client, admin, user):
    oid, me = user
    mine = await assign(client, admin, oid, READER)
    other = await assign(client, admin, str(uuid.uuid4()))
    for url in (f"{PATH}/{mine['id']}", f"{PATH}('{mine['id']}')", f"{PATH}(%27{mine['id']}%27)"):
        got = await call(client, "GET", url, admin)
        assert got == mine
    listed = await call(client, "GET", PATH, admin)
    assert listed["@odata.context"].endswith("/beta/$metadata#privilegedRoleAssignments")
    assert sorted(a["id"] for a in listed["value"]) == sorted([mine["id"], other["id"]])
    assert all(set(a) == ENTITY_KEYS - {"@odata.context"} for a in listed["value"])
    my = await call(client, "GET", f"{PATH}/my", me)
    assert [a["id"] for a in my["value"]] == [mine["id"]]
    selected = await call(client, "GET", f"{PATH}/{mine['id']}?$select=isElevated", admin)
    assert set(selected) == {"@odata.context", "@odata.type", "id", "isElevated"}
    await call(client, "DELETE", f"{PATH}/{mine['id']}", admin, 204)
    async with client.get(f"{PATH}/{mine['id']}", headers=admin) as resp:
        await error_of(resp, 404)
    async with client.delete(f"{PATH}/{mine['id']}", headers=admin) as resp:
        await error_of(resp, 404)
    assert (await call(client, "GET", f"{PATH}/my", me))["value"] == []


async def test_privileged_roles_list_their_permissions(client, token):
    roles = await call(client, "GET", ROLES, auth(token(scopes=["RoleManagement.Read.Directory"])))
    assert roles["@odata.context"].endswith("/beta/$metadata#privilegedRoles")
    by_id = {r["id"]: r for r in roles["value"]}
    assert len(by_id) == 7  # 4 Intune roles, then 3 directory roles (read-only here)
    assert [r["name"] for r in roles["value"][4:]] == ["Global Administrator", "Privileged Role Administrator",
                                                        "Intune Administrator"]
    assert by_id[GLOBAL_ADMINISTRATOR]["permissions"] == []
    assert by_id[MANAGER]["name"] == "Endpoint Privilege Manager"
    assert sorted(by_id[MANAGER]["permissions"]) == ["elevationRequests.modify", "elevationRequests.view"]
    assert by_id[READER]["permissions"] == ["elevationRequests.view"]


async def test_make_eligible_and_permanent(client, admin):
    created = await assign(client, admin, str(uuid.uuid4()))
    url = f"{PATH}/{created['id']}"
    made = await call(client, "POST", url + "/makeEligible", admin)
    assert made["@odata.context"].endswith("#privilegedRoleAssignments/$entity")
    assert made["isElevated"] is False and made["expirationDateTime"] is None
    assert (await call(client, "GET", url, admin))["isElevated"] is False
    assert (await call(client, "POST", url + "/makeEligible", admin, json={}))["isElevated"] is False  # no-op
    permanent = await call(client, "POST", url + "/makePermanent", admin)  # no body at all
    assert permanent["isElevated"] is True and permanent["expirationDateTime"] is None
    await call(client, "POST", url + "/makeEligible", admin)
    body = {"reason": "Reviews every day", "ticketNumber": "INC-7", "ticketSystem": None}
    assert (await call(client, "POST", url + "/makePermanent", admin, json=body))["isElevated"] is True


@pytest.mark.parametrize("duration, hours", [("min", 1), ("default", 8), (None, 8), ("3", 3), (2.5, 2.5), (24, 24)])
async def test_self_activate_for_a_duration(client, admin, user, clock, duration, hours):
    oid, me = user
    await eligible(client, admin, oid)
    before = clock.now()
    active = await call(client, "POST", f"{ROLES}/{MANAGER}/selfActivate", me,
                        json={"reason": "Reviewing elevation requests", "duration": duration,
                              "ticketNumber": "INC-1", "ticketSystem": "ServiceNow"})
    after = clock.now()
    assert active["@odata.context"].endswith("#privilegedRoleAssignments/$entity")
    assert active["id"] == f"{oid}_{MANAGER}" and active["isElevated"] is True
    assert before + timedelta(hours=hours) <= expiry(active) <= after + timedelta(hours=hours)
    assert (await call(client, "GET", f"{PATH}/my", me))["value"][0]["expirationDateTime"] == \
        active["expirationDateTime"]


async def test_an_activation_expires_when_time_passes(client, admin, user, clock):
    oid, me = user
    await eligible(client, admin, oid)
    active = await call(client, "POST", f"{ROLES}('{MANAGER}')/selfActivate", me,
                        json={"reason": "On call", "duration": "min"})
    clock.advance(timedelta(minutes=30))
    assert (await call(client, "GET", f"{PATH}/{active['id']}", admin))["isElevated"] is True
    clock.advance(timedelta(minutes=31))
    expired = await call(client, "GET", f"{PATH}/{active['id']}", admin)
    assert expired["isElevated"] is False and expired["expirationDateTime"] is None


async def test_self_activating_a_permanent_assignment_changes_nothing(client, admin, user):
    oid, me = user
    await assign(client, admin, oid)
    unchanged = await call(client, "POST", f"{ROLES}/{MANAGER}/selfActivate", me, json={"reason": "x"})
    assert unchanged["isElevated"] is True and unchanged["expirationDateTime"] is None
    assert "permanent" in unchanged["resultMessage"]


@pytest.mark.parametrize("body, named", [
    ({"reason": "x", "duration": "0"}, "duration"),
    ({"reason": "x", "duration": 0}, "duration"),
    ({"reason": "x", "duration": -2}, "duration"),
    ({"reason": "x", "duration": 24.01}, "duration"),
    ({"reason": "x", "duration": "max"}, "duration"),
    ({"reason": "x", "duration": "PT1H"}, "duration"),
    ({"reason": "x", "duration": True}, "duration"),
    ({"reason": "x", "duration": [1]}, "duration"),
    ({"duration": "min"}, "reason"),
    ({"reason": "", "duration": "min"}, "reason"),
    ({"reason": "x" * 501}, "reason"),
    ({"reason": 5}, "reason"),
    ({"reason": "x", "scope": "/"}, "scope"),
])
async def test_bad_self_activations_are_400(client, admin, user, body, named):
    oid, me = user
    await eligible(client, admin, oid)
    async with client.post(f"{ROLES}/{MANAGER}/selfActivate", json=body, headers=me) as resp:
        assert named in await error_of(resp, 400)
    assert (await call(client, "GET", f"{PATH}/my", me))["value"][0]["isElevated"] is False


@pytest.mark.parametrize("body, named", [
    ({"userId": "me", "roleId": MANAGER}, "userId"),
    ({"roleId": MANAGER}, "userId"),
    ({"userId": str(uuid.uuid4()), "roleId": "Endpoint Privilege Manager"}, "roleId"),
    ({"userId": str(uuid.uuid4()), "roleId": 1}, "roleId"),
    ({"userId": str(uuid.uuid4()), "roleId": MANAGER, "isElevated": False, "colour": "blue"}, "'isElevated', 'colour'"),
    ({"@odata.type": "#microsoft.graph.user", "userId": str(uuid.uuid4()), "roleId": MANAGER}, "microsoft.graph.user"),
    (["userId", "roleId"], "JSON object"),
])
async def test_bad_creates_are_400(client, admin, body, named):
    async with client.post(PATH, json=body, headers=admin) as resp:
        assert named in await error_of(resp, 400)
    assert (await call(client, "GET", PATH, admin))["value"] == []


async def test_bad_action_bodies_are_400(client, admin):
    created = await assign(client, admin, str(uuid.uuid4()))
    url = f"{PATH}/{created['id']}"
    async with client.post(url + "/makePermanent", json={"reason": "x", "justification": "y"}, headers=admin) as resp:
        assert "justification" in await error_of(resp, 400)
    async with client.post(url + "/makeEligible", json={"reason": "x"}, headers=admin) as resp:
        assert "reason" in await error_of(resp, 400)
    as_json, as_text = admin | {"Content-Type": "application/json"}, admin | {"Content-Type": "text/plain"}
    async with client.post(url + "/makePermanent", data="not json", headers=as_json) as resp:
        await error_of(resp, 400)
    async with client.post(url + "/makePermanent", data="reason=x", headers=as_text) as resp:
        await error_of(resp, 415)


async def test_unknown_roles_and_assignments_are_404(client, admin, user):
    oid, me = user
    unknown = str(uuid.uuid4())
    async with client.post(PATH, json={"userId": oid, "roleId": unknown}, headers=admin) as resp:
        assert unknown in await error_of(resp, 404)
    async with client.post(f"{ROLES}/{unknown}/selfActivate", json={"reason": "x"}, headers=me) as resp:
        await error_of(resp, 404)
    async with client.post(f"{ROLES}/{READER}/selfActivate", json={"reason": "x"}, headers=me) as resp:
        await error_of(resp, 404)  # not assigned to the caller
    async with client.post(f"{ROLES}/not-a-role/selfActivate", json={"reason": "x"}, headers=me) as resp:
        assert "roleId" in await error_of(resp, 400)
    for bad_id in ("nope", f"{oid}_{MANAGER}"):
        async with client.get(f"{PATH}/{bad_id}", headers=admin) as resp:
            await error_of(resp, 404)
        async with client.post(f"{PATH}/{bad_id}/makePermanent", headers=admin) as resp:
            await error_of(resp, 404)


async def test_scopes_are_checked(client, http, token, user):
    oid, _ = user
    async with http.get(PATH) as resp:  # DeviceManagement* scopes only
        assert "RoleManagement.Read.Directory" in await error_of(resp, 403)
        assert (await resp.json())["error"]["code"] == "Forbidden"
    async with http.get(ROLES) as resp:
        await error_of(resp, 403)
    reader = auth(token(scopes=["RoleManagement.Read.Directory"]))
    assert (await call(client, "GET", PATH, reader))["value"] == []
    async with client.post(PATH, json={"userId": oid, "roleId": MANAGER}, headers=reader) as resp:
        assert "RoleManagement.ReadWrite.Directory" in await error_of(resp, 403)
    application = auth(token(scopes=(), roles=["RoleManagement.ReadWrite.Directory"]))
    created = await assign(client, application, oid)
    await call(client, "POST", f"{PATH}/{created['id']}/makeEligible", application)
    async with client.post(f"{ROLES}/{MANAGER}/selfActivate", json={"reason": "x"}, headers=application) as resp:
        await error_of(resp, 403)
    async with client.get(PATH) as resp:
        await error_of(resp, 401)


async def test_another_tenants_assignment_is_not_found(client, admin, user, token):
    oid, me = user
    created = await assign(client, admin, oid)
    stranger = auth(token(scopes=["Directory.AccessAsUser.All"], wids=ROLE_ADMIN["wids"], tenant=str(uuid.uuid4()),
                          oid=oid))
    url = f"{PATH}/{created['id']}"
    for method, path in (("GET", url), ("DELETE", url), ("POST", url + "/makeEligible"),
                         ("POST", url + "/makePermanent"), ("POST", f"{ROLES}/{MANAGER}/selfActivate")):
        body = {"reason": "x"} if path.endswith("selfActivate") else None
        async with client.request(method, path, headers=stranger, json=body) as resp:
            await error_of(resp, 404)
    assert (await call(client, "GET", PATH, stranger))["value"] == []
    assert (await call(client, "GET", f"{PATH}/my", stranger))["value"] == []
    assert (await call(client, "GET", url, admin))["isElevated"] is True


async def test_every_change_is_audited_with_the_request_id(client, admin, user, database_url, tenant):
    oid, me = user
    request_ids = []
    async with client.post(PATH, json={"userId": oid, "roleId": MANAGER}, headers=admin) as resp:
        assert resp.status == 201
        created = await resp.json()
        request_ids.append(resp.headers["request-id"])
    url = f"{PATH}/{created['id']}"
    for method, path, body, headers in (
            ("POST", url + "/makeEligible", None, admin),
            ("POST", f"{ROLES}/{MANAGER}/selfActivate", {"reason": "Reviewing", "duration": "min"}, me),
            ("POST", url + "/makePermanent", {"reason": "Promoted", "ticketNumber": "CHG-1"}, admin),
            ("DELETE", url, None, admin)):
        async with client.request(method, path, json=body, headers=headers) as resp:
            assert resp.status in (200, 204), await resp.text()
            request_ids.append(resp.headers["request-id"])
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM requests.audit_events WHERE tenant_id = $1 ORDER BY at, id", tenant)
    finally:
        await conn.close()
    rows = sorted(rows, key=lambda r: request_ids.index(r["correlation_id"]))
    assert [(r["activity"], r["operation"], r["old_state"], r["new_state"]) for r in rows] == [
        ("Create PrivilegedRoleAssignment", "Create", "", "permanent"),
        ("MakeEligible PrivilegedRoleAssignment", "Action", "permanent", "eligible"),
        ("SelfActivate PrivilegedRoleAssignment", "Action", "eligible", "active"),
        ("MakePermanent PrivilegedRoleAssignment", "Action", "active", "permanent"),
        ("Delete PrivilegedRoleAssignment", "Delete", "permanent", ""),
    ]
    assert [r["correlation_id"] for r in rows] == request_ids
    assert all(r["resource_id"] == created["id"] and r["resource_type"] == "privilegedRoleAssignment" for r in rows)
    assert (rows[2]["actor_id"], rows[2]["actor_upn"], rows[2]["reason"]) == (oid, "megan@contoso.example",
                                                                              "Reviewing")
    assert rows[3]["reason"] == "Promoted (ticket CHG-1)"


async def test_a_user_manages_assignments_only_in_an_administrator_role(client, admin, user, token):
    """The permission alone is common in users' tokens (Directory.AccessAsUser.All): without an administrator's
    directory role it would let anyone make themselves a reviewer."""
    oid, me = user
    for scopes in (["RoleManagement.ReadWrite.Directory"], ["Directory.AccessAsUser.All"]):
        plain = auth(token(scopes=scopes, oid=oid, wids=["88d8e3e3-8f55-4a1e-953a-9b9898b8876b"]))  # Directory Readers
        async with client.post(PATH, headers=plain, json={"userId": oid, "roleId": MANAGER}) as resp:
            assert "Global Administrator, Privileged Role Administrator or Intune Administrator" in \
                await error_of(resp, 403)
    created = await assign(client, admin, oid)
    for action in ("makeEligible", "makePermanent"):
        async with client.post(f"{PATH}/{created['id']}/{action}", headers=me, json={}) as resp:
            await error_of(resp, 403)
    async with client.delete(f"{PATH}/{created['id']}", headers=me) as resp:
        await error_of(resp, 403)
    intune_admin = auth(token(scopes=["RoleManagement.ReadWrite.Directory"], wids=[INTUNE_ADMINISTRATOR]))
    assert (await call(client, "POST", f"{PATH}/{created['id']}/makeEligible", intune_admin))["isElevated"] is False
    application = auth(token(scopes=(), roles=["RoleManagement.ReadWrite.Directory"]))
    assert (await call(client, "POST", f"{PATH}/{created['id']}/makePermanent", application))["isElevated"] is True


async def _refused(client, method: str, path: str, headers: dict, status: int, **kwargs) -> str:
    async with client.request(method, path, headers=headers, **kwargs) as resp:
        return await error_of(resp, status)


async def test_pim_v1_refusals_name_what_is_wrong(client, admin, token):
    oid = str(uuid.uuid4())
    created = await eligible(client, admin, oid)
    item = f"{PATH}/{created['id']}"
    for value in ("roleInfo/assignments", "roleInfo,roleInfo", "assignments", "roleInfo($select=name)"):
        assert "supports only 'roleInfo'" in await _refused(client, "GET", item, admin, 400,
                                                            params={"$expand": value})
    assert "more than once" in await _refused(client, "GET", f"{PATH}?$expand=roleInfo&expand=roleInfo", admin, 400)
    with_role = await call(client, "GET", item, admin, params={"$expand": "roleInfo", "$select": "isElevated"})
    assert set(with_role) == {"@odata.context", "@odata.type", "id", "isElevated", "roleInfo"}
    assert with_role["roleInfo"]["name"] == "Endpoint Privilege Manager"
    gone = f"{PATH}/{uuid.uuid4()}_{MANAGER}"
    for path in (gone + "/roleInfo", gone + "/roleInfo/settings", gone + "/roleInfo/assignments",
                 f"{ROLES}/{uuid.uuid4()}", f"{ROLES}/nope/summary", f"{ROLES}/{uuid.uuid4()}/assignments/$count"):
        await _refused(client, "GET", path, admin, 404)
    assert "'expirationDateTime' cannot be null" in await _refused(client, "PATCH", item, admin, 400,
                                                                   json={"expirationDateTime": None})
    assert "names no property" in await _refused(client, "PATCH", item, admin, 400, json={})
    assert "'roleInfo'" in await _refused(client, "PATCH", item, admin, 400, json={"roleInfo": {"name": "x"}})
    assert "at most 24 hours" in await _refused(client, "PATCH", item, admin, 400,
                                                json={"expirationDateTime": "2099-01-01T00:00:00Z"})
    me = auth(token(scopes=["Directory.AccessAsUser.All"], oid=oid))
    assert "selfDeactivate has no property named 'reason'" in await _refused(
        client, "POST", f"{ROLES}/{MANAGER}/selfDeactivate", me, 400, json={"reason": "x"})
    assert (await call(client, "GET", item, admin))["isElevated"] is False  # nothing of that was written
