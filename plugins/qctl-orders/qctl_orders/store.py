"""A service's own database: what it has handled, its stock, its ledger.

Changes made while a batch is handled are *staged*; they become real only after the
batch's output events were confirmed by the broker (``commit``), just before the input
is committed or acknowledged. A consumer that crashes in between rolls them back: the
redelivered input is then handled again and writes the same events (same derived ids)
again, which downstream services drop as duplicates. That is at-least-once delivery
with idempotent handlers, the only guarantee a real pipeline can give across a crash.

The store outlives a consumer crash (like a database outlives the process that talks to
it); it lives as long as the ``qctl orders run`` process. Each consumer thread stages
its own batch (the payment service has two: its topic and its retries).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

_MISSING = object()


class _Staged(threading.local):
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        self.sets: list[tuple[str, str]] = []


class Store:
    """Committed state plus, per thread, the staged changes of its batch in progress."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._counts: Counter[str] = Counter()
        self._sets: dict[str, set[str]] = {}
        self._staged = _Staged()
        self.lock = threading.Lock()

    # -- values ------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        value = self._staged.values.get(key, _MISSING)
        if value is _MISSING:
            value = self._data.get(key, default)
        return value

    def put(self, key: str, value: Any) -> None:
        self._staged.values[key] = value

    def committed(self, key: str, default: Any = None) -> Any:
        """A committed value (for other threads: progress, completion checks)."""
        with self.lock:
            return self._data.get(key, default)

    # -- idempotency -------------------------------------------------------------------------
    def seen(self, event_id: str) -> bool:
        return self.get(f"seen:{event_id}") is not None

    def mark(self, event_id: str) -> None:
        self.put(f"seen:{event_id}", True)

    # -- counters ----------------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        """Add to a counter when the batch commits (a crashed batch never counted)."""
        self._staged.counts[name] += n

    def counter(self, name: str) -> int:
        with self.lock:
            return self._counts[name]

    def counters(self) -> dict[str, int]:
        with self.lock:
            return dict(self._counts)

    # -- sets --------------------------------------------------------------------------------
    def add(self, name: str, item: str) -> None:
        """Add ``item`` to the set ``name`` when the batch commits."""
        self._staged.sets.append((name, item))

    def members(self, name: str) -> set[str]:
        with self.lock:
            return set(self._sets.get(name, ()))

    def contains(self, name: str, item: str) -> bool:
        with self.lock:
            return item in self._sets.get(name, ())

    # -- transactions ------------------------------------------------------------------------
    def commit(self) -> None:
        staged = self._staged
        with self.lock:
            self._data.update(staged.values)
            self._counts.update(staged.counts)
            for name, item in staged.sets:
                self._sets.setdefault(name, set()).add(item)
        self.rollback()

    def rollback(self) -> None:
        staged = self._staged
        staged.values.clear()
        staged.counts.clear()
        staged.sets.clear()
