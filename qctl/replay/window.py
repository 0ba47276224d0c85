"""The window a replay covers, resolved once when the job is created.

``--from``/``--until`` as users give them (offsets, ``-N``, times, ``-15m``, earliest,
latest) become concrete offsets per partition right away and are stored in the job, so
a resume after Ctrl-C or ``kill -9`` finishes exactly the window the user saw in the
plan — not a window that moved on with the clock or with new messages.

Kafka: offsets per partition (times through the broker's offsets-for-times, clamped to
the log: a time past the end maps to the end, never to -1). Stream queues keep their
``x-stream-offset`` position (first, last, next, an offset or a time); their end is an
offset (a time is resolved to the first offset at or after it by reading) or, without
``--until``, the end as it is when the replay gets there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qctl.backends.capabilities.groups import SupportsConsumerGroups, TopicPartition
from qctl.backends.capabilities.messaging import ConsumeRequest, Position, SupportsConsume
from qctl.errors import NotFoundError, UsageError
from qctl.refs import Ref
from qctl.timespec import to_millis


@dataclass
class KafkaWindow:
    """Per partition: first offset to replay and the exclusive end."""

    start: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(max(self.end[p] - self.start[p], 0) for p in self.end)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": {str(p): o for p, o in sorted(self.start.items())},
            "end": {str(p): o for p, o in sorted(self.end.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> KafkaWindow:
        return cls(
            start={int(p): int(o) for p, o in (data.get("start") or {}).items()},
            end={int(p): int(o) for p, o in (data.get("end") or {}).items()},
        )


def kafka_window(
    groups: SupportsConsumerGroups, source: Ref, start: Position | None, end: Position | None
) -> KafkaWindow:
    counts = groups.topic_partitions([source.name])
    if source.name not in counts:
        raise NotFoundError(
            f"topic {source.name!r} does not exist",
            "check the name (`qctl topology export -b kafka` lists topics)",
        )
    parts = list(range(counts[source.name]))
    if source.partition is not None:
        if source.partition not in parts:
            raise NotFoundError(f"topic {source.name!r} has no partition {source.partition}")
        parts = [source.partition]
    tps = [TopicPartition(source.name, p) for p in parts]
    offsets = groups.partition_offsets(tps)
    window = KafkaWindow()
    starts = _resolve(groups, tps, offsets, start or Position("earliest"), "--from", window)
    ends = _resolve(groups, tps, offsets, end or Position("latest"), "--until", window)
    for tp in tps:
        if tp not in offsets:
            continue
        window.start[tp.partition] = starts[tp]
        window.end[tp.partition] = max(ends[tp], starts[tp])
    return window


def _resolve(
    groups: SupportsConsumerGroups,
    tps: list[TopicPartition],
    offsets: dict[TopicPartition, Any],
    pos: Position,
    option: str,
    window: KafkaWindow,
) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    kind = pos.kind
    if kind == "timestamp":
        assert pos.instant is not None
        millis = to_millis(pos.instant)
        found = groups.offsets_for_times({tp: millis for tp in tps if tp in offsets})
    for tp in tps:
        po = offsets.get(tp)
        if po is None:
            continue
        low, high = po.log_start, po.log_end
        if kind in ("earliest", "first"):
            value = low
        elif kind in ("latest", "last", "next"):
            value = high
        elif kind == "offset":
            value = int(pos.value or 0)
            if value < low or value > high:
                clamped = min(max(value, low), high)
                window.warnings.append(
                    f"partition {tp.partition}: {option} {value} is outside {low}-{high}; "
                    f"using {clamped}"
                )
                value = clamped
        elif kind == "relative":
            value = max(low, high - int(pos.value or 0))
        elif kind == "timestamp":
            at = found.get(tp)
            value = high if at is None else max(at, low)
        else:
            raise UsageError(f"{option} {pos} does not apply to a replay", _HINT)
        out[tp] = value
    return out


_HINT = "use earliest, latest, an offset, -N, an ISO-8601 time or -DURATION"


def stream_end_offset(
    consumer: SupportsConsume, source: Ref, end: Position | None, idle: float = 2.0
) -> int | None:
    """A stream's --until as an offset: offsets stay, a time becomes the offset of the
    first message at or after it (found by attaching there), None: no fixed end."""
    if end is None:
        return None
    if end.kind == "offset":
        return int(end.value or 0)
    if end.kind != "timestamp":
        raise UsageError(
            f"--until {end} does not apply to a stream queue", "give an offset or a time"
        )
    session = consumer.open_consumer(source, ConsumeRequest(start=end, prefetch=1, idle_end=idle))
    try:
        while True:
            batch = session.next_batch(1)
            if batch is None:
                return None
            for message in batch.messages():
                if message.offset is not None:
                    return int(message.offset)
    finally:
        session.close()
