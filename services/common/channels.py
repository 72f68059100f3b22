"""gRPC channels from one of our processes to another."""

from __future__ import annotations

import grpc

# A channel whose peer went away redials with exponential backoff; gRPC's default grows to 120 s, far longer than
# a process or pod restart, so a caller would answer 503 long after its peer is back. Cap it at 2 s.
OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250), ("grpc.min_reconnect_backoff_ms", 250),
           ("grpc.max_reconnect_backoff_ms", 2000))


def connect(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=OPTIONS)
