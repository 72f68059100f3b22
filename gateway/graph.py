"""What every Graph resource module shares: app keys, the caller, backend metadata, JSON responses."""

from __future__ import annotations

import json

import orjson
from aiohttp import web

from services.common.auth import Principal, TokenVerifier
from services.common.settings import Settings

from . import query
from .errors import GraphError, bad_request
from .throttle import Throttle

SETTINGS = web.AppKey("settings", Settings)
VERIFIER = web.AppKey("verifier", TokenVerifier)
THROTTLE = web.AppKey("throttle", Throttle)
CHANNELS = web.AppKey("channels", dict)
STUBS = web.AppKey("stubs", dict)
PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
JSON = "application/json"
TIMEOUT = 30.0  # seconds a backend call may take


def stub(request: web.Request, backend: str, stub_class):
    """The app's one stub of `stub_class` on the channel to `backend`."""
    stubs = request.app[STUBS]
    if (found := stubs.get(stub_class)) is None:
        found = stubs[stub_class] = stub_class(request.app[CHANNELS][backend])
    return found


def caller(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def rpc_metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    """What every backend call carries: the caller's own token and the request id."""
    return (("authorization", request.headers.get("Authorization", "")), ("x-request-id", request[REQUEST_ID]))


def service_root(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/beta"


def located(request: web.Request, response: web.Response, entity_set: str, entity_id: str) -> web.Response:
    """`response` (a 201) with the new entity's Location."""
    response.headers["Location"] = f"{service_root(request)}/{entity_set}/{entity_id}"
    return response


def reply(body: dict, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON, charset="utf-8",
                        headers={"OData-Version": "4.0"})


async def read_json(request: web.Request):
    if request.content_type != JSON:
        raise GraphError(415, "The request body must be application/json.")
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8-sig") if raw else "null")  # strict: bytes would let surrogates pass
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.") from None
    except RecursionError:
        raise bad_request("The request body is nested too deeply.") from None
    if b"\\u" in raw:  # an escaped lone surrogate (\ud800) is no character: protobuf and PostgreSQL refuse it
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise bad_request("The request body has a lone surrogate (\\ud800-\\udfff), which is no character.") \
                from None
    return body


def call_options(request: web.Request) -> dict:
    """Keyword arguments for every backend call made on behalf of `request`."""
    return {"metadata": rpc_metadata(request), "timeout": TIMEOUT}


def project(entity: dict, select: tuple[str, ...]) -> dict:
    """$select: the named properties, plus id and @odata.type."""
    if not select:
        return entity
    return {k: v for k, v in entity.items() if k in select or k in ("id", "@odata.type", "@odata.etag")}


def _context(request: web.Request, entity_set: str, select: tuple[str, ...]) -> str:
    selected = f"({','.join(select)})" if select else ""
    return f"{service_root(request)}/$metadata#{entity_set}{selected}"


def entity_body(request: web.Request, entity_set: str, entity: dict, select: tuple[str, ...] = ()) -> dict:
    return {"@odata.context": _context(request, entity_set, select) + "/$entity", **project(entity, select)}


def collection_body(request: web.Request, entity_set: str, entities: list[dict], options, next_token: str,
                    total: int) -> dict:
    """A Graph collection: @odata.context, @odata.count ($count=true), @odata.nextLink (more pages), value."""
    body: dict = {"@odata.context": _context(request, entity_set, options.select)}
    if options.count:
        body["@odata.count"] = total
    if next_token:
        body["@odata.nextLink"] = query.next_link(request.url, next_token)
    body["value"] = [project(e, options.select) for e in entities]
    return body


def count_reply(count: int) -> web.Response:
    return web.Response(text=str(count), content_type="text/plain")


LIST_OPTIONS = frozenset({"filter", "orderby", "top", "skip", "skiptoken", "count", "select", "search"})


async def list_collection(request: web.Request, rpc, request_type, items: str, to_json, entity_set: str,
                          properties: frozenset[str], searchable: tuple[str, ...] = ()) -> web.Response:
    """GET on a collection: OData options -> a List RPC (AIP-style request fields) -> a Graph collection.
    $search runs over the `searchable` properties; a $top above a page pages on until it is reached."""
    options = query.parse(request.query, LIST_OPTIONS, properties, top_limit=query.TOP_LIMIT)
    window = query.window(options)
    page = await rpc(request_type(
        filter=query.search_filter(options, request.headers, searchable), order_by=options.orderby,
        page_size=window.size, page_token=window.token, skip=options.skip, include_total_size=options.count),
        **call_options(request))
    entities = [to_json(m) for m in getattr(page, items)]
    return reply(collection_body(request, entity_set, entities, options,
                                 window.next_token(len(entities), page.next_page_token), page.total_size))


async def count_collection(request: web.Request, rpc, request_type, properties: frozenset[str],
                           searchable: tuple[str, ...] = ()) -> web.Response:
    """GET on a collection's /$count: $filter and $search -> a Count RPC -> the bare number."""
    options = query.parse(request.query, frozenset({"filter", "search"}), properties)
    filter = query.search_filter(options, request.headers, searchable)
    return count_reply((await rpc(request_type(filter=filter), **call_options(request))).count)
