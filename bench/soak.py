"""Soak: mixed Graph traffic through the whole system as real processes (tests/system.py) for --seconds (default
5 min), the same mix as the 30 s CI soak (tests/soak.py). Prints requests by kind, errors other than the deliberate
ones, acknowledged writes read back, and each process's resident memory over the run (start, after the first
quarter, end, and the growth of the last quarter over the second: flat means no leak)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import soak  # noqa: E402
from tests.soak import MIB, growth  # noqa: E402
from tests.system import NAMES, System  # noqa: E402


async def main(seconds: float, clients: int) -> int:
    with tempfile.TemporaryDirectory(prefix="epm-soak-") as directory:
        with System(Path(directory), env={"EPM_THROTTLE_TENANT": "0", "EPM_THROTTLE_CLIENT": "0",
                                          "EPM_LOG_LEVEL": "WARNING"}) as system:
            await system.ready()
            tenant = str(uuid.uuid4())
            samples: dict[str, list[int]] = {name: [] for name in NAMES}
            started = time.monotonic()
            tally = await soak.soak(system.url, lambda **claims: system.token(tenant, **claims), seconds,
                                    clients=clients,
                                    between=lambda: [samples[n].append(system.rss(n)) for n in NAMES])
            elapsed = time.monotonic() - started
            verified = await soak.verify(system.url, tally)
    deliberate = sum(n for (kind, _), n in tally.calls.items() if kind == "deliberate")
    print(f"soak: {tally.tried} requests in {elapsed:.0f} s with {clients} clients ({tally.tried / elapsed:.0f}/s)")
    print(f"  by kind: {tally.summary()}")
    print(f"  errors: {deliberate} deliberate, {len(tally.unexpected)} others")
    for kind, status, body in tally.unexpected[:10]:
        print(f"    {kind} {status}: {body[:160]}")
    print(f"  acknowledged writes read back: {verified} of {len(tally.events) + len(tally.requests)} "
          f"({len(tally.events)} events, {len(tally.requests)} requests)")
    print("  RSS MiB        start  after 1/4     end   growth")
    for name, s in samples.items():
        print(f"  {name:<12} {s[0] / MIB:7.1f} {s[len(s) // 4] / MIB:10.1f} {s[-1] / MIB:7.1f} {growth(s) / MIB:+8.1f}")
    return 1 if tally.unexpected or verified != len(tally.events) + len(tally.requests) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seconds, args.clients)))
