"""Recorded lag data for layout tests: deterministic snapshots made by the real engine.

Scripted backends replay offsets and queue statistics step by step, and the real
``LagCollector`` (with a fixed clock) turns them into snapshots and a history, so the
SVG snapshots and unit tests see exactly what the live view would, without a broker's
timing in the picture. Tests about data use the real brokers instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from qctl.backends.base import Backend
from qctl.backends.capabilities.groups import (
    GroupDescription,
    GroupListing,
    GroupMember,
    MessageTimestamp,
    PartitionOffsets,
    Position,
    TopicPartition,
)
from qctl.backends.capabilities.queues import QueueRates, QueueStats
from qctl.lag.collect import LagCollector, Selection
from qctl.lag.history import HistoryStore
from qctl.lag.model import BackendError, LagSnapshot

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STEP = 10.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedKafka:
    """Consumer groups whose offsets move a fixed amount per step."""

    clock: Clock
    step: int = 0
    name: str = "kafka"
    closed: list[bool] = field(default_factory=list)

    # Partition -> (log_start, end at step 0, appended per step)
    topics: Mapping[str, int] = field(default_factory=lambda: {"orders": 3, "payments": 2})

    def target(self) -> str:
        return "kafka-1.example:9092"

    def close(self) -> None:
        self.closed.append(True)

    def _end(self, tp: TopicPartition) -> int:
        if tp.topic == "orders":
            return 1000 + self.step * (40 + 10 * tp.partition)
        return 500 + self.step * 5

    def list_groups(self) -> list[GroupListing]:
        return [
            GroupListing("billing", "Empty"),
            GroupListing("orders-service", "Stable"),
            GroupListing("payments-audit", "Stable"),
            GroupListing("reporting", "Empty"),
        ]

    def describe_groups(self, group_ids: Iterable[str]) -> dict[str, GroupDescription]:
        members = {
            "orders-service": [
                GroupMember(
                    "orders-1-6c1f", "orders-1", "/10.0.0.11", None, [TopicPartition("orders", 0)]
                ),
                GroupMember(
                    "orders-2-9a0e",
                    "orders-2",
                    "/10.0.0.12",
                    None,
                    [TopicPartition("orders", 1), TopicPartition("orders", 2)],
                ),
            ],
            "payments-audit": [
                GroupMember(
                    "audit-1-77b2",
                    "audit-1",
                    "/10.0.0.21",
                    None,
                    [TopicPartition("payments", 0), TopicPartition("payments", 1)],
                )
            ],
        }
        return {
            g: GroupDescription(
                g, "Stable" if g in members else "Empty", members.get(g, []), "range", 1
            )
            for g in group_ids
        }

    def committed_offsets(
        self, group_ids: Iterable[str]
    ) -> dict[str, dict[TopicPartition, int | None]]:
        s = self.step
        out: dict[str, dict[TopicPartition, int | None]] = {}
        for g in group_ids:
            if g == "orders-service":  # consuming, but slower than producing: WARN
                out[g] = {TopicPartition("orders", p): 900 + s * (30 + 10 * p) for p in range(3)}
            elif g == "payments-audit":  # keeping up exactly
                out[g] = {TopicPartition("payments", p): 500 + s * 5 for p in range(2)}
            elif g == "reporting":  # stopped long ago; retention passed it on p0
                out[g] = {TopicPartition("orders", 0): 200, TopicPartition("orders", 1): 950}
            elif g == "billing":  # never committed payments/1
                out[g] = {TopicPartition("payments", 0): 480}
        return out

    def topic_partitions(self, topics: Iterable[str]) -> dict[str, int]:
        return {t: self.topics[t] for t in topics if t in self.topics}

    def partition_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, PartitionOffsets]:
        out = {}
        for tp in partitions:
            start = 300 if tp == TopicPartition("orders", 0) else 0
            end = self._end(tp)
            out[tp] = PartitionOffsets(start, end, end)
        return out

    def offsets_for_times(
        self, requests: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        return dict.fromkeys(requests)

    def message_timestamps(
        self, positions: Iterable[Position], isolation: str = "read_uncommitted"
    ) -> dict[Position, MessageTimestamp]:
        out = {}
        for pos in positions:
            age = (self._end(pos.tp) - pos.offset) * 0.5  # two messages a second
            out[pos] = MessageTimestamp(int((self.clock.now - age) * 1000), pos.offset, True)
        return out


@dataclass
class ScriptedRabbit:
    clock: Clock
    step: int = 0
    name: str = "rabbitmq"
    down: bool = False

    def target(self) -> str:
        return "rabbit-1.example:5672"

    def close(self) -> None:
        pass

    def queue_stats(self, names: Iterable[str] | None = None) -> list[QueueStats]:
        if self.down:
            from qctl.errors import UnreachableError

            raise UnreachableError(
                "RabbitMQ management API at http://rabbit-1.example:15672 is unreachable: "
                "[Errno 111] Connection refused",
                "check management_url",
            )
        s = self.step
        return [
            QueueStats(
                "/",
                "emails",
                "quorum",
                "running",
                max(400 - 40 * s, 0),
                10,
                3,
                0.92,
                QueueRates(20.0, 24.0, 24.0, 0.0, -4.0),
            ),
            QueueStats(
                "/",
                "invoices",
                "classic",
                "running",
                120 + 15 * s,
                0,
                0,
                None,
                QueueRates(1.5, None, None, None, 1.5),
                T0 - 600.0,
            ),
            QueueStats(
                "/",
                "emails.dlq",
                "classic",
                "running",
                7 + s,
                0,
                0,
                None,
                QueueRates(None, None, None, None, 0.1),
                None,
                True,
                "bound to dead-letter exchange 'dlx' of queue 'emails'",
            ),
        ]


class RecordedSource:
    """A snapshot source that replays frames taken from scripted backends."""

    def __init__(self, frames: list[LagSnapshot], history: HistoryStore, context: str) -> None:
        self.frames = frames
        self.history = history
        self.context = context
        self.calls = 0

    def snapshot(self) -> LagSnapshot:
        frame = self.frames[min(self.calls, len(self.frames) - 1)]
        self.calls += 1
        return frame

    def close(self) -> None:
        pass


def record(steps: int = 8, rabbit_down_at_end: bool = False) -> RecordedSource:
    """Run the real collector over ``steps`` scripted samples; replay the last one."""
    clock = Clock()
    kafka = ScriptedKafka(clock)
    rabbit = ScriptedRabbit(clock)
    backends: dict[str, Backend] = {"kafka": kafka, "rabbitmq": rabbit}  # type: ignore[dict-item]
    collector = LagCollector(
        context="staging",
        backends={name: (lambda b=b: b) for name, b in backends.items()},
        targets={name: b.target() for name, b in backends.items()},
        selection=Selection(),
        history=HistoryStore(),
        clock=clock,
    )
    snap = None
    for i in range(steps):
        kafka.step = rabbit.step = i
        clock.now = T0 + i * STEP
        if rabbit_down_at_end and i == steps - 1:
            rabbit.down = True
        snap = collector.snapshot()
    assert snap is not None
    return RecordedSource([snap], collector.history, "staging")


def with_error(snap: LagSnapshot, backend: str, error: str) -> LagSnapshot:
    snap.errors.append(BackendError(backend, snap.targets.get(backend, "?"), error, 3))
    return snap
