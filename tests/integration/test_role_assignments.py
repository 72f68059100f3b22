"""RoleAssignmentService over a real gRPC channel and PostgreSQL: PIM v1 semantics, audit rows, permissions()."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import grpc
import pytest
from epm.requests.v1 import role_assignment_service_pb2 as pb
from epm.requests.v1 import role_assignment_service_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.auth import GLOBAL_ADMINISTRATOR
from services.requests.roles import permissions
from tests.claims import ROLE_ADMIN

MANAGER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"  # view + modify
READER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000002"   # view
VIEW, MODIFY = "elevationRequests.view", "elevationRequests.modify"


@pytest.fixture
def stub(requests_channel):
    return pb_grpc.RoleAssignmentServiceStub(requests_channel)


@pytest.fixture
def admin(token):
    """Metadata of a role administrator (delegated RoleManagement.ReadWrite.Directory)."""
    return (("authorization", f"Bearer {token(**ROLE_ADMIN)}"),)


@pytest.fixture
def user(token):
    """A signed-in user of this tenant: (object id, metadata)."""
    oid = str(uuid.uuid4())
    return oid, (("authorization", f"Bearer {token(scopes=['Directory.AccessAsUser.All'], oid=oid)}"),)


@pytest.fixture
async def conn(database_url, requests_channel):
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def fails(call, code: grpc.StatusCode) -> str:
    """Awaits `call`, which must fail with `code`; returns the status message."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value.details()


def reason_of(error: grpc.aio.AioRpcError) -> str:
    info = error_details_pb2.ErrorInfo()
    assert rpc_status.from_call(error).details[0].Unpack(info)
    return info.reason


async def create(stub, md, user_id: str, role_id: str = MANAGER) -> pb.RoleAssignment:
    return await stub.CreateRoleAssignment(pb.CreateRoleAssignmentRequest(user_id=user_id, role_id=role_id),
                                           metadata=md)


async def audit_rows(conn, tenant: str) -> list:
    """The tenant's audit rows in commit order (the fake clock may give several the same `at`: xmin breaks ties)."""
    return await conn.fetch("SELECT * FROM requests.audit_events WHERE tenant_id = $1 "
                            "ORDER BY at, xmin::text::bigint", tenant)


async def test_create_is_permanent_and_idempotent(stub, admin, conn, tenant):
    user_id = str(uuid.uuid4())
    created = await create(stub, admin, user_id.upper())
    assert created.id == f"{user_id}_{MANAGER}" and created.user_id == user_id and created.role_id == MANAGER
    assert created.is_elevated and not created.HasField("expiration_date_time") and created.result_message == ""
    await stub.MakeEligible(pb.MakeEligibleRequest(id=created.id), metadata=admin)
    again = await create(stub, admin, user_id)
    assert again.id == created.id and not again.is_elevated  # returned unchanged, not reset
    assert [r["activity"] for r in await audit_rows(conn, tenant)] == [
        "Create PrivilegedRoleAssignment", "MakeEligible PrivilegedRoleAssignment"]


async def test_get_list_and_delete(stub, admin, conn, tenant):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    a = await create(stub, admin, first, MANAGER)
    b = await create(stub, admin, second, READER)
    c = await create(stub, admin, first, READER)
    got = await stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id=a.id.upper()), metadata=admin)
    assert got == a
    listed = await stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(), metadata=admin)
    assert sorted(x.id for x in listed.role_assignments) == sorted([a.id, b.id, c.id])
    mine = await stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(user_id=first), metadata=admin)
    assert sorted(x.id for x in mine.role_assignments) == sorted([a.id, c.id])
    await stub.DeleteRoleAssignment(pb.DeleteRoleAssignmentRequest(id=a.id), metadata=admin)
    await fails(stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id=a.id), metadata=admin),
                grpc.StatusCode.NOT_FOUND)
    await fails(stub.DeleteRoleAssignment(pb.DeleteRoleAssignmentRequest(id=a.id), metadata=admin),
                grpc.StatusCode.NOT_FOUND)
    deleted = [r for r in await audit_rows(conn, tenant) if r["operation"] == "Delete"]
    assert [(r["resource_id"], r["old_state"], r["new_state"]) for r in deleted] == [(a.id, "permanent", "")]


