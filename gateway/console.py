"""The reviewer console: static files under /console/, served without a token (its API calls carry one).

`config` answers /console/config.json, what the sign-in screen needs: {"mode": "dev"} (paste a token) by default.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).with_name("console")
PREFIX = "/console/"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# the console's own files only; API calls to this origin, and (OIDC) to an https issuer
POLICY = ("default-src 'self'; connect-src 'self' https:; img-src 'self' data:; style-src 'self'; "
          "frame-ancestors 'none'; base-uri 'none'; form-action 'self' https:")


def _file(name: str) -> web.Response:
    path = ROOT / name
    if path.suffix not in TYPES or path.parent != ROOT or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=TYPES[path.suffix], charset="utf-8",
                        headers={"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff"})


async def index(request: web.Request) -> web.Response:
    return _file("index.html")


async def static(request: web.Request) -> web.Response:
    return _file(request.match_info["name"])


async def config(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps({"mode": "dev"}), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX + "config.json", config)
    app.router.add_get(PREFIX, index)
    app.router.add_get(PREFIX + "{name:[A-Za-z0-9_-]+\\.[a-z]+}", static)
