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
    roles = {r.id: r for r in (await stub.ListRoles(pb.ListRolesRequest(), metadata=reader)).roles}
    assert len(roles) == 4
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
