"""POST /beta/$batch: Microsoft Graph JSON batching.

Up to 20 requests in one call, {"requests": [{"id", "method", "url", "headers"?, "body"?, "dependsOn"?}]}, answered
{"responses": [{"id", "status", "headers", "body"}]} (200 for the batch, each item with its own status). Each item
is dispatched through this application as if it came on its own (router, then every middleware: auth, throttling,
Graph errors, request ids), never over HTTP, with the batch's own Authorization. Items run at most PARALLEL at a
time, an item after those it depends on; one whose dependency failed (4xx or 5xx) does not run and is 424.

Where Graph leaves it open, this gateway decides:
- an item may not carry an Authorization other than the batch's (that item is a 400): every item is the caller's;
- dependsOn may also be spelled depends_on, the key msgraph-sdk-python-core writes; it may name any item of the
  batch, not only earlier ones, and a cycle is a 400;
- a JSON body without a Content-Type header is taken as application/json; a string body is base64 (as Graph and
  the SDKs send binary or empty bodies);
- the batch passes the throttle once itself, and each item that runs once more.
Item bodies come back as JSON when the item's response is application/json, else base64 (the text of a $count).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import re
import uuid
from dataclasses import dataclass, replace

import orjson
from aiohttp import EMPTY_PAYLOAD, StreamReader, web
from aiohttp.http import RawRequestMessage
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import errors, siem
from .errors import GraphError, bad_request
from .graph import JSON, read_json, reply

VERSION_ROOT = "/beta"
PATH = VERSION_ROOT + "/$batch"
MAX_REQUESTS = 20  # Graph's limit
PARALLEL = 4  # items of one batch in flight at once
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PROPERTIES = frozenset({"id", "method", "url", "headers", "body", "dependsOn", "depends_on"})
VERSIONS = ("beta", "v1.0")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
SET_BY_BATCH = frozenset({"authorization", "host", "content-length", "transfer-encoding"})  # never an item's own
NOT_ANSWERED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"})


@dataclass(frozen=True)
class Item:
    """One request of a batch, checked."""

    id: str
    method: str
    url: str  # as given, relative to /beta
    headers: CIMultiDictProxy[str]
    depends_on: tuple[str, ...] = ()
    target: URL | None = None  # what it asks for under /beta (None when refused)
    body: bytes | None = None
    refusal: str = ""  # why it is answered 400 without running ("" when it runs)


# --- the pure part: reading a batch and ordering it ------------------------------------------------------------

def parse(body, authorization: str) -> list[Item]:
    """The requests of a batch body, in request order. A malformed batch is a 400 (GraphError); a request that
    cannot run (an absolute URL, another version, a batch in the batch, a stream, another Authorization, a body
    that is not base64) carries its refusal instead."""
    if not isinstance(body, dict) or set(body) != {"requests"} or not isinstance(body["requests"], list):
        raise bad_request('A batch is a JSON object {"requests": [...]}.')
    if not 1 <= len(body["requests"]) <= MAX_REQUESTS:
        raise bad_request(f"A batch holds 1 to {MAX_REQUESTS} requests, not {len(body['requests'])}.")
    items = [_item(raw, position, authorization) for position, raw in enumerate(body["requests"])]
    ids = [item.id for item in items]
    if duplicate := next((i for i in ids if ids.count(i) > 1), None):
        raise bad_request(f"The request id '{duplicate}' is given more than once: ids must be unique.")
    for item in items:
        if unknown := [d for d in item.depends_on if d not in ids]:
            raise bad_request(f"Request '{item.id}' depends on '{unknown[0]}', which is not in the batch.")
    return items


def ordered(items: list[Item]) -> list[Item]:
    """`items` with each after those it depends on, else in request order; a cycle is a 400."""
    done: dict[str, Item] = {}
    waiting = list(items)
    while waiting:
        ready = [item for item in waiting if all(d in done for d in item.depends_on)]
        if not ready:
            raise bad_request(f"dependsOn makes a cycle: {' -> '.join(_cycle(waiting))}.")
        done.update((item.id, item) for item in ready)
        waiting = [item for item in waiting if item.id not in done]
    return list(done.values())


def _cycle(waiting: list[Item]) -> list[str]:
    """A cycle among items each of which waits for another of them."""
    ids = {item.id for item in waiting}
    next_of = {item.id: next(d for d in item.depends_on if d in ids) for item in waiting}
    path = [waiting[0].id]
    while (step := next_of[path[-1]]) not in path:
        path.append(step)
    return [*path[path.index(step):], step]


def locate(url: str) -> URL:
    """What `url`, relative to the version root (with or without its leading slash), names under /beta."""
    try:
        given = URL(url)
        target = URL(f"{VERSION_ROOT}/{url.removeprefix('/')}")
    except (ValueError, TypeError):
        raise bad_request(f"'{url}' is not a URL.") from None
    if given.absolute or given.scheme:
        raise bad_request(f"A batch item's url is relative to {VERSION_ROOT} (such as "
                          f"/deviceManagement/elevationRequests), not an absolute URL: '{url}'.")
    segments = target.path.split("/")[2:]
    if segments[0].lower() in VERSIONS:
        raise bad_request(f"A batch item's url is relative to {VERSION_ROOT}: leave out '/{segments[0]}' ('{url}').")
    if segments[0] == "$batch":
        raise bad_request("A batch cannot hold a batch.")
    if "." in segments or ".." in segments:
        raise bad_request(f"A batch item's url may not have . or .. segments: '{url}'.")
    if target.path.startswith(siem.ROOT + "/"):
        raise bad_request("The SIEM streams cannot be read in a batch: call them on their own.")
    return target


def _item(raw, position: int, authorization: str) -> Item:
    if not isinstance(raw, dict):
        raise bad_request(f"requests[{position}] is not an object.")
    if unknown := sorted(set(raw) - PROPERTIES):
        raise bad_request(f"requests[{position}] has the unknown property '{unknown[0]}'.")
    item_id, method, url = raw.get("id"), raw.get("method"), raw.get("url")
    if not isinstance(item_id, str) or not item_id:
        raise bad_request(f"requests[{position}] needs an id: a non-empty string.")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise bad_request(f"Request '{item_id}': method must be one of {', '.join(METHODS)}.")
    if not isinstance(url, str) or not url:
        raise bad_request(f"Request '{item_id}': url must be a non-empty string.")
    headers, body = _headers(raw.get("headers"), item_id), raw.get("body")
    if body is not None and not isinstance(body, str):
        headers.setdefault("Content-Type", JSON)  # a JSON body has no other reading
    item = Item(item_id, method.upper(), url, CIMultiDictProxy(headers), _depends_on(raw, item_id))
    try:
        if headers.get("Authorization", authorization) != authorization:
            raise bad_request("A batch item is authorised by the batch's own Authorization; this one carries "
                              "another.")
        return replace(item, target=locate(url), body=_body(body))
    except GraphError as refused:
        return replace(item, refusal=refused.message)


def _headers(raw, item_id: str) -> CIMultiDict[str]:
    if raw is None:
        return CIMultiDict()
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise bad_request(f"Request '{item_id}': headers must be an object of strings.")
    for name, value in raw.items():
        if not HEADER_NAME.fullmatch(name) or not HEADER_VALUE.fullmatch(value):
            raise bad_request(f"Request '{item_id}': '{name}' is not a valid header name and value.")
    return CIMultiDict(raw)


def _depends_on(raw: dict, item_id: str) -> tuple[str, ...]:
    if "dependsOn" in raw and "depends_on" in raw:
        raise bad_request(f"Request '{item_id}': give dependsOn once, not also as depends_on.")
    given = raw.get("dependsOn", raw.get("depends_on"))
    if given is None:
        return ()
    if not isinstance(given, list) or not all(isinstance(d, str) for d in given):
        raise bad_request(f"Request '{item_id}': dependsOn must be an array of request ids.")
    return tuple(dict.fromkeys(given))


def _body(given) -> bytes | None:
    """The bytes of an item's body: a string is base64, anything else JSON."""
    if given is None:
        return None
    if isinstance(given, str):
        try:
            return base64.b64decode(given, validate=True)
        except binascii.Error:
            raise bad_request("A batch item's string body is read as base64, and this one is not base64.") from None
    return json.dumps(given, ensure_ascii=False).encode()


