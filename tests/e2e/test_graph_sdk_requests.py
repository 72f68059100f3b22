"""The official msgraph-beta-sdk, unchanged, against the gateway: elevation requests from creation through review
(approve, deny, revoke), getAllElevationRequests, delete, errors, and the audit trail they leave."""

from __future__ import annotations

import uuid
from datetime import timedelta
from uuid import UUID

import aiohttp
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta import GraphServiceClient
from msgraph_beta.generated.device_management.audit_events.audit_events_request_builder import (
    AuditEventsRequestBuilder,
)
from msgraph_beta.generated.device_management.elevation_requests.elevation_requests_request_builder import (
    ElevationRequestsRequestBuilder,
)
from msgraph_beta.generated.device_management.elevation_requests.item.approve.approve_post_request_body import (
    ApprovePostRequestBody,
)
from msgraph_beta.generated.device_management.elevation_requests.item.deny.deny_post_request_body import (
    DenyPostRequestBody,
)
from msgraph_beta.generated.device_management.elevation_requests.item.get_all_elevation_requests.get_all_elevation_requests_post_response import (  # noqa: E501
    GetAllElevationRequestsPostResponse,
)
from msgraph_beta.generated.device_management.elevation_requests.item.revoke.revoke_post_request_body import (
    RevokePostRequestBody,
)
from msgraph_beta.generated.models.audit_event import AuditEvent
from msgraph_beta.generated.models.elevation_request_application_detail import ElevationRequestApplicationDetail
from msgraph_beta.generated.models.elevation_request_state import ElevationRequestState
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.privilege_management_elevation_request import PrivilegeManagementElevationRequest

from services.requests.lifecycle import Policy
from tests.claims import ROLE_ADMIN

from .test_elevations import sha
from .test_role_assignments import MANAGER, assign, auth

Query = ElevationRequestsRequestBuilder.ElevationRequestsRequestBuilderGetQueryParameters


def new_members(config: RequestConfiguration | None = None) -> RequestConfiguration:
    """`config` saying the client knows the enum members Graph added after unknownFutureValue (revoked, completed)."""
    config = config or RequestConfiguration()
    config.headers.add("Prefer", "include-unknown-enum-members")
    return config
AuditQuery = AuditEventsRequestBuilder.AuditEventsRequestBuilderGetQueryParameters


@pytest.fixture
def requester_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def requester(sdk, token, requester_id) -> GraphServiceClient:
    """An end user with full DeviceManagement scopes and no Intune role: may ask, may not review."""
    return sdk(token(oid=requester_id, upn="adele@contoso.example"))


@pytest.fixture
def reviewer_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def reviewer(sdk, token, gateway_url, reviewer_id) -> GraphServiceClient:
    """Another user, granted Endpoint Privilege Manager through the gateway."""
    async with aiohttp.ClientSession(base_url=gateway_url) as client:
        await assign(client, auth(token(**ROLE_ADMIN)), reviewer_id, MANAGER)
    return sdk(token(oid=reviewer_id, upn="megan@contoso.example"))


def ask(file: str, device: str = "SDK-DEVICE-1") -> PrivilegeManagementElevationRequest:
    return PrivilegeManagementElevationRequest(
        requested_on_device_id=device, device_name="SDK-PC", request_justification=f"Need {file} for work",
        application_detail=ElevationRequestApplicationDetail(
            file_hash=sha(file), file_name=file, file_path=r"C:\Tools", file_description="A tool",
            publisher_name="Contoso Code Signing CA", publisher_cert="MIIB", product_name="Tool",
            product_internal_name=file.removesuffix(".exe"), product_version="1.0.0.0"),
    )


