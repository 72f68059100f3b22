"""Create+approve pairs of elevation requests through the gateway against the one-hop floor.

    .venv/bin/python bench/review.py [--connections 32] [--seconds 8] [--warmup 1] [--reps 3]

Both sides get the same Python aiohttp load process (this file with --load, a separate process) that sends 2 HTTP
requests per iteration, the second one naming what the first returned. See bench/README.md for what is compared
and how to read the output.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from bench import _common as c  # noqa: E402
from services.common.auth import CONFIG_WRITE, mint  # noqa: E402

PATH = "/beta/deviceManagement/elevationRequests"
FLOOR_PATH = "/beta/deviceManagement/privilegeManagementElevations"  # the only route of bench/_onehop.py
LOOP = "asyncio"  # set in __main__
TARGET = ">= 0.40"
FILE_HASH = hashlib.sha256(b"git.exe").hexdigest()
USER_ID = "11111111-2222-4333-8444-555555555555"
BODY = {  # a valid Graph body for an application caller; requestedOnDeviceId differs on every request
    "@odata.type": "#microsoft.graph.privilegeManagementElevationRequest",
    "requestedOnDeviceId": "@DEVICE@", "deviceName": "LAPTOP-01",
    "requestedByUserId": USER_ID, "requestedByUserPrincipalName": "adele@contoso.example",
    "requestJustification": "Installing dev tools",
    "applicationDetail": {
        "@odata.type": "#microsoft.graph.elevationRequestApplicationDetail",
        "fileHash": FILE_HASH, "fileName": "git.exe", "filePath": r"C:\Program Files\Git\bin\git.exe",
        "fileDescription": "Git for Windows", "publisherName": "The Git Development Community",
        "productName": "Git", "productInternalName": "git", "productVersion": "2.45.1",
    },
}
TEMPLATE = json.dumps(BODY).replace('"@DEVICE@"', '"%s"')
# The floor handler needs a deviceId; it is the only difference from the product's body (same size within bytes).
FLOOR_TEMPLATE = json.dumps({"deviceId": "@DEVICE@", **BODY}).replace('"@DEVICE@"', '"%s"')
APPROVE_BODY = json.dumps({"reviewerJustification": "ok"})
assert TEMPLATE.count("%s") == 1 and FLOOR_TEMPLATE.count("%s") == 2


# ---- the load process (python bench/review.py --load CONFIG_JSON) -----------------------------------------

async def load_run(cfg: dict) -> dict:
    """C workers, each: POST create, then POST approve on what it returned; bounded by time and pair count.
    The floor gets the same two POSTs, both to the floor's one route."""
    floor = cfg["kind"] == "floor"
    headers = {"Authorization": f"Bearer {cfg['token']}", "Content-Type": "application/json"}
    base = cfg["url"]
    first_ms: list[float] = []
    second_ms: list[float] = []
    failures: list[str] = []
    started_pairs = 0
    deadline = time.monotonic() + cfg["seconds"]

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal started_pairs
        while started_pairs < cfg["max_pairs"] and time.monotonic() < deadline and not failures:
            started_pairs += 1  # no await between the read and the write
            device = f"{cfg['prefix']}{started_pairs}"
            body = FLOOR_TEMPLATE % (device, device) if floor else TEMPLATE % device
            try:
                t0 = time.perf_counter()
                async with session.post(base + (FLOOR_PATH if floor else PATH), data=body, headers=headers) as resp:
                    text = await resp.read()
                    status = resp.status
                t1 = time.perf_counter()
                if status != 201:
                    failures.append(f"create {device}: {status} {text[:500]!r}")
                    return
                created = json.loads(text)
                if floor:
                    url, second = base + FLOOR_PATH, json.dumps({"deviceId": created["deviceId"],
                                                                 "reviewerJustification": "ok"})
                else:
                    url, second = f"{base}{PATH}/{created['id']}/approve", APPROVE_BODY
                async with session.post(url, data=second, headers=headers) as resp:
                    text = await resp.read()
                    status = resp.status
                t2 = time.perf_counter()
                reviewed = json.loads(text) if text else {}
                if status != (201 if floor else 200) or (not floor and reviewed.get("status") != "approved"):
                    failures.append(f"approve {device}: {status} {text[:500]!r}")
                    return
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
                failures.append(f"{device}: {type(exc).__name__} {exc}")
                return
            first_ms.append((t1 - t0) * 1000)
            second_ms.append((t2 - t1) * 1000)

    cpu0 = time.process_time()
    connector = aiohttp.TCPConnector(limit=cfg["connections"])
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(cfg["connections"])))
        seconds = time.perf_counter() - started
    pairs = len(second_ms)
    both = sorted(first_ms + second_ms)
    first_ms.sort()
    second_ms.sort()
    p = c.percentile
    return {"pairs": pairs, "requests": len(both), "started_pairs": started_pairs, "seconds": seconds,
            "failures": failures[:5], "failed": len(failures), "client_cpu_s": time.process_time() - cpu0,
            "p50_ms": p(both, 50), "p99_ms": p(both, 99),
            "create_p50_ms": p(first_ms, 50), "create_p99_ms": p(first_ms, 99),
            "approve_p50_ms": p(second_ms, 50), "approve_p99_ms": p(second_ms, 99)}


