"""The at-least-once mover's rules, with in-memory sources and lanes (no broker involved):
acknowledge only what was confirmed, never step a log's position over a message that is
not done, keep what must stay, bound what is in flight."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

import pytest

from qctl.backends.capabilities.messaging import OK, Outcome
from qctl.errors import QctlError
from qctl.jobs.lanes import Report
from qctl.jobs.mover import KEEP, SKIP, Mover, Route
from qctl.jobs.sources import SourceBatch
from qctl.messages import Message


class QueueSource:
    log = False
    commit_every = 0.0

    def __init__(self, n: int, batch: int = 7) -> None:
        self.messages = [
            Message(str(i).encode(), source={"queue": "q", "offset": i}) for i in range(n)
        ]
        self.pos = 0
        self.batch = batch
        self.acked: list[int] = []
        self.warnings: list[str] = []
        self.max_unacked = 0

    def next_batch(self, limit: int) -> SourceBatch | None:
        if self.pos >= len(self.messages):
            return None
        take = self.messages[self.pos : self.pos + min(limit, self.batch)]
        batch = SourceBatch(take, self.pos)
        self.pos += len(take)
        self.max_unacked = max(self.max_unacked, self.pos - len(self.acked))
        return batch

    def settle(self, handle: Any, indices: list[int]) -> None:
        for i in indices:
            n = handle + i
            assert n not in self.acked, "acknowledged twice"
            self.acked.append(n)

    def advance(self, handle: Any, count: int) -> None:
        raise AssertionError("a queue has no position")

    def checkpoint(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return


class LogSource(QueueSource):
    log = True

    def __init__(self, n: int, batch: int = 7) -> None:
        super().__init__(n, batch)
        self.position = 0

    def settle(self, handle: Any, indices: list[int]) -> None:
        raise AssertionError("a log is not acknowledged per message")

    def advance(self, handle: Any, count: int) -> None:
        assert handle + count >= self.position, "a position never goes back"
        self.position = handle + count

    def checkpoint(self) -> dict[str, Any]:
        return {"position": self.position}


class Lane:
    """Confirms in a background thread, newest first, failing values in ``bad``."""

    def __init__(self, report: Report, bad: set[int], written: list[int]) -> None:
        self.label = "lane"
        self.error: BaseException | None = None
        self.warnings: list[str] = []
        self.blocked = False
        self.report = report
        self.bad = bad
        self.written = written

    def submit(self, items: list[tuple[Message, Any]]) -> None:
        def confirm() -> None:
            for message, token in reversed(items):
                n = int(message.value or b"0")
                if n in self.bad:
                    self.report(token, Outcome(ok=False, error="refused"))
                else:
                    self.written.append(n)
                    self.report(token, OK)

        threading.Thread(target=confirm).start()

    def poll(self) -> None:
        return

    def close(self, timeout: float) -> None:
        return


def mover(
    source: Any, decide: Any, bad: set[int] | None = None, **kw: Any
) -> tuple[Mover, list[int]]:
    written: list[int] = []

    def lanes(key: Hashable, report: Report) -> Lane:
        return Lane(report, bad or set(), written)

    return Mover(source, decide, lanes, timeout=5, **kw), written


def route(m: Message) -> Route:
    return Route(("lane",), m, "target")


def test_queue_acks_exactly_the_confirmed_messages() -> None:
    source = QueueSource(100)
    m, written = mover(source, route, bad={3, 50}, window=10)
    stats = m.run()
    assert sorted(source.acked) == sorted(written)
    assert set(range(100)) - set(source.acked) == {3, 50}
    assert stats.counters.moved == 98 and stats.counters.failed == 2
    assert stats.held == 2
    assert source.max_unacked <= 10 + 2 + 7  # window + held + one batch in hand


def test_queue_keeps_and_skips() -> None:
    source = QueueSource(20)

    def decide(msg: Message) -> Any:
        n = int(msg.value or b"0")
        return KEEP if n % 2 else (SKIP if n % 4 == 0 else route(msg))

    stats, _ = mover(source, decide)[0].run(), None
    assert stats.counters.kept == 10
    assert stats.counters.skipped == 5
    assert stats.counters.moved == 5
    assert all(n % 2 == 0 for n in source.acked)  # skipped ones are acknowledged too


def test_log_position_never_passes_a_message_that_failed() -> None:
    source = LogSource(50)
    stats = mover(source, route, bad={17})[0].run()
    assert source.position == 17
    assert isinstance(stats.problem, QctlError)


def test_log_keeps_failed_messages_by_writing_them_back() -> None:
    source = LogSource(30)
    kept: list[int] = []

    def keep_route(msg: Message) -> Route:
        kept.append(int(msg.value or b"0"))
        return Route(("lane",), Message(b"100" + (msg.value or b"")), "back")

    m, _written = mover(source, route, bad={5, 6}, keep_route=keep_route, on_log_failure="keep")
    stats = m.run()
    assert source.position == 30
    assert kept == [5, 6] or sorted(kept) == [5, 6]
    assert stats.counters.failed == 2 and stats.counters.kept == 0
    assert stats.problem is None


def test_limit_and_stop() -> None:
    source = LogSource(100)
    stats = mover(source, route, limit=12)[0].run()
    assert stats.limited and stats.counters.moved == 12
    assert source.position == 12
    stop = threading.Event()
    stop.set()
    source = QueueSource(100)
    stats = mover(source, route, stop=stop.is_set)[0].run()
    assert stats.stopped and stats.counters.moved == 0


def test_a_lane_that_cannot_start_fails_its_messages() -> None:
    source = QueueSource(10)

    class Dead:
        label = "dead"
        blocked = False

        def __init__(self, report: Report) -> None:
            self.warnings: list[str] = []
            self.report = report
            self.error: BaseException | None = None

        def submit(self, items: list[tuple[Message, Any]]) -> None:
            for _, token in items:
                self.report(token, Outcome(ok=False, error="queue 'x' does not exist"))

        def poll(self) -> None:
            return

        def close(self, timeout: float) -> None:
            return

    stats = Mover(source, route, lambda key, report: Dead(report), timeout=5).run()
    assert source.acked == []
    assert stats.counters.failed == 10


@pytest.mark.parametrize("bad_every", [2, 3])
def test_hold_limit_stops_a_queue_that_fills_with_failures(bad_every: int) -> None:
    source = QueueSource(200, batch=10)
    bad = {n for n in range(200) if n % bad_every == 0}
    stats = mover(source, route, bad=bad, window=10, hold_limit=15)[0].run()
    assert stats.problem is None and stats.counters.failed >= 15
    assert any("stay in the source" in w for w in stats.warnings)
    assert source.pos < 200  # it stopped reading
    assert set(source.acked).isdisjoint(bad)
