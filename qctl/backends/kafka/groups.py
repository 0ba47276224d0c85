"""Kafka consumer groups and partition offsets, read in batches.

librdkafka groups ListOffsets by partition leader, so each ``list_offsets`` call is one
request per broker for all partitions. OffsetFetch takes one group per request in
confluent-kafka; all of them are sent at once and awaited together. Groups are listed
and described, and their committed offsets fetched, with qctl's own wire client where it
can (``wire.coordinators``: librdkafka's admin calls for them crash the process during a
coordinator failover or a broker outage).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

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

if TYPE_CHECKING:
    from qctl.backends.kafka.wire.coordinators import CoordinatedWire

log = logging.getLogger(__name__)
W = TypeVar("W", bound="CoordinatedWire")

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
#: Offsets further apart than this are reached by seeking rather than reading through.
_SEEK_GAP = 500


def _state(value: Any) -> str:
    name = getattr(value, "name", str(value))
    return _STATES.get(name, name.title())


def _type(value: Any) -> str:
    name = getattr(value, "name", None)
    return name.lower() if name else "unknown"


#: From this many partitions on, their offsets (``wire.end_offsets``) and the timestamps at
#: positions in them (``wire.timestamps``) are asked over the wire.
WIRE_FROM = 100
#: How old a metadata listing may be to find partition leaders by.
RECENT_METADATA_SECONDS = 5.0


class KafkaConsumerGroups(KafkaCore):
    """``SupportsConsumerGroups`` for Kafka."""

    #: (when, listing) of the last cluster metadata read for partition counts.
    _recent_metadata: tuple[float, Any] = (0.0, None)

    def list_groups(self) -> list[GroupListing]:
        from qctl.backends.kafka.wire.group_reads import GroupsWire, WireUnsupported

        wire = self._wire(GroupsWire)
        if wire is not None:
            try:
                listed, missing = wire.list_groups()
            except WireUnsupported as exc:
                log.debug("consumer groups listed through the admin client: %s", exc)
            else:
                for why in missing:
                    log.warning("listing consumer groups was incomplete: %s", why)
                return listed
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
        from qctl.backends.kafka.wire.group_reads import GroupsWire, WireUnsupported

        ids = sorted(set(group_ids))
        if not ids:
            return {}
        wire = self._wire(GroupsWire)
        if wire is not None:
            try:
                return wire.describe(ids)
            except WireUnsupported as exc:
                log.debug("consumer groups described through the admin client: %s", exc)
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
        wire = self._committed_by_wire(ids)
        if wire is not None:
            return wire
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

    def _committed_by_wire(
        self, ids: list[str]
    ) -> dict[str, dict[TopicPartition, int | None]] | None:
        """Committed offsets through qctl's wire client (see ``committed``); None: use admin."""
        from qctl.backends.kafka.wire.committed import CommittedOffsetsFetcher, WireUnsupported

        fetcher = self._wire(CommittedOffsetsFetcher)
        if fetcher is None:
            return None
        try:
            raw = fetcher.fetch(ids)
        except WireUnsupported as exc:
            log.debug("committed offsets through the admin client: %s", exc)
            return None
        return {
            group: {TopicPartition(t, p): offset for (t, p), offset in offsets.items()}
            for group, offsets in raw.items()
        }

    def _wire(self, kind: type[W]) -> W | None:
        """A wire client of ``kind`` for this context (see ``wire.coordinators``), or None where
        it cannot connect the way librdkafka would: GSSAPI and OAUTHBEARER contexts keep
        librdkafka's admin client (and with it librdkafka issues #4605 and #5040 during
        outages and failovers)."""
        from qctl.backends.kafka.offsets import _bootstrap_addresses
        from qctl.backends.kafka.wire.config import wire_config

        security = wire_config(self.settings)
        addresses = _bootstrap_addresses(self.bootstrap)
        if security is None or not addresses:
            return None
        return kind(addresses, self.bootstrap, self.timeout, security)

    def topic_partitions(self, topics: Iterable[str]) -> dict[str, int]:
        wanted = set(topics)
        metadata = self.admin().list_topics(timeout=self.timeout)
        self._recent_metadata = (time.monotonic(), metadata)
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
        out = self._ends_by_wire(tps)
        tps = [tp for tp in tps if tp not in out]
        if not tps:
            return out
        admin = self.admin()

        def send(spec: Any, isolation: Any) -> dict[Any, Any]:
            futures: dict[Any, Any] = admin.list_offsets(
                {KTP(tp.topic, tp.partition): spec for tp in tps},
                isolation_level=isolation,
                request_timeout=self.timeout,
            )
            return futures

        def collect(futures: dict[Any, Any]) -> dict[TopicPartition, int]:
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
            # All three requests are in flight before any answer is awaited.
            sent = [
                send(OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED),
                send(OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED),
                send(OffsetSpec.latest(), IsolationLevel.READ_COMMITTED),
            ]
            earliest, high, stable = (collect(futures) for futures in sent)
        except Exception as exc:
            raise translate(exc, self.bootstrap, "list offsets") from exc
        out.update(
            (
                tp,
                PartitionOffsets(
                    log_start=earliest[tp], log_end=high[tp], last_stable=stable.get(tp, high[tp])
                ),
            )
            for tp in tps
            if tp in earliest and tp in high
        )
        return out

    def _ends_by_wire(self, tps: list[TopicPartition]) -> dict[TopicPartition, PartitionOffsets]:
        """What ``wire.end_offsets`` settles over the wire (nothing for few partitions, or when
        the wire client cannot log in the way librdkafka does)."""
        from qctl.backends.kafka.wire.config import wire_config
        from qctl.backends.kafka.wire.end_offsets import list_ends

        if len(tps) < WIRE_FROM:
            return {}
        security = wire_config(self.settings)
        if security is None:
            return {}
        leaders = self._leaders((tp.topic, tp.partition) for tp in tps)
        ends = list_ends(leaders, self.timeout, security)
        return {
            TopicPartition(t, p): PartitionOffsets(log_start=a, log_end=b, last_stable=c)
            for (t, p), (a, b, c) in ends.items()
        }

    def _leaders(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[str, int]]:
        """The leader (host, port) of each partition that has one.

        The listing just read for the partition counts names the leaders too; a leader
        that moved since makes the wire request fail for its partitions, which the
        callers then ask librdkafka about.
        """
        seen_at, metadata = self._recent_metadata
        if metadata is None or time.monotonic() - seen_at > RECENT_METADATA_SECONDS:
            metadata = self.admin().list_topics(timeout=self.timeout)
            self._recent_metadata = (time.monotonic(), metadata)
        brokers = {b.id: (b.host, b.port) for b in metadata.brokers.values()}
        leaders: dict[tuple[str, int], tuple[str, int]] = {}
        for topic_name, partition in partitions:
            topic = metadata.topics.get(topic_name)
            part = topic.partitions.get(partition) if topic is not None else None
            if part is not None and part.leader in brokers:
                leaders[(topic_name, partition)] = brokers[part.leader]
        return leaders

    def _timestamps_by_wire(
        self, pending: dict[TopicPartition, list[int]], isolation: str
    ) -> dict[Position, MessageTimestamp]:
        """What ``wire.timestamps`` settles with one Fetch per leader (nothing for few
        partitions, or when the wire client cannot log in the way librdkafka does)."""
        from qctl.backends.kafka.wire.config import wire_config
        from qctl.backends.kafka.wire.timestamps import read_positions

        if len(pending) < WIRE_FROM:
            return {}
        security = wire_config(self.settings)
        if security is None:
            return {}
        wanted = {(tp.topic, tp.partition): offsets for tp, offsets in pending.items()}
        found = read_positions(
            self._leaders(wanted),
            wanted,
            isolation == "read_committed",
            self.timeout,
            security,
        )
        out: dict[Position, MessageTimestamp] = {}
        for (topic, partition, asked), what in found.items():
            position = Position(TopicPartition(topic, partition), asked)
            if what.offset is None:
                out[position] = MessageTimestamp(None, None, False, what.end)
            else:
                out[position] = MessageTimestamp(what.timestamp, what.offset, what.offset == asked)
        return out

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

    def message_timestamps(
        self, positions: Iterable[Position], isolation: str = "read_uncommitted"
    ) -> dict[Position, MessageTimestamp]:
        """Read the message at (or first after) each position with a group-less consumer.

        Every partition is assigned once, at its lowest wanted offset, and read forward:
        the first message at or after a wanted offset answers it. Far-apart offsets of
        one partition are reached by seeking instead of reading through, and partitions
        with nothing left to answer are paused, so thousands of positions cost about one
        fetch round.
        """
        from confluent_kafka import Consumer, KafkaError
        from confluent_kafka import TopicPartition as KTP

        pending: dict[TopicPartition, list[int]] = defaultdict(list)
        for pos in set(positions):
            pending[pos.tp].append(pos.offset)
        for offsets in pending.values():
            offsets.sort()
        out = self._timestamps_by_wire(pending, isolation)
        if out:  # the rest is read with a consumer
            left = {
                tp: [o for o in offsets if Position(tp, o) not in out]
                for tp, offsets in pending.items()
            }
            pending = defaultdict(list, {tp: offsets for tp, offsets in left.items() if offsets})
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
                    "isolation.level": isolation,
                }
            )
        )
        deadline = time.monotonic() + self.timeout
        try:
            consumer.assign(
                [KTP(tp.topic, tp.partition, offsets[0]) for tp, offsets in pending.items()]
            )
            while pending and time.monotonic() < deadline:
                finished = []
                for msg in consumer.consume(num_messages=10000, timeout=0.02):
                    key = (msg.topic(), msg.partition())
                    wanted = pending.get(key)  # type: ignore[call-overload]
                    if not wanted:
                        continue
                    tp = TopicPartition(*key)
                    err = msg.error()
                    if err is not None and err.code() == KafkaError._PARTITION_EOF:
                        # Nothing readable at or after any offset still wanted here.
                        end = MessageTimestamp(None, None, False, msg.offset())
                        for offset in wanted:
                            out[Position(tp, offset)] = end
                        wanted.clear()
                    elif err is not None:
                        # Out of range (retention just removed it) or not readable (an
                        # ACL): unknown, so left out of the answer; on to the next offset.
                        log.debug("timestamp probe %s at %s: %s", tp, wanted[0], err)
                        wanted.pop(0)
                        if wanted:
                            _seek(consumer, KTP(tp.topic, tp.partition, wanted[0]))
                    else:
                        offset = msg.offset()
                        _, ts = msg.timestamp()
                        while wanted and wanted[0] <= offset:
                            asked = wanted.pop(0)
                            out[Position(tp, asked)] = MessageTimestamp(
                                ts if ts >= 0 else None, offset, offset == asked
                            )
                        if wanted and wanted[0] - offset > _SEEK_GAP:
                            _seek(consumer, KTP(tp.topic, tp.partition, wanted[0]))
                    if not wanted:
                        del pending[tp]
                        finished.append(KTP(tp.topic, tp.partition))
                if finished:
                    # Stop fetching what is answered; messages already fetched are skipped.
                    consumer.pause(finished)
        finally:
            consumer.close()
        return out


def _seek(consumer: Any, ktp: Any) -> None:
    """Seek, or keep reading forward when librdkafka refuses (slower, still correct)."""
    try:
        consumer.seek(ktp)
    except Exception as exc:
        log.debug("seek %s/%s to %s failed: %s", ktp.topic, ktp.partition, ktp.offset, exc)
