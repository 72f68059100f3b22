"""Python HTTP load generator for bench/rest.py and bench/reputation.py when wrk is not installed (run as its own
process).

    python bench/_httpload.py CONFIG_JSON   -> prints one JSON line: requests, seconds, statuses, p50/p99

CONFIG_JSON: {"url", "token", "connections", "seconds", "max_requests", "template", "prefix", "base"}; the body
of POST request n is template % (prefix + str(n), ISO time of base - n seconds). With "paths" (a list) instead,
request n is GET url + paths[n % len(paths)]. "expect" is the good status (default 201); "created" and "ok"
count it, "other" counts everything else. With "rate" (requests/s in all), the load is open: request n is due at
start + n / rate, the connections take turns, and a latency counts from when the request was due (so a slow
server cannot hide its queue by slowing the client down).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import percentile, use_uvloop  # noqa: E402


async def run(cfg: dict) -> dict:
    headers = {"Authorization": f"Bearer {cfg['token']}", "Content-Type": "application/json"}
    statuses: Counter = Counter()
    latencies: list[float] = []
    sent = 0
    deadline = time.monotonic() + cfg["seconds"]
    paths, expect = cfg.get("paths"), cfg.get("expect", 201)

    rate, first = cfg.get("rate"), time.perf_counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < cfg["max_requests"] and time.monotonic() < deadline:
            sent += 1  # no await between the read and the write: no lost updates
            n = sent
            started = time.perf_counter()
            if rate:
                started = first + (n - 1) / rate
                await asyncio.sleep(max(0.0, started - time.perf_counter()))
            try:
                if paths:
                    request = session.get(cfg["url"] + paths[n % len(paths)], headers=headers)
                else:
                    at = datetime.fromtimestamp(cfg["base"] - n, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    request = session.post(cfg["url"], data=cfg["template"] % (f"{cfg['prefix']}{n}", at),
                                           headers=headers)
                async with request as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = type(exc).__name__
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1

    connector = aiohttp.TCPConnector(limit=cfg["connections"])
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(cfg["connections"])))
        seconds = time.perf_counter() - started
    latencies.sort()
    good = statuses.get(expect, 0)
    return {"requests": len(latencies), "seconds": seconds, "created": good, "ok": good, "sent": sent,
            "other": len(latencies) - good, "statuses": {str(k): v for k, v in statuses.items()},
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    use_uvloop()
    print(json.dumps(asyncio.run(run(config))), flush=True)