# --- the I/O part: running the items through the application ---------------------------------------------------

async def batch(request: web.Request) -> web.Response:
    """200 with every item's answer, in request order."""
    items = parse(await read_json(request), request.headers.get("Authorization", ""))
    run_order, gate = ordered(items), asyncio.Semaphore(PARALLEL)
    runs: dict[str, asyncio.Task] = {}
    async with asyncio.TaskGroup() as group:  # each item in a task of its own: its request id stays its own
        for item in run_order:
            runs[item.id] = group.create_task(_answer(request, item, [runs[d] for d in item.depends_on], gate))
    return reply({"responses": [runs[item.id].result() for item in items]})


async def _answer(batch_request: web.Request, item: Item, dependencies: list[asyncio.Task],
                  gate: asyncio.Semaphore) -> dict:
    if item.refusal:
        return _entry(item.id, _unrun(item, bad_request(item.refusal)))
    for dependency in dependencies:
        if (answer := await dependency)["status"] >= 400:
            return _entry(item.id, _unrun(item, GraphError(
                424, f"Request '{answer['id']}', which this request depends on, failed.", "FailedDependency")))
    async with gate:
        return _entry(item.id, await _dispatch(batch_request, item))


async def _dispatch(batch_request: web.Request, item: Item) -> web.StreamResponse:
    """`item` through the application as a call of its own: its route, then every middleware around the handler."""
    app = batch_request.app
    request = _request(batch_request, item)
    match = await app.router.resolve(request)
    match.add_app(app)
    match.freeze()
    request._match_info = match  # as aiohttp's Application._handle sets it: there is no public setter
    handler = match.handler
    for middleware in reversed(app.middlewares):
        handler = functools.partial(middleware, handler=handler)
    return await handler(request)


