import time

import jwt
import pytest
from aiohttp import web

from services.common.auth import AuthError, TokenVerifier, bearer, mint, principal_from_claims

SECRET = "a-dev-secret-of-at-least-32-characters"


def test_a_short_dev_secret_is_refused():
    with pytest.raises(ValueError):
        TokenVerifier(secret="short")


async def test_hs256_tokens_from_the_mint_verify():
    verifier = TokenVerifier(secret=SECRET)
    principal = await verifier.verify(mint(SECRET, tenant="T-1", scopes=["a", "b"], roles=["c"], upn="u@x"))
    assert principal.tenant_id == "t-1" and principal.upn == "u@x" and principal.delegated
    assert principal.permissions == {"a", "b"}  # a user's roles are no Graph permissions
    assert principal.missing(["b", "z"]) is None and principal.missing(["z", "y"]) == ["y", "z"]
    app = await verifier.verify(mint(SECRET, tenant="t", roles=["c"], upn="agent@x"))
    assert not app.delegated and app.permissions == {"c"}  # idtyp app: a upn does not make it a user
    with pytest.raises(AuthError):
        await verifier.verify(mint("another-secret-of-32-characters!", tenant="t"))


def test_bearer_header_parsing():
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    for header in (None, "", "Bearer", "Basic abc"):
        with pytest.raises(AuthError):
            bearer(header)


def test_claims_need_a_tenant_and_well_formed_permissions():
    for claims in ({}, {"tid": ""}, {"tid": "t", "scp": ["a"]}, {"tid": "t", "roles": "a"},
                   {"tid": "t", "idtyp": "device", "roles": ["a"]}):
        with pytest.raises(AuthError):
            principal_from_claims(claims)


@pytest.mark.parametrize("claims", [
    {"idtyp": "user", "roles": ["a"]},                     # a user with roles only
    {"upn": "u@x", "roles": ["a"]},                        # user claims name a user even without idtyp
    {"preferred_username": "u@x", "roles": ["a"]},
    {"unique_name": "u@x"},
    {"idtyp": "user", "scp": " "},                         # an empty scp is none
    {"idtyp": "app", "scp": "a", "roles": ["a"]},          # an application has no delegated permissions
], ids=lambda c: ",".join(c))
def test_user_tokens_need_scp_and_applications_have_none(claims):
    with pytest.raises(AuthError):
        principal_from_claims({"tid": "t", "oid": "o", **claims})


@pytest.mark.parametrize(("claims", "delegated", "permissions"), [
    ({"scp": "a b", "roles": ["c"]}, True, {"a", "b"}),
    ({"idtyp": "user", "scp": "a"}, True, {"a"}),
    ({"roles": ["c"]}, False, {"c"}),                      # v1 app-only tokens carry no idtyp
    ({"idtyp": "app", "roles": ["c"], "upn": ""}, False, {"c"}),
])
def test_the_token_type_decides_where_permissions_come_from(claims, delegated, permissions):
    principal = principal_from_claims({"tid": "t", "oid": "o", **claims})
    assert (principal.delegated, principal.permissions) == (delegated, permissions)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["1900000000", None, True, [1], float("inf")], ids=repr)
def test_time_claims_must_be_numbers(claim, value):
    with pytest.raises(AuthError, match=claim):
        principal_from_claims({"tid": "t", "roles": ["a"], claim: value})


async def test_rs256_against_a_jwks_endpoint():
    """Production mode: keys come from a JWKS URL (a real local HTTP server), unknown kids are refused."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig"}
    fetches = []

    async def jwks(request):
        fetches.append(1)
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/keys", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/keys"
    verifier = TokenVerifier(jwks_url=url, audience="api://epm")
    claims = {"tid": "t", "scp": "x", "aud": "api://epm", "exp": int(time.time()) + 60}
    try:
        good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        assert (await verifier.verify(good)).tenant_id == "t"
        for bad in (jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k2"}),
                    jwt.encode(claims | {"aud": "api://other"}, key, algorithm="RS256", headers={"kid": "k1"}),
                    jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k1"})):
            with pytest.raises(AuthError):
                await verifier.verify(bad)
        assert len(fetches) == 1  # the unknown kid did not cause a refetch storm
    finally:
        await verifier.close()
        await runner.cleanup()
