"""Graph error responses: {"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import grpc
from aiohttp import web

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
         412: "PreconditionFailed", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType",
         429: "TooManyRequests", 500: "InternalServerError", 501: "NotImplemented", 503: "ServiceUnavailable"}


class GraphError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, retry_after: int = 5):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code or CODES.get(status, "UnknownError")
        self.retry_after = retry_after  # seconds, sent with 429 and 503


def bad_request(message: str) -> GraphError:
    return GraphError(400, message)


def from_rpc(error: grpc.aio.AioRpcError) -> GraphError:
    status, code = FROM_GRPC.get(error.code(), (500, "InternalServerError"))
    message = error.details() or error.code().name
    if status >= 500 and error.code() not in FROM_GRPC:
        message = "The service failed to process the request."
    return GraphError(status, message, code)


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
