"""`epm`: run the system (`epm up`), one process (`epm serve NAME`), migrations, feed imports, dev tokens, a dev
webhook."""

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
import warnings
from pathlib import Path

PROCESSES = ("events", "requests", "reputation", "gateway")  # started by `epm up`, in this order
ALL_SCOPES = (
    "DeviceManagementConfiguration.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
    "RoleManagement.ReadWrite.Directory",
)
DEV_TENANT = "00000000-0000-4000-8000-000000000001"
DEV_ADMIN = "00000000-0000-4000-8000-0000000000ad"  # the dev token's user: the same across restarts
DEV_ADMIN_UPN = "admin@contoso.example"
DEV_APP = "00000000-0000-4000-8000-0000000000a9"  # an application token's object id (its service principal)
MANAGER_ROLE = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"  # Endpoint Privilege Manager
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"  # the dev admin's directory role in `epm up`'s token
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
    """A user's (delegated) token when it has scopes, else an application's: roles only, no user claims."""
    from .common.auth import mint

    scopes = args.scopes.split()
    if not scopes and args.upn:
        raise SystemExit("epm token: an application token (no --scopes) has no user: drop --upn")
    upn = (args.upn or DEV_ADMIN_UPN) if scopes else ""
    oid = args.oid or (DEV_ADMIN if scopes else DEV_APP)
    print(mint(dev_secret(), tenant=args.tenant, scopes=scopes, roles=args.roles.split(), upn=upn, oid=oid,
               hours=args.hours, wids=args.wids.split()))


def webhook(args: argparse.Namespace) -> None:
    from .webhook import run

    run(args.host, args.port)


def up(args: argparse.Namespace) -> None:
    """All processes on one machine; the embedded PostgreSQL when EPM_DATABASE_URL is unset. A process that dies
    is started again (with backoff) while the others go on; SIGINT, SIGTERM or SIGHUP stop them all."""
    from .common.auth import mint

    stopping = Stopping()
    env = _up_environment(args.port)
    children: list[Child] = []
    try:
        if not _start_all(env, children, stopping):
            return
        dev = mint(env["EPM_JWT_SECRET"], tenant=DEV_TENANT, scopes=ALL_SCOPES, upn=DEV_ADMIN_UPN,
                   oid=DEV_ADMIN, wids=[GLOBAL_ADMINISTRATOR])
        print(_banner(args.port, env, dev, _grant_manager_role(args.port, dev, stopping)), flush=True)
        while not stopping:
            for child in children:
                child.tend()
            time.sleep(0.2)
    finally:
        if stopping:
            print(f"epm: {signal.Signals(stopping.signum).name}: stopping every process", file=sys.stderr)
        _stop([child.process for child in children])


def _up_environment(port: int) -> dict:
    env = dict(os.environ, EPM_JWT_SECRET=dev_secret(), EPM_GATEWAY_PORT=str(port))
    env["EPM_DATABASE_URL"] = os.environ.get("EPM_DATABASE_URL") or embedded_database()
    env.setdefault("EPM_EVENTS_ADDR", f"127.0.0.1:{env.get('EPM_EVENTS_PORT', '50051')}")
    env.setdefault("EPM_REQUESTS_ADDR", f"127.0.0.1:{env.get('EPM_REQUESTS_PORT', '50052')}")
    env.setdefault("EPM_REPUTATION_ADDR", f"127.0.0.1:{env.get('EPM_REPUTATION_PORT', '50053')}")
    env.setdefault("EPM_OPERATOR_TENANT", DEV_TENANT)
    env.setdefault("EPM_NOTIFY_PRIVATE_NETWORKS", "true")  # one machine: its subscribers are local
    return env


def _start_all(env: dict, children: list[Child], stopping: Stopping) -> bool:
    """Starts the processes in order, each once the one before listens; False when a signal came first. A process
    that does not start at all ends `epm up`."""
    metrics = int(os.environ.get("EPM_METRICS_PORT") or 0)  # one machine: each process its own port from there
    for i, name in enumerate(PROCESSES):
        children.append(Child(name, dict(env, EPM_METRICS_PORT=str(metrics + i)) if metrics else env))
        ready = _wait_ready(name, env, children[-1].process, stopping)
        if stopping:
            return False
        if not ready:
            raise SystemExit(f"epm: the {name} process did not start; see its log above")
    return True


def _banner(port: int, env: dict, token: str, role: str) -> str:
    return (f"\nepm is up.\n  Graph API : http://127.0.0.1:{port}/beta\n"
            f"  console   : http://127.0.0.1:{port}/console/ (sign in with the dev token)\n"
            f"  gRPC      : events {env['EPM_EVENTS_ADDR']}, requests {env['EPM_REQUESTS_ADDR']}, "
            f"reputation {env['EPM_REPUTATION_ADDR']}\n"
            f"  database  : {_redact(env['EPM_DATABASE_URL'])}\n"
            f"  data dir  : {data_dir()}\n\n"
            f"Dev token (tenant {DEV_TENANT}, 8 h; the dev admin {DEV_ADMIN_UPN}, Global Administrator):\n{token}\n"
            f"  {role}\n\n"
            f"  curl -H \"Authorization: Bearer $TOKEN\" "
            f"http://127.0.0.1:{port}/beta/deviceManagement/privilegeManagementElevations\n"
            f"  # load threat intelligence (any time, also while epm is up):\n"
            f"  epm feeds import loldrivers path/to/LOLDrivers/yaml; epm feeds import lolbas path/to/LOLBAS/yml\n"
            f"\nA process that stops is started again; Ctrl-C (or SIGTERM) stops everything.")


