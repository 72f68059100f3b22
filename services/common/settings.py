"""Process settings, read once from the environment (EPM_*) and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str = ""            # EPM_DATABASE_URL; `epm up` starts an embedded PostgreSQL when empty
    db_pool_size: int = 10
    migrate_on_start: bool = True     # services apply their own migrations (under an advisory lock)
    jwt_secret: str = field(default="", repr=False)  # dev: HS256 shared secret
    jwks_url: str = ""                # production: RS256 keys from this JWKS document
    jwt_audience: str = ""            # checked when set
    jwt_issuer: str = ""              # checked when set
    console_oidc_issuer: str = ""     # the reviewer console signs in here (OIDC code flow with PKCE); empty: dev tokens
    console_oidc_client_id: str = ""  # the console's app registration (a public client: Entra's SPA platform)
    console_oidc_scopes: str = "openid profile api://epm/DeviceManagementConfiguration.ReadWrite.All"
    events_port: int = 50051
    events_addr: str = "127.0.0.1:50051"  # where the gateway finds the events service
    requests_port: int = 50052
    requests_addr: str = "127.0.0.1:50052"  # where the gateway, events and reputation find the requests service
    reputation_port: int = 50053
    reputation_addr: str = "127.0.0.1:50053"  # where the gateway and the requests service find reputation
    operator_tenant: str = ""         # the tenant whose writers may import feeds shared by every tenant
    notify_private_networks: bool = False  # notifications may go to http, loopback and private addresses (dev)
    gateway_port: int = 8080
    throttle_tenant: str = "1000/2000"  # gateway rate limit per tenant: RATE[/BURST] requests per second; 0: none
    throttle_client: str = "500/1000"   # per application (else user) within a tenant
    metrics_port: int = 0             # Prometheus /metrics on this port; 0: none
    events_retention_days: int = 365  # monthly partitions older than this are dropped
    approval_window_hours: float = 24.0  # default per tenant: elevation allowed this long after approval
    pending_ttl_days: float = 7.0        # default per tenant: unreviewed requests expire after this
    max_open_per_device: int = 10        # default per tenant: open (pending/approved) requests per device
    shutdown_grace: float = 10.0      # seconds in-flight calls get on SIGTERM
    log_level: str = "INFO"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        return cls(
            database_url=env("EPM_DATABASE_URL", ""),
            db_pool_size=_int("EPM_DB_POOL_SIZE", cls.db_pool_size),
            migrate_on_start=env("EPM_MIGRATE_ON_START", "true").lower() not in ("0", "false", "no"),
            jwt_secret=env("EPM_JWT_SECRET", ""),
            jwks_url=env("EPM_JWKS_URL", ""),
            jwt_audience=env("EPM_JWT_AUDIENCE", ""),
            jwt_issuer=env("EPM_JWT_ISSUER", ""),
            console_oidc_issuer=env("EPM_CONSOLE_OIDC_ISSUER", ""),
            console_oidc_client_id=env("EPM_CONSOLE_OIDC_CLIENT_ID", ""),
            console_oidc_scopes=env("EPM_CONSOLE_OIDC_SCOPES", "") or cls.console_oidc_scopes,
            events_port=_int("EPM_EVENTS_PORT", cls.events_port),
            events_addr=env("EPM_EVENTS_ADDR", cls.events_addr),
            requests_port=_int("EPM_REQUESTS_PORT", cls.requests_port),
            requests_addr=env("EPM_REQUESTS_ADDR", cls.requests_addr),
            reputation_port=_int("EPM_REPUTATION_PORT", cls.reputation_port),
            reputation_addr=env("EPM_REPUTATION_ADDR", cls.reputation_addr),
            operator_tenant=env("EPM_OPERATOR_TENANT", "").lower(),
            notify_private_networks=env("EPM_NOTIFY_PRIVATE_NETWORKS", "false").lower() in ("1", "true", "yes"),
            gateway_port=_int("EPM_GATEWAY_PORT", cls.gateway_port),
            throttle_tenant=env("EPM_THROTTLE_TENANT", cls.throttle_tenant),
            throttle_client=env("EPM_THROTTLE_CLIENT", cls.throttle_client),
            metrics_port=_int("EPM_METRICS_PORT", cls.metrics_port),
            approval_window_hours=float(env("EPM_APPROVAL_WINDOW_HOURS", str(cls.approval_window_hours))),
            pending_ttl_days=float(env("EPM_PENDING_TTL_DAYS", str(cls.pending_ttl_days))),
            max_open_per_device=_int("EPM_MAX_OPEN_PER_DEVICE", cls.max_open_per_device),
            events_retention_days=_int("EPM_EVENTS_RETENTION_DAYS", cls.events_retention_days),
            shutdown_grace=float(env("EPM_SHUTDOWN_GRACE", str(cls.shutdown_grace))),
            log_level=env("EPM_LOG_LEVEL", cls.log_level).upper(),
        )
