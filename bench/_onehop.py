"""The one-hop floor of bench/rest.py and bench/reputation.py: an aiohttp handler making one unary grpc.aio call.

    python bench/_onehop.py grpc PORT             # serves only grpc.health.v1.Health
    python bench/_onehop.py http PORT GRPC_PORT   # POST PATH: json.loads(body), Health/Check, 201 + small JSON
                                                  # GET GET_PATH/{sha256}: Health/Check, 200 + small JSON
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

PATH = "/beta/deviceManagement/privilegeManagementElevations"
GET_PATH = "/beta/security/fileReputations"


async def serve_grpc(port: int) -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def http_app(grpc_port: int) -> web.Application:
    app = web.Application()
    stub_key = web.AppKey("stub", health_pb2_grpc.HealthStub)

    async def lifecycle(app: web.Application):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        app[stub_key] = health_pb2_grpc.HealthStub(channel)
        yield
        await channel.close()

    async def create(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        reply = await request.app[stub_key].Check(health_pb2.HealthCheckRequest(), timeout=30)
        return web.Response(status=201, content_type="application/json",
                            text=json.dumps({"deviceId": body["deviceId"], "status": reply.status}))

    async def get(request: web.Request) -> web.Response:
        reply = await request.app[stub_key].Check(health_pb2.HealthCheckRequest(), timeout=30)
        return web.Response(status=200, content_type="application/json",
                            text=json.dumps({"id": request.match_info["sha256"], "status": reply.status}))

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post(PATH, create)
    app.router.add_get(GET_PATH + "/{sha256}", get)
    return app


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "grpc":
        asyncio.run(serve_grpc(port))
    else:
        web.run_app(http_app(int(sys.argv[3])), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
