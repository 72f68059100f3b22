"""Batch ingest, over gRPC (IngestElevationEvents) and as JSON through the gateway (POST …/ingest), against the
raw asyncpg COPY floor; the cost per row as the table grows; a memory soak.

    .venv/bin/python bench/ingest.py [--rows 200000] [--reps 3] [--scale 10000,100000,1000000]
        [--memory-events 1000000] [--summary FILE]

See bench/README.md for what is compared and how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import grpc  # noqa: E402
from epm.events.v1 import elevation_event_service_pb2 as pb  # noqa: E402

from bench import _common as c  # noqa: E402
from gateway import graphjson  # noqa: E402
from services.common.auth import DEVICES_WRITE, mint  # noqa: E402
from services.events import model  # noqa: E402

METHOD = "/epm.events.v1.ElevationEventService/IngestElevationEvents"
TARGET, REST_TARGET = 0.70, 0.40  # ratios of rows/s to the COPY floor
REST_PATH = "/beta/deviceManagement/privilegeManagementElevations/ingest"
MEMORY_TARGET_MIB = 100
HASHES = [hashlib.sha256(f"file-{i}.exe".encode()).hexdigest() for i in range(1000)]
STORED_ENUMS = {"elevation_type": "userConfirmedElevation", "user_type": "azureAd", "process_type": "parent"}
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:epm:privilegeManagementElevation")
TEMPLATE = pb.ElevationEvent(
    device_name="LAPTOP-01", elevation_type=pb.ELEVATION_TYPE_USER_CONFIRMED_ELEVATION,
    file_path=r"C:\Program Files\Git\bin\git.exe", upn="adele@contoso.example", user_type=pb.USER_TYPE_AZURE_AD,
    product_name="Git", company_name="The Git Development Community", file_version="2.45.1",
    internal_name="git", file_description="Git for Windows", justification="Installing dev tools",
    certificate_payload="cert-hash", result=0, process_type=pb.PROCESS_TYPE_PARENT, rule_id="rule-1",
    policy_id="policy-1", policy_name="Dev tools", parent_process_name="explorer.exe",
)


class Events:
    """`total` distinct events: event i has device `bench-{i}` and a time i steps after 29 days ago (whole µs)."""

    def __init__(self, total: int, batch_size: int):
        self.total, self.batch_size = total, batch_size
        span_us = 29 * 86_400 * 1_000_000
        self.start_us = int(time.time() * 1_000_000) - span_us
        self.step_us = max(1, span_us // total)
        self.batch = pb.IngestElevationEventsRequest()
        for j in range(batch_size):  # a reusable batch: only deviceId and eventDateTime change per event
            event = self.batch.events.add()
            event.CopyFrom(TEMPLATE)
            event.hash = HASHES[j % len(HASHES)]

    def serialized(self, number: int) -> bytes:
        """Batch `number` as the bytes of an IngestElevationEventsRequest."""
        first = number * self.batch_size
        size = min(self.batch_size, self.total - first)
        for j in range(size):
            event, us = self.batch.events[j], self.start_us + (first + j) * self.step_us
            event.device_id = f"bench-{first + j}"
            event.event_date_time.seconds, nanos = divmod(us, 1_000_000)
            event.event_date_time.nanos = nanos * 1000
        if size < self.batch_size:  # the last, partial batch
            return pb.IngestElevationEventsRequest(events=self.batch.events[:size]).SerializeToString()
        return self.batch.SerializeToString()

    def json_body(self, number: int) -> bytes:
        """Batch `number` as the JSON body of POST …/ingest: {"value": [Graph events]}."""
        batch = pb.IngestElevationEventsRequest.FromString(self.serialized(number))
        return json.dumps({"value": [graphjson.to_json(e, "privilegeManagementElevation") for e in batch.events]},
                          separators=(",", ":")).encode()

    def count(self) -> int:
        return -(-self.total // self.batch_size)

    def sizes(self) -> list[int]:
        return [min(self.batch_size, self.total - n * self.batch_size) for n in range(self.count())]

    def rows(self, tenant: str) -> list[tuple]:
        """The same events as table rows (tenant_id + model.COLUMNS, the columns the service stores), for COPY."""
        base = {name: STORED_ENUMS.get(name, getattr(TEMPLATE, name, None)) for name in model.COLUMNS}
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        out = []
        for i in range(self.total):
            us = self.start_us + i * self.step_us
            base.update(id=uuid.uuid5(ID_NAMESPACE, f"bench-{i}|{us}"), device_id=f"bench-{i}",
                        event_date_time=epoch + timedelta(microseconds=us), hash=HASHES[i % self.batch_size % len(HASHES)])
            out.append((tenant, *base.values()))
        return out


async def floor(url: str, rows_by_tenant: list[tuple], table: str) -> float:
    """rows/s of one copy_records_to_table into a plain copy of events.elevations (same indexes)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE TABLE {table} (LIKE events.elevations "
                           "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)")
        await conn.execute("CHECKPOINT")  # as before every timed phase
        started = time.perf_counter()
        await conn.copy_records_to_table(table, records=rows_by_tenant, columns=["tenant_id", *model.COLUMNS])
        elapsed = time.perf_counter() - started
        stored = await conn.fetchval(f"SELECT count(*) FROM {table}")
        if stored != len(rows_by_tenant):
            raise SystemExit(f"FLOOR FAILED: {stored} rows in {table}, expected {len(rows_by_tenant)}")
        await conn.execute(f"DROP TABLE {table}")
        return len(rows_by_tenant) / elapsed
    finally:
        await conn.close()


