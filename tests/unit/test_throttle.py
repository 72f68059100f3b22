"""The throttling rules: token buckets per tenant and per client, on a clock the test moves."""

from __future__ import annotations

import pytest

from gateway.throttle import Limit, Throttle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_admitted_then_refused_until_a_token_is_back():
    clock = Clock()
    throttle = Throttle(Limit(rate=2, burst=4), None, clock=clock)
    assert [throttle.admit("t", "c") for _ in range(5)] == [0, 0, 0, 0, 1]
    clock.now += 0.5  # one token back at 2 per second
    assert [throttle.admit("t", "c") for _ in range(2)] == [0, 1]


def test_retry_after_is_whole_seconds_until_the_next_token():
    clock = Clock()
    throttle = Throttle(Limit(rate=0.1, burst=1), None, clock=clock)
    assert throttle.admit("t", "c") == 0
    assert throttle.admit("t", "c") == 10
    clock.now += 7.5
    assert throttle.admit("t", "c") == 3  # 2.5 s, rounded up


def test_a_busy_client_does_not_take_its_tenants_tokens_when_refused():
    clock = Clock()
    throttle = Throttle(Limit(rate=1, burst=5), Limit(rate=1, burst=2), clock=clock)
    assert [throttle.admit("t", "noisy") for _ in range(10)] == [0, 0] + [1] * 8
    assert [throttle.admit("t", "quiet") for _ in range(3)] == [0, 0, 1]
    assert throttle.admit("t", "third") == 0  # the tenant's 5th token: 8 refusals took none
    assert throttle.admit("t", "fourth") == 1  # the tenant is now out, whoever asks


def test_tenants_are_throttled_apart():
    clock = Clock()
    throttle = Throttle(Limit(rate=1, burst=1), None, clock=clock)
    assert throttle.admit("a", "c") == 0
    assert throttle.admit("a", "c") == 1
    assert throttle.admit("b", "c") == 0


def test_no_limits_admit_everything():
    throttle = Throttle(None, None)
    assert all(throttle.admit("t", "c") == 0 for _ in range(10_000))
    assert len(throttle) == 0


def test_memory_stays_bounded_by_forgetting_refilled_buckets():
    clock = Clock()
    throttle = Throttle(None, Limit(rate=10, burst=10), max_buckets=100, clock=clock)
    for i in range(10_000):
        throttle.admit("t", f"client-{i}")
        clock.now += 0.2  # each client's one request is refilled 0.1 s later
    assert len(throttle) <= 100
    clock.now = 5000.0
    held = Throttle(None, Limit(rate=1e-6, burst=1), max_buckets=10, clock=clock)
    for i in range(10):
        held.admit("t", f"client-{i}")
    assert held.admit("t", "client-10") == 0  # over the bound: only full buckets may go, and none is
    assert held.admit("t", "client-0") > 0  # so a bucket still in use is not forgotten


@pytest.mark.parametrize(("text", "expected"), [
    ("100", Limit(100, 200)), ("100/5", Limit(100, 5)), ("0.5/1", Limit(0.5, 1)), ("0", None), ("", None)])
def test_limits_parse(text, expected):
    assert Limit.parse(text) == expected


@pytest.mark.parametrize("text", ["fast", "10/x", "-1", "10/0.5"])
def test_bad_limits_are_refused(text):
    with pytest.raises(ValueError, match="rate limit"):
        Limit.parse(text)
