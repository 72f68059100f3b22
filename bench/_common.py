"""Helpers shared by the benchmarks: database, service subprocesses, /proc readings, statistics, tables."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


def use_uvloop() -> str:
    """Installs uvloop when importable; returns the loop's name for the report."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    uvloop.install()
    return "uvloop"


# ---- database -----------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def fresh_database():
    """Yields the URL of a new database (EPM_BENCH_DATABASE_URL's server, else an embedded PostgreSQL);
    drops it afterwards."""
    with contextlib.ExitStack() as stack:
        server_url = os.environ.get("EPM_BENCH_DATABASE_URL")
        if not server_url:
            import pgserver

            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="epm-bench-pg-"))
            server = stack.enter_context(pgserver.get_server(directory, cleanup_mode="delete"))
            server_url = server.get_uri()
        name = f"epm_bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
            parts = urlsplit(server_url)
            yield urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()


def redact(url: str) -> str:
    return url.split("@", 1)[-1] if "@" in url else url


# ---- subprocesses -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A server subprocess whose output goes to a log file; started and waited for by `start`."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path, port: int):
        self.name, self.popen, self.log, self.port = name, popen, log, port

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(name: str, argv: list[str], port: int, env: dict[str, str] | None = None, timeout: float = 60) -> Proc:
    """Runs `argv` (cwd = project root, env = os.environ + `env`) and waits until 127.0.0.1:`port` accepts."""
    log = Path(tempfile.mkstemp(prefix=f"epm-bench-{name}-", suffix=".log")[1])
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})},
                                 stdout=out, stderr=subprocess.STDOUT)
    proc = Proc(name, popen, log, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise SystemExit(f"{name} exited with {popen.returncode} before listening:\n{proc.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.stop()
    raise SystemExit(f"{name} did not listen on port {port} within {timeout:.0f} s:\n{proc.tail()}")


def serve_epm(process: str, port: int, env: dict[str, str]) -> Proc:
    """`python -m services.cli serve PROCESS`, logging at WARNING, the gateway's throttling off (one client here
    is all of a tenant's load)."""
    return start(process, [PYTHON, "-m", "services.cli", "serve", process], port,
                 {"EPM_LOG_LEVEL": "WARNING", "EPM_THROTTLE_TENANT": "0", "EPM_THROTTLE_CLIENT": "0", **env})


# ---- /proc --------------------------------------------------------------------------------------------

def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class PgBackends:
    """CPU of the PostgreSQL backends connected to one database, when they are processes on this machine."""

    def __init__(self, admin: asyncpg.Connection | None):
        self.admin = admin

    async def pids(self) -> list[int]:
        if self.admin is None:
            return []
        rows = await self.admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND pid <> pg_backend_pid()")
        return [r["pid"] for r in rows]

    async def snapshot(self) -> dict[int, float] | None:
        out = {}
        for pid in await self.pids():
            try:
                if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return None  # another pid namespace: not our processes
                out[pid] = cpu_seconds(pid)
            except OSError:
                continue  # gone, or not readable
        return out or None

    @staticmethod
    def delta(before: dict | None, after: dict | None) -> float | None:
        if before is None or after is None:
            return None
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# ---- statistics and output ----------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def num(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def mmm(values: list[float], digits: int = 0) -> str:
    """'min / median / max'."""
    return " / ".join(num(v, digits) for v in spread(values))


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    print(f"\n{title}", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
          *map(line, cells[1:]), sep="\n", flush=True)


async def gateway_count(url: str, token: str, filter_: str | None = None) -> int:
    """GET {url}/$count (optionally with a $filter) through the gateway; aborts the bench on an error."""


    query = f"?$filter={quote(filter_)}" if filter_ else ""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(f"{url}/$count{query}") as resp:
            text = await resp.text()
            if resp.status != 200:
                raise SystemExit(f"$count failed: {resp.status} {text}")
            return int(text)


def summarize(file: str | None, **row) -> None:
    """Appends one headline row for bench/run's table (path, floor, product, ratio, target, met) to the JSON-lines
    `file`; nothing when the benchmark runs on its own."""
    if file:
        with open(file, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


@contextlib.contextmanager
def running(procs: list[Proc]):
    """Stops `procs` (which the block may add to) in reverse order at the end; after a failure prints their logs."""
    try:
        yield procs
    except BaseException:
        for proc in procs:
            print(f"{proc.name} log (last lines):\n{proc.tail(10)}", file=sys.stderr)
        raise
    finally:
        for proc in reversed(procs):
            proc.stop()
