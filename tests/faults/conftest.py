"""The whole system as real processes (tests/system.py), started once for the fault tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.system import System


@pytest.fixture(scope="session")
async def system():
    """Every process and PostgreSQL of one system; a test that stops a part starts it again and awaits ready()."""
    with tempfile.TemporaryDirectory(prefix="epm-faults-") as directory:
        # no throttling: the load here is the point; a short grace keeps a stuck drain visible
        with System(Path(directory), env={"EPM_THROTTLE_TENANT": "0", "EPM_THROTTLE_CLIENT": "0",
                                          "EPM_SHUTDOWN_GRACE": "10"}) as running:
            await running.ready()
            yield running
