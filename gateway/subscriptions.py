"""/beta/subscriptions (Graph change notifications) -> epm.requests.v1.SubscriptionService."""

from __future__ import annotations

import json

from aiohttp import web
from epm.requests.v1 import subscription_service_pb2 as pb
from epm.requests.v1 import subscription_service_pb2_grpc as pb_grpc

from services.common import optional

from . import graphjson
from .errors import bad_request
from .graph import call_options, entity_body, located, member, read_json, reply, service_root, stub

PATH = "/beta/subscriptions"
ENTITY_SET = "subscriptions"
READ_ONLY = frozenset({"id", "applicationId", "creatorId", "delivery"})
ACCEPTED_AS_IS = {"latestSupportedTlsVersion": "v1_2", "includeResourceData": False}  # what Graph SDKs send
NOT_GRAPH = frozenset({"delivery"})  # shown as the annotation @epm.delivery


def _stub(request: web.Request) -> pb_grpc.SubscriptionServiceStub:
    return stub(request, "requests", pb_grpc.SubscriptionServiceStub)


def _json(subscription: pb.Subscription) -> dict:
    body = graphjson.to_json(subscription, "subscription", optional.SUBSCRIPTION, skip=NOT_GRAPH)
    body["@epm.delivery"] = {k: v for k, v in graphjson.to_json(subscription.delivery).items()
                             if k != "@odata.type"}
    return body


async def _given(request: web.Request, creating: bool) -> tuple[pb.Subscription, list[str]]:
    """The subscription in the body and the fields it sets; read-only properties are refused."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("A microsoft.graph.subscription must be a JSON object.")
    for name, value in ACCEPTED_AS_IS.items():
        if name in body and body.pop(name) not in (value, None):
            raise bad_request(f"{name} can only be {json.dumps(value)}.")
    if changed := sorted(READ_ONLY.intersection(body) - ({"id"} if creating else set())):
        raise bad_request(f"Property '{changed[0]}' is read-only.")
    given = pb.Subscription()
    fields = graphjson.from_json(body, given, "subscription", ignore=frozenset({"id"}))
    return given, fields


async def create(request: web.Request) -> web.Response:
    given, _ = await _given(request, creating=True)
    created = await _stub(request).CreateSubscription(pb.CreateSubscriptionRequest(subscription=given),
                                                      **call_options(request))
    return located(request, reply(entity_body(request, ENTITY_SET, _json(created)), status=201), ENTITY_SET, created.id)


async def list_(request: web.Request) -> web.Response:
    found = await _stub(request).ListSubscriptions(pb.ListSubscriptionsRequest(), **call_options(request))
    return reply({"@odata.context": f"{service_root(request)}/$metadata#{ENTITY_SET}",
                  "value": [_json(s) for s in found.subscriptions]})


async def get(request: web.Request) -> web.Response:
    found = await _stub(request).GetSubscription(pb.GetSubscriptionRequest(id=request.match_info["id"]),
                                                 **call_options(request))
    return reply(entity_body(request, ENTITY_SET, _json(found)))


async def update(request: web.Request) -> web.Response:
    given, fields = await _given(request, creating=False)
    if not fields:
        raise bad_request("The request body names no property to update.")
    message = pb.UpdateSubscriptionRequest(id=request.match_info["id"], subscription=given)
    message.update_mask.paths.extend(fields)
    updated = await _stub(request).UpdateSubscription(message, **call_options(request))
    return reply(entity_body(request, ENTITY_SET, _json(updated)))


async def delete(request: web.Request) -> web.Response:
    await _stub(request).DeleteSubscription(pb.DeleteSubscriptionRequest(id=request.match_info["id"]),
                                            **call_options(request))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, list_)
    for item in member(PATH):
        app.router.add_get(item, get)
        app.router.add_patch(item, update)
        app.router.add_delete(item, delete)
