"""Fixtures the e2e modules share: users of this test's tenant, reviewers holding an Intune role, and a headless
Chromium for the console. Each module brings its own `client` (an HTTP session on the gateway without a default
token)."""

from __future__ import annotations

import shutil
import uuid

import aiohttp
import pytest
from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from playwright.async_api import async_playwright

from tests.claims import ROLE_ADMIN

from ..receiver import Receiver
from .people import Person
from .test_graph_sdk import StaticToken
from .test_role_assignments import MANAGER, READER, assign, auth

CHROMIUM = "/usr/bin/chromium"  # Debian's package: Playwright cannot download its own browser here
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAPTOP = {"width": 1440, "height": 900}


@pytest.fixture
async def client(gateway_url):
    """An HTTP client on the gateway, without a default token."""
    async with aiohttp.ClientSession(base_url=gateway_url) as session:
        yield session


@pytest.fixture
async def receiver():
    """A notification endpoint on 127.0.0.1 (tests/receiver.py); a delivery it holds is let go at the end."""
    endpoint = await Receiver().start()
    yield endpoint
    endpoint.release.set()
    await endpoint.close()


@pytest.fixture
def sdk(gateway_url):
    """sdk(token) -> the official Graph SDK's client on the gateway, sending `token`."""
    def make(token: str) -> GraphServiceClient:
        provider = StaticToken(token, gateway_url.removeprefix("http://"))
        adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(provider))
        adapter.base_url = f"{gateway_url}/beta"
        return GraphServiceClient(request_adapter=adapter)
    return make


@pytest.fixture
def person(token):
    """person(name, **claims) -> a signed-in user with full DeviceManagement scopes (and no Intune role)."""
    def make(name: str, **claims) -> Person:
        oid = str(uuid.uuid4())
        upn = f"{name}-{oid[:8]}@contoso.example"
        return Person(oid, upn, auth(token(oid=oid, upn=upn, **claims)))
    return make


@pytest.fixture
def requester(person) -> Person:
    return person("adele")


@pytest.fixture
def admin(token) -> dict:
    return auth(token(**ROLE_ADMIN))


@pytest.fixture
async def manager(client, admin, person) -> Person:
    """A user holding Endpoint Privilege Manager (view + modify elevation requests)."""
    who = person("megan")
    await assign(client, admin, who.oid, MANAGER)
    return who


@pytest.fixture
async def reader(client, admin, person) -> Person:
    """A user holding Endpoint Privilege Reader (view only)."""
    who = person("lee")
    await assign(client, admin, who.oid, READER)
    return who


@pytest.fixture(scope="session")
async def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"The console's browser tests need Debian's Chromium at {CHROMIUM}: apt-get install chromium")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser):
    """A tab of its own (empty sessionStorage) on a laptop-sized screen; an uncaught script error fails the test."""
    context = await browser.new_context(viewport=LAPTOP)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    await context.close()
    assert not errors, f"uncaught errors in the console: {errors}"
