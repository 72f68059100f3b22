"""Change notification delivery: backlog throughput against a floor, and live latency, in one run.

    .venv/bin/python bench/notifications.py [--backlog 20000] [--subscriptions 1,8] [--rate 200] [--seconds 10]

The requests service runs as a subprocess (`serve requests`, its real Deliverer); the receiver is an aiohttp
endpoint in this process that answers the validation handshake and 202 to every notification.
1. Backlog: a subscription is paused (as if its endpoint had been down), --backlog requests are created over gRPC,
   then a PATCH resumes it; notifications/s = backlog / time until the last one arrived. With S subscriptions,
   each gets every change. Floor: this process reads the same changes with the same SQL (batches of 100, by
   cursor) and POSTs them to the same receiver, one subscription after another, no service in between.
2. Live: open-loop creates at --rate per second for --seconds; latency = arrival at the receiver minus the moment
   the create RPC returned (the change had committed). p50 / p99 / max.
Every change must arrive (set equality with the audit trail); any loss or error aborts the bench.
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
import asyncpg  # noqa: E402
import grpc  # noqa: E402
from aiohttp import web  # noqa: E402
from epm.requests.v1 import elevation_request_service_pb2 as pb  # noqa: E402
from epm.requests.v1 import elevation_request_service_pb2_grpc as pb_grpc  # noqa: E402
from epm.requests.v1 import subscription_service_pb2 as spb  # noqa: E402
from epm.requests.v1 import subscription_service_pb2_grpc as spb_grpc  # noqa: E402

from bench import _common as c  # noqa: E402
from services.common import feed  # noqa: E402
from services.common.auth import CONFIG_WRITE, mint  # noqa: E402
from services.requests.delivery import DELIVERY_SETTINGS, changes_query  # noqa: E402
from services.requests.notifications import DeliveryPolicy, notification  # noqa: E402

SECRET = "bench-secret-" + uuid.uuid4().hex
FILE_HASH = hashlib.sha256(b"git.exe").hexdigest()


class Receiver:
    """Counts arrivals per path: {path: {notification id: first arrival (perf_counter)}}."""

    def __init__(self):
        self.arrivals: dict[str, dict[str, float]] = {}
        self.resources: dict[str, float] = {}  # request id -> first arrival, any path
        self.posts = 0
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if "validationToken" in request.query:
            return web.Response(text=request.query["validationToken"], content_type="text/plain")
        body = json.loads(await request.read())
        if request.path.startswith("/floor"):
            return web.Response(status=202)  # the floor's POSTs: parsed like the rest, not counted
        now = time.perf_counter()
        seen = self.arrivals.setdefault(request.path, {})
        for n in body["value"]:
            seen.setdefault(n["id"], now)
            self.resources.setdefault(n["resourceData"]["id"], now)
        self.posts += 1
        self.changed.set()
        return web.Response(status=202)

    async def wait(self, paths: list[str], count: int, timeout: float) -> float:
        """perf_counter when every path had `count` distinct notifications."""
        deadline = time.monotonic() + timeout
        while any(len(self.arrivals.get(p, {})) < count for p in paths):
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                got = {p: len(self.arrivals.get(p, {})) for p in paths}
                raise SystemExit(f"LOST: expected {count} per subscription, got {got}")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass
        return max(max(self.arrivals[p].values()) for p in paths)


def request_message(device: str) -> pb.CreateElevationRequestRequest:
    return pb.CreateElevationRequestRequest(elevation_request=pb.ElevationRequest(
        requested_on_device_id=device, device_name="LAPTOP-01", requested_by_user_id=str(uuid.uuid4()),
        requested_by_user_principal_name="adele@contoso.example", request_justification="bench",
        application_detail=pb.ElevationRequestApplicationDetail(file_hash=FILE_HASH, file_name="git.exe")))


async def create_many(stub, metadata, prefix: str, count: int, concurrency: int = 32) -> dict[str, float]:
    """request id -> perf_counter when its create returned."""
    done: dict[str, float] = {}
    next_index = 0

    async def worker():
        nonlocal next_index
        while next_index < count:
            next_index += 1
            reply = await stub.CreateElevationRequest(request_message(f"{prefix}-{next_index}"), metadata=metadata)
            done[reply.id] = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def subscribe(stub, metadata, url: str) -> str:
    given = spb.Subscription(resource="deviceManagement/elevationRequests", change_type="created,updated",
                             notification_url=url)
    given.expiration_date_time.FromDatetime(datetime.now(timezone.utc) + timedelta(hours=2))
    return (await stub.CreateSubscription(spb.CreateSubscriptionRequest(subscription=given), metadata=metadata)).id


async def resume(stub, metadata, subscription_id: str) -> None:
    update = spb.UpdateSubscriptionRequest(id=subscription_id, subscription=spb.Subscription(client_state="go"))
    update.update_mask.paths.append("client_state")
    await stub.UpdateSubscription(update, metadata=metadata)


async def floor_drain(db: asyncpg.Connection, http: aiohttp.ClientSession, subs: list, base: str,
                      count: int) -> int:
    """The same reads and POSTs as the Deliverer, done inline: returns notifications sent."""
    sent = 0
    for sub in subs:
        position = feed.Position(int(sub["cursor_txid"]), sub["cursor_id"])
        while True:
            sql, params = changes_query(sub, position, 100)
            changes = await db.fetch(sql, *params)
            if not changes:
                break
            batch = [notification(ch, sub) for ch in changes if ch["wanted"]]
            async with http.post(f"{base}/floor-{sub['id']}", data=json.dumps({"value": batch}),
                                 headers={"Content-Type": "application/json"}) as reply:
                if reply.status != 202:
                    raise SystemExit(f"floor POST failed: {reply.status}")
            sent += len(batch)
            position = feed.Position.of(changes[-1])
    if sent != count * len(subs):
        raise SystemExit(f"floor sent {sent}, expected {count * len(subs)}")
    return sent


async def backlog_run(stub, subs_stub, db, receiver, base, metadata, tenant, n_subs: int, count: int, rep: int):
    paths = [f"/s{rep}-{n_subs}-{i}" for i in range(n_subs)]
    ids = [await subscribe(subs_stub, metadata, base + p) for p in paths]
    await db.execute("UPDATE requests.subscriptions SET paused_reason = 'bench: endpoint down' "
                     "WHERE tenant_id = $1 AND id = ANY($2::uuid[])", tenant, ids)
    created = await create_many(stub, metadata, f"b{rep}-{n_subs}", count)
    subs = await db.fetch("SELECT * FROM requests.subscriptions WHERE tenant_id = $1 AND id = ANY($2::uuid[]) "
                          "ORDER BY id", tenant, ids)
    # floor first (it only reads), then the product drains the same backlog
    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        await floor_drain(db, http, subs, base, count)
        floor_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for sid in ids:
        await resume(subs_stub, metadata, sid)
    last = await receiver.wait(paths, count, timeout=300)
    product_s = last - t0
    got = {rid for rid in created if rid in receiver.resources}
    if got != set(created):
        raise SystemExit(f"LOST: {len(created) - len(got)} changes never arrived")
    await db.execute("DELETE FROM requests.subscriptions WHERE tenant_id = $1 AND id = ANY($2::uuid[])", tenant, ids)
    return count * n_subs / floor_s, count * n_subs / product_s


async def live_run(stub, subs_stub, db, receiver, base, metadata, tenant, rate: float, seconds: float):
    path = "/live"
    sid = await subscribe(subs_stub, metadata, base + path)
    returned: dict[str, float] = {}
    interval, total = 1 / rate, int(rate * seconds)
    started = time.perf_counter()

    async def one(i: int):
        reply = await stub.CreateElevationRequest(request_message(f"live-{i}"), metadata=metadata)
        returned[reply.id] = time.perf_counter()
    tasks = []
    for i in range(total):
        await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    await receiver.wait([path], total, timeout=60)
    latencies = sorted((receiver.resources[rid] - t) * 1000 for rid, t in returned.items())
    await db.execute("DELETE FROM requests.subscriptions WHERE tenant_id = $1 AND id = $2::uuid", tenant, sid)
    return latencies


async def main(args) -> None:
    receiver = Receiver()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    tenant = str(uuid.uuid4())
    metadata = (("authorization", f"Bearer {mint(SECRET, tenant=tenant, scopes=(), roles=[CONFIG_WRITE])}"),)
    async with c.fresh_database() as url:
        port = c.free_port()
        proc = c.serve_epm("requests", port, {"EPM_DATABASE_URL": url, "EPM_JWT_SECRET": SECRET,
                                              "EPM_REQUESTS_PORT": str(port), "EPM_REPUTATION_ADDR": "127.0.0.1:1",
                                              "EPM_NOTIFY_PRIVATE_NETWORKS": "true"})
        db = await asyncpg.connect(url, server_settings=DELIVERY_SETTINGS)  # as the Deliverer's own connections
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub, subs_stub = pb_grpc.ElevationRequestServiceStub(channel), spb_grpc.SubscriptionServiceStub(channel)
                rows = []
                for n_subs in args.subscriptions:
                    floors, products = [], []
                    for rep in range(args.reps):
                        f, p = await backlog_run(stub, subs_stub, db, receiver, base, metadata, tenant, n_subs,
                                                 args.backlog, rep)
                        floors.append(f)
                        products.append(p)
                        print(f"backlog rep {rep + 1}, {n_subs} subscription(s): floor {f:,.0f}/s, "
                              f"product {p:,.0f}/s", flush=True)
                    ratio = sorted(products)[len(products) // 2] / sorted(floors)[len(floors) // 2]
                    rows.append([f"backlog of {args.backlog:,} x {n_subs} subscription(s)", c.mmm(floors),
                                 c.mmm(products), f"{ratio:.2f}"])
                c.print_table("Backlog delivery, notifications/s (min / median / max)",
                              ["run", "floor (same SQL + POST, inline)", "product (Deliverer)", "ratio"], rows)
                latencies = await live_run(stub, subs_stub, db, receiver, base, metadata, tenant, args.rate,
                                           args.seconds)
                p = c.percentile
                c.print_table(f"Live delivery latency at {args.rate:g} changes/s for {args.seconds:g} s "
                              "(create returned -> arrival)",
                              ["changes", "p50 ms", "p99 ms", "max ms", "poll interval ms"],
                              [[len(latencies), f"{p(latencies, 50):.1f}", f"{p(latencies, 99):.1f}",
                                f"{latencies[-1]:.1f}", f"{DeliveryPolicy().poll * 1000:g}"]])
                print(f"\nreceiver POSTs: {receiver.posts:,}; every change arrived; database {c.redact(url)}")
        finally:
            await db.close()
            proc.stop()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=20_000, help="changes waiting when delivery resumes")
    parser.add_argument("--subscriptions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="live phase: creates per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="live phase: duration")
    loop = c.use_uvloop()
    print(f"loop: {loop}", flush=True)
    asyncio.run(main(parser.parse_args()))
