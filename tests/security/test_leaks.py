"""What the gateway gives away: nothing of its internals in a response (a backend's address, gRPC core's words,
the software it runs on), and nothing of a token in a response or the log. The detail of a failure goes to the
gateway's JSON log, under the request id the client was given."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from dataclasses import replace

import aiohttp
import grpc
import pytest
from aiohttp import web

from gateway import elevation_requests, elevations, errors, siem, support
from gateway.app import Runner, create_app
from services.common import errors as rpc_errors
from services.common.auth import CONFIG_WRITE, DEVICES_WRITE, MMD_SUPPORT
from services.common.logs import JsonFormatter

GRPC_CORE = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:25051: Connection refused"
APP_ROLES = (CONFIG_WRITE, DEVICES_WRITE, MMD_SUPPORT)


class Lines(logging.Handler):
    """Every log record as the process prints it (JSON, with the request id of the task that logged it)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def of(self, rid: str) -> list[dict]:
        return [entry for entry in map(json.loads, self.lines) if entry.get("request_id") == rid]


@pytest.fixture
def log():
    """What every logger writes, down to DEBUG, while the test runs."""
    root, lines = logging.getLogger(), Lines()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(lines)
    yield lines
    root.removeHandler(lines)
    root.setLevel(level)


@pytest.fixture
def refused_address():
    """An address that refuses connections at once (bound, not listening): a backend that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def lone_gateway(settings, refused_address):
    """A gateway run as `python -m gateway` runs it (gateway.app.Runner), whose backends are all down."""
    app = create_app(replace(settings, events_addr=refused_address, requests_addr=refused_address,
                             reputation_addr=refused_address))
    runner = Runner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def assert_no_internals(text: str, address: str) -> None:
    host, port = address.split(":")
    for internal in (port, host, "failed to connect", "ipv4", "UNAVAILABLE", "Traceback", "grpc"):
        assert internal not in text, (internal, text)


def assert_hardened(url, headers) -> None:
    """No software named in a Server header, and no content sniffing."""
    server = headers.get("Server", "")
    assert "aiohttp" not in server and "Python" not in server, (url, server)
    assert headers.get("X-Content-Type-Options") == "nosniff", (url, dict(headers))


# --- a backend down -------------------------------------------------------------------------------------------


DOWN = [elevation_requests.PATH, elevations.PATH, "/beta/security/fileReputations/" + "ab" * 32,
        siem.ROOT + "/auditEvents/stream", support.PATH]


@pytest.mark.parametrize("path", DOWN)
async def test_a_backend_that_is_down_is_a_generic_503_and_its_detail_is_logged(lone_gateway, refused_address,
                                                                                token, tenant, log, path):
    headers = {"Authorization": f"Bearer {token(scopes=(), roles=APP_ROLES)}"}
    async with aiohttp.ClientSession(base_url=lone_gateway) as client, \
            client.get(path.format(tenantId=tenant), headers=headers) as response:
        text = await response.text()
        assert response.status == 503, text
        retry_after, rid = response.headers["Retry-After"], response.headers["request-id"]
    error = json.loads(text)["error"]
    assert error["code"] == ("503" if path == support.PATH else "ServiceUnavailable"), error
    assert error["message"] == f"The service is temporarily unavailable. Retry after {retry_after} seconds."
    if path != support.PATH:  # MMD's error body has no innerError
        assert error["innerError"]["request-id"] == rid
    assert_no_internals(text, refused_address)
    logged = [entry["message"] for entry in log.of(rid) if entry["logger"] == "epm.gateway"]
    assert any("UNAVAILABLE" in line and refused_address in line for line in logged), logged


def rpc_error(code: grpc.StatusCode, details: str, trailing=()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


def deliberate(code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    """The error a servicer's RpcError is on the wire (services/common/server.py aborts with its status)."""
    status = rpc_errors.RpcError(code, "REASON", message).status
    return rpc_error(code, status.details, status.trailing_metadata)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                  grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                                  grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNIMPLEMENTED])
def test_a_transport_or_server_failure_is_told_in_generic_words(code, log):
    for error in (rpc_error(code, GRPC_CORE), deliberate(code, "The database at 10.0.0.7 is unavailable.")):
        graph = errors.from_rpc(error)
        assert graph.status >= 500 and graph.message == errors.GENERIC[graph.status], (code, graph.message)
        assert any(error.details() in json.loads(line)["message"] for line in log.lines), log.lines  # logged


CLIENT_ERRORS = [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.ABORTED, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE,
                 grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED]
