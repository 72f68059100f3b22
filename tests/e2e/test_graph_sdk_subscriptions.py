"""The official msgraph-beta-sdk, unchanged, subscribes to elevation requests through the gateway, renews and
deletes the subscription; the notifications of a change reach a real local endpoint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.subscription import Subscription

from .test_subscriptions import RESOURCE


async def test_the_sdk_subscribes_renews_and_deletes(sdk, token, receiver, clock, http):  # noqa: F811
    client = sdk(token(scopes=(), roles=["DeviceManagementConfiguration.ReadWrite.All"]))
    created = await client.subscriptions.post(Subscription(
        change_type="created", notification_url=receiver.url, resource=RESOURCE, client_state="sdk",
        expiration_date_time=clock.now() + timedelta(hours=1)))
    assert created.id and created.resource == RESOURCE and created.client_state == "sdk"
    assert created.additional_data["@epm.delivery"]["state"] == "active"

    async with http.post("/beta/deviceManagement/elevationRequests", json={
            "requestedOnDeviceId": "sdk-device", "requestedByUserId": "u1", "requestJustification": "sdk",
            "applicationDetail": {"fileHash": "a" * 64, "fileName": "x.exe"}}) as resp:
        assert resp.status == 201, await resp.text()
        request_id = (await resp.json())["id"]
    (notification,) = await receiver.wait_for(1)
    assert notification["subscriptionId"] == created.id and notification["resourceData"]["id"] == request_id

    later = clock.now() + timedelta(hours=2)
    renewed = await client.subscriptions.by_subscription_id(created.id).patch(
        Subscription(expiration_date_time=later))
    assert abs(renewed.expiration_date_time - later) < timedelta(seconds=1)
    assert [s.id for s in (await client.subscriptions.get()).value] == [created.id]
    await client.subscriptions.by_subscription_id(created.id).delete()
    with pytest.raises(ODataError) as failure:
        await client.subscriptions.by_subscription_id(created.id).get()
    assert failure.value.response_status_code == 404
