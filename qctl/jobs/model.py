"""The job record: what a job moves, how far it got, and how it ended.

A job's state file is the answer to "where was I?" after Ctrl-C, a crash or ``kill -9``:
it holds the options needed to run the job again exactly as first started (the window
of a replay is fixed at creation), the running totals and, for at-least-once sources
without a broker-side position, the checkpoint a resume continues from. Exactly-once
jobs keep their real position on the broker (the committed offsets of their consumer
group), so their checkpoint is informative only.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

#: Job states. ``running`` without a live process holding its lock was killed (shown
#: as ``killed``).
RUNNING = "running"
INTERRUPTED = "interrupted"
FAILED = "failed"
PARTIAL = "partial"
COMPLETED = "completed"
STATES = (RUNNING, INTERRUPTED, FAILED, PARTIAL, COMPLETED)

EXACTLY_ONCE = "exactly-once"
AT_LEAST_ONCE = "at-least-once"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Counters:
    """Running totals of a job (over all its runs)."""

    #: Written to the target and confirmed (and, for the source, acknowledged or
    #: committed past).
    moved: int = 0
    #: Could not be written (rejected, unroutable, target missing); they stay in the
    #: source and are listed in the ledger.
    failed: int = 0
    #: Consumed past without writing (filtered out where the source is a log copy).
    skipped: int = 0
    #: Moved to the parking lot by the loop guard.
    parked: int = 0
    #: Left in the source on purpose (not selected by --where, or rejected).
    kept: int = 0
    #: Messages still to go, when known.
    remaining: int | None = None

    def add(self, other: Counters) -> None:
        self.moved += other.moved
        self.failed += other.failed
        self.skipped += other.skipped
        self.parked += other.parked
        self.kept += other.kept


@dataclass
class Job:
    """One job's state file (``<state dir>/jobs/<id>.json``); stable JSON field names."""

    id: str
    #: redrive, drain, purge, replay.
    kind: str
    source: str
    target: str | None
    #: Everything needed to run the job again as it was started.
    options: dict[str, Any] = field(default_factory=dict)
    state: str = RUNNING
    guarantee: str = AT_LEAST_ONCE
    counters: Counters = field(default_factory=Counters)
    #: Where an at-least-once resume continues (e.g. a stream offset, a file line).
    checkpoint: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    #: How often the job was started (1 + resumes).
    runs: int = 0
    pid: int | None = None
    host: str | None = None
    #: Why the last run stopped, when it did not complete.
    error: str | None = None
    #: Failure reasons over all runs and how often each happened.
    errors: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        counters = Counters(**(data.get("counters") or {}))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["counters"] = counters
        return cls(**known)

    def touch(self) -> None:
        self.updated = now_iso()

    def claim(self) -> None:
        """Mark the job as run by this process."""
        self.state = RUNNING
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.runs += 1
        self.error = None
        self.touch()

    def add_errors(self, errors: dict[str, int]) -> None:
        for reason, n in errors.items():
            self.errors[reason] = self.errors.get(reason, 0) + n
