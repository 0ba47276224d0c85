"""The token bucket behind --rate (used by produce, redrive and replay)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.ratelimit import TokenBucket, rate_limited


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_is_respected_over_time() -> None:
    clock = Clock()
    bucket = TokenBucket(50, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(500):
        bucket.acquire()
    elapsed = clock.now - start
    assert 9.8 <= elapsed <= 10.1  # 500 tokens at 50/s, starting with one


def test_try_acquire_and_delay_never_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(10, burst=2, clock=clock)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    assert bucket.delay() == pytest.approx(0.1)
    clock.now += 0.1
    assert bucket.try_acquire()
    clock.now += 10
    assert bucket.try_acquire() and bucket.try_acquire()
    assert not bucket.try_acquire()  # never more than the burst


def test_rate_limited_yields_none_while_waiting() -> None:
    clock = Clock()
    bucket = TokenBucket(1, clock=clock)
    out = []
    for item in rate_limited(iter([1, 2, None, 3]), bucket):
        out.append(item)
        if item is None:
            clock.now += 0.25
    assert [x for x in out if x is not None] == [1, 2, 3]
    assert out.count(None) >= 8  # two seconds of waiting in quarter steps
    assert list(rate_limited([1, 2], None)) == [1, 2]


@given(rate=st.floats(0.5, 10_000), n=st.integers(1, 200))
def test_never_faster_than_the_rate_plus_burst(rate: float, n: int) -> None:
    clock = Clock()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(n):
        bucket.acquire()
    assert clock.now - start >= (n - bucket.burst) / rate - 1e-6


def test_rejects_non_positive_rates() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
