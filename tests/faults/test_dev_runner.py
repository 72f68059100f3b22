"""`epm up`, the dev runner, as a real process (tests/system.py EpmUp): it starts a killed process again while
the others go on serving, stops everything on SIGINT also when started with SIGINT ignored, gives the dev admin
the Endpoint Privilege Manager role once; `epm` prints no warning from its dependencies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from services.cli import DEV_ADMIN, MANAGER_ROLE
from tests.system import PYTHON_PATH, ROOT, EpmUp, drop_database, scratch_database

pytestmark = pytest.mark.slow


@dataclass
class Place:
    """A data directory and a database that successive `epm up`s of this module share, as restarts do."""
    directory: Path
    database: str
    starts: int = 0

    def up(self, **options) -> EpmUp:
        self.starts += 1
        return EpmUp(self.directory, self.database, **options)


@pytest.fixture(scope="module")
async def place(server_url):
    database = await scratch_database(server_url)
    try:
        with tempfile.TemporaryDirectory(prefix="epm-up-") as directory:
            yield Place(Path(directory), database)
    finally:
        await drop_database(server_url, database)


def dev_token(up: EpmUp) -> str:
    """The token epm up prints: the dev admin's, Global Administrator."""
    return up.stdout().split("Global Administrator):\n", 1)[1].split()[0]


async def test_a_killed_backend_is_started_again_while_the_others_serve(place):
    """The module's first test: the first start on its data."""
    with place.up() as up:
        await up.ready()
        assert "Gave the dev admin the Endpoint Privilege Manager role" in up.stdout()
        before = up.children()
        assert set(before) == {"events", "requests", "reputation", "gateway"}
        headers = {"Authorization": f"Bearer {dev_token(up)}"}

        os.kill(before["requests"], signal.SIGKILL)
        outage = await serve_until_ready(up, headers)
        after = up.children()
        assert outage, "the kill was never seen: requests did not go down"
        assert after["requests"] != before["requests"]
        assert {n: p for n, p in after.items() if n != "requests"} == \
               {n: p for n, p in before.items() if n != "requests"}  # nothing else was restarted
        assert "epm: requests was killed by SIGKILL; starting it again in 1 s" in up.stderr()
        assert "epm: started requests again (restart 1)" in up.stderr()

        os.kill(after["requests"], signal.SIGKILL)  # dies again soon: it waits twice as long
        assert await serve_until_ready(up, headers)
        assert "epm: requests was killed by SIGKILL; starting it again in 2 s" in up.stderr()
        assert "epm: started requests again (restart 2)" in up.stderr()
        assert up.process.poll() is None


async def serve_until_ready(up: EpmUp, headers: dict, timeout: float = 60) -> int:
    """Polls the gateway until /readyz is 200 again, checking each time that the gateway lives and that the events
    service (which needs no requests service to list) answers while requests is down; how many polls saw it down."""
    outage, deadline = 0, time.monotonic() + timeout
    async with aiohttp.ClientSession(base_url=up.url, timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            async with http.get("/healthz") as health:
                assert health.status == 200  # the gateway never went away
            async with http.get("/readyz") as ready:
                backends = (await ready.json())["backends"]
            if ready.status == 200:
                return outage
            assert backends["events"] == "SERVING" and backends["reputation"] == "SERVING", backends
            async with http.get("/beta/deviceManagement/privilegeManagementElevations", headers=headers) as events:
                assert events.status == 200, await events.text()
            outage += 1
            assert time.monotonic() < deadline, f"requests never came back:\n{up.stderr()[-3000:]}"
            await asyncio.sleep(0.1)


async def test_sigint_stops_everything_when_started_with_sigint_ignored(place):
    """As `epm up &` from a script starts it; also a restart on the same data: the role is there already."""
    if not place.starts:
        with place.up() as first:
            await first.ready()
    with place.up(ignore_sigint=True) as up:
        await up.ready()
        assert "The dev admin holds the Endpoint Privilege Manager role" in up.stdout()
        children = up.children()
        assert len(children) == 4
        async with aiohttp.ClientSession(up.url) as http:
            async with http.get("/beta/privilegedRoleAssignments",
                                headers={"Authorization": f"Bearer {dev_token(up)}"}) as resp:
                assigned = [(a["userId"], a["roleId"]) for a in (await resp.json())["value"]]
        assert assigned == [(DEV_ADMIN, MANAGER_ROLE)]  # given once, not again at this start

        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(60) == 0, up.stderr()[-3000:]
        assert up.running() == [], f"still running after epm up stopped: {up.running()}"
        assert "epm: SIGINT: stopping every process" in up.stderr()


def test_no_runtime_dir_warning_reaches_the_user(tmp_path):
    """pgserver (the embedded PostgreSQL) asks platformdirs for XDG_RUNTIME_DIR on import, which warned on every
    command run outside a login session."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "EPM_DATABASE_URL")}
    env.update(EPM_DATA_DIR=str(tmp_path), PYTHONPATH=PYTHON_PATH)
    done = subprocess.run([sys.executable, "-m", "services.cli", "migrate"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
