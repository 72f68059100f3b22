"""One way to run a gRPC service: health, reflection, request logging, errors, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .errors import RpcError
from .logs import request_id
from .metrics import grpc_recorder

log = logging.getLogger("epm.grpc")
# PostgreSQL unreachable, starting, shutting down or lost mid-call: UNAVAILABLE (the caller may retry), not INTERNAL.
# InternalClientError: a pooled connection the server has just terminated, used before its socket closed
# (MagicStack/asyncpg#1069); the pool replaces it.
DATABASE_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
                 asyncpg.CrashShutdownError, asyncpg.InternalClientError)
DRAIN_LIMIT = 64 << 20  # bytes of a refused request stream read (and dropped) so that the client hears why


def _request_id(context: grpc.aio.ServicerContext) -> str:
    return next((v for k, v in context.invocation_metadata() or () if k == "x-request-id"), "") or str(uuid.uuid4())


def _aborted(context: grpc.aio.ServicerContext) -> str:
    return context.code().name if context.code() else "ABORTED"


def _lost_database(exc: BaseException | None) -> bool:
    """The database went away: this error, or one raised while handling it (a transaction's exit or a rollback on
    the closed connection)."""
    while exc is not None:
        if isinstance(exc, DATABASE_LOST):
            return True
        exc = exc.__context__
    return False


async def _drain(requests) -> None:
    """Reads what is left of a failed call's request stream, up to DRAIN_LIMIT bytes, so that its status goes out
    after the client has stopped writing: a grpc.aio client whose write meets an ended call reports INTERNAL
    'Internal error from Core' instead of that status (grpc/grpc#36066)."""
    left = DRAIN_LIMIT
    async for message in requests:
        left -= message.ByteSize()
        if left < 0:
            return


@contextlib.asynccontextmanager
async def _drained_on_failure(requests):
    """When the method fails (other than by aborting), the rest of its requests is read before the error goes out."""
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except Exception:
        await _drain(requests)
        raise


def _draining(behavior):
    """A client-streaming method's behavior that, when it fails, reads the rest of its requests before the error."""
    async def call(requests, context: grpc.aio.ServicerContext):
        async with _drained_on_failure(requests):
            return await behavior(requests, context)
    return call


def _draining_stream(behavior):
    """The same for a method that streams both ways."""
    async def call(requests, context: grpc.aio.ServicerContext):
        async with _drained_on_failure(requests):
            async for response in behavior(requests, context):
                yield response
    return call


async def _abort_unhandled(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    if _lost_database(exc):
        log.warning("database unavailable in %s: %r", method, exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "The database is unavailable; retry later.")
    log.exception("unhandled error in %s", method)
    await context.abort(grpc.StatusCode.INTERNAL, "Internal error.")


class RequestInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request id from `x-request-id` metadata, maps RpcError to its status, logs and counts each call;
    a failed client stream is drained first. The wrapped handler of each method is built once."""

    def __init__(self):
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, details):
        if (wrapped := self._handlers.get(details.method)) is not None:
            return wrapped
        handler = await continuation(details)
        if handler is None or details.method.startswith("/grpc."):
            return handler
        if handler.unary_unary:
            wrapped = handler._replace(unary_unary=self._wrap(handler.unary_unary, details.method))
        elif handler.stream_unary:
            wrapped = handler._replace(stream_unary=self._wrap(_draining(handler.stream_unary), details.method))
        elif handler.unary_stream:
            wrapped = handler._replace(unary_stream=self._wrap_stream(handler.unary_stream, details.method))
        elif handler.stream_stream:
            wrapped = handler._replace(stream_stream=self._wrap_stream(_draining_stream(handler.stream_stream),
                                                                       details.method))
        else:
            wrapped = handler
        self._handlers[details.method] = wrapped
        return wrapped

    @staticmethod
    def _wrap_stream(behavior, method: str):
        record = grpc_recorder(method)

        async def call(request, context: grpc.aio.ServicerContext):
            request_id.set(_request_id(context))
            log.info("%s started", method, extra={"fields": {"method": method}})
            started = time.perf_counter()
            code = "OK"
            try:
                async for response in behavior(request, context):
                    yield response
            except RpcError as exc:
                code = exc.status.code.name
                await context.abort_with_status(exc.status)
            except grpc.aio.AbortError:
                code = _aborted(context)
                raise
            except (asyncio.CancelledError, GeneratorExit):
                code = "CANCELLED"
                raise
            except Exception as exc:
                code = "UNAVAILABLE" if _lost_database(exc) else "INTERNAL"
                await _abort_unhandled(context, method, exc)
            finally:
                record(code, time.perf_counter() - started)
        return call

    @staticmethod
    def _wrap(behavior, method: str):
        record = grpc_recorder(method)

        async def call(request, context: grpc.aio.ServicerContext):
            request_id.set(_request_id(context))
            started = time.perf_counter()
            code = "OK"
            try:
                return await behavior(request, context)
            except RpcError as exc:
                code = exc.status.code.name
                await context.abort_with_status(exc.status)
            except grpc.aio.AbortError:
                code = _aborted(context)
                raise
            except asyncpg.DataError as exc:  # a value PostgreSQL refuses, e.g. from a forged page token
                code = "INVALID_ARGUMENT"
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid value: {exc}")
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception as exc:
                code = "UNAVAILABLE" if _lost_database(exc) else "INTERNAL"
                await _abort_unhandled(context, method, exc)
            finally:
                elapsed = time.perf_counter() - started
                record(code, elapsed)
                if log.isEnabledFor(logging.INFO):
                    log.info("%s %s", method, code, extra={"fields": {
                        "method": method, "code": code, "ms": round(elapsed * 1000, 2)}})
        return call


@dataclass
class Running:
    """A started gRPC server and the resources to release after it stops."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)  # set first: endless streams end at once

    async def stop(self, grace: float) -> None:
        self.stopping.set()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for cleanup in reversed(self.cleanups):
            await cleanup()


async def serve(services: Iterable[tuple[str, Callable[[grpc.aio.Server], None]]], address: str,
                stopping: asyncio.Event | None = None) -> Running:
    """Starts a server for `services` ((full service name, add-to-server function)) on `address`; `stopping` (the
    servicers' own, when they have endless streams) is set when the server begins to stop."""
    server = grpc.aio.server(
        interceptors=[RequestInterceptor()],
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for name, add in services:
        add(server)
        names.append(name)
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(address)
    await server.start()
    log.info("serving %s on port %d", ", ".join(names), port)
    return Running(server, port, health_servicer, stopping=stopping or asyncio.Event())


async def run_until_signalled(running: Running, grace: float) -> None:
    """Blocks until SIGTERM or SIGINT, then stops gracefully: health NOT_SERVING, drain, close."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.1fs)", grace)
    await running.stop(grace)