def _request(batch_request: web.Request, item: Item) -> web.Request:
    """The item as a request on the batch's connection: its method, URL, headers and body, the batch's
    Authorization and Host."""
    headers = CIMultiDict((k, v) for k, v in item.headers.items() if k.lower() not in SET_BY_BATCH)
    headers["Host"] = batch_request.host
    if authorization := batch_request.headers.get("Authorization"):
        headers["Authorization"] = authorization
    if item.body is not None:
        headers["Content-Length"] = str(len(item.body))
    message = RawRequestMessage(
        item.method, item.target.raw_path_qs, batch_request.version, CIMultiDictProxy(headers),
        tuple((k.encode(), v.encode()) for k, v in headers.items()), False, None, False, False, item.target)
    return web.Request(message, _payload(batch_request, item.body), batch_request.protocol, batch_request.writer,
                       batch_request.task, asyncio.get_running_loop(), client_max_size=batch_request.client_max_size)


def _payload(batch_request: web.Request, body: bytes | None) -> StreamReader:
    if body is None:
        return EMPTY_PAYLOAD
    # a limit above the body's size: feeding it never pauses reading on the batch's connection
    stream = StreamReader(batch_request.protocol, len(body) + 1, loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    return stream


def _unrun(item: Item, error: GraphError) -> web.Response:
    """The answer of an item that does not run: its Graph error, with request ids as a run item has them."""
    request_id, client_request_id = str(uuid.uuid4()), item.headers.get("client-request-id", "")
    response = errors.response(error, request_id, client_request_id)
    response.headers.update({"request-id": request_id, "client-request-id": client_request_id or request_id})
    return response


def _entry(item_id: str, response: web.Response) -> dict:
    """One of the batch's responses: the item's status, headers and body (JSON as JSON, anything else base64)."""
    entry = {"id": item_id, "status": response.status,
             "headers": {str(k): v for k, v in response.headers.items() if k.lower() not in NOT_ANSWERED}}
    if response.body:
        entry["body"] = orjson.Fragment(response.body) if response.content_type == JSON else \
            base64.b64encode(response.body).decode()
    return entry


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, batch)
