"""gRPC errors with a google.rpc.ErrorInfo detail, built in one place."""

from __future__ import annotations

import uuid

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


def invalid(message: str, **metadata: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", message, **metadata)


def not_found(message: str, **metadata: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, "NOT_FOUND", message, **metadata)


def no_such(noun: str, id: str) -> RpcError:
    return not_found(f"No {noun} with id '{id}'.", id=id)


def uuid_id(text: str, noun: str) -> str:
    """`text` as a canonical UUID; an id that is not one cannot exist, so it is NOT_FOUND, not a bad request."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise no_such(noun, text) from None


class RpcError(Exception):
    """Raised by servicer code below the RPC layer; the server turns it into a rich status."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str, **metadata: str):
        super().__init__(message)
        self.status = status(code, reason, message, **metadata)
