"""The at-least-once mover: read a source, write each message where it belongs, and
acknowledge (or commit past) a source message only after its copy was confirmed.

The main thread reads the source, asks the engine's ``decide`` what to do with each
message and hands it to a lane (one per destination: see ``lanes``). Lanes report every
message's outcome; the main thread then acknowledges confirmed messages on a queue
source, or advances a log source over the prefix of messages that are all done. So:

* a message is never acknowledged before its copy was confirmed: whatever happens —
  Ctrl-C, ``kill -9``, a broker restart — it is still in the source, at worst also in
  the target (a duplicate), never lost;
* the number of messages read but not yet acknowledged is bounded by ``window``, so
  after a crash at most ``window`` messages are written a second time;
* a message that cannot be written (unroutable, refused, target missing) stays in the
  source and is reported: a queue simply does not acknowledge it; a log source either
  writes it back to itself (``on_log_failure="keep"``: a DLQ keeps its dead letters),
  moves past it (``"skip"``: an archive file is not changed by reading it) or stops
  there (``"block"``), since a log's position cannot skip one message.

Decisions per message: a ``Route`` (write this message to that lane), ``SKIP`` (done
without writing: a queue acknowledges it, a log moves past it) or ``KEEP`` (leave it in
the source: a queue does not acknowledge it, a log writes it back to its own end via
``keep_route``).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from qctl.backends.capabilities.messaging import Outcome
from qctl.backends.capabilities.transactions import KEEP, SKIP
from qctl.errors import NotFoundError, QctlError
from qctl.jobs.lanes import Lane, Report
from qctl.jobs.model import Counters
from qctl.jobs.sources import MoveSource, SourceBatch
from qctl.messages import Message

__all__ = ["KEEP", "SKIP", "MoveStats", "Mover", "Route"]

#: Messages asked of the source at once.
BATCH = 2000
#: How long the loop waits for outcomes when it cannot read.
_TICK = 0.02

# Delivery states.
_PENDING = 0  # handed to a lane, no outcome yet
_DONE = 1  # resolved: confirmed, skipped, or (queues) left in the source on purpose
_BLOCKED = 2  # a log message that could not be written: the position stops before it
_UNTAKEN = 3  # read but never dispatched (the limit, or a stop): stays in the source


@dataclass(slots=True)
class Route:
    """Write ``message`` to the lane ``key`` (``label`` names the target in reports)."""

    key: Hashable
    message: Message
    label: str
    parked: bool = False


Decision = Route | str
Decide = Callable[[Message], Decision]


@dataclass
class MoveStats:
    """What a move did (this run)."""

    counters: Counters = field(default_factory=Counters)
    per_target: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    #: The user asked to stop.
    stopped: bool = False
    #: The limit was reached.
    limited: bool = False
    #: The source had nothing more.
    exhausted: bool = False
    #: Why the move ended early (a lost connection, a log message that could not be
    #: written), or None.
    problem: BaseException | None = None
    warnings: list[str] = field(default_factory=list)
    #: Deliveries left in a queue source (kept, failed, not taken) at the end.
    held: int = 0
    #: Ids of failed messages (their source position), capped.
    failures: list[dict[str, Any]] = field(default_factory=list)


class _Batch:
    __slots__ = ("handle", "n", "prefix", "states")

    def __init__(self, handle: Any, n: int) -> None:
        self.handle = handle
        self.n = n
        self.prefix = 0
        self.states = [_UNTAKEN] * n


class _Delivery:
    __slots__ = ("batch", "failed", "index", "keep", "message", "route")

    def __init__(self, batch: _Batch, index: int, message: Message) -> None:
        self.batch = batch
        self.index = index
        self.message = message
        self.route: Route | None = None
        self.keep = False
        self.failed = False


class Mover:
    """Runs one move (see the module docstring)."""

    def __init__(
        self,
        source: MoveSource,
        decide: Decide,
        lane_for: Callable[[Hashable, Report], Lane],
        *,
        window: int = 1000,
        limit: int | None = None,
        rate: float | None = None,
        stop: Callable[[], bool] = lambda: False,
        keep_route: Callable[[Message], Route] | None = None,
        on_log_failure: str = "block",
        hold_limit: int | None = None,
        timeout: float = 10.0,
        on_round: Callable[[MoveStats, MoveSource], None] | None = None,
        on_failure: Callable[[Message, str], None] | None = None,
    ) -> None:
        self.source = source
        self.decide = decide
        self.lane_for = lane_for
        self.window = max(1, window)
        self.limit = limit
        self.stop = stop
        self.keep_route = keep_route
        if on_log_failure not in ("block", "keep", "skip"):
            raise ValueError(f"on_log_failure: {on_log_failure!r}")
        self.on_log_failure = on_log_failure
        self.hold_limit = hold_limit
        self.timeout = timeout
        self.on_round = on_round
        self.on_failure = on_failure
        self.stats = MoveStats()
        self.lanes: dict[Hashable, Lane] = {}
        self.pending: collections.deque[_Batch] = collections.deque()
        self.outcomes: collections.deque[tuple[_Delivery, Outcome]] = collections.deque()
        self.wakeup = threading.Event()
        self.unsettled = 0
        self.taken = 0
        self.exhausted = False
        self.to_settle: dict[int, tuple[_Batch, list[int]]] = {}
        self.last_commit = 0.0
        self.last_outcome = time.monotonic()
        self.bucket: Any = None
        if rate:
            from qctl.ratelimit import TokenBucket

            self.bucket = TokenBucket(rate)

    # -- lanes -----------------------------------------------------------------------------
    def _report(self, token: Any, outcome: Outcome) -> None:
        """Called from lane threads: queue the outcome for the main thread."""
        self.outcomes.append((token, outcome))
        self.wakeup.set()

    def _lane(self, key: Hashable) -> Lane:
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lane_for(key, self._report)
            self.lanes[key] = lane
        return lane

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> MoveStats:
        try:
            self._loop()
        finally:
            self._finish()
        return self.stats

    def _loop(self) -> None:
        stats = self.stats
        while True:
            self._absorb()
            try:
                self._settle()
            except QctlError as exc:  # the source went away: what is unacknowledged stays
                stats.problem = stats.problem or exc
            if self.stop() and not stats.stopped:
                stats.stopped = True
            self._check_lanes()
            reading = not (
                self.exhausted or stats.limited or stats.stopped or stats.problem is not None
            )
            if reading and self._hold_full():
                reading = False
            if reading and self.unsettled < self.window:
                want = min(BATCH, self.window - self.unsettled)
                try:
                    batch = self.source.next_batch(want)
                except QctlError as exc:
                    stats.problem = exc
                    continue
                if batch is None:
                    self.exhausted = stats.exhausted = True
                    continue
                if batch.messages:
                    self._dispatch(batch)
                    continue
            if not reading and self.unsettled == 0:
                return
            if any(lane.blocked for lane in self.lanes.values()):
                self.last_outcome = time.monotonic()  # late, not lost: the broker pauses
            if self.unsettled and time.monotonic() - self.last_outcome > self.timeout * 3:
                stats.problem = stats.problem or QctlError(
                    f"no confirms for {self.timeout * 3:g}s; {self.unsettled} messages "
                    "are still in the source"
                )
                return
            self.wakeup.wait(_TICK)
            self.wakeup.clear()

    def _hold_full(self) -> bool:
        """A queue source stops delivering when the messages left in it unacknowledged
        (failed, or kept) fill the prefetch window: end the run there, reported."""
        if self.hold_limit is None or self.source.log:
            return False
        if self.stats.held < self.hold_limit:
            return False
        warning = (
            f"stopped reading after {self.stats.held} messages that stay in the source "
            "(they fill the read window); fix the cause and run again for the rest"
        )
        if warning not in self.stats.warnings:
            self.stats.warnings.append(warning)
        return True

    def _check_lanes(self) -> None:
        for lane in self.lanes.values():
            lane.poll()
            if lane.error is not None and self.stats.problem is None:
                error = lane.error
                # A missing target is reported per message; a lost connection ends the run.
                if not isinstance(error, NotFoundError):
                    self.stats.problem = error

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self, batch: SourceBatch) -> None:
        b = _Batch(batch.handle, len(batch.messages))
        self.pending.append(b)
        stats = self.stats
        groups: dict[Hashable, list[tuple[Message, _Delivery]]] = {}
        handled = 0
        for i, message in enumerate(batch.messages):
            if stats.limited or (stats.stopped and self.bucket is not None):
                break
            handled = i + 1
            if self.bucket is not None and not self.bucket.try_acquire():
                self._flush(groups)
                groups = {}
                while not self.bucket.try_acquire():
                    self.wakeup.wait(max(self.bucket.delay(), 0.001))
                    self.wakeup.clear()
                    self._absorb()
                    self._settle()
                    if self.stop():
                        stats.stopped = True
                        break
                if stats.stopped:
                    handled = i
                    break
            d = _Delivery(b, i, message)
            decision = self.decide(message)
            if decision == SKIP:
                b.states[i] = _DONE
                stats.counters.skipped += 1
                if not self.source.log:
                    self._queue_settle(b, i)
                continue
            if decision == KEEP or not isinstance(decision, Route):
                self._keep(d, groups)
                continue
            d.route = decision
            b.states[i] = _PENDING
            self.unsettled += 1
            groups.setdefault(decision.key, []).append((decision.message, d))
            if not decision.parked:
                self.taken += 1
                if self.limit is not None and self.taken >= self.limit:
                    stats.limited = True
        self._flush(groups)
        if not self.source.log:
            stats.held += b.n - handled  # read but not taken: returned at close

    def _keep(self, d: _Delivery, groups: dict[Hashable, list[tuple[Message, _Delivery]]]) -> None:
        """Leave a message in the source: a queue keeps it unacknowledged; a log writes it
        back to its own end (and is done with it once that is confirmed)."""
        b = d.batch
        if not self.source.log:
            b.states[d.index] = _DONE
            self.stats.counters.kept += 1
            self.stats.held += 1
            return
        if self.keep_route is None:
            raise QctlError("this move cannot leave messages in a log source")
        route = self.keep_route(d.message)
        d.route = route
        d.keep = True
        b.states[d.index] = _PENDING
        self.unsettled += 1
        groups.setdefault(route.key, []).append((route.message, d))

    def _flush(self, groups: dict[Hashable, list[tuple[Message, _Delivery]]]) -> None:
        for key, items in groups.items():
            self._lane(key).submit(items)

    # -- outcomes --------------------------------------------------------------------------
    def _absorb(self) -> None:
        outcomes = self.outcomes
        stats = self.stats
        counters = stats.counters
        regroup: dict[Hashable, list[tuple[Message, _Delivery]]] = {}
        while outcomes:
            d, outcome = outcomes.popleft()
            self.last_outcome = time.monotonic()
            b = d.batch
            route = d.route
            if outcome.ok:
                self.unsettled -= 1
                b.states[d.index] = _DONE
                if d.keep:
                    if not d.failed:  # a failed message written back counts as failed
                        counters.kept += 1
                elif route is not None and route.parked:
                    counters.parked += 1
                else:
                    counters.moved += 1
                    if route is not None:
                        stats.per_target[route.label] = stats.per_target.get(route.label, 0) + 1
                if not self.source.log and not d.keep:
                    self._queue_settle(b, d.index)
                continue
            reason = outcome.error or "failed"
            label = route.label if route is not None else "?"
            self._failed(d.message, f"{label}: {reason}")
            if self.source.log:
                if self.on_log_failure == "keep" and not d.keep:
                    self.unsettled -= 1
                    d.failed = True
                    self._keep(d, regroup)
                    continue
                if self.on_log_failure == "skip":
                    self.unsettled -= 1
                    b.states[d.index] = _DONE
                    continue
                self.unsettled -= 1
                b.states[d.index] = _BLOCKED
                if stats.problem is None:
                    stats.problem = QctlError(
                        f"{d.message.origin()} could not be written ({reason}); the source "
                        "position stays before it"
                    )
                continue
            self.unsettled -= 1
            b.states[d.index] = _DONE  # not acknowledged: it stays in the queue
            stats.held += 1
        if regroup:
            self._flush(regroup)

    def _failed(self, message: Message, reason: str) -> None:
        stats = self.stats
        stats.counters.failed += 1
        stats.errors[reason] = stats.errors.get(reason, 0) + 1
        if len(stats.failures) < 1000:
            stats.failures.append({"source": message.origin(), "reason": reason})
        if self.on_failure is not None:
            self.on_failure(message, reason)

    def _queue_settle(self, b: _Batch, index: int) -> None:
        entry = self.to_settle.get(id(b))
        if entry is None:
            self.to_settle[id(b)] = (b, [index])
        else:
            entry[1].append(index)

    def _settle(self, final: bool = False) -> None:
        source = self.source
        if not source.log:
            if self.to_settle:
                todo, self.to_settle = self.to_settle, {}
                for b, indices in todo.values():
                    source.settle(b.handle, indices)
            while self.pending and _resolved(self.pending[0]):
                self.pending.popleft()
        else:
            now = time.monotonic()
            if final or now - self.last_commit >= source.commit_every:
                self.last_commit = now
                self._advance()
        if self.on_round is not None:
            self.on_round(self.stats, source)

    def _advance(self) -> None:
        pending = self.pending
        while pending:
            b = pending[0]
            start = b.prefix
            states = b.states
            while b.prefix < b.n and states[b.prefix] == _DONE:
                b.prefix += 1
            if b.prefix > start:
                self.source.advance(b.handle, b.prefix)
            if b.prefix < b.n:
                return
            pending.popleft()

    # -- the end ---------------------------------------------------------------------------
    def _finish(self) -> None:
        """Close the lanes, take their last outcomes, acknowledge, close the source."""
        for lane in self.lanes.values():
            lane.close(self.timeout + 5)
        # A lane that stopped for good after its last outcomes were in (its messages
        # failed first, then its connection was given up) still ends the run with it.
        self._check_lanes()
        for lane in self.lanes.values():
            self.stats.warnings.extend(w for w in lane.warnings if w not in self.stats.warnings)
        self._absorb()
        try:
            self._settle(final=True)
        except QctlError as exc:
            self.stats.problem = self.stats.problem or exc
        for warning in self.source.warnings:
            if warning not in self.stats.warnings:
                self.stats.warnings.append(warning)


def _resolved(b: _Batch) -> bool:
    return all(s != _PENDING for s in b.states)
