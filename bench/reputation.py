"""File reputation: batch hash lookup against the asyncpg `= ANY` floor, single analyses through the gateway, and
the import of all of LOLDrivers.

    .venv/bin/python bench/reputation.py [--parts lookup,analysis,import] [--reps 3] [--rows 1000000]
        [--lookup-keys 200000] [--batch 1000] [--hit-rate 0.5] [--connections 32] [--seconds 8] [--warmup 1]

The analysis load comes from wrk (a Lua script rotating over the hashes) when it is on PATH, else from
bench/_httpload.py. See bench/README.md for what is compared and how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import asyncpg  # noqa: E402
import grpc  # noqa: E402
from epm.reputation.v1 import file_reputation_service_pb2 as pb  # noqa: E402

from bench import _common as c  # noqa: E402
from services.common import db as epm_db  # noqa: E402
from services.common.auth import CONFIG_READ, mint  # noqa: E402
from services.reputation.app import MIGRATIONS  # noqa: E402
from services.reputation.feeds import Record  # noqa: E402
from services.reputation.importer import MATCHED_BY, source_of  # noqa: E402
from services.reputation.store import ENTRY_COLUMNS  # noqa: E402

LOOKUP_METHOD = "/epm.reputation.v1.FileReputationService/LookupHashes"
FLOOR_SQL = "SELECT key, label FROM reputation.entries WHERE key = ANY($1::text[])"
ANALYSIS_PATH = "/beta/security/fileReputations/"
LOOKUP_TARGET, P99_TARGET_MS, IMPORT_TARGET_S = 0.80, 10.0, 10.0  # issue 9 (p99 at 32 clients)
PARTS = ("lookup", "analysis", "import")
BENCH_FEED = "bench"
EXPECTED = {"malicious": "knownMalicious", "vulnerableDriver": "vulnerableDriver", None: "unknown"}

WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  ok, other, n, bad = 0, 0, 0, 0
end
request = function()
  n = n + 1
  return wrk.format("GET", PATHS[(n + id * 131) % #PATHS + 1], HEADERS)
end
response = function(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1; bad = status end
  if ok + other >= LIMIT then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local o, x, s, b = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); x = x + t:get("other"); s = s + t:get("n")
    if t:get("bad") ~= 0 then b = t:get("bad") end
  end
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "ok": %d, "other": %d, "sent": %d, ' ..
    '"last_bad_status": %d, "p50_ms": %f, "p99_ms": %f, "socket_errors": %d}\n', summary.requests,
    summary.duration / 1e6, o, x, s, b, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout))
end
"""


def random_keys(n: int) -> list[str]:
    """n random lowercase sha256 hex keys."""
    blob = os.urandom(32 * n).hex()
    return [blob[i:i + 64] for i in range(0, 64 * n, 64)]


# ---- 1. batch lookup ---------------------------------------------------------------------------------------

async def build_table(url: str, rows: int) -> list[str]:
    """Fills reputation.entries with `rows` synthetic sha256 rows of the shared feed 'bench' (COPY, with the
    migration's indexes dropped first and created again after), its feeds row, then ANALYZE. Returns the keys."""
    conn = await asyncpg.connect(url)
    try:
        t0 = time.perf_counter()
        keys = random_keys(rows)
        t1 = time.perf_counter()
        await conn.execute(f"TRUNCATE reputation.entries; DELETE FROM reputation.feeds WHERE name = '{BENCH_FEED}'")
        indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'reputation' "
                                   "AND tablename = 'entries'")
        for index in indexes:
            await conn.execute(f"DROP INDEX reputation.{index['indexname']}")
        about = pb.SourceMatch(feed=BENCH_FEED, feed_version="bench")
        sources = [source_of(Record("malicious", (), f"bench-{i}.exe", "Bench.Family", "https://example.invalid/bench"),
                             about) + MATCHED_BY["sha256"] for i in range(1000)]  # as the importer writes them
        records = ((key, "", BENCH_FEED, 1, "sha256", "malicious", sources[i % 1000]) for i, key in enumerate(keys))
        await conn.copy_records_to_table("entries", schema_name="reputation", columns=ENTRY_COLUMNS,
                                         records=records)
        t2 = time.perf_counter()
        for index in indexes:
            await conn.execute(index["indexdef"])
        t3 = time.perf_counter()
        columns = {r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'reputation' "
            "AND table_name = 'feeds'")}
        feed = {"tenant_id": "", "name": BENCH_FEED, "format": "hashlist", "version": 1, "last_version": 1,
                "records": rows, "keys": rows, "digest": "bench", "source_version": "bench"}
        feed = {k: v for k, v in feed.items() if k in columns}  # last_version is not in every schema version
        await conn.execute(f"INSERT INTO reputation.feeds ({', '.join(feed)}, imported_at) VALUES "
                           f"({', '.join(f'${i + 1}' for i in range(len(feed)))}, now())", *feed.values())
        await conn.execute("ANALYZE reputation.entries; ANALYZE reputation.feeds")
        t4 = time.perf_counter()
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('reputation.entries'))")
        print(f"built reputation.entries: {rows:,} rows ({size} with indexes): keys {t1 - t0:.1f} s, COPY "
              f"{t2 - t1:.1f} s, {len(indexes)} indexes {t3 - t2:.1f} s, feeds row + ANALYZE {t4 - t3:.1f} s",
              flush=True)
        return keys
    finally:
        await conn.close()