async def test_list_roles(stub, admin, token):
    reader = (("authorization", f"Bearer {token(scopes=['RoleManagement.Read.Directory'])}"),)
    listed = (await stub.ListRoles(pb.ListRolesRequest(), metadata=reader)).roles
    roles = {r.id: r for r in listed}
    assert len(roles) == 7 and [r.directory_role for r in listed] == [False] * 4 + [True] * 3
    assert roles[GLOBAL_ADMINISTRATOR].name == "Global Administrator" and not roles[GLOBAL_ADMINISTRATOR].permissions
    assert roles[MANAGER].name == "Endpoint Privilege Manager" and set(roles[MANAGER].permissions) == {VIEW, MODIFY}
    assert roles[READER].name == "Endpoint Privilege Reader" and list(roles[READER].permissions) == [VIEW]


async def test_make_eligible_then_self_activate_for_each_duration(stub, admin, user, clock):
    oid, me = user
    assignment = await create(stub, admin, oid)
    eligible = await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    assert not eligible.is_elevated and not eligible.HasField("expiration_date_time")
    for duration, hours in (("min", 1), ("default", 8), ("", 8), ("2.5", 2.5), ("24", 24), ("0.5", 0.5)):
        await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
        before = clock.now()
        active = await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="Reviewing requests",
                                                                duration=duration), metadata=me)
        after = clock.now()
        assert active.id == assignment.id and active.is_elevated, duration
        expires = active.expiration_date_time.ToDatetime(tzinfo=before.tzinfo)
        assert before + timedelta(hours=hours) <= expires <= after + timedelta(hours=hours), duration
    got = await stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id=assignment.id), metadata=admin)
    assert got.is_elevated and got.expiration_date_time == active.expiration_date_time


async def test_an_activation_expires_when_time_passes(stub, admin, user, clock, conn, tenant):
    oid, me = user
    assignment = await create(stub, admin, oid)
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="On call", duration="min"), metadata=me)
    assert await permissions(conn, tenant, oid, clock.now()) == {VIEW, MODIFY}
    clock.advance(timedelta(minutes=61))
    got = await stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id=assignment.id), metadata=admin)
    assert not got.is_elevated and not got.HasField("expiration_date_time")
    assert await permissions(conn, tenant, oid, clock.now()) == frozenset()
    again = await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="Again", duration="1"),
                                    metadata=me)
    assert again.is_elevated


async def test_make_eligible_deactivates_and_is_a_no_op_when_inactive(stub, admin, user, conn, tenant):
    oid, me = user
    assignment = await create(stub, admin, oid)
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)  # no-op: no audit row
    await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="Why", duration="default"), metadata=me)
    deactivated = await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    assert not deactivated.is_elevated
    states = [(r["activity"].split()[0], r["old_state"], r["new_state"]) for r in await audit_rows(conn, tenant)]
    assert states == [("Create", "", "permanent"), ("MakeEligible", "permanent", "eligible"),
                      ("SelfActivate", "eligible", "active"), ("MakeEligible", "active", "eligible")]


async def test_make_permanent_and_self_activating_a_permanent_assignment(stub, admin, user, conn, tenant):
    oid, me = user
    assignment = await create(stub, admin, oid)
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    permanent = await stub.MakePermanent(pb.MakePermanentRequest(
        id=assignment.id, reason="Full-time reviewer", ticket_number="INC-42", ticket_system="ServiceNow"),
        metadata=admin)
    assert permanent.is_elevated and not permanent.HasField("expiration_date_time")
    unchanged = await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="x"), metadata=me)
    assert unchanged.is_elevated and not unchanged.HasField("expiration_date_time")
    assert "permanent" in unchanged.result_message
    rows = await audit_rows(conn, tenant)
    assert [r["activity"] for r in rows][-1] == "MakePermanent PrivilegedRoleAssignment"  # nothing audited after
    assert rows[-1]["reason"] == "Full-time reviewer (ticket ServiceNow INC-42)"


