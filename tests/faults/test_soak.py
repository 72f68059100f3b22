"""A bounded soak: mixed Graph traffic through the real processes (EPM_SOAK_SECONDS, 30 s by default), with no
errors but the deliberate ones, every acknowledged write read back after, and the memory of every process flat."""

from __future__ import annotations

import os
import uuid

import pytest

from tests import soak
from tests.soak import MIB, growth
from tests.system import NAMES


def test_growth_tells_a_leak_from_a_warm_up():
    warm = [100 * MIB + min(i, 5) * 4 * MIB + (i % 3) * MIB for i in range(40)]
    leak = [100 * MIB + i * MIB for i in range(40)]
    assert growth(warm) < 2 * MIB
    assert growth(leak) > 15 * MIB


@pytest.mark.slow
async def test_mixed_traffic_holds_steady(system, figures):
    await system.ready()
    tenant = str(uuid.uuid4())
    samples: dict[str, list[int]] = {name: [] for name in NAMES}

    def sample() -> None:
        for name in NAMES:
            samples[name].append(system.rss(name))

    seconds = float(os.environ.get("EPM_SOAK_SECONDS", "30"))
    tally = await soak.soak(system.url, lambda **claims: system.token(tenant, **claims), seconds, between=sample)
    verified = await soak.verify(system.url, tally)

    deliberate = sum(n for (kind, _), n in tally.calls.items() if kind == "deliberate")
    figures(f"{tally.tried} requests in {seconds:.0f} s ({tally.summary()}); {deliberate} deliberate errors, "
            f"{len(tally.unexpected)} others; {verified} acknowledged writes read back")
    figures("RSS MiB start/after warm-up/end: " + ", ".join(
        f"{name} {s[0] / MIB:.1f}/{s[len(s) // 4] / MIB:.1f}/{s[-1] / MIB:.1f} (growth {growth(s) / MIB:+.1f})"
        for name, s in samples.items()))
    assert tally.unexpected == [], tally.unexpected[:10]
    assert verified == len(tally.events) + len(tally.requests) > 0
    assert tally.calls["event", 201] and tally.calls["approve", 200] and tally.calls["revoke", 200]
    for name, s in samples.items():
        assert growth(s) < 8 * MIB + 0.05 * s[len(s) // 4], (name, [round(x / MIB, 1) for x in s])
