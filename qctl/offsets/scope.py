"""Which partitions a command acts on: ``--topic T``, ``--topic T:0,2``, ``kafka:T/1``.

``T:P,P`` is the syntax of Kafka's own tool, so commands copied from runbooks work; the
resource-reference syntax of the rest of qctl (``kafka:T``, ``kafka:T/2``) is accepted
too. The two do not collide: after ``kafka:`` a reference has a topic name, while the
partition list of ``T:P,P`` holds only digits and commas.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qctl.backends.capabilities.groups import TopicPartition
from qctl.errors import UsageError
from qctl.refs import parse_ref

_PARTITION_LIST_RE = re.compile(r"^\d+(,\d+)*$")
TOPIC_HINT = "write --topic TOPIC, --topic TOPIC:0,1 or --topic kafka:TOPIC/2"


@dataclass(frozen=True)
class TopicSpec:
    """A topic, and the partitions of it that were named (None: all of them)."""

    topic: str
    partitions: tuple[int, ...] | None = None

    def __str__(self) -> str:
        if self.partitions is None:
            return self.topic
        return f"{self.topic}:{','.join(map(str, self.partitions))}"


def parse_topic_spec(text: str) -> TopicSpec:
    raw = text.strip()
    if not raw:
        raise UsageError("empty --topic", TOPIC_HINT)
    name, sep, rest = raw.rpartition(":")
    if sep and _PARTITION_LIST_RE.match(rest):
        return TopicSpec(_topic_name(name, raw), tuple(sorted({int(p) for p in rest.split(",")})))
    if raw.startswith("kafka:"):
        ref = parse_ref(raw)
        partitions = None if ref.partition is None else (ref.partition,)
        return TopicSpec(ref.name, partitions)
    if sep:
        raise UsageError(f"partitions {rest!r} in --topic {raw!r} are not numbers", TOPIC_HINT)
    return TopicSpec(_topic_name(raw, raw), None)


def _topic_name(name: str, raw: str) -> str:
    name = name.removeprefix("kafka:")
    if not name:
        raise UsageError(f"--topic {raw!r} names no topic", TOPIC_HINT)
    return parse_ref(f"kafka:{name}").name


def merge_specs(specs: Iterable[TopicSpec]) -> list[TopicSpec]:
    """One spec per topic: a whole topic wins over named partitions of it."""
    merged: dict[str, set[int] | None] = {}
    for spec in specs:
        if spec.topic in merged and merged[spec.topic] is None:
            continue
        if spec.partitions is None:
            merged[spec.topic] = None
        else:
            merged.setdefault(spec.topic, set())
            existing = merged[spec.topic]
            assert existing is not None
            existing.update(spec.partitions)
    return [
        TopicSpec(topic, None if parts is None else tuple(sorted(parts)))
        for topic, parts in merged.items()
    ]


def expand(specs: Iterable[TopicSpec], counts: Mapping[str, int]) -> list[TopicPartition]:
    """The partitions the specs name, given each topic's partition count.

    Fails (bad input, exit 2) naming every topic or partition that does not exist, the
    way Kafka's tool checks all partitions before planning anything.
    """
    out: list[TopicPartition] = []
    missing_topics: list[str] = []
    missing_partitions: list[str] = []
    for spec in specs:
        count = counts.get(spec.topic)
        if count is None:
            missing_topics.append(spec.topic)
            continue
        wanted = range(count) if spec.partitions is None else spec.partitions
        for p in wanted:
            if p >= count:
                missing_partitions.append(f"{spec.topic}/{p}")
            else:
                out.append(TopicPartition(spec.topic, p))
    if missing_topics:
        raise UsageError(
            f"topic {', '.join(repr(t) for t in missing_topics)} does not exist",
            "check the name (topic names are case-sensitive)",
        )
    if missing_partitions:
        raise UsageError(
            f"partition {', '.join(missing_partitions)} does not exist",
            "check the partition numbers (they start at 0)",
        )
    return sorted(set(out))