class Stopping:
    """Set by SIGINT, SIGTERM or SIGHUP, installed explicitly: a shell starts background jobs with SIGINT ignored.
    SIGHUP stays ignored when it is (`nohup`)."""

    def __init__(self):
        self.signum = 0
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, self._set)

    def _set(self, signum, frame) -> None:
        self.signum = signum

    def __bool__(self) -> bool:
        return bool(self.signum)


class Child:
    """One process of `epm up`, started again when it dies: after 1 s, doubling to 30 s while it keeps dying, back to
    1 s once it has stayed up for a minute. In a process group of its own, so that a terminal's Ctrl-C reaches only
    `epm up`, which stops the processes in order."""

    FIRST_DELAY, MAX_DELAY, STABLE = 1.0, 30.0, 60.0

    def __init__(self, name: str, env: dict):
        self.name, self.env = name, env
        self.restarts, self.delay, self.due = 0, self.FIRST_DELAY, None
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", self.name],  # nosec B603 # fixed argv
                                        env=self.env, process_group=0)
        self.started = time.monotonic()

    def tend(self) -> None:
        """Notices that the process died and schedules its start, or starts it when that is due."""
        now = time.monotonic()
        if self.due is not None:
            if now >= self.due:
                self.due, self.restarts = None, self.restarts + 1
                self._start()
                print(f"epm: started {self.name} again (restart {self.restarts})", file=sys.stderr, flush=True)
        elif self.process.poll() is None:
            if now - self.started >= self.STABLE:
                self.delay = self.FIRST_DELAY
        else:
            self.due = now + self.delay
            print(f"epm: {self.name} {_exit_status(self.process.returncode)}; starting it again in {self.delay:g} s",
                  file=sys.stderr, flush=True)
            self.delay = min(self.delay * 2, self.MAX_DELAY)


def _exit_status(returncode: int) -> str:
    return f"was killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exited with {returncode}"


def _grant_manager_role(port: int, token: str, stopping: Stopping) -> str:
    """Gives the dev admin the Endpoint Privilege Manager role unless they hold it already, through the gateway as
    an administrator would (the dev token carries Global Administrator); what it did, in a sentence."""
    import json
    import urllib.request

    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(base + path, method=method, data=body and json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310 # our own gateway, http://127.0.0.1
            return json.load(response)

    try:
        _wait_until(lambda: call("GET", "/readyz"), stopping)  # every backend serving
        if any(a["roleId"] == MANAGER_ROLE for a in call("GET", "/beta/privilegedRoleAssignments/my")["value"]):
            return "The dev admin holds the Endpoint Privilege Manager role (given on the first start)."
        call("POST", "/beta/privilegedRoleAssignments", {"userId": DEV_ADMIN, "roleId": MANAGER_ROLE})
        return "Gave the dev admin the Endpoint Privilege Manager role: it may review requests."
    except (OSError, ValueError, KeyError) as exc:  # urllib's errors are OSErrors
        print(f"epm: could not give the dev admin the Endpoint Privilege Manager role: {exc}", file=sys.stderr)
        return "The dev admin has no Endpoint Privilege Manager role (see the error above)."


def _wait_until(ready, stopping: Stopping, timeout: float = 60):
    """ready() once it raises no OSError (tried every 0.2 s until `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ready()
        except OSError:
            if stopping or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_ready(name: str, env: dict, child: subprocess.Popen, stopping: Stopping, timeout: float = 60) -> bool:
    import socket

    port = {"events": int(env.get("EPM_EVENTS_PORT", 50051)), "requests": int(env.get("EPM_REQUESTS_PORT", 50052)),
            "reputation": int(env.get("EPM_REPUTATION_PORT", 50053)), "gateway": int(env["EPM_GATEWAY_PORT"])}[name]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None and not stopping:
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
    # pgserver asks platformdirs for a runtime directory when imported; without a login session (a container, ssh
    # without systemd) that warns on every command, and the fallback under /tmp serves it as well
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set", category=UserWarning)
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
    p_token.add_argument("--scopes", default=" ".join(ALL_SCOPES),
                         help="space-separated delegated scopes (scp): a user's token; \"\" for an application's")
    p_token.add_argument("--roles", default="", help="space-separated application permissions (roles)")
    p_token.add_argument("--upn", default="", help=f"the user (default: {DEV_ADMIN_UPN}; none for an application)")
    p_token.add_argument("--oid", default="", help="the object id (default: the dev admin, or for an application "
                                                   "the dev application)")
    p_token.add_argument("--hours", type=float, default=8.0)
    p_token.add_argument("--wids", default="",
                         help="space-separated Entra directory role ids (default: none; Global Administrator, "
                              f"who may manage role assignments, is {GLOBAL_ADMINISTRATOR})")
    p_webhook = sub.add_parser("webhook", help="a local change-notification endpoint that answers the validation "
                                               "handshake and prints each notification as a JSON line")
    p_webhook.add_argument("--port", type=int, default=9000)
    p_webhook.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args)
    elif args.command == "serve":
        serve(args.name)
    elif args.command == "migrate":
        migrate()
    elif args.command == "feeds":
        feeds(args)
    elif args.command == "webhook":
        webhook(args)
    else:
        token(args)


if __name__ == "__main__":
    main()
