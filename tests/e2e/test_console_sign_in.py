"""The reviewer console's production sign-in: the OIDC authorization code flow with PKCE, in headless Chromium,
against a fake OpenID Connect provider (an outside party, so a real local HTTP server) whose RS256 tokens the
gateway and the requests service verify through its JWKS."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import replace
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.async_api import expect

from gateway.app import create_app
from services.common.auth import CONFIG_WRITE, GLOBAL_ADMINISTRATOR
from services.requests import app as requests_app

from .test_role_assignments import MANAGER

CLIENT_ID = "0c0ffee0-0000-4000-8000-00000000c0de"
AUDIENCE = "api://epm"
SCOPES = f"openid profile {AUDIENCE}/{CONFIG_WRITE}"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class Provider:
    """Discovery, /authorize (validates the request, signs the user in at once and redirects back with a code and
    the state), /token (the code once, its PKCE verifier checked against the challenge), /keys (JWKS)."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.url = self.redirect_uri = ""
        self.user: dict = {}       # the claims of whoever signs in next: tid, oid, upn
        self.deny = ""             # an error /authorize answers with instead of a code
        self.nonce = ""            # a nonce the ID token names instead of the one asked for
        self.authorizations: list[dict] = []
        self.token_requests: list[dict] = []
        self.issued: list[str] = []
        self._codes: dict[str, dict] = {}

    def mint(self, claims: dict, audience: str = AUDIENCE) -> str:
        now = int(time.time())
        return jwt.encode({"iss": self.url, "aud": audience, "iat": now, "nbf": now, "exp": now + 3600} | claims,
                          self.key, algorithm="RS256", headers={"kid": "fake-1"})

    async def start(self) -> None:
        app = web.Application(middlewares=[self._cors])
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/keys", self._keys)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        await self._runner.cleanup()

    @web.middleware
    async def _cors(self, request, handler):  # a public client calls discovery and /token from its own origin
        response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    async def _discovery(self, request):
        return web.json_response({
            "issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/keys",
            "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"]})

    async def _keys(self, request):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response({"keys": [jwk | {"kid": "fake-1", "use": "sig", "alg": "RS256"}]})

    async def _authorize(self, request):
        q = dict(request.query)
        self.authorizations.append(q)
        problems = [q.get("response_type") != "code" and "response_type", q.get("client_id") != CLIENT_ID and
                    "client_id", q.get("redirect_uri") != self.redirect_uri and "redirect_uri",
                    q.get("code_challenge_method") != "S256" and "code_challenge_method",
                    "openid" not in q.get("scope", "").split() and "scope",
                    *(name for name in ("state", "nonce", "code_challenge") if not q.get(name))]
        if problems := [p for p in problems if p]:
            return web.Response(status=400, text=f"invalid request: {', '.join(problems)}")
        if self.deny:
            answer = {"error": self.deny, "error_description": "The user declined.", "state": q["state"]}
        else:
            code = secrets.token_urlsafe(16)
            self._codes[code] = q
            answer = {"code": code, "state": q["state"]}
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode(answer)}")

    async def _token(self, request):
        form = dict(await request.post())
        self.token_requests.append(form | {"content-type": request.content_type})
        granted = self._codes.pop(form.get("code", ""), None)  # a code works once
        if not granted or form.get("grant_type") != "authorization_code" or form.get("client_id") != CLIENT_ID \
                or form.get("redirect_uri") != granted["redirect_uri"]:
            return web.json_response({"error": "invalid_grant", "error_description": "Unknown code."}, status=400)
        if s256(form.get("code_verifier", "")) != granted["code_challenge"]:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE verification failed: "
                                      "the code_verifier does not match the code_challenge."}, status=400)
        scp = " ".join(s.rpartition("/")[2] for s in granted["scope"].split() if s.startswith(AUDIENCE))
        access = self.mint(self.user | {"scp": scp, "azp": CLIENT_ID})
        self.issued.append(access)
        identity = self.mint({"sub": self.user["oid"], "nonce": self.nonce or granted["nonce"]}, audience=CLIENT_ID)
        return web.json_response({"access_token": access, "id_token": identity, "token_type": "Bearer",
                                  "expires_in": 3600, "scope": granted["scope"]})


@pytest.fixture(scope="module")
async def provider():
    running = Provider()
    await running.start()
    yield running
    await running.stop()


async def serve(app: web.Application):
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture(scope="module")
async def console(settings, provider, events_service, reputation_address):
    """A production-configured gateway (its own requests service too: both verify the provider's RS256 tokens)
    whose console signs in at the provider. Yields the gateway's URL."""
    production = replace(settings, jwt_secret="", jwks_url=f"{provider.url}/keys", jwt_issuer=provider.url,
                         jwt_audience=AUDIENCE, console_oidc_issuer=provider.url, console_oidc_client_id=CLIENT_ID,
                         console_oidc_scopes=SCOPES, reputation_addr=reputation_address)
    requests = await requests_app.start(production, "127.0.0.1:0")
    runner, url = await serve(create_app(replace(production, events_addr=f"127.0.0.1:{events_service.port}",
                                                 requests_addr=f"127.0.0.1:{requests.port}")))
    provider.redirect_uri = f"{url}/console/"
    yield url
    await runner.cleanup()
    await requests.stop(1)