async def test_audit_rows_name_the_actor_and_the_request(stub, token, user, conn, tenant):
    oid, me = user
    admin_oid = str(uuid.uuid4())
    admin_token = token(**ROLE_ADMIN, oid=admin_oid, upn="admin@contoso.example")
    admin = (("authorization", f"Bearer {admin_token}"), ("x-request-id", "req-create"))
    assignment = await create(stub, admin, oid)
    app = (("authorization", f"Bearer {token(scopes=(), roles=['RoleManagement.ReadWrite.Directory'])}"),
           ("x-request-id", "req-eligible"))
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=app)
    await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="Reviewing", duration="min"),
                            metadata=(*me, ("x-request-id", "req-activate")))
    rows = await audit_rows(conn, tenant)
    assert [(r["operation"], r["actor_type"], r["correlation_id"]) for r in rows] == [
        ("Create", "ItPro", "req-create"), ("Action", "Application", "req-eligible"),
        ("Action", "ItPro", "req-activate")]
    create_row, _, activate_row = rows
    assert (create_row["actor_id"], create_row["actor_upn"]) == (admin_oid, "admin@contoso.example")
    assert create_row["resource_type"] == "privilegedRoleAssignment" and create_row["resource_id"] == assignment.id
    assert create_row["resource_name"] == "Endpoint Privilege Manager" and create_row["result"] == "Success"
    assert (activate_row["actor_id"], activate_row["reason"]) == (oid, "Reviewing")


async def test_permissions_are_the_union_over_active_assignments_only(stub, admin, user, conn, tenant, token, clock):
    oid, me = user
    assert await permissions(conn, tenant, oid, clock.now()) == frozenset()
    reader = await create(stub, admin, oid, READER)
    manager = await create(stub, admin, oid, MANAGER)
    assert await permissions(conn, tenant, oid, clock.now()) == {VIEW, MODIFY}
    await stub.MakeEligible(pb.MakeEligibleRequest(id=manager.id), metadata=admin)
    assert await permissions(conn, tenant, oid, clock.now()) == {VIEW}
    assert await permissions(conn, tenant, oid.upper(), clock.now()) == {VIEW}
    await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="Reviewing", duration="2"), metadata=me)
    now = clock.now()
    assert await permissions(conn, tenant, oid, now) == {VIEW, MODIFY}
    assert await permissions(conn, tenant, oid, now + timedelta(hours=3)) == {VIEW}
    await stub.DeleteRoleAssignment(pb.DeleteRoleAssignmentRequest(id=reader.id), metadata=admin)
    assert await permissions(conn, tenant, oid, now + timedelta(hours=3)) == frozenset()
    assert await permissions(conn, tenant, oid, now) == {VIEW, MODIFY}
    assert await permissions(conn, str(uuid.uuid4()), oid, now) == frozenset()  # another tenant
    assert await permissions(conn, tenant, "not-a-guid", now) == frozenset()


@pytest.mark.parametrize("user_id, role_id, named", [
    ("not-a-guid", MANAGER, "userId"),
    ("", MANAGER, "userId"),
    (str(uuid.uuid4()), "manager", "roleId"),
    (str(uuid.uuid4()), "", "roleId"),
])
async def test_ids_must_be_guids(stub, admin, user_id, role_id, named):
    message = await fails(create(stub, admin, user_id, role_id), grpc.StatusCode.INVALID_ARGUMENT)
    assert named in message


async def test_unknown_roles_and_assignments_are_not_found(stub, admin, user):
    oid, me = user
    unknown = str(uuid.uuid4())
    assert unknown in await fails(create(stub, admin, oid, unknown), grpc.StatusCode.NOT_FOUND)
    await fails(stub.SelfActivate(pb.SelfActivateRequest(role_id=unknown, reason="x"), metadata=me),
                grpc.StatusCode.NOT_FOUND)
    await fails(stub.SelfActivate(pb.SelfActivateRequest(role_id=READER, reason="x"), metadata=me),
                grpc.StatusCode.NOT_FOUND)  # a real role, but not assigned to the caller
    for bad_id in ("nope", f"{oid}_{unknown}", f"{oid}-{MANAGER}", f"{oid}_{MANAGER}"):
        await fails(stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id=bad_id), metadata=admin),
                    grpc.StatusCode.NOT_FOUND)
        await fails(stub.MakePermanent(pb.MakePermanentRequest(id=bad_id), metadata=admin),
                    grpc.StatusCode.NOT_FOUND)
        await fails(stub.MakeEligible(pb.MakeEligibleRequest(id=bad_id), metadata=admin),
                    grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize("duration", ["0", "-1", "24.5", "25", "1e1", "nan", "inf", "max", "1h", "PT1H", " ", "1,5"])
async def test_bad_durations_are_rejected(stub, admin, user, duration):
    oid, me = user
    assignment = await create(stub, admin, oid)
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    message = await fails(stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="x", duration=duration),
                                            metadata=me), grpc.StatusCode.INVALID_ARGUMENT)
    assert "duration" in message