async def checkpoint(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def compare(url: str, floor_row: tuple) -> None:
    """Warns when the service stored event 0 differently from the floor's row (the floor would be unfair)."""
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchrow(f"SELECT {', '.join(model.COLUMNS)} FROM events.elevations "
                                     "WHERE device_id = 'bench-0' LIMIT 1")
    finally:
        await conn.close()
    differ = [name for name, ours in zip(model.COLUMNS, floor_row[1:]) if name != "id" and stored[name] != ours]
    if differ:
        print(f"WARNING: the service stores {differ} differently from the floor rows", flush=True)


def check(response: pb.IngestElevationEventsResponse, expected: int, what: str) -> None:
    if response.received == expected == response.inserted and not response.duplicates and not response.rejected:
        return
    first = "; ".join(f"batch {r.batch} #{r.index}: {r.reason}" for r in response.rejected[:3])
    raise SystemExit(f"INGEST FAILED ({what}): expected {expected} inserted, got received={response.received} "
                     f"inserted={response.inserted} duplicates={response.duplicates} "
                     f"rejected={len(response.rejected)} {first}")


async def stream(ingest, batches, token: str, timeout: float, on_batch=None) -> pb.IngestElevationEventsResponse:
    """One IngestElevationEvents call writing every (already serialized) batch; bounded by its deadline."""
    call = ingest(metadata=(("authorization", f"Bearer {token}"),), timeout=timeout)
    for number, batch in enumerate(batches):
        await call.write(batch)
        if on_batch:
            on_batch(number + 1)
    await call.done_writing()
    return await call


async def product(ingest, batches: list[bytes], sizes: list[int], streams: int, secret: str, pid: int,
                  timeout: float) -> tuple[float, float]:
    """(rows/s, service CPU µs per row) of `streams` concurrent streams sharing the batches, fresh tenant."""
    token = mint(secret, tenant=str(uuid.uuid4()), scopes=[DEVICES_WRITE])
    shares = [batches[i::streams] for i in range(streams)]
    cpu = c.cpu_seconds(pid)
    started = time.perf_counter()
    responses = await asyncio.gather(*(stream(ingest, share, token, timeout) for share in shares))
    elapsed = time.perf_counter() - started
    cpu = c.cpu_seconds(pid) - cpu
    expected = sum(sizes)
    for number, response in enumerate(responses):
        check(response, sum(sizes[number::streams]), f"{streams} streams")
    return expected / elapsed, cpu / expected * 1e6


async def product_rest(url: str, bodies: list[bytes], sizes: list[int], concurrency: int, secret: str,
                       pids: list[int]) -> tuple[float, float]:
    """(rows/s, gateway + service CPU µs per row) of `concurrency` clients POSTing the JSON batches, fresh tenant."""
    token = mint(secret, tenant=str(uuid.uuid4()), scopes=[DEVICES_WRITE])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    queue = list(enumerate(bodies))[::-1]

    async def client(http: aiohttp.ClientSession) -> None:
        while queue:
            number, body = queue.pop()
            async with http.post(url + REST_PATH, data=body, headers=headers) as resp:
                result = await resp.json() if resp.status == 200 else {"error": await resp.text()}
            if resp.status != 200 or result["inserted"] != sizes[number] or result["rejected"]:
                raise SystemExit(f"REST INGEST FAILED: batch {number}: {resp.status} {str(result)[:300]}")

    cpu = sum(map(c.cpu_seconds, pids))
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    cpu = sum(map(c.cpu_seconds, pids)) - cpu
    return sum(sizes) / elapsed, cpu / sum(sizes) * 1e6


async def scale(ingest, marks: list[int], chunk: int, batch: int, secret: str, pid: int,
                timeout: float) -> list[tuple[int, float, float]]:
    """(table rows, rows/s, service CPU µs/row) of a timed chunk of `chunk` events ingested when the tenant's table
    holds `mark - chunk` rows, for each mark; the rows between marks are streamed untimed."""
    events = Events(max(marks), batch)
    token = mint(secret, tenant=str(uuid.uuid4()), scopes=[DEVICES_WRITE])
    per_chunk = max(1, chunk // batch)
    out, done = [], 0
    for mark in marks:
        fill = max(done, mark // batch - per_chunk)
        if fill > done:
            check(await stream(ingest, (events.serialized(n) for n in range(done, fill)), token, timeout),
                  sum(events.sizes()[done:fill]), f"fill to {mark:,}")
        timed = [events.serialized(n) for n in range(fill, mark // batch)]
        cpu = c.cpu_seconds(pid)
        started = time.perf_counter()
        check(await stream(ingest, timed, token, timeout), len(timed) * batch, f"chunk at {mark:,}")
        elapsed = time.perf_counter() - started
        out.append((mark, len(timed) * batch / elapsed, (c.cpu_seconds(pid) - cpu) / (len(timed) * batch) * 1e6))
        done = mark // batch
        print(f"scale: {mark:,} rows: {c.num(out[-1][1])} rows/s, {c.num(out[-1][2], 1)} µs/row", flush=True)
    return out


async def memory(ingest, events: Events, secret: str, pid: int, every: int, timeout: float) -> list:
    """Streams events.total events in one call, building batches lazily; samples the service's RSS."""
    token = mint(secret, tenant=str(uuid.uuid4()), scopes=[DEVICES_WRITE])
    samples = [(0, c.rss_mib(pid), 0.0)]
    started = time.perf_counter()
    per_sample = max(1, every // events.batch_size)

    def sample(sent_batches: int) -> None:
        if sent_batches % per_sample == 0:
            samples.append((sent_batches * events.batch_size, c.rss_mib(pid), time.perf_counter() - started))

    lazy = (events.serialized(n) for n in range(events.count()))
    response = await stream(ingest, lazy, token, timeout, on_batch=sample)
    check(response, events.total, "memory phase")
    samples.append(("end", c.rss_mib(pid), time.perf_counter() - started))
    return samples


async def main(args, loop: str) -> None:
    secret = secrets.token_urlsafe(32)
    events = Events(args.rows, args.batch)
    print(f"ingest bench: {args.rows:,} events in batches of {args.batch}, {args.reps} reps, loop {loop}, "
          f"python {sys.version.split()[0]}", flush=True)
    built = time.perf_counter()
    batches = [events.serialized(n) for n in range(events.count())]
    floor_rows = events.rows(str(uuid.uuid4()))
    print(f"built {len(batches)} batches ({sum(map(len, batches)) / 2**20:.1f} MiB serialized) and "
          f"{len(floor_rows):,} COPY rows in {time.perf_counter() - built:.1f} s", flush=True)

    async with c.fresh_database() as url:
        print(f"database: {c.redact(url)}", flush=True)
        port, gateway_port = c.free_port(), c.free_port()
        env = {"EPM_DATABASE_URL": url, "EPM_JWT_SECRET": secret, "EPM_EVENTS_PORT": str(port),
               "EPM_EVENTS_ADDR": f"127.0.0.1:{port}", "EPM_GATEWAY_PORT": str(gateway_port)}
        service = c.serve_epm("events", port, env)
        gateway = c.serve_epm("gateway", gateway_port, env) if args.rest_clients else None
        bodies = [events.json_body(n) for n in range(events.count())] if gateway else []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                ingest = channel.stream_unary(METHOD, request_serializer=None,  # batches are already bytes
                                              response_deserializer=pb.IngestElevationEventsResponse.FromString)
                runs = ["1 stream", "2 streams"] + ([f"REST, {args.rest_clients} clients"] if gateway else [])
                results = {"floor": [], **{name: [] for name in runs}}
                cpu = {name: [] for name in runs}
                for rep in range(args.reps):
                    results["floor"].append(await floor(url, floor_rows, f"bench_floor_{rep}"))
                    for streams, name in ((1, "1 stream"), (2, "2 streams")):
                        await checkpoint(url)
                        rate, us = await product(ingest, batches, events.sizes(), streams, secret, service.pid,
                                                 args.timeout)
                        results[name].append(rate)
                        cpu[name].append(us)
                    if gateway:
                        await checkpoint(url)
                        rate, us = await product_rest(f"http://127.0.0.1:{gateway_port}", bodies, events.sizes(),
                                                      args.rest_clients, secret, [gateway.pid, service.pid])
                        results[runs[2]].append(rate)
                        cpu[runs[2]].append(us)
                    if rep == 0:
                        await compare(url, floor_rows[0])
                    print(f"rep {rep + 1}: floor {c.num(results['floor'][-1])} rows/s, "
                          + ", ".join(f"{name} {c.num(results[name][-1])}" for name in runs), flush=True)
                report(args, results, cpu)
                if args.scale:
                    report_scale(await scale(ingest, args.scale, args.scale_chunk, args.batch, secret, service.pid,
                                             args.memory_timeout))
                if args.memory_events:
                    soak = Events(args.memory_events, args.batch)
                    samples = await memory(ingest, soak, secret, service.pid, args.memory_every, args.memory_timeout)
                    report_memory(soak.total, samples)
        except BaseException:
            for proc in filter(None, (service, gateway)):
                print(f"{proc.name} log (last lines):\n{proc.tail()}", file=sys.stderr)
            raise
        finally:
            for proc in filter(None, (gateway, service)):
                proc.stop()


def report(args, results: dict, cpu: dict) -> None:
    floor_median = statistics.median(results["floor"])
    rows = [["floor: asyncpg copy_records_to_table, 1 connection", c.mmm(results["floor"]), "1.00", "", ""]]
    for name in list(results)[1:]:
        rest = name.startswith("REST")
        ratio, target = statistics.median(results[name]) / floor_median, REST_TARGET if rest else TARGET
        what = f"POST …/ingest (JSON), {name[6:]}" if rest else f"IngestElevationEvents, {name}"
        rows.append([f"product: {what}", c.mmm(results[name]), f"{ratio:.2f}", f">= {target:.2f}",
                     c.num(statistics.median(cpu[name]), 1)])
        c.summarize(args.summary, path=f"event ingest: {what}", floor=f"COPY {c.num(floor_median)} rows/s",
                    product=f"{c.num(statistics.median(results[name]))} rows/s", ratio=f"{ratio:.2f}",
                    target=f">= {target:.2f}", met=ratio >= target)
    c.print_table(f"Ingest of {args.rows:,} events (batches of {args.batch}), {args.reps} reps",
                  ["what", "rows/s min / median / max", "ratio of medians vs floor", "target",
                   "CPU µs/row (median; REST: gateway + service)"], rows)


def report_scale(points: list[tuple[int, float, float]]) -> None:
    first = points[0][2]
    c.print_table("IngestElevationEvents as the table grows (one stream, one tenant)",
                  ["table rows", "rows/s", "service CPU µs/row", "µs/row vs the first"],
                  [[c.num(n), c.num(rate), c.num(us, 1), f"{us / first:.2f}"] for n, rate, us in points])


def report_memory(total: int, samples: list) -> None:
    rss = [r for _, r, _ in samples]
    start, peak, end = rss[0], max(rss), rss[-1]
    c.print_table(f"Events service RSS while streaming {total:,} events in one call",
                  ["events sent", "RSS MiB", "seconds"],
                  [[e if isinstance(e, str) else c.num(e), c.num(r, 1), c.num(s, 1)] for e, r, s in samples])
    verdict = "flat" if peak - start < MEMORY_TARGET_MIB else "GROWING"
    c.print_table("Memory summary", ["start MiB", "max MiB", "end MiB", "growth end-start MiB",
                                     "growth max-start MiB", "target", "verdict"],
                  [[c.num(start, 1), c.num(peak, 1), c.num(end, 1), c.num(end - start, 1), c.num(peak - start, 1),
                    f"flat (max-start < {MEMORY_TARGET_MIB} MiB)", verdict]])
    print(f"memory phase rate: {c.num(total / samples[-1][2])} rows/s", flush=True)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="events per repetition (default 200000)")
    p.add_argument("--batch", type=int, default=1000, help="events per IngestElevationEventsRequest")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300, help="deadline of each timed stream, seconds")
    p.add_argument("--rest-clients", type=int, default=2, help="concurrent POST …/ingest clients; 0 skips REST")
    p.add_argument("--scale", type=lambda s: [int(x) for x in s.split(",") if x], default=[10_000, 100_000, 1_000_000],
                   help="table sizes at which to time a chunk (comma-separated; empty skips)")
    p.add_argument("--scale-chunk", type=int, default=10_000, help="events timed at each table size")
    p.add_argument("--summary", help="append bench/run's headline rows (JSON lines) to this file")
    p.add_argument("--memory-events", type=int, default=1_000_000, help="events in the memory phase; 0 skips it")
    p.add_argument("--memory-every", type=int, default=100_000, help="RSS sample interval, events")
    p.add_argument("--memory-timeout", type=float, default=900, help="deadline of the memory stream, seconds")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    asyncio.run(main(arguments, c.use_uvloop()))
