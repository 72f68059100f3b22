"""The gateway: Microsoft Graph style REST in front of the gRPC services."""

from __future__ import annotations

import logging
import time
import uuid

import grpc
from aiohttp import web
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
    managed_devices,
    openapi,
    reputation,
    role_assignments,
    siem,
    subscriptions,
    support,
)
from .graph import CHANNELS, PRINCIPAL, REQUEST_ID, SETTINGS, STUBS, THROTTLE, VERIFIER
from .throttle import Limit, Throttle

log = logging.getLogger("epm.gateway")


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
        if request.path.startswith(("/beta/", support.PREFIX)):
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
        failure = errors.GraphError(500, "The service failed to process the request.")
        response = render(failure)
    response.headers["request-id"] = rid
    response.headers["client-request-id"] = client_rid or rid
    response.headers["Cache-Control"] = "no-store"
    elapsed = time.perf_counter() - started
    record_http(request, response.status, elapsed)
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s %d", request.method, request.path, response.status, extra={"fields": {
            "method": request.method, "path": request.path, "status": response.status,
            "client_request_id": client_rid, "ms": round(elapsed * 1000, 2)}})
    return response


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
    # more reach the handlers, so an over-long one gets a Graph error naming the limit, not the HTTP parser's 400
    app = web.Application(middlewares=[graph_middleware], client_max_size=4 * 1024 * 1024,
                          handler_args={"max_line_size": 128 * 1024})
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
    reputation.add_routes(app)
    siem.add_routes(app)
    managed_devices.add_routes(app)
    support.add_routes(app)
    subscriptions.add_routes(app)
    console.add_routes(app)
    batch.add_routes(app)
    return app
