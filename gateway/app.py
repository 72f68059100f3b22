"""The gateway: Microsoft Graph style REST in front of the gRPC services."""

from __future__ import annotations

import logging
import time
import uuid

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import AuthError, TokenVerifier, bearer
from services.common.channels import connect
from services.common.logs import request_id
from services.common.metrics import record_http
from services.common.settings import Settings

from . import (
    batch,
    console,
    elevation_requests,
    elevations,
    errors,
    intune_roles,
    managed_devices,
    metadata,
    openapi,
    provisioning,
    reputation,
    role_assignments,
    siem,
    subscriptions,
    support,
)
from .graph import CHANNELS, PRINCIPAL, REQUEST_ID, SETTINGS, STUBS, THROTTLE, VERIFIER
from .throttle import Limit, Throttle

log = logging.getLogger("epm.gateway")
# on every response: no software and version named (aiohttp's Server header would), and no content sniffing
HARDENING = {"Server": "epm", "X-Content-Type-Options": "nosniff"}
MAX_LINE = 128 * 1024  # bytes of request line (see create_app)
MAX_FIELD = 32 * 1024  # bytes of one header, name and value: an Entra ID token with 200 group claims is ~12 kB
MAX_HEADERS = 128
TOO_MANY_HEADERS = "Too many headers received"  # aiohttp's parser's message (both of its parsers)


@web.middleware
async def graph_middleware(request: web.Request, handler):
    """Request ids, bearer auth for /beta and /support, Graph error bodies (MMD's under /support), Graph response
    headers, access log, metrics."""
    started = time.perf_counter()
    rid = str(uuid.uuid4())
    client_rid = request.headers.get("client-request-id", "")
    request[REQUEST_ID] = rid
    request_id.set(rid)
    render = support.error_response if request.path.startswith(support.PREFIX) else (
        lambda error: errors.response(error, rid, client_rid))
    try:
        if request.path.startswith(("/beta/", support.PREFIX)) and request.path not in metadata.ANONYMOUS:
            try:
                principal = await request.app[VERIFIER].verify(bearer(request.headers.get("Authorization")))
            except AuthError as exc:
                raise errors.GraphError(401, str(exc)) from None
            request[PRINCIPAL] = principal
            if retry_after := request.app[THROTTLE].admit(principal.tenant_id,
                                                          principal.client_id or principal.object_id):
                raise errors.GraphError(429, f"Too many requests. Retry after {retry_after} seconds.",
                                        retry_after=retry_after)
        response = await handler(request)
    except errors.GraphError as exc:
        response = render(exc)
    except grpc.aio.AioRpcError as exc:
        response = render(errors.from_rpc(exc))
    except web.HTTPException as exc:  # routing: 404 unknown path, 405 wrong method
        if exc.status < 400:
            record_http(request, exc.status, time.perf_counter() - started)
            raise
        response = render(errors.GraphError(exc.status, exc.reason))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = render(errors.GraphError(500, errors.GENERIC[500]))
    identify(response, rid, client_rid)
    elapsed = time.perf_counter() - started
    record_http(request, response.status, elapsed)
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s %d", request.method, request.path, response.status, extra={"fields": {
            "method": request.method, "path": request.path, "status": response.status,
            "client_request_id": client_rid, "ms": round(elapsed * 1000, 2)}})
    return response


def identify(response: web.StreamResponse, rid: str, client_rid: str) -> None:
    """Graph's response headers: the request ids, and no caching."""
    response.headers["request-id"] = rid
    response.headers["client-request-id"] = client_rid or rid
    response.headers["Cache-Control"] = "no-store"


async def harden(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HARDENING)


def refusal(exc: HttpProcessingError, max_line: int) -> errors.GraphError:
    """What a request the HTTP parser refused is told, in words of ours: its own bytes are never echoed."""
    if isinstance(exc, LineTooLong) and exc.args[1] == max_line:
        return errors.GraphError(414, f"The request line is longer than {max_line} bytes.")
    if isinstance(exc, LineTooLong) or exc.message == TOO_MANY_HEADERS:
        return errors.GraphError(431, "The request's headers are too large: at most "
                                      f"{MAX_FIELD} bytes a header, and at most {MAX_HEADERS} headers.")
    return errors.GraphError(400, "The request is not valid HTTP.")


class _Connection(web.RequestHandler):
    """aiohttp's connection handler, but a request its HTTP parser refused (a header too long, too many, not HTTP)
    gets Graph's error body instead of the parser's plain text (which quotes the offending bytes: a token), and is
    logged in one line without them instead of with a traceback."""

    def handle_error(self, request, status=500, exc=None, message=None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        rid = str(uuid.uuid4())
        request_id.set(rid)  # this request's own task
        error = refusal(exc, self.max_line_size)
        log.info("refused by the HTTP parser: %d %s", error.status, type(exc).__name__, extra={"fields": {
            "status": error.status, "remote": request.remote}})
        response = errors.response(error, rid, "")
        identify(response, rid, "")
        response.headers.update(HARDENING)  # no app hook runs for a request that has no route
        response.force_close()  # the parser cannot find where the next request starts
        return response


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """web.AppRunner whose connections are _Connections (aiohttp has no public hook for that: aio-libs/aiohttp#3287)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(server.request_handler, request_factory=server.request_factory,
                       handler_cancellation=server.handler_cancellation, **server._kwargs)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when every backend answers its gRPC health check."""
    states = {}
    for name, channel in request.app[CHANNELS].items():
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            states[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as exc:
            states[name] = exc.code().name
    ready = all(s == "SERVING" for s in states.values())
    return web.json_response({"status": "ready" if ready else "unavailable", "backends": states},
                             status=200 if ready else 503)


def create_app(settings: Settings, *, verifier: TokenVerifier | None = None) -> web.Application:
    # request lines up to 128 KiB: the longest $filter taken (4096 characters, percent-encoded UTF-8: 48 kB) and
    # more reach the handlers, so an over-long one gets a Graph error naming the limit, not the HTTP parser's refusal
    app = web.Application(middlewares=[graph_middleware], client_max_size=4 * 1024 * 1024,
                          handler_args={"max_line_size": MAX_LINE, "max_field_size": MAX_FIELD,
                                        "max_headers": MAX_HEADERS})
    app.on_response_prepare.append(harden)
    app[SETTINGS] = settings
    app[VERIFIER] = verifier or TokenVerifier.from_settings(settings)
    app[THROTTLE] = Throttle(Limit.parse(settings.throttle_tenant), Limit.parse(settings.throttle_client))

    async def lifecycle(app: web.Application):
        app[CHANNELS] = {"events": connect(settings.events_addr), "requests": connect(settings.requests_addr),
                         "reputation": connect(settings.reputation_addr)}
        app[STUBS] = {}
        yield
        for channel in app[CHANNELS].values():
            await channel.close()
        await app[VERIFIER].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi.serve)
    elevations.add_routes(app)
    elevation_requests.add_routes(app)
    role_assignments.add_routes(app)
    intune_roles.add_routes(app)
    provisioning.add_routes(app)
    reputation.add_routes(app)
    siem.add_routes(app)
    managed_devices.add_routes(app)
    support.add_routes(app)
    subscriptions.add_routes(app)
    console.add_routes(app)
    batch.add_routes(app)
    metadata.add_routes(app)
    return app
