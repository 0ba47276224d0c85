"""Cyclic garbage collection held back while messages stream through.

Every message a client library hands over is an object the cyclic collector tracks. A
batch of 20,000 Kafka messages makes the collector run every 700 allocations and, now
and then, walk everything alive: about a sixth of a fast read's time, for garbage that
is never cyclic (a message, its bytes, a list of them). While a message loop runs the
automatic collector is off; the loop calls ``tick()`` once per batch, and every few
seconds that collects the young generations (and about once a minute all of them), so
cycles other code may leave behind (a library's exception handling, say) are still freed
in a loop that runs for days.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Seconds between explicit collections while the automatic one is held back.
COLLECT_EVERY = 5.0
#: Every this many explicit collections, a full one (the oldest generation too).
FULL_EVERY = 12


class GcPause:
    """Handed to the loop by ``paused_gc``; ``tick()`` once per batch."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._next = time.monotonic() + every
        self._count = 0

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._count += 1
            gc.collect(2 if self._count % FULL_EVERY == 0 else 1)
            self._next = now + self.every


@contextmanager
def paused_gc(every: float = COLLECT_EVERY) -> Iterator[GcPause]:
    """Hold back automatic cyclic collection for the ``with`` block (nesting is fine)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield GcPause(every)
    finally:
        if was_enabled:
            gc.enable()