async def test_reasons_are_required_and_bounded(stub, admin, user):
    oid, me = user
    assignment = await create(stub, admin, oid)
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    for reason in ("", "   ", "x" * 501):
        message = await fails(stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason=reason),
                                                metadata=me), grpc.StatusCode.INVALID_ARGUMENT)
        assert "reason" in message
    assert (await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="x" * 500),
                                    metadata=me)).is_elevated
    assert "reason" in await fails(stub.MakePermanent(pb.MakePermanentRequest(id=assignment.id, reason="x" * 501),
                                                      metadata=admin), grpc.StatusCode.INVALID_ARGUMENT)


async def test_scopes_are_checked_per_method(stub, token, user):
    oid, _ = user
    def md(**kwargs):
        return (("authorization", f"Bearer {token(**kwargs)}"),)
    reader = md(scopes=["RoleManagement.Read.Directory"])
    await stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(), metadata=reader)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(stub, reader, oid)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and reason_of(err.value) == "MISSING_SCOPE"
    assert "RoleManagement.ReadWrite.Directory" in err.value.details()
    intune_admin = md()  # DeviceManagement* scopes only
    for call in (stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(), metadata=intune_admin),
                 stub.ListRoles(pb.ListRolesRequest(), metadata=intune_admin),
                 stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id="x"), metadata=intune_admin),
                 stub.DeleteRoleAssignment(pb.DeleteRoleAssignmentRequest(id="x"), metadata=reader),
                 stub.MakeEligible(pb.MakeEligibleRequest(id="x"), metadata=reader),
                 stub.MakePermanent(pb.MakePermanentRequest(id="x"), metadata=reader)):
        await fails(call, grpc.StatusCode.PERMISSION_DENIED)
    for metadata in ((), (("authorization", "Bearer junk"),)):
        await fails(stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="x"), metadata=metadata),
                    grpc.StatusCode.UNAUTHENTICATED)
    application = md(scopes=(), roles=["RoleManagement.ReadWrite.Directory"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="x"), metadata=application)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and reason_of(err.value) == "DELEGATED_ONLY"


async def test_another_tenants_assignment_is_not_found(stub, admin, user, token):
    oid, _ = user
    assignment = await create(stub, admin, oid)
    other = str(uuid.uuid4())
    stranger_token = token(scopes=["Directory.AccessAsUser.All"], wids=ROLE_ADMIN["wids"], tenant=other, oid=oid)
    stranger = (("authorization", f"Bearer {stranger_token}"),)
    for call in (stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id=assignment.id), metadata=stranger),
                 stub.DeleteRoleAssignment(pb.DeleteRoleAssignmentRequest(id=assignment.id), metadata=stranger),
                 stub.MakePermanent(pb.MakePermanentRequest(id=assignment.id), metadata=stranger),
                 stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=stranger),
                 stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="x"), metadata=stranger)):
        await fails(call, grpc.StatusCode.NOT_FOUND)
    listed = await stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(), metadata=stranger)
    assert list(listed.role_assignments) == []
    # the same user and role in the other tenant is a separate assignment
    theirs = await create(stub, stranger, oid)
    assert theirs.id == assignment.id
    got = await stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id=assignment.id), metadata=admin)
    assert got.is_elevated


async def _ids(stub, md, **fields) -> list[str]:
    """The ids of every page of ListRoleAssignments(fields), following the page tokens."""
    ids, token = [], ""
    while True:
        page = await stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(page_token=token, **fields), metadata=md)
        ids += [a.id for a in page.role_assignments]
        if not (token := page.next_page_token):
            return ids


