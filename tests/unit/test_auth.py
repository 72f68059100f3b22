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
    assert principal.tenant_id == "t-1" and principal.upn == "u@x"
    assert principal.permissions == {"a", "b", "c"}
    assert principal.missing(["b", "z"]) is None and principal.missing(["z", "y"]) == ["y", "z"]
    with pytest.raises(AuthError):
        await verifier.verify(mint("another-secret-of-32-characters!", tenant="t"))


def test_bearer_header_parsing():
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    for header in (None, "", "Bearer", "Basic abc"):
        with pytest.raises(AuthError):
            bearer(header)


def test_claims_need_a_tenant_and_well_formed_permissions():
    for claims in ({}, {"tid": ""}, {"tid": "t", "scp": ["a"]}, {"tid": "t", "roles": "a"}):
        with pytest.raises(AuthError):
            principal_from_claims(claims)


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
