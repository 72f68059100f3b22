"""gRPC errors with a google.rpc.ErrorInfo detail, built in one place."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "epm.local"


def status(code: grpc.StatusCode, reason: str, message: str, **metadata: str) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))
    return rpc_status.to_status(
        status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[info])
    )


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, reason: str, message: str, **metadata: str):
    """Ends the call with `code`; never returns."""
    await context.abort_with_status(status(code, reason, message, **metadata))


def invalid(message: str, **metadata: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", message, **metadata)


def not_found(message: str, **metadata: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, "NOT_FOUND", message, **metadata)


class RpcError(Exception):
    """Raised by servicer code below the RPC layer; the server turns it into a rich status."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str, **metadata: str):
        super().__init__(message)
        self.status = status(code, reason, message, **metadata)