async def test_the_official_sdk_reviews_elevation_requests(requester, reviewer, requester_id, reviewer_id):
    requests = requester.device_management.elevation_requests
    created = await requests.post(ask("git.exe"))
    assert isinstance(created, PrivilegeManagementElevationRequest) and UUID(created.id)
    assert created.odata_type == "#microsoft.graph.privilegeManagementElevationRequest"
    assert created.status == ElevationRequestState.Pending
    assert (created.requested_by_user_id, created.requested_by_user_principal_name) == (
        requester_id, "adele@contoso.example")
    assert created.review_completed_by_user_id is None and created.review_completed_by_user_principal_name is None
    assert created.review_completed_date_time is None and created.reviewer_justification is None
    assert created.application_detail.odata_type == "#microsoft.graph.elevationRequestApplicationDetail"
    assert created.application_detail.file_hash == sha("git.exe") and created.application_detail.file_name == "git.exe"
    assert created.request_created_date_time.tzinfo is not None
    assert created.request_expiry_date_time == created.request_created_date_time + timedelta(days=7)
    denied_one = await requests.post(ask("zip.exe", device="SDK-DEVICE-2"))
    third = await requests.post(ask("code.exe"))

    # the requester holds no Intune role: it may ask, not read
    with pytest.raises(ODataError) as err:
        await requests.get()
    assert err.value.response_status_code == 403 and err.value.error.code == "Forbidden"

    # read: list with a filter and $count, follow nextLink, count segment, get by id
    admin = reviewer.device_management.elevation_requests
    page = await admin.get(RequestConfiguration(query_parameters=Query(
        filter="requestedOnDeviceId eq 'SDK-DEVICE-1' and status eq 'pending'",
        orderby=["applicationDetail/fileName asc"], top=1, count=True)))
    assert page.odata_count == 2 and [r.application_detail.file_name for r in page.value] == ["code.exe"]
    names = [r.application_detail.file_name for r in page.value]
    while page.odata_next_link:
        page = await admin.with_url(page.odata_next_link).get()
        names += [r.application_detail.file_name for r in page.value]
    assert names == ["code.exe", "git.exe"]
    assert await admin.count.get() == 3
    item = admin.by_privilege_management_elevation_request_id(created.id)
    fetched = await item.get()
    assert fetched.id == created.id and fetched.status == ElevationRequestState.Pending
    assert fetched.application_detail.product_version == "1.0.0.0"
    assert fetched.review_completed_by_user_id is None  # not reviewed yet: null, as Graph has it
    unreviewed = await admin.get(RequestConfiguration(query_parameters=Query(
        filter="reviewCompletedByUserId eq null and requestedOnDeviceId eq 'SDK-DEVICE-1'")))
    assert sorted(r.id for r in unreviewed.value) == sorted((created.id, third.id))

    # update the justification while pending
    patched = await item.patch(PrivilegeManagementElevationRequest(request_justification="For INC-7"))
    assert patched.request_justification == "For INC-7" and patched.status == ElevationRequestState.Pending

    # approve, with a justification: reviewer and a 24-hour window are recorded
    approved = await item.approve.post(ApprovePostRequestBody(reviewer_justification="Approved for INC-7"))
    assert approved.status == ElevationRequestState.Approved
    assert (approved.review_completed_by_user_id, approved.review_completed_by_user_principal_name) == (
        reviewer_id, "megan@contoso.example")
    assert approved.reviewer_justification == "Approved for INC-7"
    assert approved.request_expiry_date_time == approved.review_completed_date_time + timedelta(hours=24)

    # deny another with an empty body; an invalid transition is an ODataError 409 naming the state
    denied = await admin.by_privilege_management_elevation_request_id(denied_one.id).deny.post(DenyPostRequestBody())
    assert denied.status == ElevationRequestState.Denied and denied.reviewer_justification is None
    with pytest.raises(ODataError) as err:
        await admin.by_privilege_management_elevation_request_id(denied_one.id).approve.post(
            ApprovePostRequestBody(reviewer_justification="Changed my mind"))
    assert err.value.response_status_code == 409 and err.value.error.code == "Conflict"
    assert "denied" in err.value.error.message
    assert err.value.error.inner_error is not None

    # revoke the approval; revoking again is a conflict too. Revoked comes after unknownFutureValue in Graph's
    # enum: a client sees it by name only when it says it knows such members
    revoked = await item.revoke.post(RevokePostRequestBody(reviewer_justification="No longer needed"))
    assert revoked.status == ElevationRequestState.UnknownFutureValue
    assert revoked.reviewer_justification == "No longer needed"
    assert (await item.get(new_members())).status == ElevationRequestState.Revoked
    with pytest.raises(ODataError) as err:
        await item.revoke.post(RevokePostRequestBody())
    assert err.value.response_status_code == 409 and "revoked" in err.value.error.message
    with pytest.raises(ODataError) as err:
        await item.patch(PrivilegeManagementElevationRequest(request_justification="Too late"))
    assert err.value.response_status_code == 409

    # getAllElevationRequests, bound to one request: every request, as a collection
    everything = await item.get_all_elevation_requests.post(new_members())
    assert isinstance(everything, GetAllElevationRequestsPostResponse)
    assert {r.id: r.status for r in everything.value} == {
        created.id: ElevationRequestState.Revoked, denied_one.id: ElevationRequestState.Denied,
        third.id: ElevationRequestState.Pending}
    revoked_only = Query(filter="status eq 'revoked'")  # a $filter may name it either way
    statuses = await admin.get(RequestConfiguration(query_parameters=revoked_only))
    assert [(r.id, r.status) for r in statuses.value] == [(created.id, ElevationRequestState.UnknownFutureValue)]
    statuses = await admin.get(new_members(RequestConfiguration(query_parameters=revoked_only)))
    assert [(r.id, r.status) for r in statuses.value] == [(created.id, ElevationRequestState.Revoked)]

    # delete, then it is gone
    await admin.by_privilege_management_elevation_request_id(third.id).delete()
    with pytest.raises(ODataError) as err:
        await admin.by_privilege_management_elevation_request_id(third.id).get()
    assert err.value.response_status_code == 404 and err.value.error.code == "ResourceNotFound"
    assert await admin.count.get() == 2

    # the audit trail, read with the SDK
    audit = reviewer.device_management.audit_events
    approvals = await audit.get(RequestConfiguration(query_parameters=AuditQuery(
        filter="activity eq 'Approve ElevationRequest'", count=True)))
    assert approvals.odata_count == 1
    event = approvals.value[0]
    assert isinstance(event, AuditEvent) and event.activity == "Approve ElevationRequest"
    assert isinstance(event.correlation_id, UUID)
    assert event.activity_operation_type == "Action" and event.activity_result == "Success"
    assert (event.actor.type, event.actor.user_id, event.actor.user_principal_name) == (
        "ItPro", reviewer_id, "megan@contoso.example")
    assert event.resources[0].resource_id == created.id
    changes = {p.display_name: (p.old_value, p.new_value) for p in event.resources[0].modified_properties}
    assert changes["status"] == ("pending", "approved")
    assert changes["justification"] == ("", "Approved for INC-7")
    same = await audit.by_audit_event_id(event.id).get()
    assert same.id == event.id and same.correlation_id == event.correlation_id
    everything = await audit.get()
    activities = [e.activity for e in everything.value]
    assert activities.count("Create ElevationRequest") == 3 and "Delete ElevationRequest" in activities
    assert await audit.count.get() == len(everything.value)