async def test_list_filters_orders_pages_and_counts(stub, admin, user):
    oid, _ = user
    users = sorted(str(uuid.uuid4()) for _ in range(3))
    made = [await create(stub, admin, u) for u in users] + [await create(stub, admin, oid, READER)]
    await stub.MakeEligible(pb.MakeEligibleRequest(id=made[0].id), metadata=admin)
    mine = [a.id for a in made]
    everyone = f"userId in ({_quoted(users + [oid])})"
    assert await _ids(stub, admin, page_size=2, order_by="userId desc", filter=everyone) \
        == [a.id for a in sorted(made, key=lambda a: a.user_id, reverse=True)]
    assert await _ids(stub, admin, page_size=1, filter=f"{everyone} and roleId eq '{READER}'") == [mine[3]]
    assert await _ids(stub, admin, page_size=1, role_id=READER, filter=everyone) == [mine[3]]
    assert await _ids(stub, admin, assignment_id=mine[3], filter=everyone) == [mine[3]]  # its role's
    missing = ({"role_id": "7f2d6a3c-0b1e-4c5d-9e8f-1000000000ff"}, {"role_id": "x"},
               {"assignment_id": f"{uuid.uuid4()}_{READER}"}, {"assignment_id": "x"})
    for scope in missing:
        await fails(stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(**scope), metadata=admin),
                    grpc.StatusCode.NOT_FOUND)
        await fails(stub.CountRoleAssignments(pb.CountRoleAssignmentsRequest(**scope), metadata=admin),
                    grpc.StatusCode.NOT_FOUND)
        await fails(stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(filter="nope eq 1", **scope),
                                             metadata=admin), grpc.StatusCode.INVALID_ARGUMENT)  # checked first
    elevated = f"isElevated eq false and userId in ({_quoted(users)})"
    assert await _ids(stub, admin, filter=elevated) == [mine[0]]
    page = await stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(
        filter=f"id eq '{mine[1].upper()}'", include_total_size=True), metadata=admin)
    assert [a.id for a in page.role_assignments] == [mine[1]] and page.total_size == 1
    count = await stub.CountRoleAssignments(pb.CountRoleAssignmentsRequest(
        filter=f"userId in ({_quoted(users)}) and resultMessage eq null and expirationDateTime eq null"),
        metadata=admin)
    assert count.count == 3
    assert (await stub.CountRoleAssignments(pb.CountRoleAssignmentsRequest(user_id=oid), metadata=admin)).count == 1
    for bad in ({"filter": "nope eq 1"}, {"order_by": "expirationDateTime"}, {"page_token": "x"}):
        await fails(stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(**bad), metadata=admin),
                    grpc.StatusCode.INVALID_ARGUMENT)


def _quoted(values) -> str:
    return ",".join(f"'{v}'" for v in values)


async def test_get_role_has_the_enforced_settings_and_a_summary(stub, admin, user, clock):
    oid, me = user
    permanent = await create(stub, admin, str(uuid.uuid4()))
    for user_id in (oid, str(uuid.uuid4())):
        await stub.MakeEligible(pb.MakeEligibleRequest(id=(await create(stub, admin, user_id)).id), metadata=admin)
    await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="On call"), metadata=me)
    role = await stub.GetRole(pb.GetRoleRequest(id=MANAGER.upper()), metadata=admin)
    assert role.name == "Endpoint Privilege Manager" and not role.directory_role
    assert (role.settings.elevation_duration.ToTimedelta(), role.settings.min_elevation_duration.ToTimedelta(),
            role.settings.max_elevation_duration.ToTimedelta()) == (timedelta(hours=8), timedelta(hours=1),
                                                                    timedelta(hours=24))
    assert (role.summary.users_count, role.summary.managed_count, role.summary.elevated_count) == (3, 2, 2)
    await stub.DeleteRoleAssignment(pb.DeleteRoleAssignmentRequest(id=permanent.id), metadata=admin)
    clock.advance(timedelta(hours=9))
    role = await stub.GetRole(pb.GetRoleRequest(id=MANAGER), metadata=admin)
    assert (role.summary.users_count, role.summary.managed_count, role.summary.elevated_count) == (2, 2, 0)
    for missing in ("7f2d6a3c-0b1e-4c5d-9e8f-1000000000ff", "not-a-guid"):
        await fails(stub.GetRole(pb.GetRoleRequest(id=missing), metadata=admin), grpc.StatusCode.NOT_FOUND)


async def test_directory_roles_are_listed_but_read_only(stub, admin, user):
    oid, me = user
    role = await stub.GetRole(pb.GetRoleRequest(id=GLOBAL_ADMINISTRATOR), metadata=admin)
    assert role.directory_role and role.name == "Global Administrator"
    assert not role.HasField("settings") and not role.HasField("summary")
    message = await fails(create(stub, admin, oid, GLOBAL_ADMINISTRATOR), grpc.StatusCode.INVALID_ARGUMENT)
    assert "directory role" in message
    for call in (stub.SelfActivate(pb.SelfActivateRequest(role_id=GLOBAL_ADMINISTRATOR, reason="x"), metadata=me),
                 stub.SelfDeactivate(pb.SelfDeactivateRequest(role_id=GLOBAL_ADMINISTRATOR), metadata=me)):
        await fails(call, grpc.StatusCode.INVALID_ARGUMENT)
    page = await stub.ListRoleAssignments(pb.ListRoleAssignmentsRequest(role_id=GLOBAL_ADMINISTRATOR), metadata=admin)
    assert list(page.role_assignments) == []