@pytest.fixture
async def reviewer(console, provider, tenant) -> dict:
    """The user who signs in next at the provider: holds Endpoint Privilege Manager in this test's tenant (assigned
    by an administrator whose token the provider signs)."""
    user = {"tid": tenant, "oid": str(uuid.uuid4()), "upn": f"megan-{tenant[:8]}@contoso.example"}
    admin = provider.mint({"tid": tenant, "oid": str(uuid.uuid4()), "scp": "RoleManagement.ReadWrite.Directory",
                           "wids": [GLOBAL_ADMINISTRATOR]})
    async with aiohttp.ClientSession(base_url=console, headers={"Authorization": f"Bearer {admin}"}) as session:
        async with session.post("/beta/privilegedRoleAssignments",
                                json={"userId": user["oid"], "roleId": MANAGER}) as resp:
            assert resp.status == 201, await resp.text()
    provider.user, provider.deny, provider.nonce = user, "", ""
    return user


async def sign_in(page, console: str) -> None:
    """Open the console and press its Sign in button: the browser goes to the issuer and comes back with a code,
    which the console redeems by itself."""
    await page.goto(f"{console}/console/")
    await page.get_by_role("button", name="Sign in").click()


async def refused(page) -> str:
    """The sign-in screen's error after a sign-in that failed (the console is back on /console/, no code left)."""
    alert = page.locator("#sign-in [role=alert]")
    await expect(alert).to_be_visible()
    assert "code=" not in page.url and await page.locator("header.top").is_hidden()
    return await alert.text_content()


async def test_the_console_signs_in_at_the_issuer_and_calls_the_api_with_its_token(console, provider, reviewer,
                                                                                    page):
    await sign_in(page, console)
    await expect(page.locator("#who")).to_contain_text(reviewer["upn"])
    await expect(page.locator("#who")).to_contain_text("Endpoint Privilege Manager")  # its rights, with its token
    await expect(page.locator("table.requests tbody")).to_contain_text("No requests match.")  # the list answered
    assert page.url == f"{console}/console/"  # the code is out of the address bar
    assert await page.evaluate("async () => (await import('/console/oidc.js')).token()") == provider.issued[-1]
    asked = provider.authorizations[-1]
    assert asked["scope"] == SCOPES and asked["redirect_uri"] == f"{console}/console/"
    sent = provider.token_requests[-1]
    assert sent["content-type"] == "application/x-www-form-urlencoded"
    assert s256(sent["code_verifier"]) == asked["code_challenge"] and len(sent["code_verifier"]) >= 43


async def test_a_tampered_state_is_refused(console, provider, reviewer, page):
    async def tamper(route):  # whoever forges the redirect back does not know the browser's state
        answer = await route.fetch(max_redirects=0)
        location = answer.headers["location"]
        await route.fulfill(status=302, headers={"Location": location.replace("state=", "state=forged")})

    await page.route(lambda url: url.startswith(f"{provider.url}/authorize"), tamper)
    exchanged = len(provider.token_requests)
    await sign_in(page, console)
    assert "state does not match" in await refused(page)
    assert len(provider.token_requests) == exchanged  # the code was not redeemed


async def test_a_wrong_code_verifier_gets_no_token(console, provider, reviewer, page):
    async def swap(route):  # an intercepted code redeemed without the browser's verifier
        form = {k: v[0] for k, v in parse_qs(route.request.post_data).items()}
        await route.continue_(post_data=urlencode(form | {"code_verifier": secrets.token_urlsafe(32)}))

    await page.route(f"{provider.url}/token", swap)
    issued = len(provider.issued)
    await sign_in(page, console)
    assert "PKCE verification failed" in await refused(page)
    assert len(provider.issued) == issued


async def test_an_error_from_the_issuer_is_shown(console, provider, reviewer, page):
    provider.deny = "access_denied"
    await sign_in(page, console)
    assert await refused(page) == "Sign-in failed: access_denied (The user declined.)."


async def test_an_id_token_for_another_sign_in_is_refused(console, provider, reviewer, page):
    provider.nonce = "replayed"
    await sign_in(page, console)
    assert await refused(page) == "Sign-in failed: the ID token's nonce does not match this sign-in."
    assert await page.evaluate("async () => (await import('/console/oidc.js')).token()") is None


async def test_config_and_content_security_policy(console, provider, gateway_url):
    origin = urlsplit(provider.url)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{console}/console/config.json") as resp:
            assert await resp.json() == {"mode": "oidc", "issuer": provider.url, "clientId": CLIENT_ID,
                                         "scopes": SCOPES}
        async with session.get(f"{console}/console/") as resp:
            policy = resp.headers["Content-Security-Policy"]
            assert f"connect-src 'self' {origin.scheme}://{origin.netloc};" in policy
            assert "unsafe-inline" not in policy and "default-src 'self'" in policy
        async with session.get(f"{gateway_url}/console/config.json") as resp:
            assert await resp.json() == {"mode": "dev"}
        async with session.get(f"{gateway_url}/console/") as resp:
            assert "connect-src 'self';" in resp.headers["Content-Security-Policy"]
