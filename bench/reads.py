"""Reading elevation requests through the gateway: one GET against the one-hop floor, and a filtered page of 100
from a tenant of 1M requests against the same SQL run directly.

    .venv/bin/python bench/reads.py [--rows 1000000] [--connections 32] [--seconds 8] [--lists 300] [--reps 3]
        [--summary FILE]

1. GET …/elevationRequests/{id} (gateway -> requests -> PostgreSQL), rotating over 1000 ids, against
   bench/_onehop.py's GET (aiohttp + one unary gRPC call, no database), req/s at --connections (target >= 0.70).
2. GET …/elevationRequests?$filter=…&$top=100, one at a time, rotating over the filters below, against the
   requests store's own list call (the SQL of listing.fetch_page on an asyncpg pool in this process, no gRPC, no
   gateway): p99 latency (target <= 1.5x). Each page must name the same 100 ids as the floor's.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from bench import _common as c  # noqa: E402
from bench.reputation import measure_http  # noqa: E402
from services.common.auth import CONFIG_WRITE, mint  # noqa: E402
from services.requests.lifecycle import Policy  # noqa: E402
from services.requests.store import RequestStore  # noqa: E402

PATH = "/beta/deviceManagement/elevationRequests"
GET_TARGET, LIST_TARGET = 0.70, 1.5
STATUSES = ["pending"] * 2 + ["approved"] * 8 + ["denied"] * 30 + ["completed"] * 30 + ["revoked"] * 5 + \
    ["expired"] * 25  # of 100 requests (a year of them: most are decided)
DEVICES = 10_000
FILTERS = [  # what reviewers ask for
    "status eq 'pending'",
    "status eq 'approved'",
    "contains(deviceName,'LAPTOP-12')",
    "requestedByUserPrincipalName eq 'user-7@contoso.example' and status eq 'denied'",
]
COLUMNS = ["tenant_id", "id", "requested_by_user_id", "requested_by_upn", "device_id", "device_name",
           "request_justification", "file_hash", "file_name", "file_path", "publisher_name", "product_name",
           "status", "created_at", "modified_at", "valid_until", "reviewed_by_user_id", "reviewed_at"]


def rows(tenant: str, n: int, now: datetime, rng: random.Random):
    """n requests of one tenant over the last 365 days; open ones are still valid."""
    for i in range(n):
        created = now - timedelta(seconds=rng.randrange(365 * 86400))
        status = rng.choice(STATUSES)
        valid = now + timedelta(days=3) if status in ("pending", "approved") else created + timedelta(days=7)
        device, user = rng.randrange(DEVICES), rng.randrange(1000)
        reviewed = status in ("approved", "denied", "completed", "revoked")
        yield (tenant, uuid.UUID(int=rng.getrandbits(128), version=4), f"u-{user}", f"user-{user}@contoso.example",
               f"device-{device}", f"LAPTOP-{device}", "Need to install a tool",
               hashlib.sha256(f"file-{i % 5000}".encode()).hexdigest(), f"tool-{i % 5000}.exe",
               rf"C:\Tools\tool-{i % 5000}.exe", "Contoso", "Contoso Tool", status, created, created, valid,
               "reviewer" if reviewed else "", created + timedelta(hours=1) if reviewed else None)


async def load_table(url: str, tenant: str, n: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        now = datetime.now(timezone.utc)
        await conn.copy_records_to_table("elevation_requests", schema_name="requests", columns=COLUMNS,
                                         records=rows(tenant, n, now, random.Random(9)))
        await conn.execute("ANALYZE requests.elevation_requests")
        print(f"loaded {n:,} requests by COPY and analyzed in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        await conn.close()


async def list_latencies(http: aiohttp.ClientSession, store: RequestStore, tenant: str, headers: dict,
                         n: int) -> tuple[list[float], list[float]]:
    """(floor ms, product ms) of n pages of 100, alternating floor and product on the same filter."""
    floor_ms, product_ms = [], []
    for i in range(n):
        where = FILTERS[i % len(FILTERS)]
        started = time.perf_counter()
        page, _ = await store.list(tenant, datetime.now(timezone.utc), filter=where, order_by="", size=100,
                                   token="", skip=0)
        floor_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        async with http.get(f"{PATH}?{urlencode({'$filter': where, '$top': 100})}", headers=headers) as resp:
            body = await resp.json()
        product_ms.append((time.perf_counter() - started) * 1000)
        if resp.status != 200 or [r["id"] for r in body["value"]] != [str(r["id"]) for r in page]:
            raise SystemExit(f"LIST MISMATCH on {where!r}: {resp.status} {str(body)[:300]}")
    return floor_ms, product_ms


async def main(args) -> None:
    args.wrk = bool(shutil.which("wrk")) and not args.python_load
    secret, tenant = secrets.token_urlsafe(32), str(uuid.uuid4())
    token = mint(secret, tenant=tenant, roles=[CONFIG_WRITE])
    headers = {"Authorization": f"Bearer {token}"}
    print(f"reads bench: {args.rows:,} requests in one tenant, {args.reps} reps", flush=True)
    async with c.fresh_database() as url:
        ports = {name: c.free_port() for name in ("health", "onehop", "requests", "gateway")}
        env = {"EPM_DATABASE_URL": url, "EPM_JWT_SECRET": secret, "EPM_REQUESTS_PORT": str(ports["requests"]),
               "EPM_REQUESTS_ADDR": f"127.0.0.1:{ports['requests']}", "EPM_GATEWAY_PORT": str(ports["gateway"])}
        quiet = {"EPM_LOG_LEVEL": "WARNING"}
        with c.running([c.start("health", [c.PYTHON, str(HERE / "_onehop.py"), "grpc", str(ports["health"])],
                                ports["health"], quiet)]) as procs:
            procs.append(c.start("onehop", [c.PYTHON, str(HERE / "_onehop.py"), "http", str(ports["onehop"]),
                                            str(ports["health"])], ports["onehop"], quiet))
            procs.append(c.serve_epm("requests", ports["requests"], env))
            procs.append(c.serve_epm("gateway", ports["gateway"], env))
            await load_table(url, tenant, args.rows)
            onehop, gateway = (f"http://127.0.0.1:{ports[n]}" for n in ("onehop", "gateway"))
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            ids = [str(r["id"]) for r in await pool.fetch(
                "SELECT id FROM requests.elevation_requests WHERE tenant_id = $1 LIMIT 1000", tenant)]
            floor_paths = [f"/beta/security/fileReputations/{hashlib.sha256(i.encode()).hexdigest()}" for i in ids]
            gets = {"floor": [], "product": []}
            lists = {"floor": [], "product": []}
            store = RequestStore(pool, Policy())
            async with aiohttp.ClientSession(base_url=gateway) as http:
                for rep in range(args.reps):
                    gets["floor"].append(await measure_http("floor", onehop, token, floor_paths, procs[:2], None,
                                                            args, args.connections, args.seconds))
                    gets["product"].append(await measure_http("product", gateway, token, [f"{PATH}/{i}" for i in ids],
                                                              procs[2:], None, args, args.connections, args.seconds))
                    floor_ms, product_ms = await list_latencies(http, store, tenant, headers, args.lists)
                    lists["floor"].append(floor_ms)
                    lists["product"].append(product_ms)
                    print(f"rep {rep + 1}: GET floor {c.num(gets['floor'][-1]['rate'])} req/s, product "
                          f"{c.num(gets['product'][-1]['rate'])}; list p99 floor "
                          f"{c.percentile(sorted(floor_ms), 99):.1f} ms, product "
                          f"{c.percentile(sorted(product_ms), 99):.1f} ms", flush=True)
            await pool.close()
            report(args, gets, lists)


def report(args, gets: dict, lists: dict) -> None:
    rate = {k: statistics.median(r["rate"] for r in runs) for k, runs in gets.items()}
    ratio = rate["product"] / rate["floor"]
    cpu = {k: statistics.median(sum(r["split"].values()) for r in runs) for k, runs in gets.items()}
    c.print_table(f"GET one request, {args.connections} connections, {args.seconds} s, {args.reps} reps",
                  ["what", "req/s min / median / max", "p99 ms (median)", "server CPU µs/req", "ratio", "target"],
                  [["floor: aiohttp + 1 unary gRPC call", c.mmm([r["rate"] for r in gets["floor"]]),
                    f"{statistics.median(r['p99_ms'] for r in gets['floor']):.1f}", c.num(cpu["floor"]), "1.00", ""],
                   ["product: gateway -> requests -> PostgreSQL", c.mmm([r["rate"] for r in gets["product"]]),
                    f"{statistics.median(r['p99_ms'] for r in gets['product']):.1f}", c.num(cpu["product"]),
                    f"{ratio:.2f}", f">= {GET_TARGET:.2f}"]])
    c.summarize(args.summary, path="GET one request: gateway -> requests -> PostgreSQL",
                floor=f"aiohttp + 1 unary gRPC, no DB: {c.num(rate['floor'])} req/s",
                product=f"{c.num(rate['product'])} req/s", ratio=f"{ratio:.2f}", target=f">= {GET_TARGET:.2f}",
                met=ratio >= GET_TARGET)
    p = {k: [c.percentile(sorted(run), 99) for run in runs] for k, runs in lists.items()}
    p50 = {k: statistics.median(c.percentile(sorted(run), 50) for run in runs) for k, runs in lists.items()}
    p99 = {k: statistics.median(v) for k, v in p.items()}
    times = p99["product"] / p99["floor"]
    c.print_table(f"A page of 100 from {args.rows:,} requests, {len(FILTERS)} filters in turn, one at a time, "
                  f"{args.lists} pages per rep",
                  ["what", "p50 ms", "p99 ms min / median / max", "p99 vs floor", "target"],
                  [["floor: the store's list call (its SQL) on asyncpg", f"{p50['floor']:.1f}", c.mmm(p["floor"], 1),
                    "1.00", ""],
                   ["product: GET …/elevationRequests?$filter&$top=100", f"{p50['product']:.1f}",
                    c.mmm(p["product"], 1), f"{times:.2f}x", f"<= {LIST_TARGET}x"]])
    per_filter = [[where, *(f"{c.percentile(sorted(ms for run in lists[k] for ms in run[i::len(FILTERS)]), q):.1f}"
                            for k in ("floor", "product") for q in (50, 99))] for i, where in enumerate(FILTERS)]
    c.print_table("… by filter (ms, all reps)", ["filter", "floor p50", "floor p99", "product p50", "product p99"],
                  per_filter)
    for label, chosen in (("all 4 filters", range(len(FILTERS))),
                          ("the 3 an index serves (not contains)", [i for i, f in enumerate(FILTERS) if "contains" not in f])):
        pooled = {k: c.percentile(sorted(ms for run in lists[k] for i in chosen for ms in run[i::len(FILTERS)]), 99)
                  for k in ("floor", "product")}
        ratio = pooled["product"] / pooled["floor"]
        c.summarize(args.summary, path=f"list 100 requests with a filter from {args.rows:,} rows, p99 of all reps, "
                    f"{label}", floor=f"the same SQL directly: {pooled['floor']:.1f} ms",
                    product=f"{pooled['product']:.1f} ms", ratio=f"{ratio:.2f}x", target=f"<= {LIST_TARGET}x",
                    met=ratio <= LIST_TARGET)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--max-requests", type=int, default=500_000)
    p.add_argument("--lists", type=int, default=300, help="pages per rep, for each side")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--python-load", action="store_true", help="use bench/_httpload.py even if wrk is installed")
    p.add_argument("--summary", help="append bench/run's headline rows (JSON lines) to this file")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    asyncio.run(main(arguments))
