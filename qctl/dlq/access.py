"""Opening a DLQ: its backend, its model (log or queue), its group, and readers.

Every ``qctl dlq`` command starts here, so a DLQ reference means the same to all of them:
``kafka:TOPIC`` (what comes after the group ``qctl.dlq.<topic>``) or
``rabbitmq:queue/NAME`` (what is in the queue).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from qctl.backends.base import Backend, require
from qctl.backends.capabilities.deadletters import LOG, DeadLetterTraits, SupportsDeadLetters
from qctl.backends.capabilities.groups import SupportsConsumerGroups, TopicPartition
from qctl.backends.capabilities.messaging import (
    ConsumeRequest,
    ConsumeSession,
    SupportsConsume,
    SupportsProduce,
)
from qctl.errors import UsageError
from qctl.messages import Message
from qctl.refs import Ref, parse_ref

BackendFor = Callable[[str], Backend]


@dataclass
class Window:
    """A log DLQ's extent for one job: the group's position and the end, per partition."""

    start: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return sum(max(self.end[p] - self.start.get(p, self.end[p]), 0) for p in self.end)

    def to_json(self) -> dict[str, dict[str, int]]:
        return {
            "start": {str(p): o for p, o in self.start.items()},
            "end": {str(p): o for p, o in self.end.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> Window:
        data = data or {}
        return cls(
            start={int(p): int(o) for p, o in (data.get("start") or {}).items()},
            end={int(p): int(o) for p, o in (data.get("end") or {}).items()},
        )


class Dlq:
    """One dead-letter queue and the capabilities it needs."""

    def __init__(self, text: str, backend_for: BackendFor) -> None:
        self.ref = parse_dlq_ref(text)
        self.backend: Backend = backend_for(self.ref.backend)
        self.backend_for = backend_for
        self.dead_letters = require(self.backend, SupportsDeadLetters, "dead-letter queues")
        self.model = self.dead_letters.dead_letter_model()
        self.group = self.dead_letters.dead_letter_group(self.ref.name)

    @property
    def log(self) -> bool:
        return self.model == LOG

    @property
    def name(self) -> str:
        return str(self.ref)

    def consumer(self) -> SupportsConsume:
        return require(self.backend, SupportsConsume, "consume")

    def producer(self) -> SupportsProduce:
        return require(self.backend, SupportsProduce, "produce")

    def traits(self) -> DeadLetterTraits:
        return self.dead_letters.dead_letter_traits(self.ref)

    def window(self) -> Window:
        """Logs: from the group's committed offsets (else the log start) to the end now."""
        groups = require(self.backend, SupportsConsumerGroups, "consumer groups")
        counts = groups.topic_partitions([self.ref.name])
        if self.ref.name not in counts:
            from qctl.errors import NotFoundError

            raise NotFoundError(
                f"topic {self.ref.name!r} does not exist",
                "`qctl dlq list` lists the dead-letter queues",
            )
        parts = range(counts[self.ref.name])
        if self.ref.partition is not None:
            parts = range(self.ref.partition, self.ref.partition + 1)
        tps = [TopicPartition(self.ref.name, p) for p in parts]
        offsets = groups.partition_offsets(tps)
        committed = groups.committed_offsets([self.group or ""]).get(self.group or "", {})
        window = Window()
        for tp in tps:
            po = offsets.get(tp)
            if po is None:
                continue
            done = committed.get(tp)
            window.start[tp.partition] = min(
                max(done if done is not None else po.log_start, po.log_start), po.log_end
            )
            window.end[tp.partition] = po.log_end
        return window

    def peek_session(self) -> ConsumeSession:
        """A reader that changes nothing: a log from the group's position without
        committing; a queue with get-and-requeue (the backend warns where that costs
        delivery attempts)."""
        if self.log:
            window = self.window()
            request = ConsumeRequest(start_offsets=window.start, end_offsets=window.end)
        else:
            request = ConsumeRequest(ack=False)
        return self.consumer().open_consumer(self.ref, request)


def parse_dlq_ref(text: str) -> Ref:
    ref = parse_ref(text)
    if ref.backend == "rabbitmq" and ref.kind != "queue":
        raise UsageError(
            f"{text!r} is not a queue", "a RabbitMQ DLQ is a queue: rabbitmq:queue/NAME"
        )
    return ref


def read_messages(
    session: ConsumeSession, max_messages: int | None, batch: int = 1000
) -> Iterator[Message]:
    """Every message of a session (up to ``max_messages``)."""
    seen = 0
    while max_messages is None or seen < max_messages:
        want = batch if max_messages is None else min(batch, max_messages - seen)
        got = session.next_batch(want)
        if got is None:
            return
        for message in got.messages():
            yield message
            seen += 1
            if max_messages is not None and seen >= max_messages:
                return
