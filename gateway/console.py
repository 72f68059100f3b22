"""The reviewer console: static files under /console/, served without a token (its API calls carry one).

`config` answers /console/config.json, what the sign-in screen needs: {"mode": "dev"} (paste a token) by default,
{"mode": "oidc", "issuer", "clientId", "scopes"} when EPM_CONSOLE_OIDC_ISSUER is set (oidc.js signs in there).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from services.common.settings import Settings

from .graph import SETTINGS

ROOT = Path(__file__).with_name("console")
PREFIX = "/console/"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def policy(settings: Settings) -> str:
    """The console's own files only, nothing inline; API calls to this origin and the OIDC issuer's (discovery and
    token endpoint; the sign-in itself is a top-level navigation)."""
    issuer = urlsplit(settings.console_oidc_issuer)
    connect = f" {issuer.scheme}://{issuer.netloc}" if issuer.netloc else ""
    return (f"default-src 'self'; connect-src 'self'{connect}; img-src 'self' data:; style-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def client_config(settings: Settings) -> dict:
    if not settings.console_oidc_issuer:
        return {"mode": "dev"}
    return {"mode": "oidc", "issuer": settings.console_oidc_issuer, "clientId": settings.console_oidc_client_id,
            "scopes": settings.console_oidc_scopes}


def _file(request: web.Request, name: str) -> web.Response:
    path = ROOT / name
    if path.suffix not in TYPES or path.parent != ROOT or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=TYPES[path.suffix], charset="utf-8",
                        headers={"Content-Security-Policy": policy(request.app[SETTINGS])})


async def index(request: web.Request) -> web.Response:
    return _file(request, "index.html")


async def static(request: web.Request) -> web.Response:
    return _file(request, request.match_info["name"])


async def config(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(client_config(request.app[SETTINGS])), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX + "config.json", config)
    app.router.add_get(PREFIX, index)
    app.router.add_get(PREFIX + "{name:[A-Za-z0-9_-]+\\.[a-z]+}", static)
