"""Bearer tokens shaped like Entra ID access tokens: verification, minting, scope checks.

Dev mode verifies HS256 with a shared secret; production verifies RS256 against a JWKS URL.
The same token works on the gateway and, as `authorization` metadata, on every gRPC service.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
import grpc
import jwt

from .errors import RpcError
from .settings import Settings

# Graph permissions (delegated `scp` or application `roles`) used by this backend.
CONFIG_READ = "DeviceManagementConfiguration.Read.All"
CONFIG_WRITE = "DeviceManagementConfiguration.ReadWrite.All"
DEVICES_READ = "DeviceManagementManagedDevices.Read.All"
DEVICES_WRITE = "DeviceManagementManagedDevices.ReadWrite.All"
EVENTS_WRITE = (CONFIG_WRITE, DEVICES_WRITE)  # who may report elevation events (the events service, the gateway)
# Microsoft Managed Desktop's support API ("Modern Workplace Customer APIs"): application and delegated permissions.
MMD_SUPPORT = "MmdSupport.ReadWrite"
MMD_DEVICE_READ = "MWaaSDevice.Read"
# Entra directory roles (role template ids, as in a token's `wids`)
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
INTUNE_ADMINISTRATOR = "3a2c62db-5318-420d-8d74-23affee5d9d5"


class AuthError(Exception):
    """The token is missing, malformed, expired or not signed by a trusted key (HTTP 401)."""


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    object_id: str
    upn: str
    permissions: frozenset[str]  # Graph permissions: a user's scp, or an application's roles
    delegated: bool = False      # a signed-in user's token, as opposed to an application's
    client_id: str = ""          # the calling application (azp, or v1's appid), when the token names it
    directory_roles: frozenset[str] = frozenset()  # the user's Entra directory role templates (wids)

    def missing(self, any_of: Iterable[str]) -> list[str] | None:
        """None when the principal holds one of `any_of`, else the sorted list it would need."""
        wanted = sorted(any_of)
        return None if self.permissions.intersection(wanted) else wanted


def bearer(header: str | None) -> str:
    if not header:
        raise AuthError("Access token is empty.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'.")
    return token.strip()


USER_CLAIMS = ("upn", "unique_name", "preferred_username")  # name a signed-in user; app-only tokens carry none
TIME_CLAIMS = ("exp", "nbf", "iat")  # NumericDate (RFC 7519 section 2): a JSON number of seconds


def _numeric_date(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def principal_from_claims(claims: dict) -> Principal:
    """The caller a token's claims describe. As Entra ID issues them: a user's (delegated) token carries `scp`, its
    Graph permissions; an application's carries `roles` and no `scp`. `idtyp` ("user" or "app") says which when
    present; without it, user claims (`upn`, ...) name a user. A user's `roles` are app roles of the user, never
    Graph permissions, and a user's token without `scp` grants nothing: it is refused, so no user passes as an
    application."""
    tenant = claims.get("tid")
    if not isinstance(tenant, str) or not tenant:
        raise AuthError("Access token has no tenant (tid) claim.")
    for name in TIME_CLAIMS:
        if name in claims and not _numeric_date(claims[name]):
            raise AuthError(f"Access token claim '{name}' must be a number (NumericDate).")
    scopes, roles, kind = claims.get("scp", ""), claims.get("roles", []), claims.get("idtyp")
    if not isinstance(scopes, str) or not isinstance(roles, list) or kind not in (None, "user", "app"):
        raise AuthError("Access token has malformed scp, roles or idtyp claims.")
    scopes = frozenset(scopes.split())
    delegated = kind == "user" or (kind is None and (bool(scopes) or any(claims.get(c) for c in USER_CLAIMS)))
    if delegated and not scopes:
        raise AuthError("A user's access token must carry delegated permissions (scp).")
    if not delegated and scopes:
        raise AuthError("An application's access token (idtyp app) cannot carry delegated permissions (scp).")
    wids = claims.get("wids")
    return Principal(
        tenant_id=tenant.lower(),
        object_id=str(claims.get("oid", "")),
        upn=str(claims.get("upn") or claims.get("preferred_username") or ""),
        permissions=scopes if delegated else frozenset(r for r in roles if isinstance(r, str)),
        delegated=delegated,
        client_id=str(claims.get("azp") or claims.get("appid") or ""),
        directory_roles=frozenset(w.lower() for w in wids if isinstance(w, str))
        if isinstance(wids, list) else frozenset(),
    )


class TokenVerifier:
    """Verifies tokens and caches the verdict until the token's own expiry."""

    def __init__(self, *, secret: str = "", jwks_url: str = "", audience: str = "", issuer: str = "",
                 cache_size: int = 10_000):
        if not secret and not jwks_url:
            raise ValueError("set EPM_JWT_SECRET (dev, HS256) or EPM_JWKS_URL (production, RS256)")
        if secret and len(secret) < 32:
            raise ValueError("EPM_JWT_SECRET must be at least 32 characters")
        self._secret, self._jwks_url = secret, jwks_url
        self._audience, self._issuer = audience or None, issuer or None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_fetched = 0.0
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._cache_size = cache_size

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        return cls(secret=settings.jwt_secret, jwks_url=settings.jwks_url,
                   audience=settings.jwt_audience, issuer=settings.jwt_issuer)

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached and cached[1] > time.time():
            return cached[0]
        key, algorithm = await self._key_for(token)
        try:
            claims = jwt.decode(
                token, key, algorithms=[algorithm], audience=self._audience, issuer=self._issuer,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("Lifetime validation failed, the token is expired.") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"Access token validation failed: {exc}.") from None
        principal = principal_from_claims(claims)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = (principal, float(claims["exp"]))
        return principal

    async def _key_for(self, token: str):
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthError("Access token is malformed.") from None
        if self._secret:
            return self._secret, "HS256"
        kid = header.get("kid", "")
        if kid not in self._keys:
            await self._refresh_keys()
        if kid not in self._keys:
            raise AuthError("Access token is signed by an unknown key.")
        return self._keys[kid], "RS256"

    async def _refresh_keys(self) -> None:
        async with self._lock:
            if time.monotonic() - self._keys_fetched < 30:  # at most one fetch per 30 s
                return
            self._keys_fetched = time.monotonic()
            self._session = self._session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            try:
                async with self._session.get(self._jwks_url) as resp:
                    resp.raise_for_status()
                    document = await resp.json(content_type=None)
                self._keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(document).keys if k.key_id}
            except (TimeoutError, aiohttp.ClientError, jwt.PyJWKSetError, ValueError) as exc:
                raise AuthError(f"Signing keys are unavailable ({type(exc).__name__}).") from None

    async def close(self) -> None:
        if self._session:
            await self._session.close()


