"""A whole system as real OS processes, for fault and soak tests: a PostgreSQL of its own and the four
processes (`python -m services.cli serve NAME`) on free ports, with a dev JWT secret.

    with System(Path(tmp), env={"EPM_SHUTDOWN_GRACE": "5"}) as system:   # starts everything
        await system.ready()                   # gateway /readyz is 200 (every backend SERVING)
        system.url                             # gateway base URL, e.g. http://127.0.0.1:PORT
        system.address("events")               # a backend's gRPC address (events, requests, reputation)
        system.database_url                    # the database the processes use (for checks in SQL)
        system.token(tenant=..., scopes=..., roles=..., oid=..., upn=...)   # a signed dev token
        system.kill("requests")                # SIGKILL, and waits for the exit
        system.terminate("gateway")            # SIGTERM; does not wait (see wait_exit)
        system.wait_exit("gateway", timeout)   # -> exit code
        system.start("requests")               # (re)starts one process on the same port; await ready() after
        system.stop_postgres(mode="fast")      # pg_ctl stop: fast | immediate | smart
        system.start_postgres()                # same port, same data directory
        system.pid(name), system.rss(name)     # the process's id and resident memory in bytes (VmRSS)
        system.log(name)                       # what the process has written so far (stdout and stderr)

NAMES are "events", "requests", "reputation", "gateway". Processes log to files in the directory (never to a
pipe that could fill). PostgreSQL runs with fsync off (only its processes stop in these tests, never the machine).

`EpmUp` is `epm up` itself as one process that runs the four (see its docstring); `scratch_database` and
`drop_database` give it a database of its own on a test PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from services.common.auth import mint

NAMES = ("events", "requests", "reputation", "gateway")
ALL_SCOPES = ("DeviceManagementConfiguration.ReadWrite.All", "DeviceManagementManagedDevices.ReadWrite.All")
ROOT = Path(__file__).resolve().parent.parent
# this checkout first, then what the tests run with (a worktree's own generated stubs, for a proto it adds)
PYTHON_PATH = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A PostgreSQL cluster in `directory`, on 127.0.0.1:`port`, stopped and started with pg_ctl."""

    def __init__(self, directory: Path):
        import pgserver

        # pgserver runs initdb (as a user of its own when we are root) and sets the permissions; we restart the
        # cluster on TCP so that it can stop and start on one port.
        self._server = pgserver.get_server(directory / "pgdata", cleanup_mode="delete")
        self.pgdata, self._user = self._server.pgdata, self._server.system_user
        self._ctl = str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl")
        self.stop(mode="fast")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _run(self, *args: str) -> None:
        # runuser, not subprocess's user=: that forks without vfork, and gRPC's fork handlers crash the child
        as_user = ["runuser", "-u", self._user, "--"] if self._user else []
        subprocess.run([*as_user, self._ctl, "-D", str(self.pgdata), "-w", "-t", "60", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)

    def start(self) -> None:
        self._run("-l", str(self.pgdata / "log"), "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c fsync=off -c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("-m", mode, "stop")

    def close(self) -> None:
        try:
            self.stop(mode="immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        self._server.cleanup()  # removes the data directory


class System:
    def __init__(self, directory: Path, env: dict[str, str] | None = None):
        self.directory = directory
        self.postgres = Postgres(directory)
        self.database_url = self.postgres.url
        self.secret = secrets.token_urlsafe(32)
        self.ports = {name: free_port() for name in NAMES}
        self.url = f"http://127.0.0.1:{self.ports['gateway']}"
        addresses = {name: self.address(name) for name in NAMES[:3]}
        self.env = dict(
            os.environ, EPM_DATABASE_URL=self.database_url, EPM_JWT_SECRET=self.secret, EPM_DB_POOL_SIZE="4",
            EPM_EVENTS_PORT=str(self.ports["events"]), EPM_EVENTS_ADDR=addresses["events"],
            EPM_REQUESTS_PORT=str(self.ports["requests"]), EPM_REQUESTS_ADDR=addresses["requests"],
            EPM_REPUTATION_PORT=str(self.ports["reputation"]), EPM_REPUTATION_ADDR=addresses["reputation"],
            EPM_GATEWAY_PORT=str(self.ports["gateway"]), EPM_SHUTDOWN_GRACE="10", EPM_LOG_LEVEL="INFO",
            PYTHONPATH=PYTHON_PATH)
        self.env.update(env or {})
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        try:
            for name in NAMES:
                self.start(name)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> System:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def token(self, tenant: str, scopes=ALL_SCOPES, roles=(), **claims) -> str:
        return mint(self.secret, tenant=tenant, scopes=scopes, roles=roles, **claims)

    # --- processes ---------------------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Starts (again) one process; its log file grows across restarts."""
        assert name not in self.processes or self.processes[name].poll() is not None, f"{name} is running"
        log = self._logs.setdefault(name, self.directory / f"{name}.log")
        with open(log, "ab") as out:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", name], env=self.env, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        self.processes[name].kill()
        self.processes[name].wait(30)

    def terminate(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGTERM)

    def wait_exit(self, name: str, timeout: float = 30) -> int:
        return self.processes[name].wait(timeout)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def rss(self, name: str) -> int:
        """Resident memory in bytes (VmRSS of /proc/PID/status)."""
        for line in Path(f"/proc/{self.pid(name)}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise ProcessLookupError(name)

    def log(self, name: str) -> str:
        return self._logs[name].read_text(errors="replace")

    async def ready(self, timeout: float = 60) -> dict:
        """Waits until the gateway's /readyz is 200 (every backend SERVING); its body."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.monotonic() < deadline:
                for name, proc in self.processes.items():
                    if proc.poll() is not None:
                        raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log(name)[-3000:]}")
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return await resp.json()
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"the system is not ready after {timeout} s")

    # --- PostgreSQL --------------------------------------------------------------------------------

    def stop_postgres(self, mode: str = "fast") -> None:
        self.postgres.stop(mode)

    def start_postgres(self) -> None:
        self.postgres.start()

    def close(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        self.postgres.close()


class EpmUp:
    """`epm up` as a user runs it: one real process (`python -m services.cli up`) that starts the four of its own,
    here on free ports, with its data directory in `directory` and the database `database_url` (none: the embedded
    one, in the data directory).

        with EpmUp(Path(tmp), database_url, env={...}, ignore_sigint=False) as up:   # starts it
            await up.ready()                  # it printed "epm is up" and the gateway's /readyz is 200
            up.url, up.ports                  # the gateway's base URL; the port of each process (NAMES)
            up.env                            # what it runs with: also what `epm token` or `epm feeds` need
            up.children()                     # {name: pid} of the processes it runs now
            up.stdout(), up.stderr()          # what it has written so far
            up.process                        # its Popen (send_signal, wait)

    `ignore_sigint` starts it as a non-interactive shell starts a background job: with SIGINT ignored.
    Closing SIGTERMs it and waits; what is still running then is killed.
    """

    def __init__(self, directory: Path, database_url: str | None, env: dict[str, str] | None = None,
                 ignore_sigint: bool = False):
        self.directory = directory
        self.ports = {name: free_port() for name in NAMES}
        self.url = f"http://127.0.0.1:{self.ports['gateway']}"
        self.env = dict(os.environ, EPM_DATA_DIR=str(directory / "data"), PYTHONPATH=PYTHON_PATH,
                        EPM_EVENTS_PORT=str(self.ports["events"]), EPM_REQUESTS_PORT=str(self.ports["requests"]),
                        EPM_REPUTATION_PORT=str(self.ports["reputation"]),
                        EPM_GATEWAY_PORT=str(self.ports["gateway"]), EPM_SHUTDOWN_GRACE="2",
                        EPM_DB_POOL_SIZE="4", EPM_LOG_LEVEL="WARNING")
        for name in ("EPM_DATABASE_URL", "EPM_EVENTS_ADDR", "EPM_REQUESTS_ADDR", "EPM_REPUTATION_ADDR"):
            self.env.pop(name, None)  # epm up derives the addresses from the ports
        if database_url:
            self.env["EPM_DATABASE_URL"] = database_url
        self.env.update(env or {})
        command = [sys.executable, "-m", "services.cli", "up"]
        if ignore_sigint:  # what `cmd &` does in a shell without job control
            command = ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *command]
        self._out, self._err = directory / "epm-up.out", directory / "epm-up.err"
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=out, stderr=err)
        self._seen: set[tuple[int, str]] = set()  # (pid, start time) of every process it ran

    def __enter__(self) -> EpmUp:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stdout(self) -> str:
        return self._out.read_text(errors="replace")

    def stderr(self) -> str:
        return self._err.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        """The processes epm up runs now, by name (from /proc: its children and their command lines)."""
        pids = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            pids += [int(pid) for pid in task.read_text().split()]
        found = {}
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                self._seen.add((pid, _stat(pid)[19]))
            except FileNotFoundError:
                continue  # gone meanwhile
            if b"serve" in argv and argv.index(b"serve") + 1 < len(argv):
                found[argv[argv.index(b"serve") + 1].decode()] = pid
        return found

    def running(self) -> list[int]:
        """Every process it ran (that children() saw) that still runs: the same pid and start time."""
        alive = []
        for pid, started in self._seen:
            try:
                fields = _stat(pid)
                if fields[19] == started and fields[0] != "Z":  # not reused, not a zombie
                    alive.append(pid)
            except FileNotFoundError:
                pass
        return alive

    async def ready(self, timeout: float = 120) -> None:
        """Waits until it says it is up and the gateway's /readyz is 200."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"epm up exited ({self.process.returncode}):\n{self.stderr()[-3000:]}")
                if "epm is up." in self.stdout():
                    try:
                        async with http.get(f"{self.url}/readyz") as resp:
                            if resp.status == 200:
                                return
                    except (TimeoutError, aiohttp.ClientError):
                        pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"epm up is not ready after {timeout} s:\n{self.stderr()[-3000:]}")

    def close(self) -> None:
        self.children()  # remember what runs now, to kill what outlives epm up
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        for pid in self.running():  # outlived epm up: killed, but only if it is still the process it started
            os.kill(pid, signal.SIGKILL)


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat from its third field (the state; [19] is the start time, which with the pid names one process
    even after the pid is reused)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()


async def scratch_database(server_url: str) -> str:
    """A new, empty database on the PostgreSQL server `server_url`; its URL (drop it with drop_database)."""
    import asyncpg

    name = f"epm_up_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return _with_database(server_url, name)


async def drop_database(server_url: str, url: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {urlsplit(url).path.lstrip('/')} WITH (FORCE)")
    finally:
        await admin.close()


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
