"""The official SDK's JSON batching (msgraph_core's BatchRequestContent and BatchRequestBuilder), unchanged, against
the gateway: requests built by msgraph-beta-sdk's request builders, dependsOn as the SDK writes it (depends_on), empty
bodies as it sends them (base64), a collection split into batches of 20, and the answers read back with the SDK."""

from __future__ import annotations

import json
import uuid

from kiota_abstractions.serialization import ParseNodeFactoryRegistry
from msgraph_beta.generated.device_management.elevation_requests.item.approve.approve_post_request_body import (
    ApprovePostRequestBody,
)
from msgraph_beta.generated.device_management.elevation_requests.item.deny.deny_post_request_body import (
    DenyPostRequestBody,
)
from msgraph_beta.generated.models.elevation_request_state import ElevationRequestState
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.privilege_management_elevation_request import PrivilegeManagementElevationRequest
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_content_collection import BatchRequestContentCollection
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph_core.requests.batch_response_content import BatchResponseContent
from msgraph_core.requests.batch_response_content_collection import BatchResponseContentCollection

from .test_graph_sdk_requests import ask, requester, requester_id, reviewer, reviewer_id  # noqa: F401 (fixtures)


def batch_of(*items: BatchRequestItem) -> BatchRequestContent:
    content = BatchRequestContent()
    for item in items:
        content.add_request(item.id, item)
    return content


def parsed(answer: dict, kind):
    """An item's JSON body read into the SDK's model `kind` by the SDK's own JSON parse node."""
    node = ParseNodeFactoryRegistry().get_root_parse_node("application/json", json.dumps(answer["body"]).encode())
    return node.get_object_value(kind)


async def test_the_official_sdk_batches_reviews(requester, reviewer, reviewer_id):  # noqa: F811
    made = [await requester.device_management.elevation_requests.post(ask(f"batch-{n}.exe")) for n in range(3)]
    by_id = reviewer.device_management.elevation_requests.by_privilege_management_elevation_request_id
    content = batch_of(
        BatchRequestItem(by_id(made[0].id).approve.to_post_request_information(
            ApprovePostRequestBody(reviewer_justification="Approved in a batch")), id="approve"),
        BatchRequestItem(by_id(made[1].id).approve.to_post_request_information(ApprovePostRequestBody()),
                         id="approve-empty"),  # an empty body: the SDK sends it base64 ("e30=")
        BatchRequestItem(by_id(made[0].id).to_get_request_information(), id="read", depends_on=["approve"]),
        BatchRequestItem(by_id(str(uuid.uuid4())).deny.to_post_request_information(DenyPostRequestBody()),
                         id="missing"),
        BatchRequestItem(by_id(made[2].id).deny.to_post_request_information(DenyPostRequestBody()),
                         id="after-missing", depends_on=["missing"]))
    answer = await BatchRequestBuilder(reviewer.request_adapter).post(content)
    assert isinstance(answer, BatchResponseContent)
    assert answer.get_response_status_codes() == {
        "approve": 200, "approve-empty": 200, "read": 200, "missing": 404, "after-missing": 424}
    approved = answer.get_response_by_id("approve")
    assert approved.content_type.startswith("application/json") and approved.headers["ETag"].startswith('W/"')
    assert answer.get_response_by_id("missing").headers["request-id"]

    states = {r.id: r.status for r in (await reviewer.device_management.elevation_requests.get()).value}
    assert states == {made[0].id: ElevationRequestState.Approved, made[1].id: ElevationRequestState.Approved,
                      made[2].id: ElevationRequestState.Pending}  # the denial whose dependency failed never ran


async def test_the_sdk_reads_the_items_of_a_batch(requester, reviewer, reviewer_id):  # noqa: F811
    made = await requester.device_management.elevation_requests.post(ask("read-back.exe"))
    by_id = reviewer.device_management.elevation_requests.by_privilege_management_elevation_request_id
    content = batch_of(
        BatchRequestItem(by_id(made.id).approve.to_post_request_information(
            ApprovePostRequestBody(reviewer_justification="Read back")), id="approve"),
        BatchRequestItem(by_id(made.id).approve.to_post_request_information(ApprovePostRequestBody()),
                         id="again", depends_on=["approve"]))
    # BatchResponseItem drops a body that is a JSON object, as Graph sends JSON bodies (microsoft/kiota-python#737),
    # so the SDK's batch request goes through its adapter as bytes and each body is read with the SDK's parse node
    adapter = reviewer.request_adapter
    request = await BatchRequestBuilder(adapter).to_post_request_information(content)
    answers = {a["id"]: a for a in json.loads(await adapter.send_primitive_async(request, "bytes", {}))["responses"]}
    entity = parsed(answers["approve"], PrivilegeManagementElevationRequest)
    assert (entity.id, entity.status, entity.reviewer_justification) == (
        made.id, ElevationRequestState.Approved, "Read back")
    assert entity.review_completed_by_user_id == reviewer_id
    assert answers["again"]["status"] == 409
    failure = parsed(answers["again"], ODataError)
    assert failure.error.code == "Conflict" and "approved" in failure.error.message
    assert failure.error.inner_error is not None


async def test_a_collection_of_more_than_twenty_goes_as_batches_of_twenty(requester, reviewer):  # noqa: F811
    requests = requester.device_management.elevation_requests
    collection = BatchRequestContentCollection()
    for n in range(25):
        collection.add_batch_request_item(BatchRequestItem(
            requests.to_post_request_information(ask(f"many-{n}.exe", device=f"SDK-DEVICE-{n % 3}")), id=f"ask-{n}"))
    assert [len(b.requests) for b in collection.get_batch_requests_for_execution()] == [20, 5]
    answers = await BatchRequestBuilder(requester.request_adapter).post(collection)
    assert isinstance(answers, BatchResponseContentCollection)
    statuses = {}
    for batch in answers.get_responses():
        statuses |= batch.get_response_status_codes()
    assert statuses == {f"ask-{n}": 201 for n in range(25)}
    assert await reviewer.device_management.elevation_requests.count.get() == 25
