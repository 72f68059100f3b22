"""What every Graph resource module shares: app keys, the caller, backend metadata, JSON responses."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Collection

import orjson
from aiohttp import web
from google.protobuf.message import Message

from services.common.auth import Principal, TokenVerifier
from services.common.settings import Settings

from . import graphjson, query
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
UNKNOWN_MEMBERS = "include-unknown-enum-members"  # Prefer: members after an enum's unknownFutureValue, by name
MAX_PAGE_SIZE = "odata.maxpagesize"


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


def member(collection: str, key: str = "id") -> tuple[str, ...]:
    """The paths of one member of `collection`: its key as a segment and in OData key syntax, quoted and bare
    (quoted first: the bare pattern would take the quotes into the key)."""
    return f"{collection}/{{{key}}}", f"{collection}('{{{key}}}')", f"{collection}({{{key}}})"


def function(path: str) -> tuple[str, ...]:
    """The paths of a bound function: called as OData and the SDK write it, `name()`, and by its bare name."""
    return path + "()", path


def preferences(request: web.Request) -> dict[str, str]:
    """The request's Prefer headers (RFC 7240): preference name (lowercase) -> value, "" when it has none; the
    first of a name counts, parameters (;...) are dropped."""
    found: dict[str, str] = {}
    for header in request.headers.getall("Prefer", ()):
        for preference in header.split(","):
            name, _, value = preference.partition(";")[0].partition("=")
            if name.strip():
                found.setdefault(name.strip().lower(), value.strip().strip('"'))
    return found


def applied(response: web.Response, *honoured: str) -> web.Response:
    """`response` with the preferences it `honoured` added to its Preference-Applied header."""
    if values := [v for v in (response.headers.get("Preference-Applied"), *honoured) if v]:
        response.headers["Preference-Applied"] = ", ".join(values)
    return response


def unknown_members(request: web.Request) -> bool:
    """Whether the client takes an evolvable enum's members after unknownFutureValue by name."""
    return UNKNOWN_MEMBERS in preferences(request)


def page_size_preferred(request: web.Request) -> int:
    """Prefer: odata.maxpagesize=N, at most query.MAX_TOP; 0 when absent or not a whole number above 0 (then it
    is ignored, as a preference that cannot be honoured is)."""
    raw = preferences(request).get(MAX_PAGE_SIZE, "")
    digits = raw.lstrip("0")
    if not (raw.isascii() and raw.isdigit() and digits):
        return 0
    return query.MAX_TOP if len(digits) > len(str(query.MAX_TOP)) else min(int(digits), query.MAX_TOP)


def written(request: web.Request, response: web.Response) -> web.Response:
    """The response to a create or update: `response` (the entity), or with Prefer: return=minimal a 204 No Content
    that keeps its headers (Location, ETag) and names the entity in OData-EntityId."""
    if preferences(request).get("return") != "minimal":
        return response
    headers = {k: v for k, v in response.headers.items() if k not in ("Content-Type", "Content-Length")}
    if "Location" in headers:
        headers["OData-EntityId"] = headers["Location"]
    return applied(web.Response(status=204, headers=headers), "return=minimal")


def located(request: web.Request, response: web.Response, entity_set: str, entity_id: str) -> web.Response:
    """`response` (a 201) with the new entity's Location (a 204 when the client prefers return=minimal)."""
    response.headers["Location"] = f"{service_root(request)}/{entity_set}/{entity_id}"
    return written(request, response)


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


async def writable_fields(given: Message, fields: list[str], writable: Collection[str],
                          stored: Callable[[], Awaitable[Message]]) -> list[str]:
    """A PATCH body's `fields` (from graphjson.from_json) that may be written. The others are accepted as long as
    they hold the stored values, as in an object the client fetched and sends back (`stored()` reads the entity,
    only then); the first that does not is a 400 naming it, as is a body that changes nothing writable."""
    if read_only := [f for f in fields if f not in writable]:
        if name := graphjson.changed(given, await stored(), read_only):
            raise bad_request(f"Property '{name}' is read-only: it cannot be changed.")
    if not (changes := [f for f in fields if f in writable]):
        raise bad_request("The request body names no property that can be changed.")
    return changes


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
                          properties: frozenset[str], searchable: tuple[str, ...] = (),
                          expanded: tuple[str, ...] = ()) -> web.Response:
    """GET on a collection: OData options -> a List RPC (AIP-style request fields) -> a Graph collection.
    $search runs over the `searchable` properties; a $top above a page pages on until it is reached; Prefer:
    odata.maxpagesize=N bounds the page as $top does (the smaller wins). `expanded`: the navigation properties
    to_json adds for the request's $expand (which the caller checked), kept next to a $select."""
    options = query.parse(request.query, LIST_OPTIONS | ({"expand"} if expanded else set()), properties,
                          top_limit=query.TOP_LIMIT, navigations=frozenset(expanded))
    if options.select and expanded:
        options = dataclasses.replace(options, select=options.select + expanded)
    window = query.window(options)
    preferred = page_size_preferred(request)
    page = await rpc(request_type(
        filter=query.search_filter(options, request.headers, searchable), order_by=options.orderby,
        page_size=min(filter(None, (window.size, preferred)), default=0),  # 0: the service's default
        page_token=window.token, skip=options.skip, include_total_size=options.count), **call_options(request))
    entities = [to_json(m) for m in getattr(page, items)]
    response = reply(collection_body(request, entity_set, entities, options,
                                     window.next_token(len(entities), page.next_page_token), page.total_size))
    return applied(response, f"{MAX_PAGE_SIZE}={preferred}" if preferred else "")


async def count_collection(request: web.Request, rpc, request_type, properties: frozenset[str],
                           searchable: tuple[str, ...] = ()) -> web.Response:
    """GET on a collection's /$count: $filter and $search -> a Count RPC -> the bare number."""
    options = query.parse(request.query, frozenset({"filter", "search"}), properties)
    filter = query.search_filter(options, request.headers, searchable)
    return count_reply((await rpc(request_type(filter=filter), **call_options(request))).count)
