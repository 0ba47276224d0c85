"""Kafka dead-letter topics (``SupportsDeadLetters``).

A dead-letter topic is a log: nothing is ever consumed away. What counts as "in" the
DLQ is what comes after the committed offsets of the consumer group qctl keeps for it,
``qctl.dlq.<topic>`` (the context's ``dlq_group`` setting may name another pattern, with
``{topic}`` standing for the topic). Redrive, drain and purge advance that group; a
topic's other consumers are never touched. Without a commit yet, everything from the
start of the log counts.

Counts, ages and the inflow rate come from one batch of offset requests and one short
read of the messages at the group's position and at the end of each partition.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Mapping
from typing import Any, cast

from qctl.backends.capabilities.deadletters import LOG, DeadLetterQueue, DeadLetterTraits
from qctl.backends.capabilities.groups import Position, SupportsConsumerGroups, TopicPartition
from qctl.backends.kafka.core import KafkaCore
from qctl.errors import NotFoundError, QctlError
from qctl.refs import Ref

log = logging.getLogger(__name__)

#: Dead-letter topic naming conventions (Spring's ``.DLT`` / ``-dlt``, ``.dlq``, ...),
#: matched without regard to case; the context's ``dlq_patterns`` add more.
DEFAULT_DLQ_PATTERNS = ("*.dlq", "*-dlq", "*_dlq", "*.dlt", "*-dlt", "*.parking")
DEFAULT_GROUP = "qctl.dlq.{topic}"
#: The inflow rate is averaged over this many seconds.
INFLOW_WINDOW = 300


class KafkaDeadLetters(KafkaCore):
    """``SupportsDeadLetters`` for Kafka."""

    def dead_letter_model(self) -> str:
        return LOG

    def dead_letter_traits(self, dlq: Ref) -> DeadLetterTraits:
        return DeadLetterTraits()

    def dead_letter_group(self, name: str) -> str:
        pattern = str(self.settings.get("dlq_group") or DEFAULT_GROUP)
        return pattern.replace("{topic}", name)

    def _dlq_patterns(self) -> list[str]:
        extra = self.settings.get("dlq_patterns") or []
        if isinstance(extra, str):
            extra = [p.strip() for p in extra.split(",") if p.strip()]
        return [*DEFAULT_DLQ_PATTERNS, *(str(p) for p in extra)]

    def dead_letter_queues(
        self, declared: Mapping[str, str], names: list[str] | None = None
    ) -> list[DeadLetterQueue]:
        groups = cast(SupportsConsumerGroups, self)
        metadata = self.admin().list_topics(timeout=self.timeout)
        topics = {
            name: len(t.partitions)
            for name, t in metadata.topics.items()
            if t.error is None and not name.startswith("__")
        }
        chosen: dict[str, str] = {}
        if names is not None:
            for name in names:
                if name not in topics:
                    raise NotFoundError(
                        f"topic {name!r} does not exist on kafka at {self.bootstrap}",
                        "`qctl dlq list -b kafka` lists the dead-letter topics",
                    )
                chosen[name] = _why(name, declared, self._dlq_patterns()) or "named"
        else:
            patterns = self._dlq_patterns()
            for name in topics:
                why = _why(name, declared, patterns)
                if why:
                    chosen[name] = why
        if not chosen:
            return []
        group_of = {name: self.dead_letter_group(name) for name in chosen}
        committed = groups.committed_offsets(group_of.values())
        tps = [TopicPartition(name, p) for name in chosen for p in range(topics[name])]
        offsets = groups.partition_offsets(tps)
        now = int(time.time() * 1000)
        since = groups.offsets_for_times(dict.fromkeys(offsets, now - INFLOW_WINDOW * 1000))
        positions: dict[TopicPartition, int] = {}
        probes: list[Position] = []
        for tp, po in offsets.items():
            done = committed.get(group_of[tp.topic], {}).get(tp)
            start = max(done if done is not None else po.log_start, po.log_start)
            positions[tp] = min(start, po.log_end)
            if positions[tp] < po.log_end:
                probes.append(Position(tp, positions[tp]))
                probes.append(Position(tp, po.log_end - 1))
        stamps = groups.message_timestamps(probes) if probes else {}
        out = []
        for name, why in sorted(chosen.items()):
            parts = [tp for tp in offsets if tp.topic == name]
            waiting = sum(offsets[tp].log_end - positions[tp] for tp in parts)
            oldest = [
                stamps[Position(tp, positions[tp])].timestamp
                for tp in parts
                if Position(tp, positions[tp]) in stamps
            ]
            newest = [
                stamps[Position(tp, offsets[tp].log_end - 1)].timestamp
                for tp in parts
                if Position(tp, offsets[tp].log_end - 1) in stamps
            ]
            arrived = sum(
                offsets[tp].log_end - _or(since.get(tp), offsets[tp].log_end) for tp in parts
            )
            out.append(
                DeadLetterQueue(
                    ref=f"kafka:{name}",
                    backend="kafka",
                    name=name,
                    why=why,
                    messages=waiting,
                    oldest=min((t for t in oldest if t is not None), default=None),
                    newest=max((t for t in newest if t is not None), default=None),
                    inflow_rate=round(arrived / INFLOW_WINDOW, 3),
                    group=group_of[name],
                    source=declared.get(name),
                    partitions=topics[name],
                )
            )
        return out

    def ensure_parking_lot(self, dlq: Ref) -> Ref:
        from confluent_kafka.admin import NewTopic

        name = f"{dlq.name}.parking"
        metadata = self.admin().list_topics(timeout=self.timeout)
        if name in metadata.topics and metadata.topics[name].error is None:
            return Ref(backend="kafka", kind="topic", name=name)
        source = metadata.topics.get(dlq.name)
        if source is None or source.error is not None:
            raise NotFoundError(f"topic {dlq.name!r} does not exist on kafka at {self.bootstrap}")
        partitions = max(len(source.partitions), 1)
        replicas = max((len(p.replicas) for p in source.partitions.values()), default=1)
        futures = self.admin().create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replicas)],
            request_timeout=self.timeout,
        )
        try:
            self._result(futures[name], f"create the parking lot {name!r}")
        except QctlError as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise
        self._wait_for_topic(name)
        return Ref(backend="kafka", kind="topic", name=name)

    def _wait_for_topic(self, name: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            md = self.admin().list_topics(timeout=self.timeout)
            topic = md.topics.get(name)
            if topic is not None and topic.error is None and topic.partitions:
                return
            time.sleep(0.1)

    def purge_dead_letters(self, dlq: Ref, upto: Mapping[int, int] | None = None) -> int:
        from confluent_kafka import TopicPartition as KTP

        groups = cast(SupportsConsumerGroups, self)
        if not upto:
            return 0
        tps = [TopicPartition(dlq.name, p) for p in upto]
        before = groups.partition_offsets(tps)
        futures = self.admin().delete_records(
            [KTP(dlq.name, p, off) for p, off in sorted(upto.items())],
            request_timeout=self.timeout,
        )
        removed = 0
        for ktp, future in futures.items():
            result: Any = self._result(future, f"delete records of {dlq.name!r}")
            old = before.get(TopicPartition(ktp.topic, ktp.partition))
            low = getattr(result, "low_watermark", None)
            if old is not None and low is not None:
                removed += max(int(low) - old.log_start, 0)
        return removed


def _why(name: str, declared: Mapping[str, str], patterns: list[str]) -> str | None:
    if name in declared:
        return f"declared with dlq: for {declared[name]!r}"
    lowered = name.lower()
    for pattern in patterns:
        if fnmatch.fnmatchcase(lowered, pattern.lower()):
            return f"name matches {pattern!r}"
    return None


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
