"""Graph-style throttling: a token bucket per tenant and one per client (application, else user) in a tenant.

A request is admitted only when both of its buckets hold a token, and then takes one from each; otherwise it
takes none and learns how long until both would (Graph's 429 with Retry-After). Buckets live in one gateway
replica: with N replicas the system admits up to N times each limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    rate: float   # requests per second, sustained
    burst: float  # requests at once (the bucket's size)

    @classmethod
    def parse(cls, text: str) -> Limit | None:
        """'RATE' or 'RATE/BURST' requests per second (burst defaults to 2 s of rate); '0' or '' means no limit."""
        rate, _, burst = text.partition("/")
        try:
            limit = cls(float(rate or 0), float(burst) if burst else 2 * float(rate or 0))
        except ValueError:
            raise ValueError(f"a rate limit is RATE or RATE/BURST (requests per second), not {text!r}") from None
        if limit.rate < 0 or (limit.rate and limit.burst < 1):
            raise ValueError(f"a rate limit needs rate >= 0 and burst >= 1: {text!r}")
        return limit if limit.rate else None


@dataclass
class Bucket:
    tokens: float
    stamp: float  # when `tokens` was last brought up to date


def refill(bucket: Bucket, limit: Limit, now: float) -> float:
    """The bucket's tokens at `now` (never above its burst)."""
    bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.stamp) * limit.rate)
    bucket.stamp = now
    return bucket.tokens


def wait(tokens: float, limit: Limit) -> float:
    """Seconds until a bucket holding `tokens` holds one."""
    return max(0.0, (1 - tokens) / limit.rate)


class Throttle:
    def __init__(self, tenant: Limit | None, client: Limit | None, *, max_buckets: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self._limits = {"tenant": tenant, "client": client}
        self._buckets: dict[tuple, Bucket] = {}
        self._max_buckets, self._clock = max_buckets, clock

    def admit(self, tenant_id: str, client_id: str) -> int:
        """0 when the request may go ahead (one token taken from each bucket), else whole seconds to wait."""
        now = self._clock()
        keys = {"tenant": ("tenant", tenant_id), "client": ("client", tenant_id, client_id)}
        held = {name: self._bucket(keys[name], limit, now) for name, limit in self._limits.items() if limit}
        longest = max((wait(refill(b, self._limits[n], now), self._limits[n]) for n, b in held.items()), default=0)
        if longest > 0:
            return max(1, math.ceil(longest))
        for bucket in held.values():
            bucket.tokens -= 1
        return 0

    def _bucket(self, key: tuple, limit: Limit, now: float) -> Bucket:
        if (bucket := self._buckets.get(key)) is None:
            if len(self._buckets) >= self._max_buckets:
                self._forget_full(now)
            bucket = self._buckets[key] = Bucket(limit.burst, now)
        return bucket

    def _forget_full(self, now: float) -> None:
        """Drops the buckets that have refilled: a full bucket is the same as none."""
        for key, bucket in list(self._buckets.items()):
            if refill(bucket, self._limits[key[0]], now) >= self._limits[key[0]].burst:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