# the client-error codes gRPC itself may raise too (grpc.io/docs/guides/status-codes)
GRPC_MAY_RAISE = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                  grpc.StatusCode.UNAUTHENTICATED}


@pytest.mark.parametrize("code", CLIENT_ERRORS)
def test_a_client_error_keeps_our_services_words_but_not_grpc_cores(code):
    ours = errors.from_rpc(deliberate(code, "No elevation request with id 'x'."))
    assert ours.message == "No elevation request with id 'x'." and ours.status < 500
    # without our ErrorInfo (the interceptor's own aborts, or gRPC core's): kept if gRPC itself never raises the code
    text = "Received message larger than max (4194400 vs. 4194304)"
    plain = errors.from_rpc(rpc_error(code, text))
    assert plain.status == ours.status
    assert plain.message == (errors.REFUSED if code in GRPC_MAY_RAISE else text)


async def test_a_servicers_own_error_reaches_the_client_unchanged(gateway_url, token):
    missing = str(uuid.uuid4())
    async with aiohttp.ClientSession(base_url=gateway_url) as client, client.get(
            f"{elevation_requests.PATH}/{missing}",
            headers={"Authorization": f"Bearer {token(scopes=(), roles=APP_ROLES)}"}) as response:
        assert response.status == 404
        assert missing in (await response.json())["error"]["message"]


# --- what the HTTP parser refuses -------------------------------------------------------------------------------


SECRET = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLWJ5dGVz"  # what must never be repeated
HUGE = SECRET * (267_000 // len(SECRET))  # 267 kB
REFUSED = {
    "a 267 kB bearer token": (f"GET {elevations.PATH}", f"Authorization: Bearer {HUGE}\r\n", 431),
    "a 267 kB other header": (f"GET {elevations.PATH}", f"X-Ticket: {HUGE}\r\n", 431),
    "a 267 kB header name": ("GET /healthz", f"X-{HUGE}: 1\r\n", 431),
    "200 headers": ("GET /healthz", "".join(f"X-Part-{n}: {SECRET}\r\n" for n in range(200)), 431),
    "a 140 kB request line": (f"GET {elevations.PATH}?$filter={SECRET * 2200}", "", 414),
    "a header that is not HTTP": ("GET /healthz", f"Authorization: Bearer {SECRET}\x01\r\n", 400),
}


async def raw(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the answer to `request` sent as it is."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    answer = await reader.read()  # the connection is closed after a refusal
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    return int(status_line.split()[1]), dict(line.split(": ", 1) for line in lines), body


@pytest.mark.parametrize("what", REFUSED)
async def test_a_request_the_http_parser_refuses_is_a_graph_error_that_repeats_none_of_it(lone_gateway, log, what):
    line, headers, status = REFUSED[what]
    got, answer_headers, body = await raw(lone_gateway, f"{line} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert got == status, body[:300]
    assert answer_headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == errors.CODES[status] and error["message"], error
    rid = answer_headers["request-id"]
    assert error["innerError"]["request-id"] == rid
    assert_hardened(what, answer_headers)
    assert SECRET[:16].encode() not in body and SECRET[:16] not in str(answer_headers)
    (logged,) = log.of(rid)  # one line, no traceback
    assert logged["message"].startswith(f"refused by the HTTP parser: {status} ") and "exception" not in logged
    assert not [line for line in log.lines if SECRET[:16] in line or "Traceback" in line], log.lines


# --- response headers -----------------------------------------------------------------------------------------


async def test_every_response_names_no_software_and_forbids_sniffing(gateway_url, token, tenant):
    bearer = {"Authorization": f"Bearer {token(scopes=(), roles=APP_ROLES)}"}
    calls = [(elevation_requests.PATH, bearer, 200), (elevations.PATH + "?$top=x", bearer, 400),
             (elevation_requests.PATH, {}, 401), ("/beta/nothing", bearer, 404),
             (support.PATH.format(tenantId=tenant) + "/x", {}, 401), ("/healthz", {}, 200), ("/readyz", {}, 200),
             ("/console/", {}, 200), ("/console/app.js", {}, 200), ("/console/config.json", {}, 200),
             ("/console/nothing.js", {}, 404), ("/openapi.json", {}, 200),
             (siem.ROOT + "/auditEvents/stream?cursor=latest", bearer, 200)]
    async with aiohttp.ClientSession(base_url=gateway_url) as client:
        for path, headers, status in calls:
            async with client.get(path, headers=headers) as response:
                assert response.status == status, (path, await response.text())
                assert_hardened(path, response.headers)
