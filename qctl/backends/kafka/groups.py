"""Kafka consumer groups and partition offsets, read in batches.

librdkafka groups ListOffsets by partition leader, so each ``list_offsets`` call is one
request per broker for all partitions. OffsetFetch takes one group per request in
confluent-kafka; all of them are sent at once and awaited together.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from qctl.backends.capabilities.groups import (
    GroupDescription,
    GroupListing,
    GroupMember,
    MessageTimestamp,
    PartitionOffsets,
    Position,
    TopicPartition,
)
from qctl.backends.kafka.client import translate
from qctl.backends.kafka.core import KafkaCore
from qctl.errors import NotFoundError

log = logging.getLogger(__name__)

#: librdkafka's ConsumerGroupState names -> the names Kafka's own tools print.
_STATES = {
    "UNKNOWN": "Unknown",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "STABLE": "Stable",
    "DEAD": "Dead",
    "EMPTY": "Empty",
}
#: librdkafka's sentinel for "no committed offset".
OFFSET_INVALID = -1001


def _state(value: Any) -> str:
    name = getattr(value, "name", str(value))
    return _STATES.get(name, name.title())


def _type(value: Any) -> str:
    name = getattr(value, "name", None)
    return name.lower() if name else "unknown"


class KafkaConsumerGroups(KafkaCore):
    """``SupportsConsumerGroups`` for Kafka."""

    def list_groups(self) -> list[GroupListing]:
        admin = self.admin()
        result = self._result(
            admin.list_consumer_groups(request_timeout=self.timeout), "list consumer groups"
        )
        for err in result.errors:
            log.warning("listing consumer groups was incomplete: %s", err)
        return sorted(
            (
                GroupListing(
                    group_id=g.group_id,
                    state=_state(g.state),
                    type=_type(getattr(g, "type", None)),
                    simple=bool(g.is_simple_consumer_group),
                )
                for g in result.valid
            ),
            key=lambda g: g.group_id,
        )

    def describe_groups(self, group_ids: Iterable[str]) -> dict[str, GroupDescription]:
        ids = sorted(set(group_ids))
        if not ids:
            return {}
        admin = self.admin()
        futures = admin.describe_consumer_groups(ids, request_timeout=self.timeout)
        out: dict[str, GroupDescription] = {}
        for group_id, future in futures.items():
            desc = self._result(future, f"describe consumer group {group_id!r}")
            members = [
                GroupMember(
                    member_id=m.member_id,
                    client_id=m.client_id,
                    host=m.host,
                    group_instance_id=m.group_instance_id,
                    assignment=sorted(
                        TopicPartition(tp.topic, tp.partition)
                        for tp in (m.assignment.topic_partitions if m.assignment else [])
                    ),
                )
                for m in desc.members
            ]
            coordinator = getattr(desc, "coordinator", None)
            out[group_id] = GroupDescription(
                group_id=group_id,
                state=_state(desc.state),
                members=members,
                assignor=desc.partition_assignor or None,
                coordinator=coordinator.id if coordinator is not None else None,
                type=_type(getattr(desc, "type", None)),
                simple=bool(desc.is_simple_consumer_group),
            )
        return out

    def committed_offsets(
        self, group_ids: Iterable[str]
    ) -> dict[str, dict[TopicPartition, int | None]]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        ids = sorted(set(group_ids))
        if not ids:
            return {}
        admin = self.admin()
        # One group per request (a confluent-kafka limit), all in flight at once.
        futures = {
            group_id: admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group_id)], request_timeout=self.timeout
            )[group_id]
            for group_id in ids
        }
        out: dict[str, dict[TopicPartition, int | None]] = {}
        for group_id, future in futures.items():
            result = self._result(future, f"fetch the offsets of group {group_id!r}")
            offsets: dict[TopicPartition, int | None] = {}
            for tp in result.topic_partitions or []:
                if tp.error is not None:
                    log.debug("group %s %s/%s: %s", group_id, tp.topic, tp.partition, tp.error)
                    continue
                offset = tp.offset if tp.offset >= 0 else None
                offsets[TopicPartition(tp.topic, tp.partition)] = offset
            out[group_id] = offsets
        return out

    def topic_partitions(self, topics: Iterable[str]) -> dict[str, int]:
        wanted = set(topics)
        metadata = self.admin().list_topics(timeout=self.timeout)
        return {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if name in wanted and topic.error is None
        }

    def require_topic(self, topic: str) -> int:
        """The partition count of ``topic``, or a not-found error naming it."""
        counts = self.topic_partitions([topic])
        if topic not in counts:
            raise NotFoundError(
                f"topic {topic!r} does not exist on kafka at {self.bootstrap}",
                "check the name (`qctl topology export --backend kafka` lists topics)",
            )
        return counts[topic]

    def partition_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, PartitionOffsets]:
        from confluent_kafka import IsolationLevel
        from confluent_kafka import TopicPartition as KTP
        from confluent_kafka.admin import OffsetSpec

        tps = sorted(set(partitions))
        if not tps:
            return {}
        admin = self.admin()

        def query(spec: Any, isolation: Any) -> dict[TopicPartition, int]:
            futures = admin.list_offsets(
                {KTP(tp.topic, tp.partition): spec for tp in tps},
                isolation_level=isolation,
                request_timeout=self.timeout,
            )
            found: dict[TopicPartition, int] = {}
            for ktp, future in futures.items():
                try:
                    found[TopicPartition(ktp.topic, ktp.partition)] = future.result(
                        timeout=self.timeout + 1
                    ).offset
                except Exception as exc:  # per-partition: an unknown or deleted topic
                    log.debug("list offsets %s/%s: %s", ktp.topic, ktp.partition, exc)
            return found

        try:
            earliest = query(OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED)
            high = query(OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED)
            stable = query(OffsetSpec.latest(), IsolationLevel.READ_COMMITTED)
        except Exception as exc:
            raise translate(exc, self.bootstrap, "list offsets") from exc
        return {
            tp: PartitionOffsets(
                log_start=earliest[tp], log_end=high[tp], last_stable=stable.get(tp, high[tp])
            )
            for tp in tps
            if tp in earliest and tp in high
        }

    def offsets_for_times(
        self, requests: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        from confluent_kafka import TopicPartition as KTP
        from confluent_kafka.admin import OffsetSpec

        if not requests:
            return {}
        admin = self.admin()
        futures = admin.list_offsets(
            {
                KTP(tp.topic, tp.partition): OffsetSpec.for_timestamp(ms)
                for tp, ms in requests.items()
            },
            request_timeout=self.timeout,
        )
        out: dict[TopicPartition, int | None] = {}
        for ktp, future in futures.items():
            info = self._result(future, f"look up offsets by time in {ktp.topic}")
            # -1: no message at or after that time (the caller maps it to log-end).
            out[TopicPartition(ktp.topic, ktp.partition)] = (
                info.offset if info.offset >= 0 else None
            )
        return out

    def message_timestamps(self, positions: Iterable[Position]) -> dict[Position, MessageTimestamp]:
        """Read one message at each position with a group-less consumer.

        A partition can be assigned at one offset at a time, so positions are read in
        rounds: each round assigns every pending partition at its next wanted offset.
        """
        from confluent_kafka import Consumer
        from confluent_kafka import TopicPartition as KTP

        pending: dict[TopicPartition, list[int]] = defaultdict(list)
        for pos in set(positions):
            pending[pos.tp].append(pos.offset)
        for offsets in pending.values():
            offsets.sort()
        out: dict[Position, MessageTimestamp] = {}
        if not pending:
            return out
        consumer = Consumer(
            self.client_config(
                **{
                    "group.id": "qctl-timestamp-probe",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "error",
                    "fetch.wait.max.ms": 50,
                    "max.partition.fetch.bytes": 65536,
                    "isolation.level": "read_uncommitted",
                }
            )
        )
        deadline = time.monotonic() + self.timeout
        try:
            while pending and time.monotonic() < deadline:
                round_positions = {tp: offsets.pop(0) for tp, offsets in pending.items()}
                for tp in [tp for tp, offsets in pending.items() if not offsets]:
                    del pending[tp]
                consumer.assign(
                    [KTP(tp.topic, tp.partition, off) for tp, off in round_positions.items()]
                )
                waiting = dict(round_positions)
                while waiting and time.monotonic() < deadline:
                    for msg in consumer.consume(num_messages=500, timeout=0.2):
                        tp = TopicPartition(msg.topic(), msg.partition())
                        if tp not in waiting:
                            continue
                        wanted = waiting.pop(tp)
                        err = msg.error()
                        if err is not None:
                            # EOF: nothing at or after the offset; out of range: gone.
                            out[Position(tp, wanted)] = MessageTimestamp(None, None, False)
                            continue
                        _, ts = msg.timestamp()
                        out[Position(tp, wanted)] = MessageTimestamp(
                            ts if ts >= 0 else None, msg.offset(), msg.offset() == wanted
                        )
                consumer.unassign()
        finally:
            consumer.close()
        return out
