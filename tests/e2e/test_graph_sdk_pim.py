"""The PIM v1 surface as the official SDK (msgraph-beta) calls it: every request builder under
privilegedRoleAssignments and privilegedRoles, each answered and parsed into its model."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.privileged_role import PrivilegedRole
from msgraph_beta.generated.models.privileged_role_assignment import PrivilegedRoleAssignment
from msgraph_beta.generated.models.privileged_role_settings import PrivilegedRoleSettings
from msgraph_beta.generated.models.privileged_role_summary import PrivilegedRoleSummary
from msgraph_beta.generated.models.role_summary_status import RoleSummaryStatus
from msgraph_beta.generated.privileged_role_assignments.count.count_request_builder import CountRequestBuilder as Count
from msgraph_beta.generated.privileged_role_assignments.item.make_permanent.make_permanent_post_request_body import (  # noqa: E501
    MakePermanentPostRequestBody,
)
from msgraph_beta.generated.privileged_role_assignments.item.privileged_role_assignment_item_request_builder import (  # noqa: E501
    PrivilegedRoleAssignmentItemRequestBuilder as AssignmentItem,
)
from msgraph_beta.generated.privileged_role_assignments.item.role_info.self_activate.self_activate_post_request_body import (  # noqa: E501
    SelfActivatePostRequestBody as RoleInfoSelfActivate,
)
from msgraph_beta.generated.privileged_role_assignments.privileged_role_assignments_request_builder import (
    PrivilegedRoleAssignmentsRequestBuilder as Assignments,
)
from msgraph_beta.generated.privileged_roles.item.assignments.assignments_request_builder import (
    AssignmentsRequestBuilder as RoleAssignments,
)
from msgraph_beta.generated.privileged_roles.item.self_activate.self_activate_post_request_body import (
    SelfActivatePostRequestBody,
)

from services.common.auth import GLOBAL_ADMINISTRATOR
from tests.claims import ROLE_ADMIN

from .test_role_assignments import MANAGER, READER

INTUNE_ROLES = 4


@pytest.fixture
def users(token):
    """Two signed-in users (object ids sorted) and their tokens."""
    oids = sorted(str(uuid.uuid4()) for _ in range(2))
    return oids, [token(scopes=["RoleManagement.ReadWrite.Directory"], oid=oid) for oid in oids]


async def _eligible(admin, user_id: str, role_id: str = MANAGER) -> PrivilegedRoleAssignment:
    created = await admin.privileged_role_assignments.post(PrivilegedRoleAssignment(user_id=user_id,
                                                                                    role_id=role_id))
    return await admin.privileged_role_assignments.by_privileged_role_assignment_id(created.id).make_eligible.post()


async def test_assignments_filter_order_page_count_and_expand(sdk, token, users):
    (first, second), _ = users
    admin = sdk(token(**ROLE_ADMIN))
    eligible = await _eligible(admin, first)
    permanent = await admin.privileged_role_assignments.post(PrivilegedRoleAssignment(user_id=second,
                                                                                      role_id=MANAGER))
    reader = await admin.privileged_role_assignments.post(PrivilegedRoleAssignment(user_id=first, role_id=READER))
    ours = f"userId in ('{first}','{second}')"
    query = Assignments.PrivilegedRoleAssignmentsRequestBuilderGetQueryParameters
    page = await admin.privileged_role_assignments.get(RequestConfiguration(query_parameters=query(
        filter=f"{ours} and roleId eq '{MANAGER}'", orderby=["userId desc"], top=1, count=True)))
    assert [a.id for a in page.value] == [permanent.id] and page.odata_count == 2 and page.odata_next_link
    rest = await admin.privileged_role_assignments.with_url(page.odata_next_link).get()
    assert [a.id for a in rest.value] == [eligible.id] and rest.odata_next_link is None
    expanded = await admin.privileged_role_assignments.get(RequestConfiguration(query_parameters=query(
        filter=f"{ours} and isElevated eq true", expand=["roleInfo"], select=["userId"])))
    assert {(a.id, a.role_info.name) for a in expanded.value} == {(permanent.id, "Endpoint Privilege Manager"),
                                                                   (reader.id, "Endpoint Privilege Reader")}
    assert all(a.is_elevated is None for a in expanded.value)  # not selected
    assert await admin.privileged_role_assignments.count.get(RequestConfiguration(
        query_parameters=Count.CountRequestBuilderGetQueryParameters(filter=f"{ours} and isElevated eq false"))) == 1

    item = admin.privileged_role_assignments.by_privileged_role_assignment_id(reader.id)
    got = await item.get(RequestConfiguration(query_parameters=AssignmentItem.
                                              PrivilegedRoleAssignmentItemRequestBuilderGetQueryParameters(
                                                  expand=["roleInfo"])))
    assert isinstance(got.role_info, PrivilegedRole) and got.role_info.id == READER and got.user_id == first
    for bad in (query(expand=["roleInfo/assignments"]), query(filter="nope eq 1"),
                query(orderby=["expirationDateTime"])):
        with pytest.raises(ODataError) as err:
            await admin.privileged_role_assignments.get(RequestConfiguration(query_parameters=bad))
        assert err.value.response_status_code == 400 and err.value.error.message


async def test_role_info_navigations_and_actions_of_an_assignment(sdk, token, users):
    (oid, other), (user_token, _) = users
    admin, me = sdk(token(**ROLE_ADMIN)), sdk(user_token)
    assignment = await _eligible(admin, oid)
    await _eligible(admin, other)
    assert [a.id for a in (await me.privileged_role_assignments.my.get()).value] == [assignment.id]
    mine = me.privileged_role_assignments.by_privileged_role_assignment_id(assignment.id)
    role = await mine.role_info.get()
    assert isinstance(role, PrivilegedRole) and (role.id, role.name) == (MANAGER, "Endpoint Privilege Manager")
    settings = await mine.role_info.settings.get()
    assert isinstance(settings, PrivilegedRoleSettings)
    assert (settings.elevation_duration, settings.min_elevation_duration, settings.max_elavation_duration) == (
        timedelta(hours=8), timedelta(hours=1), timedelta(hours=24))
    assert (settings.mfa_on_elevation, settings.approval_on_elevation, settings.ticketing_info_on_elevation) == (
        False, False, False)

    active = await mine.role_info.self_activate.post(RoleInfoSelfActivate(reason="On call", duration="2"))
    assert active.id == assignment.id and active.is_elevated is True
    summary = await mine.role_info.summary.get()
    assert isinstance(summary, PrivilegedRoleSummary)
    assert (summary.users_count, summary.managed_count, summary.elevated_count, summary.mfa_enabled,
            summary.status) == (2, 2, 1, False, RoleSummaryStatus.Ok)
    ended = await mine.role_info.self_deactivate.post()
    assert ended.id == assignment.id and ended.is_elevated is False and ended.expiration_date_time is None

    of_role = await mine.role_info.assignments.get()
    assert sorted(a.id for a in of_role.value) == sorted([assignment.id, f"{other}_{MANAGER}"])
    assert await mine.role_info.assignments.count.get() == 2
    one = await mine.role_info.assignments.by_privileged_role_assignment_id1(f"{other}_{MANAGER}").get()
    assert (one.user_id, one.role_id, one.is_elevated) == (other, MANAGER, False)

    managed = admin.privileged_role_assignments.by_privileged_role_assignment_id(assignment.id)
    permanent = await managed.make_permanent.post(MakePermanentPostRequestBody(reason="Reviews every day"))
    assert permanent.is_elevated is True
    assert (await mine.role_info.summary.get()).status == RoleSummaryStatus.Bad  # one is permanently active
    assert (await managed.make_eligible.post()).is_elevated is False


async def test_privileged_roles_and_their_navigations(sdk, token, users):
    (oid, _), (user_token, _) = users
    admin, me = sdk(token(**ROLE_ADMIN)), sdk(user_token)
    assignment = await _eligible(admin, oid, READER)
    roles = await admin.privileged_roles.get()
    assert [r.name for r in roles.value[INTUNE_ROLES:]] == ["Global Administrator", "Privileged Role Administrator",
                                                            "Intune Administrator"]
    assert await admin.privileged_roles.count.get() == len(roles.value) == INTUNE_ROLES + 3
    role = admin.privileged_roles.by_privileged_role_id(READER)
    assert (await role.get()).name == "Endpoint Privilege Reader"
    assert (await role.settings.get()).elevation_duration == timedelta(hours=8)

    active = await me.privileged_roles.by_privileged_role_id(READER).self_activate.post(
        SelfActivatePostRequestBody(reason="Reading requests", duration="min"))
    assert active.id == assignment.id and active.is_elevated is True
    summary = await role.summary.get()
    assert (summary.users_count, summary.managed_count, summary.elevated_count) == (1, 1, 1)
    page = await role.assignments.get(RequestConfiguration(query_parameters=RoleAssignments.
                                                           AssignmentsRequestBuilderGetQueryParameters(
                                                               filter=f"userId eq '{oid}'", count=True)))
    assert [a.id for a in page.value] == [assignment.id] and page.odata_count == 1
    assert await role.assignments.count.get() == 1
    assert (await role.assignments.by_privileged_role_assignment_id(assignment.id).get()).is_elevated is True
    with pytest.raises(ODataError) as err:  # an assignment of another role is not one of this role's
        await admin.privileged_roles.by_privileged_role_id(MANAGER).assignments.by_privileged_role_assignment_id(
            assignment.id).get()
    assert err.value.response_status_code == 404
    ended = await me.privileged_roles.by_privileged_role_id(READER).self_deactivate.post()
    assert ended.is_elevated is False and (await role.summary.get()).elevated_count == 0


async def test_directory_roles_are_read_only(sdk, token, users):
    (oid, _), (user_token, _) = users
    admin = sdk(token(**ROLE_ADMIN))
    directory = admin.privileged_roles.by_privileged_role_id(GLOBAL_ADMINISTRATOR)
    assert (await directory.get()).name == "Global Administrator"
    settings, summary = await directory.settings.get(), await directory.summary.get()
    assert settings.elevation_duration is None and settings.mfa_on_elevation is None
    assert summary.users_count is None and summary.status is None
    assert (await directory.assignments.get()).value == []
    with pytest.raises(ODataError) as err:
        await admin.privileged_role_assignments.post(PrivilegedRoleAssignment(user_id=oid,
                                                                              role_id=GLOBAL_ADMINISTRATOR))
    assert err.value.response_status_code == 400 and "directory role" in err.value.error.message


async def test_patch_moves_the_end_of_an_activation_and_refuses_the_rest(sdk, token, users):
    (oid, _), (user_token, _) = users
    admin, me = sdk(token(**ROLE_ADMIN)), sdk(user_token)
    assignment = await _eligible(admin, oid)
    active = await me.privileged_roles.by_privileged_role_id(MANAGER).self_activate.post(
        SelfActivatePostRequestBody(reason="On call", duration="min"))
    item = admin.privileged_role_assignments.by_privileged_role_assignment_id(assignment.id)
    end = active.expiration_date_time + timedelta(hours=2)  # 3 h from the service's now (its clock, not ours)
    moved = await item.patch(PrivilegedRoleAssignment(expiration_date_time=end))
    assert moved.expiration_date_time == end and (await item.get()).expiration_date_time == end
    for body, named in ((PrivilegedRoleAssignment(role_id=READER), "roleId"),
                        (PrivilegedRoleAssignment(is_elevated=False), "isElevated")):
        with pytest.raises(ODataError) as err:
            await item.patch(body)
        assert err.value.response_status_code == 400 and named in err.value.error.message
    unchanged = await item.patch(PrivilegedRoleAssignment(user_id=oid, expiration_date_time=end))  # as fetched
    assert unchanged.expiration_date_time == end
    await item.delete()
    with pytest.raises(ODataError) as err:
        await item.get()
    assert err.value.response_status_code == 404
