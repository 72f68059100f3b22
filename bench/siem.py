"""SIEM feed throughput: how fast a backlog of elevation events streams out, against a floor, in one run.

    .venv/bin/python bench/siem.py [--events 50000] [--rounds 3]

The events service and the gateway run as subprocesses (`serve events`, `serve gateway`); --events events are
ingested over gRPC into one tenant, in batches of 1000. Each round then reads the whole feed once (no follow):
- grpc: StreamElevationEvents, every message parsed;
- json lines: GET …/privilegeManagementElevations/stream through the gateway, every line parsed;
- floor: this process runs the feed's own SQL (feed.read, batches of 500) straight against PostgreSQL.
Events/s = events / wall time of the read; every read must see every event once, in order, or the bench aborts.
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
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import aiohttp  # noqa: E402
import grpc  # noqa: E402
from epm.events.v1 import elevation_event_feed_service_pb2 as feed_pb  # noqa: E402
from epm.events.v1 import elevation_event_feed_service_pb2_grpc as feed_grpc  # noqa: E402
from epm.events.v1 import elevation_event_service_pb2 as pb  # noqa: E402
from epm.events.v1 import elevation_event_service_pb2_grpc as pb_grpc  # noqa: E402

from bench import _common as c  # noqa: E402
from services.common import db, feed  # noqa: E402
from services.common.auth import CONFIG_WRITE, DEVICES_WRITE, mint  # noqa: E402
from services.events.feed import COLUMNS, SOURCE  # noqa: E402

SECRET = "bench-secret-" + uuid.uuid4().hex
STREAM = "/beta/security/epm/privilegeManagementElevations/stream"


def events(n: int) -> list[pb.ElevationEvent]:
    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        event = pb.ElevationEvent(device_id=f"pc-{i % 500}", hash=hashlib.sha256(str(i % 97).encode()).hexdigest(),
                                  elevation_type=pb.ELEVATION_TYPE_USER_CONFIRMED_ELEVATION, upn=f"u{i % 50}@contoso.example",
                                  file_path=r"C:\Program Files\Tool\tool.exe", product_name="Tool", result=0)
        event.event_date_time.FromDatetime(now - timedelta(seconds=i))
        out.append(event)
    return out


async def ingest(stub, metadata, items: list[pb.ElevationEvent]) -> None:
    async def batches():
        for i in range(0, len(items), 1000):
            yield pb.IngestElevationEventsRequest(events=items[i:i + 1000])
    result = await stub.IngestElevationEvents(batches(), metadata=metadata)
    if result.inserted != len(items):
        raise SystemExit(f"ingest stored {result.inserted} of {len(items)}")


async def read_grpc(stub, metadata) -> list[str]:
    call = stub.StreamElevationEvents(feed_pb.StreamElevationEventsRequest(), metadata=metadata)
    return [item.cursor async for response in call for item in response.items]


async def read_lines(session, url: str, headers: dict) -> list[str]:
    async with session.get(url, headers=headers) as resp:
        if resp.status != 200:
            raise SystemExit(f"stream answered {resp.status}: {await resp.text()}")
        lines = [json.loads(line) async for line in resp.content]
    return [line["cursor"] for line in lines if "event" in line]  # not the closing checkpoint


async def read_floor(pool, tenant: str) -> list[str]:
    position, cursors = feed.Position(), []
    while rows := await feed.read(pool, SOURCE, [tenant], position, feed.BATCH, COLUMNS):
        for row in rows:
            position = feed.Position.of(row)
            cursors.append(position.token())
    return cursors


async def timed(read) -> tuple[float, list[str]]:
    started = time.perf_counter()
    cursors = await read
    return time.perf_counter() - started, cursors


async def main(args) -> None:
    loop = c.use_uvloop()
    tenant = str(uuid.uuid4())
    token = mint(SECRET, tenant=tenant, roles=[CONFIG_WRITE, DEVICES_WRITE])
    metadata = (("authorization", f"Bearer {token}"),)
    async with c.fresh_database() as url:
        ports = {"events": c.free_port(), "gateway": c.free_port()}
        env = {"EPM_DATABASE_URL": url, "EPM_JWT_SECRET": SECRET, "EPM_EVENTS_PORT": str(ports["events"]),
               "EPM_EVENTS_ADDR": f"127.0.0.1:{ports['events']}", "EPM_GATEWAY_PORT": str(ports["gateway"])}
        service = c.serve_epm("events", ports["events"], env)
        gateway = c.serve_epm("gateway", ports["gateway"], env)
        pool = await db.create_pool(url, 2)  # as the service makes it
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['events']}") as channel, \
                    aiohttp.ClientSession() as session:
                await ingest(pb_grpc.ElevationEventServiceStub(channel), metadata, events(args.events))
                stub = feed_grpc.ElevationEventFeedServiceStub(channel)
                url_ = f"http://127.0.0.1:{ports['gateway']}{STREAM}"
                headers = {"Authorization": f"Bearer {token}"}
                expected = await read_floor(pool, tenant)
                if len(expected) != args.events:
                    raise SystemExit(f"the feed holds {len(expected)} of {args.events} events")
                rates: dict[str, list[float]] = {"grpc": [], "json lines": [], "floor (SQL only)": []}
                for _ in range(args.rounds):
                    for name, read in (("grpc", read_grpc(stub, metadata)),
                                       ("json lines", read_lines(session, url_, headers)),
                                       ("floor (SQL only)", read_floor(pool, tenant))):
                        seconds, cursors = await timed(read)
                        if cursors != expected:
                            raise SystemExit(f"{name}: {len(cursors)} cursors, not the {len(expected)} expected")
                        rates[name].append(args.events / seconds)
        finally:
            await pool.close()
            gateway.stop()
            service.stop()
    floor = c.spread(rates["floor (SQL only)"])[1]
    c.print_table(f"SIEM feed, {args.events:,} events backlog, {loop}, min / median / max of {args.rounds}",
                  ["read", "events/s", "median against the floor"],
                  [[name, c.mmm(values), f"{c.spread(values)[1] / floor:.2f}"]
                   for name, values in rates.items()])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
