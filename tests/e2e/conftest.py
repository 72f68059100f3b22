"""Fixtures the e2e modules share: users of this test's tenant, and reviewers holding an Intune role. Each
module brings its own `client` (an HTTP session on the gateway without a default token)."""

from __future__ import annotations

import uuid

import pytest

from tests.claims import ROLE_ADMIN

from .people import Person
from .test_role_assignments import MANAGER, READER, assign, auth


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
