"""`epm webhook`: a change-notification endpoint for trying subscriptions on one machine. It answers Graph's
validation handshake (`POST ?validationToken=...`: 200, the token as `text/plain`) and prints each notification it
is sent as one JSON line on stdout; `GET` answers 200, so a script can wait until it listens."""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def _notified(request: web.Request) -> web.Response:
    if "validationToken" in request.query:
        print(f"epm webhook: validated {request.path}", file=sys.stderr, flush=True)
        return web.Response(text=request.query["validationToken"], content_type="text/plain")
    try:
        notifications = (await request.json())["value"]
    except (ValueError, KeyError, TypeError):
        notifications = None
    if not isinstance(notifications, list):
        return web.Response(status=400, text="expected a JSON object with a 'value' list of notifications")
    for notification in notifications:
        print(json.dumps(notification), flush=True)
    return web.Response(status=202)


async def _listening(request: web.Request) -> web.Response:
    return web.Response(text="epm webhook: POST change notifications here\n")


def run(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_post("/{tail:.*}", _notified)
    app.router.add_get("/{tail:.*}", _listening)
    web.run_app(app, host=host, port=port, access_log=None,  # says so once it listens:
                print=lambda _: print(f"epm webhook: listening on http://{host}:{port}/", file=sys.stderr, flush=True))