async def test_self_deactivate_ends_the_callers_activation_now_and_is_audited(stub, admin, user, token, clock, conn,
                                                                              tenant):
    oid, me = user
    assignment = await create(stub, admin, oid)
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="On call"), metadata=me)
    assert await permissions(conn, tenant, oid, clock.now()) == {VIEW, MODIFY}
    ended = await stub.SelfDeactivate(pb.SelfDeactivateRequest(role_id=MANAGER), metadata=me)
    assert ended.id == assignment.id and not ended.is_elevated and not ended.HasField("expiration_date_time")
    assert await permissions(conn, tenant, oid, clock.now()) == frozenset()
    again = await stub.SelfDeactivate(pb.SelfDeactivateRequest(role_id=MANAGER), metadata=me)  # a no-op
    assert not again.is_elevated
    rows = [(r["activity"], r["old_state"], r["new_state"], r["actor_id"]) for r in await audit_rows(conn, tenant)]
    assert rows[-1] == ("SelfDeactivate PrivilegedRoleAssignment", "active", "eligible", oid)
    assert [r[0] for r in rows].count("SelfDeactivate PrivilegedRoleAssignment") == 1
    app = (("authorization", f"Bearer {token(roles=['RoleManagement.ReadWrite.Directory'])}"),)
    await fails(stub.SelfDeactivate(pb.SelfDeactivateRequest(role_id=MANAGER), metadata=app),
                grpc.StatusCode.PERMISSION_DENIED)
    await fails(stub.SelfDeactivate(pb.SelfDeactivateRequest(role_id=READER), metadata=me),
                grpc.StatusCode.NOT_FOUND)
    await stub.MakePermanent(pb.MakePermanentRequest(id=assignment.id), metadata=admin)
    kept = await stub.SelfDeactivate(pb.SelfDeactivateRequest(role_id=MANAGER), metadata=me)
    assert kept.is_elevated and "permanent" in kept.result_message


async def test_update_moves_the_end_of_an_activation_only(stub, admin, user, clock, conn, tenant):
    oid, me = user
    assignment = await create(stub, admin, oid)

    def update(hours: float):
        request = pb.UpdateRoleAssignmentRequest(id=assignment.id)
        request.expiration_date_time.FromDatetime(clock.now() + timedelta(hours=hours))
        return stub.UpdateRoleAssignment(request, metadata=admin), request.expiration_date_time

    await fails(update(2)[0], grpc.StatusCode.FAILED_PRECONDITION)  # permanent: no end to move
    await stub.MakeEligible(pb.MakeEligibleRequest(id=assignment.id), metadata=admin)
    await fails(update(2)[0], grpc.StatusCode.FAILED_PRECONDITION)  # inactive: its user activates it
    await stub.SelfActivate(pb.SelfActivateRequest(role_id=MANAGER, reason="On call", duration="min"), metadata=me)
    call, end = update(3)
    moved = await call
    assert moved.is_elevated and moved.expiration_date_time == end
    got = await stub.GetRoleAssignment(pb.GetRoleAssignmentRequest(id=assignment.id), metadata=admin)
    assert got.expiration_date_time == end
    for hours in (-1, 0, 24.5):
        await fails(update(hours)[0], grpc.StatusCode.INVALID_ARGUMENT)
    await fails(stub.UpdateRoleAssignment(pb.UpdateRoleAssignmentRequest(id=assignment.id), metadata=admin),
                grpc.StatusCode.INVALID_ARGUMENT)
    await fails(stub.UpdateRoleAssignment(pb.UpdateRoleAssignmentRequest(id=assignment.id), metadata=me),
                grpc.StatusCode.PERMISSION_DENIED)  # its user is no role administrator
    rows = await audit_rows(conn, tenant)
    assert (rows[-1]["activity"], rows[-1]["old_state"], rows[-1]["new_state"]) == \
        ("Update PrivilegedRoleAssignment", "active", "active")
