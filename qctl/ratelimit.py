"""A token bucket for ``--rate``: messages per second, smooth, with a small burst.

Producers, redrive and replay share it. It never sleeps on its own unless asked
(``acquire``): event-loop publishers ask ``delay()`` instead and schedule themselves,
so confirms and heartbeats keep flowing while they wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (default: 1/10 s worth, ≥ 1).

    A small burst keeps the output smooth (no second-long spikes) while letting a fast
    loop take tokens in small groups instead of one syscall-sized sleep per message.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 10)
        self._clock = clock
        self._sleep = sleep
        self._tokens = min(1.0, self.burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = now

    def try_acquire(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are there; never waits."""
        self._refill()
        if self._tokens >= n - 1e-9:  # float drift must not cost a whole token
            self._tokens -= n
            return True
        return False

    def delay(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens will be available (0 when they are now)."""
        self._refill()
        missing = n - 1e-9 - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def acquire(self, n: float = 1.0) -> None:
        """Take ``n`` tokens, sleeping as long as needed."""
        while not self.try_acquire(n):
            self._sleep(max(self.delay(n), 0.0005))


def rate_limited(items: Iterable[T | None], bucket: TokenBucket | None) -> Iterator[T | None]:
    """Items at the bucket's pace, yielding None while a token is not yet due.

    Consumers of the stream treat None as "nothing now: serve your connection for a few
    milliseconds and ask again", so a publisher keeps processing confirms instead of
    blocking in ``sleep``.
    """
    if bucket is None:
        yield from items
        return
    for item in items:
        if item is None:  # the source itself has nothing now
            yield None
            continue
        while not bucket.try_acquire():
            yield None
        yield item