# ---- the bench ----------------------------------------------------------------------------------------------

def load(url: str, token: str, kind: str, prefix: str, seconds: float, args) -> dict:
    config = {"url": url, "token": token, "kind": kind, "connections": args.connections, "seconds": seconds,
              "max_pairs": args.max_pairs, "prefix": prefix}
    argv = [c.PYTHON, str(Path(__file__).resolve()), "--load", json.dumps(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"load process failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1])
    if result["failed"] or result["pairs"] != result["started_pairs"]:
        raise SystemExit(f"LOAD FAILED on {url} ({kind}): {result['failed']} failures, {result['pairs']} of "
                         f"{result['started_pairs']} pairs completed; first failures:\n" +
                         "\n".join(result["failures"]))
    return result


async def measure(name: str, url: str, token: str, servers: list[c.Proc], pg: c.PgBackends | None, tag: str,
                  args) -> dict:
    warm = load(url, token, name, f"{tag}-w-", args.warmup, args) if args.warmup else {"pairs": 0}
    before = [c.cpu_seconds(p.pid) for p in servers]
    db_before = await pg.snapshot() if pg else None
    result = load(url, token, name, f"{tag}-m-", args.seconds, args)
    db_after = await pg.snapshot() if pg else None
    n = result["requests"]
    split = [(c.cpu_seconds(p.pid) - b) / n * 1e6 for p, b in zip(servers, before)]
    db = c.PgBackends.delta(db_before, db_after)
    result.update(name=name, rate=n / result["seconds"], pair_rate=result["pairs"] / result["seconds"],
                  cpu_us=sum(split), split=" + ".join(f"{p.name} {us:.0f}" for p, us in zip(servers, split)),
                  db_us=None if db is None else db / n * 1e6, client_us=result["client_cpu_s"] / n * 1e6,
                  pairs_total=warm["pairs"] + result["pairs"])
    return result


async def main(args) -> None:
    print(f"requests bench: {args.reps} reps, {args.connections} concurrent workers, {args.warmup} s warm-up + "
          f"{args.seconds} s per run, load generator: python aiohttp process ({LOOP}), "
          "2 HTTP requests per pair on both sides", flush=True)
    secret = secrets.token_urlsafe(32)
    quiet = {"EPM_LOG_LEVEL": "WARNING"}
    async with c.fresh_database() as db:
        print(f"database: {c.redact(db)}", flush=True)
        ports = {name: c.free_port() for name in ("health", "onehop", "requests", "gateway", "events")}
        procs: list[c.Proc] = []
        admin = None
        try:
            health = c.start("health", [c.PYTHON, str(HERE / "_onehop.py"), "grpc", str(ports["health"])],
                             ports["health"], quiet)
            procs.append(health)
            onehop = c.start("onehop", [c.PYTHON, str(HERE / "_onehop.py"), "http", str(ports["onehop"]),
                                        str(ports["health"])], ports["onehop"], quiet)
            procs.append(onehop)
            env = {"EPM_DATABASE_URL": db, "EPM_JWT_SECRET": secret,
                   "EPM_REQUESTS_PORT": str(ports["requests"]), "EPM_REQUESTS_ADDR": f"127.0.0.1:{ports['requests']}",
                   # no events process here; the gateway's (lazy, unused) events channel points at a free port
                   "EPM_EVENTS_ADDR": f"127.0.0.1:{ports['events']}", "EPM_GATEWAY_PORT": str(ports["gateway"])}
            requests_proc = c.serve_epm("requests", ports["requests"], env)
            procs.append(requests_proc)
            gateway = c.serve_epm("gateway", ports["gateway"], env)
            procs.append(gateway)
            admin = await asyncpg.connect(db)
            pg = c.PgBackends(admin)
            if await pg.snapshot() is None:
                print("PostgreSQL backends are not readable processes on this machine: no DB CPU column", flush=True)
            floor_url, gateway_url = (f"http://127.0.0.1:{ports[n]}" for n in ("onehop", "gateway"))
            results: dict[str, list[dict]] = {"floor": [], "product": []}
            run = uuid.uuid4().hex[:6]
            for rep in range(args.reps):
                # an application token (roles only): may create for a user and approve without a role assignment
                token = mint(secret, tenant=str(uuid.uuid4()), roles=[CONFIG_WRITE])
                floor = await measure("floor", floor_url, token, [onehop, health], None, f"{run}-f{rep}", args)
                product = await measure("product", gateway_url, token, [gateway, requests_proc], pg,
                                        f"{run}-p{rep}", args)
                approved = await c.gateway_count(gateway_url + PATH, token, "status eq 'approved'")
                total = await c.gateway_count(gateway_url + PATH, token)
                if not approved == total == product["pairs_total"]:
                    raise SystemExit(f"STORED MISMATCH: {approved} approved and {total} requests stored, "
                                     f"{product['pairs_total']} create+approve pairs succeeded")
                results["floor"].append(floor)
                results["product"].append(product)
                db_text = "" if product["db_us"] is None else f" + postgres {product['db_us']:.0f}"
                print(f"rep {rep + 1}: CPU µs/req floor {floor['split']} (load process {floor['client_us']:.0f}); "
                      f"product {product['split']}{db_text} (load process {product['client_us']:.0f})", flush=True)
                print(f"rep {rep + 1}: floor {c.num(floor['rate'])} req/s, product {c.num(product['rate'])} req/s "
                      f"= {c.num(product['pair_rate'])} pairs/s; stored: {approved} approved of {total}, "
                      f"{product['pairs_total']} pairs succeeded (warm-up + measured)", flush=True)
            report(args, results)
        except BaseException:
            for proc in procs:
                print(f"{proc.name} log (last lines):\n{proc.tail(10)}", file=sys.stderr)
            raise
        finally:
            if admin is not None:
                await admin.close()
            for proc in reversed(procs):
                proc.stop()


def report(args, results: dict) -> None:
    floor_rate = statistics.median(r["rate"] for r in results["floor"])
    names = {"floor": "floor: 2 x (aiohttp handler + 1 unary grpc.aio Health/Check)",
             "product": "product: create + approve via gateway -> requests -> PostgreSQL"}
    rows = []
    for kind, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        db = [r["db_us"] for r in runs if r["db_us"] is not None]
        rows.append([names[kind], c.mmm([r["rate"] for r in runs]), c.mmm([r["pair_rate"] for r in runs]),
                     c.mmm([r["create_p50_ms"] for r in runs], 1), c.mmm([r["create_p99_ms"] for r in runs], 1),
                     c.mmm([r["approve_p50_ms"] for r in runs], 1), c.mmm([r["approve_p99_ms"] for r in runs], 1),
                     f"{rate / floor_rate:.2f}", TARGET if kind == "product" else "",
                     c.num(statistics.median(r["cpu_us"] for r in runs)),
                     c.num(statistics.median(db)) if db else "-",
                     c.num(statistics.median(r["client_us"] for r in runs))])
    c.print_table(f"Create+approve pairs, {args.connections} workers, {args.seconds} s per run, {args.reps} reps "
                  "(min / median / max; 1st/2nd = create/approve on the product, the two POSTs on the floor)",
                  ["what", "HTTP req/s", "pairs/s", "1st p50 ms", "1st p99 ms", "2nd p50 ms", "2nd p99 ms",
                   "ratio of medians (req/s) vs floor", "target", "server CPU µs/req (both processes)",
                   "postgres CPU µs/req", "load process CPU µs/req"], rows)
    product = statistics.median(r["rate"] for r in results["product"])
    verdict = "MET" if product / floor_rate >= 0.40 else "NOT MET"
    print(f"\nratio {product / floor_rate:.2f} vs target {TARGET}: {verdict}", flush=True)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=32, help="concurrent workers (and HTTP connections)")
    p.add_argument("--seconds", type=float, default=8, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1, help="warm-up seconds before each run (0: none)")
    p.add_argument("--max-pairs", type=int, default=250_000, help="count bound per run")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--load", help=argparse.SUPPRESS)  # internal: run as the load process with this JSON config
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    LOOP = c.use_uvloop()  # before asyncio.run: every process of this bench runs on the same kind of loop
    if arguments.load:
        print(json.dumps(asyncio.run(load_run(json.loads(arguments.load)))), flush=True)
    else:
        asyncio.run(main(arguments))
