"""Prometheus metrics of a process (the default registry: also process and GC figures) and their HTTP endpoint.

The endpoint is a small aiohttp server on the process's own event loop: no thread of its own, it stops with the
process's other cleanups, and the gauges read at scrape time (`set_function`) see the loop's state from the loop."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no `_created` series beside each counter and histogram: half the series

GRPC_REQUESTS = Counter("epm_grpc_requests_total", "gRPC calls served, by status code (streams when they end)",
                        ["service", "method", "code"])
GRPC_SECONDS = Histogram("epm_grpc_request_seconds", "gRPC call duration (streams: until they end)",
                         ["service", "method"])
HTTP_REQUESTS = Counter("epm_http_requests_total", "Gateway HTTP requests, by route pattern and status",
                        ["method", "route", "status"])
HTTP_SECONDS = Histogram("epm_http_request_seconds", "Gateway HTTP request duration", ["method", "route"])
EVENTS_INGESTED = Counter("epm_events_ingested_total", "Elevation events stored (duplicates not counted)")
EVENTS_REJECTED = Counter("epm_events_rejected_total", "Elevation events refused as invalid")
NOTIFICATIONS_DELIVERED = Counter("epm_notifications_delivered_total", "Change notifications a subscriber accepted")
NOTIFICATION_FAILURES = Counter("epm_notification_failures_total", "Failed notification deliveries (one per batch)")
HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))  # else "other"


def _summed_gauge(name: str, documentation: str, value: Callable[[object], int]) -> Callable[[object], None]:
    """A gauge computed at scrape time: the sum of `value(o)` over the live objects given to the returned function
    (several servers may share a process, as in the tests)."""
    objects: weakref.WeakSet = weakref.WeakSet()
    Gauge(name, documentation).set_function(lambda: sum(value(o) for o in list(objects)))
    return objects.add


track_feed_streams = _summed_gauge("epm_feed_streams_open", "Feed streams being served", lambda f: f.open)
track_background = _summed_gauge("epm_background_tasks", "Best-effort calls to other services still running",
                                 lambda b: b.pending)


def grpc_recorder(full_method: str) -> Callable[[str, float], None]:
    """record(code, seconds) for one gRPC method ("/package.Service/Method"), its labels resolved once."""
    service, _, method = full_method[1:].rpartition("/")
    seconds = GRPC_SECONDS.labels(service, method)
    counts: dict[str, Counter] = {}

    def record(code: str, elapsed: float) -> None:
        seconds.observe(elapsed)
        if (count := counts.get(code)) is None:
            count = counts[code] = GRPC_REQUESTS.labels(service, method, code)
        count.inc()
    return record


def record_http(request: web.Request, status: int, elapsed: float) -> None:
    """Labels by the route's pattern, never the path (whose ids would make a series each)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    method = request.method if request.method in HTTP_METHODS else "other"
    HTTP_SECONDS.labels(method, route).observe(elapsed)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_metrics_server(port: int, host: str = "0.0.0.0") -> web.AppRunner:  # nosec B104 # scraped from the pod network
    """Serves GET /metrics on `port` (0: any free one, see `runner.addresses`); `await runner.cleanup()` stops it."""
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def metrics_cleanups(port: int) -> list[Callable[[], Awaitable[None]]]:
    """A process's metrics server on `port` (EPM_METRICS_PORT): [its stop], or [] when `port` is 0 (none)."""
    return [(await start_metrics_server(port)).cleanup] if port else []