def make_batches(keys: list[str], total: int, batch: int, hit_rate: float, rng: random.Random) -> list[tuple]:
    """(keys, present count) batches: each holds round(batch * hit_rate) distinct present keys and fresh
    random (absent) keys, shuffled."""
    out = []
    for _ in range(max(1, total // batch)):
        hits = round(batch * hit_rate)
        chosen = [keys[i] for i in rng.sample(range(len(keys)), hits)] + random_keys(batch - hits)
        rng.shuffle(chosen)
        out.append((chosen, hits))
    return out


async def run_workers(batches: list, concurrency: int, seconds: float, call) -> tuple[int, float, float, list]:
    """`concurrency` workers take the next batch until none is left (count bound) or `seconds` passed (time
    bound); returns (keys done, wall seconds, this process's CPU seconds, [(batch index, answer)])."""
    answers: list = []
    nxt = 0
    deadline = time.monotonic() + seconds

    async def worker(slot: int) -> None:
        nonlocal nxt
        while nxt < len(batches) and time.monotonic() < deadline:
            index, nxt = nxt, nxt + 1
            answers.append((index, await call(slot, index)))

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return sum(len(batches[i][0]) for i, _ in answers), elapsed, cpu, answers


async def lookup_floor(conns: list, batches: list, seconds: float) -> tuple[int, float, float]:
    async def call(slot: int, index: int):
        return len(await conns[slot].fetch(FLOOR_SQL, batches[index][0]))

    keys, elapsed, cpu, answers = await run_workers(batches, len(conns), seconds, call)
    for index, found in answers:
        if found != batches[index][1]:
            raise SystemExit(f"FLOOR FAILED: batch {index} found {found} rows, {batches[index][1]} keys are present")
    return keys, elapsed, cpu


async def lookup_product(lookup, requests: list[bytes], batches: list, concurrency: int, token: str,
                         seconds: float) -> tuple[int, float, float]:
    """Raw bytes in, raw bytes out while timed; every answer is parsed and checked afterwards."""
    metadata = (("authorization", f"Bearer {token}"),)

    async def call(slot: int, index: int):
        return await lookup(requests[index], metadata=metadata, timeout=60)

    keys, elapsed, cpu, answers = await run_workers(batches, concurrency, seconds, call)
    unknown = pb.APP_REPUTATION_UNKNOWN
    for index, raw in answers:
        asked, present = batches[index]
        results = pb.LookupHashesResponse.FromString(raw).results
        known = sum(r.app_reputation != unknown for r in results)
        if len(results) != len(asked) or known != present or any(r.hash != h for r, h in zip(results, asked)):
            raise SystemExit(f"LOOKUP FAILED: batch {index}: {len(results)} results for {len(asked)} hashes, "
                             f"{known} not unknown, {present} present")
    return keys, elapsed, cpu


async def part_lookup(url: str, secret: str, args, free: dict) -> dict:
    rng = random.Random(args.seed)
    keys = await build_table(url, args.rows)
    batches = make_batches(keys, args.lookup_keys, args.batch, args.hit_rate, rng)
    del keys
    requests = [pb.LookupHashesRequest(hashes=b).SerializeToString() for b, _ in batches]
    warm = batches[:max(1, min(len(batches), 20))]
    print(f"lookup: {len(batches)} batches of {args.batch} keys ({args.hit_rate:.0%} present), "
          f"{args.concurrency} concurrent, {args.reps} reps", flush=True)
    port = c.free_port()
    env = {"EPM_DATABASE_URL": url, "EPM_JWT_SECRET": secret, "EPM_REPUTATION_PORT": str(port),
           "EPM_EVENTS_ADDR": f"127.0.0.1:{free['events']}", "EPM_REQUESTS_ADDR": f"127.0.0.1:{free['requests']}"}
    service = c.serve_epm("reputation", port, env)
    conns: list = []
    admin = None
    results = {"floor": [], "product": [], "cpu_us": [], "pg_floor_us": [], "pg_product_us": [],
               "client_floor_us": [], "client_product_us": []}
    try:
        conns = [await asyncpg.connect(url) for _ in range(args.concurrency)]
        admin = await asyncpg.connect(url)
        pg = c.PgBackends(admin)
        token = mint(secret, tenant=str(uuid.uuid4()), scopes=[CONFIG_READ])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            lookup = channel.unary_unary(LOOKUP_METHOD, request_serializer=None, response_deserializer=None)
            await lookup_floor(conns, warm, args.lookup_seconds)
            await lookup_product(lookup, requests, warm, args.concurrency, token, args.lookup_seconds)
            for rep in range(args.reps):
                before = await pg.snapshot()
                done, elapsed, client = await lookup_floor(conns, batches, args.lookup_seconds)
                after = await pg.snapshot()
                results["floor"].append(done / elapsed)
                results["client_floor_us"].append(client / done * 1e6)
                if (d := c.PgBackends.delta(before, after)) is not None:
                    results["pg_floor_us"].append(d / done * 1e6)
                cpu, before = c.cpu_seconds(service.pid), await pg.snapshot()
                done, elapsed, client = await lookup_product(lookup, requests, batches, args.concurrency, token,
                                                             args.lookup_seconds)
                after = await pg.snapshot()
                results["client_product_us"].append(client / done * 1e6)
                results["cpu_us"].append((c.cpu_seconds(service.pid) - cpu) / done * 1e6)
                results["product"].append(done / elapsed)
                if (d := c.PgBackends.delta(before, after)) is not None:
                    results["pg_product_us"].append(d / done * 1e6)
                print(f"rep {rep + 1}: floor {c.num(results['floor'][-1])} keys/s, product "
                      f"{c.num(results['product'][-1])} keys/s, service CPU {results['cpu_us'][-1]:.1f} µs/key",
                      flush=True)
    except BaseException:
        print(f"reputation service log (last lines):\n{service.tail(10)}", file=sys.stderr)
        raise
    finally:
        for conn in [*conns, admin]:
            if conn is not None:
                await conn.close()
        service.stop()
    return results


def report_lookup(args, r: dict) -> float:
    ratio = statistics.median(r["product"]) / statistics.median(r["floor"])
    pg = lambda k: c.num(statistics.median(r[k]), 1) if r[k] else "-"  # noqa: E731
    c.print_table(
        f"1. Batch hash lookup: {args.rows:,}-row table, batches of {args.batch} ({args.hit_rate:.0%} present), "
        f"{args.concurrency} concurrent, {args.reps} reps (min / median / max)",
        ["what", "keys/s", "ratio of medians vs floor", "target", "service CPU µs/key", "postgres CPU µs/key",
         "bench process CPU µs/key"],
        [[f"floor: asyncpg `= ANY($1::text[])`, {args.concurrency} connections", c.mmm(r["floor"]), "1.00", "",
          "", pg("pg_floor_us"), pg("client_floor_us")],
         [f"product: LookupHashes over grpc.aio, {args.concurrency} concurrent calls", c.mmm(r["product"]),
          f"{ratio:.2f}", f">= {LOOKUP_TARGET:.2f}", c.mmm(r["cpu_us"], 1), pg("pg_product_us"),
          pg("client_product_us")]])
    return ratio


# ---- 2. single analysis through the gateway ----------------------------------------------------------------

def feed_import(url: str, fmt: str, path: Path, feed: str = "", timeout: float = 600) -> dict:
    """`epm feeds import FMT PATH [--feed FEED]` as a subprocess; its JSON summary plus wall and CPU seconds."""
    argv = [c.PYTHON, "-m", "services.cli", "feeds", "import", fmt, str(path)] + (["--feed", feed] if feed else [])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        popen = subprocess.Popen(argv, cwd=c.ROOT, env={**os.environ, "EPM_DATABASE_URL": url}, stdout=out,
                                 stderr=err)
        try:
            _, status, usage = wait4(popen, timeout)
        except BaseException:
            popen.kill()
            popen.wait()
            raise
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if status:
        raise SystemExit(f"IMPORT FAILED: {' '.join(argv)} exited with {status}:\n{stdout}\n{stderr[-3000:]}")
    summary = json.loads(stdout)
    summary.update(wall=wall, cpu=usage.ru_utime + usage.ru_stime)
    return summary


def wait4(popen: subprocess.Popen, timeout: float):
    """os.wait4 on the child with a time bound; (pid, exit code, rusage)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
        if pid:
            popen.returncode = os.waitstatus_to_exitcode(status)
            return pid, popen.returncode, usage
        time.sleep(0.02)
    raise SystemExit(f"{' '.join(popen.args)} did not finish within {timeout:.0f} s")


async def hash_set(url: str, args, rng: random.Random) -> list[tuple[str, str | None]]:
    """(sha256, LOLDrivers label or None): real malicious and vulnerable-driver hashes, and unknown ones."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT key, array_agg(DISTINCT label) AS labels FROM reputation.entries "
                                "WHERE tenant_id = '' AND feed = 'loldrivers' AND kind = 'sha256' GROUP BY key")
    finally:
        await conn.close()
    by_label: dict[str, list[str]] = {"malicious": [], "vulnerableDriver": []}
    for row in sorted(rows, key=lambda r: r["key"]):
        label = "malicious" if "malicious" in row["labels"] else "vulnerableDriver"
        by_label[label].append(row["key"])
    known_n = round(args.distinct * args.known_share)
    malicious = rng.sample(by_label["malicious"], min(len(by_label["malicious"]), known_n // 2))
    vulnerable = rng.sample(by_label["vulnerableDriver"], min(len(by_label["vulnerableDriver"]),
                                                              known_n - len(malicious)))
    chosen = [(k, "malicious") for k in malicious] + [(k, "vulnerableDriver") for k in vulnerable]
    chosen += [(k, None) for k in random_keys(args.distinct - len(chosen))]
    rng.shuffle(chosen)
    print(f"analysis hashes: {len(malicious)} malicious + {len(vulnerable)} vulnerable-driver LOLDrivers sha256 "
          f"(of {len(by_label['malicious'])} + {len(by_label['vulnerableDriver'])}), "
          f"{len(chosen) - len(malicious) - len(vulnerable)} unknown", flush=True)
    return chosen


async def check_answers(base: str, token: str, hashes: list[tuple[str, str | None]]) -> None:
    """One GET per distinct hash (also a warm-up): 200, the expected appReputation, no unavailable history."""
    import aiohttp

    sem = asyncio.Semaphore(8)
    wrong: list[str] = []

    async def one(http, key: str, label: str | None) -> None:
        async with sem, http.get(base + ANALYSIS_PATH + key) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                wrong.append(f"{key}: {resp.status} {str(body)[:300]}")
            elif body.get("appReputation") != EXPECTED[label] or body.get("unavailable"):
                wrong.append(f"{key} ({label}): appReputation {body.get('appReputation')!r}, unavailable "
                             f"{body.get('unavailable')}")

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as http:
        await asyncio.gather(*(one(http, k, label) for k, label in hashes))
    if wrong:
        raise SystemExit(f"ANALYSIS CHECK FAILED for {len(wrong)} of {len(hashes)} hashes:\n" + "\n".join(wrong[:10]))


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def http_load(base: str, token: str, paths: list[str], seconds: float, connections: int, args,
              rate: float = 0) -> dict:
    """One bounded GET load run (time and count) rotating over `paths`; open at `rate` req/s when given (always with
    bench/_httpload.py: wrk keeps its connections busy)."""
    threads = min(args.threads, connections)
    use_wrk = args.wrk and not rate
    limit = max(1, args.max_requests // threads) if use_wrk else args.max_requests
    if use_wrk:
        table = "{" + ", ".join(lua_string(p) for p in paths) + "}"
        script = (f'PATHS = {table}\nHEADERS = {{["Authorization"] = "Bearer {token}"}}\nLIMIT = {limit}\n'
                  f"{WRK_SCRIPT}")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(script)
        argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout",
                "10s", "-s", f.name, base + paths[0]]
    else:
        config = {"url": base, "token": token, "connections": connections, "seconds": seconds,
                  "max_requests": limit, "paths": paths, "expect": 200, "rate": rate}
        argv = [c.PYTHON, str(HERE / "_httpload.py"), json.dumps(config)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        if use_wrk:
            os.unlink(f.name)
    lines = [line for line in done.stdout.splitlines() if line.startswith(("RESULT ", "{"))]
    if done.returncode or not lines:
        raise SystemExit(f"load generator failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    result.setdefault("ok", result.get("created", 0))
    if result["other"] or result.get("socket_errors"):
        raise SystemExit(f"LOAD FAILED on {base}: {result} (non-200 responses and socket errors must be 0)")
    return result


async def measure_http(name: str, base: str, token: str, paths: list[str], servers: list[c.Proc],
                       pg: c.PgBackends | None, args, connections: int, seconds: float, rate: float = 0) -> dict:
    if args.warmup:
        http_load(base, token, paths, args.warmup, connections, args, rate)
    before = [c.cpu_seconds(p.pid) for p in servers]
    db_before = await pg.snapshot() if pg else None
    result = http_load(base, token, paths, seconds, connections, args, rate)
    db_after = await pg.snapshot() if pg else None
    n = result["requests"]
    split = {p.name: (c.cpu_seconds(p.pid) - b) / n * 1e6 for p, b in zip(servers, before)}
    db = c.PgBackends.delta(db_before, db_after)
    if db is not None:
        split["postgres"] = db / n * 1e6
    result.update(name=name, rate=n / result["seconds"], split=split)
    return result


async def part_analysis(url: str, secret: str, args) -> tuple[dict, dict]:
    rng = random.Random(args.seed + 1)
    feeds_dir = Path(args.feeds_dir)
    imports = {}
    for fmt, sub in (("loldrivers", "loldrivers/yaml"), ("lolbas", "lolbas/yml")):
        imports[fmt] = feed_import(url, fmt, feeds_dir / sub, timeout=args.import_timeout)
        s = imports[fmt]
        print(f"imported {fmt}: {s['records']:,} records, {s['keys']:,} keys, {s['problems']} problems, "
              f"{s['wall']:.1f} s", flush=True)
    hashes = await hash_set(url, args, rng)
    paths = [ANALYSIS_PATH + key for key, _ in hashes]
    ports = {n: c.free_port() for n in ("health", "onehop", "events", "requests", "reputation", "gateway")}
    env = {"EPM_DATABASE_URL": url, "EPM_JWT_SECRET": secret, "EPM_GATEWAY_PORT": str(ports["gateway"])}
    for name in ("events", "requests", "reputation"):
        env[f"EPM_{name.upper()}_PORT"] = str(ports[name])
        env[f"EPM_{name.upper()}_ADDR"] = f"127.0.0.1:{ports[name]}"
    quiet = {"EPM_LOG_LEVEL": "WARNING"}
    procs: dict[str, c.Proc] = {}
    admin = None
    results: dict[str, list[dict]] = {"floor": [], "product": [], "floor open": [], "product open": [],
                                      "floor low": [], "product low": []}
    try:
        procs["health"] = c.start("health", [c.PYTHON, str(HERE / "_onehop.py"), "grpc", str(ports["health"])],
                                  ports["health"], quiet)
        procs["onehop"] = c.start("onehop", [c.PYTHON, str(HERE / "_onehop.py"), "http", str(ports["onehop"]),
                                             str(ports["health"])], ports["onehop"], quiet)
        for name in ("events", "requests", "reputation", "gateway"):
            procs[name] = c.serve_epm(name, ports[name], env)
        admin = await asyncpg.connect(url)
        pg = c.PgBackends(admin)
        floor_url, gateway_url = (f"http://127.0.0.1:{ports[n]}" for n in ("onehop", "gateway"))
        token = mint(secret, tenant=str(uuid.uuid4()), scopes=[CONFIG_READ])
        await check_answers(gateway_url, token, hashes)
        print(f"analysis: checked {len(hashes)} distinct hashes (200, expected appReputation, complete history); "
              f"{args.connections} connections, {args.warmup} s warm-up + {args.seconds} s, {args.reps} reps, "
              f"load {'wrk -t%d' % args.threads if args.wrk else 'python aiohttp'}", flush=True)
        product_servers = [procs[n] for n in ("gateway", "reputation", "events", "requests")]
        floor_servers = [procs["onehop"], procs["health"]]
        for rep in range(args.reps):
            floor = await measure_http("floor", floor_url, token, paths, floor_servers, None, args,
                                       args.connections, args.seconds)
            product = await measure_http("product", gateway_url, token, paths, product_servers, pg, args,
                                         args.connections, args.seconds)
            results["floor"].append(floor)
            results["product"].append(product)
            if args.open_share:
                rate = args.open_share * product["rate"]
                for kind, url_, servers, pg_ in (("floor", floor_url, floor_servers, None),
                                                 ("product", gateway_url, product_servers, pg)):
                    results[f"{kind} open"].append(await measure_http(
                        f"{kind} open", url_, token, paths, servers, pg_, args, args.connections, args.seconds,
                        rate))
            if args.low_connections:
                for kind, url_, servers, pg_ in (("floor", floor_url, floor_servers, None),
                                                 ("product", gateway_url, product_servers, pg)):
                    results[f"{kind} low"].append(await measure_http(
                        f"{kind} low", url_, token, paths, servers, pg_, args, args.low_connections,
                        args.low_seconds))
            low = (f"; at {args.low_connections} connection(s): floor p99 {results['floor low'][-1]['p99_ms']:.1f} "
                   f"ms, product p99 {results['product low'][-1]['p99_ms']:.1f} ms") if args.low_connections else ""
            opened = (f"; open at {c.num(results['product open'][-1]['rate'])} req/s: floor p99 "
                      f"{results['floor open'][-1]['p99_ms']:.1f} ms, product p99 "
                      f"{results['product open'][-1]['p99_ms']:.1f} ms") if args.open_share else ""
            print(f"rep {rep + 1}: floor {c.num(floor['rate'])} req/s p99 {floor['p99_ms']:.1f} ms; product "
                  f"{c.num(product['rate'])} req/s p99 {product['p99_ms']:.1f} ms; CPU µs/req "
                  + ", ".join(f"{k} {v:.0f}" for k, v in product["split"].items()) + opened + low, flush=True)
    except BaseException:
        for proc in procs.values():
            print(f"{proc.name} log (last lines):\n{proc.tail(10)}", file=sys.stderr)
        raise
    finally:
        if admin is not None:
            await admin.close()
        for proc in reversed(procs.values()):
            proc.stop()
    return results, imports


def report_analysis(args, results: dict) -> dict:
    rows = []
    low = f" ({args.low_connections} connection{'s' if args.low_connections > 1 else ''}, for context)"
    names = {"floor": "floor: aiohttp GET handler + 1 unary grpc.aio call (Health/Check)",
             "product": "product: GET fileReputations/{sha256}: gateway -> AnalyzeFile (-> events, PostgreSQL)",
             "floor low": "floor" + low, "product low": "product" + low,
             "floor open": f"floor, open load: {args.connections} clients at {args.open_share:.0%} of the product's "
                           "closed-loop req/s",
             "product open": f"product, open load: {args.connections} clients at {args.open_share:.0%} of its "
                             "closed-loop req/s"}
    for kind, runs in results.items():
        if not runs:
            continue
        splits = {k: statistics.median(r["split"][k] for r in runs) for k in runs[0]["split"]}
        servers = sum(v for k, v in splits.items() if k != "postgres")
        rows.append([names[kind], c.mmm([r["rate"] for r in runs]), c.mmm([r["p50_ms"] for r in runs], 2),
                     c.mmm([r["p99_ms"] for r in runs], 2), f"< {P99_TARGET_MS:.0f} ms" if kind == "product" else "",
                     str(sum(r["other"] + r.get("socket_errors", 0) for r in runs)), c.num(servers),
                     ", ".join(f"{k} {v:.0f}" for k, v in splits.items())])
    extra = f" (+ {args.low_seconds} s at {args.low_connections})" if args.low_connections else ""
    c.print_table(f"2. Single analysis through the gateway, {args.connections} connections, {args.distinct} distinct "
                  f"hashes, {args.seconds} s per run{extra}, {args.reps} reps (min / median / max)",
                  ["what", "req/s", "p50 ms", "p99 ms", "p99 target", "non-200", "server CPU µs/req (no postgres)",
                   "CPU µs/req per process (median)"], rows)
    opened = results["product open"]
    return {"p99": statistics.median(r["p99_ms"] for r in results["product"]),
            "p99 open": statistics.median(r["p99_ms"] for r in opened) if opened else None,
            "rate open": statistics.median(r["rate"] for r in opened) if opened else None,
            "non200": sum(r["other"] + r.get("socket_errors", 0) for kind in ("product", "product open")
                          for r in results[kind])}


# ---- 3. import of all of LOLDrivers ------------------------------------------------------------------------

def part_import(url: str, args) -> list[dict]:
    path = Path(args.feeds_dir) / "loldrivers" / "yaml"
    run = uuid.uuid4().hex[:6]
    out = []
    for rep in range(args.reps):
        s = feed_import(url, "loldrivers", path, f"bench-{run}-{rep + 1}", args.import_timeout)
        if s["version"] != 1 or not s["changed"]:
            raise SystemExit(f"IMPORT FAILED: a fresh feed should get version 1 with changed data: {s}")
        out.append(s)
        print(f"import rep {rep + 1}: {s['wall']:.2f} s wall ({s['seconds']:.2f} s in the importer, "
              f"{s['cpu']:.2f} s CPU), {s['records']:,} records, {s['keys']:,} keys", flush=True)
    return out


def report_import(args, runs: list[dict]) -> float:
    wall = statistics.median(r["wall"] for r in runs)
    c.print_table(f"3. `epm feeds import loldrivers` (all of LOLDrivers, a fresh feed each rep), {args.reps} reps "
                  "(min / median / max)",
                  ["what", "wall s", "importer s (its own report)", "import process CPU s", "records", "keys",
                   "problems", "target"],
                  [["epm feeds import loldrivers <yaml folder>", c.mmm([r["wall"] for r in runs], 2),
                    c.mmm([r["seconds"] for r in runs], 2), c.mmm([r["cpu"] for r in runs], 2),
                    c.num(runs[0]["records"]), c.num(runs[0]["keys"]), c.num(runs[0]["problems"]),
                    f"< {IMPORT_TARGET_S:.0f} s"]])
    return wall


# ---- main --------------------------------------------------------------------------------------------------

async def main(args, loop: str) -> None:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    args.wrk = bool(shutil.which("wrk")) and not args.python_load
    print(f"reputation bench: parts {', '.join(parts)}; {args.reps} reps, loop {loop}, python "
          f"{sys.version.split()[0]}", flush=True)
    secret = secrets.token_urlsafe(32)
    free = {"events": c.free_port(), "requests": c.free_port()}  # nothing listens there
    summary = []
    async with c.fresh_database() as url:
        print(f"database: {c.redact(url)}", flush=True)
        await epm_db.migrate(url, "reputation", MIGRATIONS)
        if "lookup" in parts:
            points = []
            for rows in sorted(args.lookup_scale or [args.rows]):  # the largest last: the analysis runs on it
                args.rows = rows
                r = await part_lookup(url, secret, args, free)
                ratio = report_lookup(args, r)
                points.append([c.num(rows), c.num(statistics.median(r["floor"])), c.num(statistics.median(r["product"])),
                               f"{ratio:.2f}", c.num(statistics.median(r["cpu_us"]), 2)])
            if len(points) > 1:
                c.print_table("1. Batch hash lookup as the table grows (medians)",
                              ["table rows", "floor keys/s", "product keys/s", "ratio", "service CPU µs/key"], points)
            summary.append(["1. batch lookup: ratio of median keys/s vs floor", f"{ratio:.2f}",
                            f">= {LOOKUP_TARGET:.2f}", "MET" if ratio >= LOOKUP_TARGET else "NOT MET"])
            c.summarize(args.summary, path=f"reputation batch lookup (LookupHashes, 1000 keys, {c.num(args.rows)} rows)",
                        floor=f"asyncpg = ANY: {points[-1][1]} keys/s", product=f"{points[-1][2]} keys/s",
                        ratio=f"{ratio:.2f}", target=f">= {LOOKUP_TARGET:.2f}", met=ratio >= LOOKUP_TARGET)
        if "analysis" in parts:
            results, _ = await part_analysis(url, secret, args)
            got = report_analysis(args, results)
            summary.append([f"2. analysis via gateway: median p99, {args.connections} clients as fast as they can",
                            f"{got['p99']:.2f} ms", f"< {P99_TARGET_MS:.0f} ms",
                            "MET" if got["p99"] < P99_TARGET_MS else "NOT MET"])
            if got["p99 open"] is not None:
                summary.append([f"2. analysis via gateway: median p99, {args.connections} clients at "
                                f"{c.num(got['rate open'])} req/s in all", f"{got['p99 open']:.2f} ms",
                                f"< {P99_TARGET_MS:.0f} ms", "MET" if got["p99 open"] < P99_TARGET_MS else "NOT MET"])
            c.summarize(args.summary, path=f"reputation single analysis p99, {args.connections} clients as fast as "
                        "they can / at {:.0%} of that rate".format(args.open_share), floor="-",
                        product=f"{got['p99']:.1f} / {got['p99 open'] or float('nan'):.1f} ms", ratio="-",
                        target=f"< {P99_TARGET_MS:.0f} ms", met=got["p99"] < P99_TARGET_MS)
            summary.append(["2. analysis via gateway: non-200 responses", str(got["non200"]), "0",
                            "MET" if got["non200"] == 0 else "NOT MET"])
        if "import" in parts:
            wall = report_import(args, part_import(url, args))
            summary.append(["3. import of LOLDrivers: median wall time", f"{wall:.2f} s", f"< {IMPORT_TARGET_S:.0f} s",
                            "MET" if wall < IMPORT_TARGET_S else "NOT MET"])
    c.print_table("Targets", ["what", "measured", "target", "verdict"], summary)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of: " + ", ".join(PARTS))
    p.add_argument("--reps", type=int, default=3, help="repetitions of every part")
    p.add_argument("--summary", help="append bench/run's headline rows (JSON lines) to this file")
    p.add_argument("--seed", type=int, default=1, help="random seed for the key batches and the hash set")
    g = p.add_argument_group("1. batch lookup")
    g.add_argument("--rows", type=int, default=1_000_000, help="synthetic sha256 rows in reputation.entries")
    g.add_argument("--lookup-keys", type=int, default=200_000, help="keys per run (floor and product alike)")
    g.add_argument("--batch", type=int, default=1000, help="keys per query / per LookupHashes call")
    g.add_argument("--hit-rate", type=float, default=0.5, help="share of present keys in each batch")
    g.add_argument("--concurrency", type=int, default=4, help="concurrent connections (floor) and calls (product)")
    g.add_argument("--lookup-seconds", type=float, default=60, help="time bound of each lookup run")
    g.add_argument("--lookup-scale", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                   help="table sizes to run the lookup at, e.g. 10000,100000,1000000 (default: --rows only)")
    g = p.add_argument_group("2. analysis through the gateway")
    g.add_argument("--connections", type=int, default=32, help="HTTP connections")
    g.add_argument("--threads", type=int, default=1, help="wrk threads")
    g.add_argument("--seconds", type=float, default=8, help="measured seconds per run")
    g.add_argument("--warmup", type=float, default=1, help="warm-up seconds before each run (0: none)")
    g.add_argument("--max-requests", type=int, default=500_000, help="count bound per run")
    g.add_argument("--distinct", type=int, default=600, help="distinct hashes the requests rotate over")
    g.add_argument("--known-share", type=float, default=0.5,
                   help="share of real LOLDrivers hashes (half malicious, half vulnerable) among them")
    g.add_argument("--low-connections", type=int, default=1,
                   help="also measure both sides at this many connections, for the unloaded latency (0: skip)")
    g.add_argument("--low-seconds", type=float, default=3, help="measured seconds of each low-concurrency run")
    g.add_argument("--open-share", type=float, default=0.4,
                   help="also an open load from the same clients at this share of the product's closed-loop req/s, "
                        "latency counted from when each request was due (0: skip)")
    g.add_argument("--python-load", action="store_true", help="use bench/_httpload.py even if wrk is installed")
    g = p.add_argument_group("2 and 3. feeds")
    g.add_argument("--feeds-dir", default=str(c.ROOT.parent / "shared" / "data"),
                   help="folder holding loldrivers/yaml and lolbas/yml (default: ../shared/data)")
    g.add_argument("--import-timeout", type=float, default=600, help="time bound of each import, seconds")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    asyncio.run(main(arguments, c.use_uvloop()))
