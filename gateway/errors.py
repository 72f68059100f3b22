"""Graph error responses: {"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import grpc
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2

from services.common.errors import DOMAIN

log = logging.getLogger("epm.gateway")

# gRPC status -> (HTTP status, Graph/Intune error code)
FROM_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "BadRequest"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "BadRequest"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "InvalidAuthenticationToken"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "Forbidden"),
    grpc.StatusCode.NOT_FOUND: (404, "ResourceNotFound"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "Conflict"),
    grpc.StatusCode.ABORTED: (412, "PreconditionFailed"),  # an If-Match ETag that is no longer current
    grpc.StatusCode.FAILED_PRECONDITION: (409, "Conflict"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "TooManyRequests"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "NotImplemented"),
    grpc.StatusCode.UNAVAILABLE: (503, "ServiceUnavailable"),
    grpc.StatusCode.CANCELLED: (503, "ServiceUnavailable"),  # a backend shutting down cancels a call it just got
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "GatewayTimeout"),
}
CODES = {400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "Forbidden", 404: "ResourceNotFound",
         405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 411: "LengthRequired",
         412: "PreconditionFailed", 413: "RequestEntityTooLarge", 414: "RequestUriTooLong",
         415: "UnsupportedMediaType", 429: "TooManyRequests", 431: "RequestHeaderFieldsTooLarge",
         500: "InternalServerError", 501: "NotImplemented", 503: "ServiceUnavailable"}
RETRY_AFTER = 5  # seconds, sent with 429 and 503
# What a client is told of a failure that is not its request's: the detail (addresses, gRPC core's words) is logged.
GENERIC = {500: "The service failed to process the request.", 501: "The service does not implement this operation.",
           503: f"The service is temporarily unavailable. Retry after {RETRY_AFTER} seconds.",
           504: "The service did not answer in time. Retry later."}
REFUSED = "The service refused the request."  # a client error that gRPC itself raised, not one of our servicers
STATUS_DETAILS = "grpc-status-details-bin"
# codes gRPC never raises itself, only application code (grpc.io/docs/guides/status-codes)
APPLICATION_ONLY = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION,
                              grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.DATA_LOSS})


class GraphError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, retry_after: int = RETRY_AFTER):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code or CODES.get(status, "UnknownError")
        self.retry_after = retry_after


def bad_request(message: str) -> GraphError:
    return GraphError(400, message)


def from_rpc(error: grpc.aio.AioRpcError) -> GraphError:
    """A backend's error as the client sees it: a client error our servicers raised keeps their message; any other
    (the backend unreachable, timed out, failed, or gRPC's own refusal) gets a generic one, and the log the detail."""
    status, code = FROM_GRPC.get(error.code(), (500, "InternalServerError"))
    if status < 500 and _deliberate(error):
        return GraphError(status, error.details(), code)
    log.warning("backend call failed: %s %s", error.code().name, error.details(),
                extra={"fields": {"grpc_code": error.code().name}})
    return GraphError(status, GENERIC.get(status, REFUSED), code)


def _deliberate(error: grpc.aio.AioRpcError) -> bool:
    """Raised by our services, not by gRPC itself: a code only applications raise, or a status carrying our
    ErrorInfo (services/common/errors.py)."""
    if error.code() in APPLICATION_ONLY:
        return True
    packed = dict(error.trailing_metadata() or ()).get(STATUS_DETAILS)
    if not packed:
        return False
    info = error_details_pb2.ErrorInfo()
    return any(detail.Unpack(info) and info.domain == DOMAIN for detail in status_pb2.Status.FromString(packed).details)


def response(error: GraphError, request_id: str, client_request_id: str) -> web.Response:
    inner = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": request_id,
             "client-request-id": client_request_id or request_id}
    body = {"error": {"code": error.code, "message": error.message, "innerError": inner}}
    return web.Response(status=error.status, text=json.dumps(body), content_type="application/json",
                        headers=headers(error))


def headers(error: GraphError) -> dict[str, str]:
    """Retry-After on 429 and 503, the bearer challenge on 401."""
    if error.status in (429, 503):
        return {"Retry-After": str(error.retry_after)}
    if error.status == 401:
        return {"WWW-Authenticate": 'Bearer realm="epm", error="invalid_token"'}
    return {}
