"""A service's own database: what it has handled, its stock, its ledger.

Changes made while a batch is handled are *staged*; they become real only after the
batch's output events were confirmed by the broker (``commit``), just before the input
is committed or acknowledged. A consumer that crashes in between rolls them back: the
redelivered input is then handled again and writes the same events (same derived ids)
again, which downstream services drop as duplicates. That is at-least-once delivery
with idempotent handlers, the only guarantee a real pipeline can give across a crash.

The store outlives a consumer crash and the process, like a database: each commit
appends what it changed (values and sets; counters are statistics of one process) to a
journal file *before* the input is committed, and ``qctl orders run --resume`` replays the
journal. Without that, a resumed notification service would have forgotten which events
it handled and notify twice for an order redriven from a DLQ. Each consumer thread stages
its own batch (the payment service has two: its topic and its retries).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any

from qctl.errors import QctlError

_MISSING = object()


class _Staged(threading.local):
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        self.sets: list[tuple[str, str]] = []


class Store:
    """Committed state plus, per thread, the staged changes of its batch in progress."""

    def __init__(self, journal: Path | None = None, *, resume: bool = False) -> None:
        """``journal``: the file that keeps committed state across processes; ``resume``
        replays it, otherwise a new run starts it afresh."""
        self._data: dict[str, Any] = {}
        self._counts: Counter[str] = Counter()
        self._sets: dict[str, set[str]] = {}
        self._staged = _Staged()
        self.lock = threading.Lock()
        self._journal: IO[str] | None = None
        if journal is not None:
            self._open(journal, resume)

    def _open(self, journal: Path, resume: bool) -> None:
        try:
            journal.parent.mkdir(parents=True, exist_ok=True)
            if resume and journal.exists():
                self._replay(journal)
            self._journal = journal.open("a" if resume else "w", encoding="utf-8")
        except OSError as exc:
            raise QctlError(
                f"cannot use the service state file {journal}: {exc.strerror}",
                "make the directory writable, or point QCTL_STATE_DIR at one that is",
            ) from None

    def _replay(self, journal: Path) -> None:
        with journal.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    break  # a line cut short by a crash: its batch was never committed
                self._data.update(entry.get("values", {}))
                for name, item in entry.get("sets", []):
                    self._sets.setdefault(name, set()).add(item)

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
            if self._journal is not None and (staged.values or staged.sets):
                entry = {"values": staged.values, "sets": staged.sets}
                self._journal.write(json.dumps(entry, default=sorted) + "\n")
                self._journal.flush()  # in the OS before the input is committed
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

    def close(self) -> None:
        with self.lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
