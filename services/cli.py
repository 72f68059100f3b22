"""`epm`: run the system (`epm up`), one process (`epm serve NAME`), migrations, feed imports, dev tokens."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import signal
import subprocess  # nosec B404 # starts this package's own processes, argv lists, no shell
import sys
import time
from pathlib import Path

PROCESSES = ("events", "requests", "reputation", "gateway")  # started by `epm up`, in this order
ALL_SCOPES = (
    "DeviceManagementConfiguration.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
    "RoleManagement.ReadWrite.Directory",
)
DEV_TENANT = "00000000-0000-4000-8000-000000000001"
DEV_ADMIN = "00000000-0000-4000-8000-0000000000ad"  # the dev token's user: the same across restarts
MANAGER_ROLE = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"  # Endpoint Privilege Manager
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"  # the dev admin's directory role (wids)
FEED_FORMATS = ("lolbas", "loldrivers", "malwarebazaar", "nsrl", "nsrl-legacy", "hashlist")


def data_dir() -> Path:
    default = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "epm"
    path = Path(os.environ.get("EPM_DATA_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def dev_secret() -> str:
    """EPM_JWT_SECRET, else a random secret kept (mode 600) in the data directory."""
    if secret := os.environ.get("EPM_JWT_SECRET"):
        return secret
    path = data_dir() / "dev-jwt-secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def embedded_database() -> str:
    """Starts (or reuses) the embedded PostgreSQL of the pgserver wheel; it stops when this process exits."""
    import pgserver

    server = pgserver.get_server(data_dir() / "pgdata", cleanup_mode="stop")
    return server.get_uri()


def serve(name: str) -> None:
    from .common import logs
    from .common.settings import Settings

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    _use_uvloop()
    if name == "gateway":
        from gateway.__main__ import run
    elif name == "events":
        from .events.__main__ import run
    elif name == "requests":
        from .requests.__main__ import run
    elif name == "reputation":
        from .reputation.__main__ import run
    else:
        raise SystemExit(f"unknown process {name!r}; choose from {', '.join(PROCESSES)}")
    gc.freeze()  # what the imports made lives forever: no full collection scans it again (~14 ms each)
    asyncio.run(run(settings))


def migrate() -> None:
    from .common import db, logs
    from .common.settings import Settings
    from .events.app import MIGRATIONS as EVENTS
    from .reputation.app import MIGRATIONS as REPUTATION
    from .requests.app import MIGRATIONS as REQUESTS

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    url = settings.database_url or embedded_database()

    async def run():
        for schema, directory in (("events", EVENTS), ("requests", REQUESTS), ("reputation", REPUTATION)):
            await db.migrate(url, schema, directory)

    asyncio.run(run())


def feeds(args: argparse.Namespace) -> None:
    """`epm feeds import FORMAT PATH` and `epm feeds list`, straight against the database (an operator's tool:
    a Kubernetes Job or `kubectl exec` has the database URL, not a user's token)."""
    from .common import logs
    from .common.settings import Settings
    from .reputation import feedcli

    settings = Settings.from_env()
    logs.configure("WARNING")
    url = settings.database_url or embedded_database()
    asyncio.run(feedcli.main(url, args))


def token(args: argparse.Namespace) -> None:
    from .common.auth import mint

    print(mint(dev_secret(), tenant=args.tenant, scopes=args.scopes.split(), roles=args.roles.split(),
               upn=args.upn, oid=args.oid, hours=args.hours, wids=args.wids.split()))


def up(args: argparse.Namespace) -> None:
    """All processes on one machine; the embedded PostgreSQL when EPM_DATABASE_URL is unset."""
    from .common.auth import mint

    env = dict(os.environ, EPM_JWT_SECRET=dev_secret(), EPM_GATEWAY_PORT=str(args.port))
    env["EPM_DATABASE_URL"] = os.environ.get("EPM_DATABASE_URL") or embedded_database()
    env.setdefault("EPM_EVENTS_ADDR", f"127.0.0.1:{env.get('EPM_EVENTS_PORT', '50051')}")
    env.setdefault("EPM_REQUESTS_ADDR", f"127.0.0.1:{env.get('EPM_REQUESTS_PORT', '50052')}")
    env.setdefault("EPM_REPUTATION_ADDR", f"127.0.0.1:{env.get('EPM_REPUTATION_PORT', '50053')}")
    env.setdefault("EPM_OPERATOR_TENANT", DEV_TENANT)
    env.setdefault("EPM_NOTIFY_PRIVATE_NETWORKS", "true")  # one machine: its subscribers are local
    metrics = int(os.environ.get("EPM_METRICS_PORT") or 0)  # one machine: each process its own port from there
    children = []
    for i, name in enumerate(PROCESSES):
        child_env = dict(env, EPM_METRICS_PORT=str(metrics + i)) if metrics else env
        children.append(subprocess.Popen([sys.executable, "-m", "services.cli", "serve", name], env=child_env))  # nosec B603 # fixed argv
        if not _wait_ready(name, env, children[-1]):
            _stop(children)
            raise SystemExit(f"epm: the {name} process did not start; see its log above")
    dev = mint(env["EPM_JWT_SECRET"], tenant=DEV_TENANT, scopes=ALL_SCOPES, upn="admin@contoso.example",
               oid=DEV_ADMIN, wids=[GLOBAL_ADMINISTRATOR])
    print(f"\nepm is up.\n  Graph API : http://127.0.0.1:{args.port}/beta\n"
          f"  console   : http://127.0.0.1:{args.port}/console/ (sign in with the dev token)\n"
          f"  gRPC      : events {env['EPM_EVENTS_ADDR']}, requests {env['EPM_REQUESTS_ADDR']}, "
          f"reputation {env['EPM_REPUTATION_ADDR']}\n"
          f"  database  : {_redact(env['EPM_DATABASE_URL'])}\n"
          f"  data dir  : {data_dir()}\n\nDev token (tenant {DEV_TENANT}, 8 h):\n{dev}\n\n"
          f"  curl -H \"Authorization: Bearer $TOKEN\" "
          f"http://127.0.0.1:{args.port}/beta/deviceManagement/privilegeManagementElevations\n"
          f"  # to review requests, give yourself the Endpoint Privilege Manager role once:\n"
          f"  curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
          f"http://127.0.0.1:{args.port}/beta/privilegedRoleAssignments "
          f"-d '{{\"userId\": \"{DEV_ADMIN}\", \"roleId\": \"{MANAGER_ROLE}\"}}'\n"
          f"  # load threat intelligence (any time, also while epm is up):\n"
          f"  epm feeds import loldrivers path/to/LOLDrivers/yaml; epm feeds import lolbas path/to/LOLBAS/yml\n"
          f"\nCtrl-C stops everything.",
          flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("epm: a process exited; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    _stop(children)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _wait_ready(name: str, env: dict, child: subprocess.Popen, timeout: float = 60) -> bool:
    import socket

    port = {"events": int(env.get("EPM_EVENTS_PORT", 50051)), "requests": int(env.get("EPM_REQUESTS_PORT", 50052)),
            "reputation": int(env.get("EPM_REPUTATION_PORT", 50053)), "gateway": int(env["EPM_GATEWAY_PORT"])}[name]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def _stop(children: list[subprocess.Popen]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def _use_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="epm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="run every process, with an embedded PostgreSQL unless EPM_DATABASE_URL is set")
    p_up.add_argument("--port", type=int, default=int(os.environ.get("EPM_GATEWAY_PORT", 8080)))
    p_serve = sub.add_parser("serve", help="run one process (what each Kubernetes Deployment runs)")
    p_serve.add_argument("name", choices=PROCESSES)
    sub.add_parser("migrate", help="apply every service's database migrations, then exit")
    p_feeds = sub.add_parser("feeds", help="import threat-intelligence feeds, list them")
    feeds_sub = p_feeds.add_subparsers(dest="feeds_command", required=True)
    p_import = feeds_sub.add_parser("import", help="import a feed file or folder (a new version of the feed)")
    p_import.add_argument("format", choices=FEED_FORMATS)
    p_import.add_argument("path", help="a file, a folder (lolbas, loldrivers) or a .zip (CSV formats)")
    p_import.add_argument("--feed", default="", help="feed name (default: the format's name)")
    p_import.add_argument("--tenant", default="", help="import for this tenant only (default: shared by all)")
    p_import.add_argument("--source-version", default="", help="the data's own version (default: from SNAPSHOT)")
    p_list = feeds_sub.add_parser("list", help="list the imported feeds")
    p_list.add_argument("--tenant", default="", help="also this tenant's own feeds")
    p_token = sub.add_parser("token", help="mint a dev token (HS256, EPM_JWT_SECRET or the data dir's secret)")
    p_token.add_argument("--tenant", default=DEV_TENANT)
    p_token.add_argument("--scopes", default=" ".join(ALL_SCOPES), help="space-separated delegated scopes (scp)")
    p_token.add_argument("--roles", default="", help="space-separated application permissions (roles)")
    p_token.add_argument("--upn", default="admin@contoso.example")
    p_token.add_argument("--oid", default=DEV_ADMIN, help="the user's object id (default: the dev admin)")
    p_token.add_argument("--hours", type=float, default=8.0)
    p_token.add_argument("--wids", default=GLOBAL_ADMINISTRATOR,
                         help="space-separated Entra directory role ids (default: Global Administrator, which may "
                              "manage role assignments; \"\" for none)")
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args)
    elif args.command == "serve":
        serve(args.name)
    elif args.command == "migrate":
        migrate()
    elif args.command == "feeds":
        feeds(args)
    else:
        token(args)


if __name__ == "__main__":
    main()