def mint(secret: str, *, tenant: str, scopes: Iterable[str] = (), roles: Iterable[str] = (),
         oid: str | None = None, upn: str = "", hours: float = 8.0, client_id: str = "",
         wids: Iterable[str] = ()) -> str:
    """A dev token (HS256) shaped like an Entra ID v2 access token: a user's when it has `scopes` (scp), else an
    application's (`roles`), as its `idtyp` says; `wids` are directory roles, `client_id` the calling app (azp)."""
    now, scp = int(time.time()), " ".join(scopes)
    claims = {
        "aud": "https://graph.microsoft.com", "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now, "nbf": now, "exp": now + int(hours * 3600),
        "tid": tenant, "oid": oid or str(uuid.uuid4()), "idtyp": "user" if scp else "app",
    }
    if scp:
        claims["scp"] = scp
    if upn:
        claims["upn"] = upn  # an application's too: idtyp says what it is
    if client_id:
        claims["azp"] = client_id
    if wids := list(wids):
        claims["wids"] = wids
    if roles := list(roles):
        claims["roles"] = roles
    return jwt.encode(claims, secret, algorithm="HS256")


def not_authorized(wanted: Iterable[str]) -> str:
    """Graph's message for a caller that lacks every one of the `wanted` permissions."""
    return ("Application is not authorized to perform this operation. "
            f"Application must have one of the following scopes: {', '.join(wanted)}")


async def authorize(verifier: TokenVerifier, metadata, any_of: Iterable[str]) -> Principal:
    """The caller of a gRPC method, from its `authorization` metadata; raises RpcError 401/403-style."""
    header = next((v for k, v in metadata if k == "authorization"), None)
    try:
        principal = await verifier.verify(bearer(header))
    except AuthError as exc:
        raise RpcError(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", str(exc)) from None
    if wanted := principal.missing(any_of):
        raise RpcError(grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE", not_authorized(wanted),
                       required=",".join(wanted))
    return principal