async def test_the_sdk_sees_self_approval_and_too_many_requests_as_403(reviewer, requester, requests_service, tenant):
    own = await reviewer.device_management.elevation_requests.post(ask("mine.exe"))
    with pytest.raises(ODataError) as err:
        await reviewer.device_management.elevation_requests.by_privilege_management_elevation_request_id(
            own.id).approve.post(ApprovePostRequestBody(reviewer_justification="Trust me"))
    assert err.value.response_status_code == 403 and err.value.error.code == "Forbidden"

    await requests_service.store.set_policy(tenant, Policy(max_open_per_device=1))
    await requester.device_management.elevation_requests.post(ask("one.exe", device="FULL"))
    with pytest.raises(ODataError) as err:
        await requester.device_management.elevation_requests.post(ask("two.exe", device="FULL"))
    assert err.value.response_status_code == 403
    assert err.value.error.message == "This device has too many open elevation requests."


async def test_the_sdk_reads_an_expiry_made_by_the_system(reviewer, requester, requests_service, tenant, clock):
    await requests_service.store.set_policy(tenant, Policy(pending_ttl=timedelta(seconds=20)))
    lapsed = await requester.device_management.elevation_requests.post(ask("late.exe"))
    clock.advance(timedelta(seconds=21))  # the shared clock: move it as little as possible
    item = reviewer.device_management.elevation_requests.by_privilege_management_elevation_request_id(lapsed.id)
    assert (await item.get()).status == ElevationRequestState.Expired
    await requester.device_management.elevation_requests.post(ask("later.exe"))  # writes the expiry down
    events = await reviewer.device_management.audit_events.get()  # parses every event, the System's too
    expiry = [e for e in events.value if e.activity == "Expire ElevationRequest"]
    assert len(expiry) == 1 and expiry[0].actor.type == "System"
    assert expiry[0].correlation_id == UUID(int=0)
