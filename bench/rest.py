"""REST POST of single events through the gateway against the one-hop floor (aiohttp -> one grpc.aio call).

    .venv/bin/python bench/rest.py [--connections 32] [--seconds 8] [--warmup 1] [--reps 3] [--python-load]

Uses wrk (with a Lua script that varies every body) when it is on PATH, else bench/_httpload.py.
See bench/README.md for what is compared and how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench import _common as c  # noqa: E402
from services.common.auth import DEVICES_WRITE, mint  # noqa: E402

PATH = "/beta/deviceManagement/privilegeManagementElevations"
TARGET = ">= 0.60"
HERE = Path(__file__).resolve().parent
BODY = {  # a valid Graph body (as in tests/e2e/test_elevations.py); deviceId and eventDateTime vary per request
    "@odata.type": "#microsoft.graph.privilegeManagementElevation",
    "deviceId": "@DEVICE@", "deviceName": "LAPTOP-01", "eventDateTime": "@TIME@",
    "elevationType": "userConfirmedElevation", "filePath": r"C:\Program Files\Git\bin\git.exe",
    "upn": "adele@contoso.example", "userType": "azureAd", "productName": "Git",
    "companyName": "The Git Development Community", "fileVersion": "2.45.1", "internalName": "git",
    "fileDescription": "Git for Windows", "justification": "Installing dev tools",
    "hash": hashlib.sha256(b"git.exe").hexdigest(), "certificatePayload": "cert-hash", "result": 0,
    "processType": "parent", "ruleId": "rule-1", "policyId": "policy-1", "policyName": "Dev tools",
    "parentProcessName": "explorer.exe", "systemInitiatedElevation": False,
}
TEMPLATE = json.dumps(BODY).replace('"@DEVICE@"', '"%s"').replace('"@TIME@"', '"%s"')  # body % (device, time)
assert TEMPLATE.count("%") == 2

WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  created, other, n = 0, 0, 0
  prefix = PREFIX .. id .. "-"
end
request = function()
  n = n + 1
  local body = string.format(TEMPLATE, prefix .. n, os.date("!%Y-%m-%dT%H:%M:%SZ", BASE - n))
  return wrk.format("POST", PATH, HEADERS, body)
end
response = function(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
  if created + other >= LIMIT then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local c, o, s = 0, 0, 0
  for _, t in ipairs(threads) do c = c + t:get("created"); o = o + t:get("other"); s = s + t:get("n") end
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "created": %d, "other": %d, "sent": %d, ' ..
    '"p50_ms": %f, "p99_ms": %f, "socket_errors": %d}\n', summary.requests, summary.duration / 1e6, c, o, s,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, e.connect + e.read + e.write + e.timeout))
end
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def load(url: str, token: str, prefix: str, seconds: float, args) -> dict:
    """One bounded load run (time and count); returns requests, seconds, created (201s), other, p50/p99."""
    base = int(time.time()) - 3600  # request n carries eventDateTime base - n seconds
    limit = max(1, args.max_requests // args.threads) if args.wrk else args.max_requests
    if args.wrk:
        headers = f'{{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {token}"}}'
        script = (f"PREFIX = {lua_string(prefix)}\nTEMPLATE = {lua_string(TEMPLATE)}\nBASE = {base}\n"
                  f"PATH = {lua_string(PATH)}\nHEADERS = {headers}\nLIMIT = {limit}\n{WRK_SCRIPT}")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(script)
        argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                "-s", f.name, url + PATH]
    else:
        config = {"url": url + PATH, "token": token, "connections": args.connections, "seconds": seconds,
                  "max_requests": limit, "template": TEMPLATE, "prefix": prefix, "base": base}
        argv = [c.PYTHON, str(HERE / "_httpload.py"), json.dumps(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith(("RESULT ", "{"))]
    if done.returncode or not lines:
        raise SystemExit(f"load generator failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    if result["other"] or result.get("socket_errors"):
        raise SystemExit(f"LOAD FAILED on {url}: {result} (non-201 responses or socket errors must be 0)\n{done.stdout}")
    return result


def measure(name: str, url: str, token: str, servers: list[c.Proc], tag: str, args) -> dict:
    """Warm-up, then the measured run; adds server CPU µs per request and the 201s of both runs."""
    warm = load(url, token, f"{tag}-w", args.warmup, args) if args.warmup else {"created": 0, "sent": 0}
    before = [c.cpu_seconds(p.pid) for p in servers]
    result = load(url, token, f"{tag}-m", args.seconds, args)
    split = [(c.cpu_seconds(p.pid) - b) / result["requests"] * 1e6 for p, b in zip(servers, before)]
    result.update(name=name, rate=result["requests"] / result["seconds"], cpu_us=sum(split),
                  split=" + ".join(f"{p.name} {us:.0f}" for p, us in zip(servers, split)),
                  created_total=warm["created"] + result["created"], sent_total=warm["sent"] + result["sent"])
    return result


async def main(args) -> None:
    args.wrk = bool(shutil.which("wrk")) and not args.python_load
    print(f"rest bench: {args.reps} reps, {args.connections} connections, {args.warmup} s warm-up + "
          f"{args.seconds} s, load generator {'wrk -t%d' % args.threads if args.wrk else 'python aiohttp'}",
          flush=True)
    secret = secrets.token_urlsafe(32)
    quiet = {"EPM_LOG_LEVEL": "WARNING"}
    async with c.fresh_database() as db:
        print(f"database: {c.redact(db)}", flush=True)
        ports = {name: c.free_port() for name in ("health", "onehop", "events", "gateway")}
        with c.running([]) as procs:
            health = c.start("health", [c.PYTHON, str(HERE / "_onehop.py"), "grpc", str(ports["health"])],
                             ports["health"], quiet)
            procs.append(health)
            onehop = c.start("onehop", [c.PYTHON, str(HERE / "_onehop.py"), "http", str(ports["onehop"]),
                                        str(ports["health"])], ports["onehop"], quiet)
            procs.append(onehop)
            env = {"EPM_DATABASE_URL": db, "EPM_JWT_SECRET": secret, "EPM_EVENTS_PORT": str(ports["events"]),
                   "EPM_EVENTS_ADDR": f"127.0.0.1:{ports['events']}", "EPM_GATEWAY_PORT": str(ports["gateway"])}
            events = c.serve_epm("events", ports["events"], env)
            procs.append(events)
            gateway = c.serve_epm("gateway", ports["gateway"], env)
            procs.append(gateway)
            floor_url, gateway_url = (f"http://127.0.0.1:{ports[n]}" for n in ("onehop", "gateway"))
            results: dict[str, list[dict]] = {"floor": [], "product": []}
            run = uuid.uuid4().hex[:6]
            for rep in range(args.reps):
                token = mint(secret, tenant=str(uuid.uuid4()), scopes=[DEVICES_WRITE])
                floor = measure("floor", floor_url, token, [onehop, health], f"{run}-f{rep}", args)
                product = measure("product", gateway_url, token, [gateway, events], f"{run}-p{rep}", args)
                await asyncio.sleep(1)  # lets requests that wrk abandoned at its stop finish in the server
                count = await c.gateway_count(gateway_url + PATH, token)
                if not product["created_total"] <= count <= product["sent_total"]:
                    raise SystemExit(f"STORED MISMATCH: {count} events stored, {product['created_total']} 201s, "
                                     f"{product['sent_total']} requests sent")
                results["floor"].append(floor)
                results["product"].append(product)
                print(f"rep {rep + 1}: CPU µs/req floor {floor['split']}; product {product['split']}", flush=True)
                print(f"rep {rep + 1}: floor {c.num(floor['rate'])} req/s, product {c.num(product['rate'])} req/s; "
                      f"stored {count}, 201s {product['created_total']}, sent {product['sent_total']} "
                      f"(stored - 201s = requests in flight when the load generator stopped)", flush=True)
            report(args, results)


def report(args, results: dict) -> None:
    rows = []
    floor_rate = statistics.median(r["rate"] for r in results["floor"])
    names = {"floor": "floor: aiohttp handler + 1 unary grpc.aio call (Health/Check)",
             "product": "product: POST through gateway -> events -> PostgreSQL"}
    for kind, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        rows.append([names[kind], c.mmm([r["rate"] for r in runs]), c.mmm([r["p50_ms"] for r in runs], 2),
                     c.mmm([r["p99_ms"] for r in runs], 2), f"{rate / floor_rate:.2f}",
                     TARGET if kind == "product" else "", c.num(statistics.median(r["cpu_us"] for r in runs))])
    c.print_table(f"REST POST of single events, {args.connections} connections, {args.seconds} s per run, "
                  f"{args.reps} reps (min / median / max)",
                  ["what", "req/s", "p50 ms", "p99 ms", "ratio of medians vs floor", "target",
                   "server CPU µs/req (both processes, median)"], rows)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--seconds", type=float, default=8, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1, help="warm-up seconds before each run (0: none)")
    p.add_argument("--max-requests", type=int, default=500_000, help="count bound per run")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--python-load", action="store_true", help="use bench/_httpload.py even if wrk is installed")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    asyncio.run(main(arguments))
