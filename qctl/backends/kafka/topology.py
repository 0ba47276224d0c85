"""``SupportsTopology`` for Kafka: batched admin calls, default-aware config reads.

One Metadata request lists every topic; one DescribeConfigs request reads the configs
of all topics of interest; creates, partition increases, config changes and deletes are
one CreateTopics / CreatePartitions / IncrementalAlterConfigs / DeleteTopics call each,
whatever the number of topics. A config counts as set on a topic only when its source
is ``DYNAMIC_TOPIC_CONFIG``; anything else is a broker or cluster default.

Ownership records live in the compacted topic ``qctl.topology.owners`` (key: the owner
label, value: JSON), created on first use, so every operator sees the same records.

confluent-kafka has no AlterPartitionReassignments, so a replication-factor change is
reported as unsupported by the planner and never attempted here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from qctl.backends.kafka.core import KafkaCore
from qctl.errors import OperationTimeout, QctlError

if TYPE_CHECKING:
    from qctl.backends.capabilities.topology import (
        ChangeResult,
        LiveTopology,
        OwnerRecord,
        Progress,
        TopicSpec,
        TopologyChange,
        TopologyQuery,
    )

log = logging.getLogger(__name__)

#: Broker-level synonyms in other units than the topic config (hours vs ms).
_UNIT_SYNONYM_SUFFIXES = (".hours", ".minutes")


class KafkaTopologyAdmin(KafkaCore):
    """Topics as code for Kafka."""

    def topology_kinds(self) -> tuple[str, ...]:
        return ("topic",)

    # -- reading ---------------------------------------------------------------------------
    def topology_describe(self, query: TopologyQuery) -> LiveTopology:
        from qctl.backends.capabilities.topology import LiveTopic, LiveTopology, TopicSpec

        self.admin()
        metadata = self.wait_for_metadata()
        live = LiveTopology(backend=self.name, scope="")
        for name, topic in metadata.topics.items():
            if topic.error is not None and not topic.partitions:
                continue  # being deleted, or not yet visible
            partitions = topic.partitions
            rf = max((len(p.replicas) for p in partitions.values()), default=0) or None
            live.topics[name] = LiveTopic(
                spec=TopicSpec(name=name, partitions=len(partitions), replication_factor=rf),
                internal=name.startswith("__"),
            )
        if query.names is None:
            wanted = [n for n, t in live.topics.items() if not t.internal]
        else:
            wanted = [n for n in query.names if n in live.topics]
        if wanted:
            brokers = sorted(metadata.brokers)
            self._topo_describe_configs(sorted(wanted), live, brokers[0] if brokers else None)
        if query.count_messages and wanted:
            live.topic_messages = self._topo_count_messages(
                [n for n in wanted if n in live.topics], live
            )
        return live

    def _topo_describe_configs(
        self, names: list[str], live: LiveTopology, broker_id: int | None
    ) -> None:
        """One DescribeConfigs for every topic (plus one broker, for the defaults)."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

        admin = self.admin()
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
        if broker_id is not None:
            resources.append(ConfigResource(ResourceType.BROKER, str(broker_id)))
        futures = admin.describe_configs(resources, request_timeout=self.timeout)
        topic_source = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        cluster_defaults: dict[str, str] = {}
        described: dict[str, dict[str, Any]] = {}
        for resource, future in futures.items():
            if resource.restype == ResourceType.BROKER:
                try:
                    cluster_defaults = broker_topic_defaults(
                        self._result(future, "describe broker configs")
                    )
                except QctlError as exc:  # e.g. no DescribeConfigs permission on brokers
                    log.debug("broker configs unavailable, defaults from topics only: %s", exc)
                continue
            try:
                described[resource.name] = self._result(future, "describe topic configs")
            except QctlError as exc:
                cause = exc.__cause__
                if isinstance(cause, KafkaException) and cause.args[0].code() in (
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                ):
                    live.topics.pop(resource.name, None)  # deleted meanwhile
                    continue
                raise
        for entries in described.values():
            for key, entry in entries.items():
                if _source(entry) != topic_source and entry.value is not None:
                    cluster_defaults.setdefault(key, entry.value)
        for name, entries in described.items():
            topic = live.topics[name]
            for key, entry in entries.items():
                if entry.value is None or entry.is_sensitive:
                    continue
                topic.effective[key] = entry.value
                if _source(entry) == topic_source:
                    topic.spec.configs[key] = entry.value
                    default = cluster_defaults.get(key)
                    if default is None:
                        default = _synonym_default(key, entry, topic_source)
                    if default is not None:
                        topic.defaults[key] = default
                else:
                    topic.defaults[key] = entry.value

    def _topo_count_messages(self, names: list[str], live: LiveTopology) -> dict[str, int]:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        admin = self.admin()
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in range(live.topics[name].spec.partitions or 0)
        ]
        if not partitions:
            return dict.fromkeys(names, 0)
        ends: dict[str, dict[tuple[str, int], int]] = {}
        for label, spec in (("start", OffsetSpec.earliest()), ("end", OffsetSpec.latest())):
            futures = admin.list_offsets(
                dict.fromkeys(partitions, spec), request_timeout=self.timeout
            )
            ends[label] = {
                (tp.topic, tp.partition): self._result(f, "list offsets").offset
                for tp, f in futures.items()
            }
        counts = dict.fromkeys(names, 0)
        for key, end in ends["end"].items():
            counts[key[0]] += max(end - ends["start"].get(key, 0), 0)
        return counts

    # -- changing --------------------------------------------------------------------------
    def topology_apply(
        self, scope: str | None, changes: Sequence[TopologyChange], progress: Progress | None
    ) -> list[ChangeResult]:
        from qctl.backends.capabilities.topology import ChangeResult

        results: list[ChangeResult] = []
        topics = [c for c in changes if c.kind == "topic"]
        for change in changes:
            if change.kind != "topic":
                results.append(
                    ChangeResult(change, False, f"kafka has no {change.kind}s (only topics)")
                )
        creates = [c for c in topics if c.action == "create"]
        updates = [c for c in topics if c.action == "update"]
        deletes = [c for c in topics if c.action == "delete"]
        for change in topics:
            if change.action not in ("create", "update", "delete"):
                results.append(ChangeResult(change, False, f"kafka cannot {change.action} a topic"))
        if creates:
            results += self._topo_create(creates)
            _say(progress, f"kafka: created {sum(r.ok for r in results)} topic(s)")
        if updates:
            results += self._topo_update(updates)
        if deletes:
            results += self._topo_delete(deletes)
        return results

    def _topo_create(self, changes: list[TopologyChange]) -> list[ChangeResult]:
        from confluent_kafka.admin import NewTopic

        new_topics = []
        for change in changes:
            spec: TopicSpec = change.desired
            new_topics.append(
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions or -1,
                    replication_factor=spec.replication_factor or -1,
                    config=dict(spec.configs),
                )
            )
        futures = self.admin().create_topics(
            new_topics, operation_timeout=self.timeout, request_timeout=self.timeout
        )
        by_name = {c.name: c for c in changes}
        return [self._topo_outcome(by_name[name], f, "create topic") for name, f in futures.items()]

    def _topo_update(self, changes: list[TopologyChange]) -> list[ChangeResult]:
        from confluent_kafka.admin import (
            AlterConfigOpType,
            ConfigEntry,
            ConfigResource,
            NewPartitions,
            ResourceType,
        )

        from qctl.backends.capabilities.topology import ChangeResult

        admin = self.admin()
        errors: dict[str, list[str]] = {c.name: [] for c in changes}
        grow = []
        alter = []
        for change in changes:
            entries = []
            for f in change.fields:
                if f.field == "partitions":
                    grow.append(NewPartitions(change.name, int(f.desired)))
                elif f.field.startswith("config:"):
                    key = f.field.removeprefix("config:")
                    if f.unset:
                        op = AlterConfigOpType.DELETE
                        entries.append(ConfigEntry(key, None, incremental_operation=op))
                    else:
                        op = AlterConfigOpType.SET
                        entries.append(ConfigEntry(key, str(f.desired), incremental_operation=op))
                else:
                    errors[change.name].append(f"cannot change {f.field} in place")
            if entries:
                alter.append(
                    ConfigResource(ResourceType.TOPIC, change.name, incremental_configs=entries)
                )
        if grow:
            futures = admin.create_partitions(
                grow, operation_timeout=self.timeout, request_timeout=self.timeout
            )
            for name, future in futures.items():
                self._topo_collect(errors, name, future, "add partitions")
        if alter:
            futures = admin.incremental_alter_configs(alter, request_timeout=self.timeout)
            for resource, future in futures.items():
                self._topo_collect(errors, resource.name, future, "alter topic configs")
        return [
            ChangeResult(c, not errors[c.name], "; ".join(errors[c.name]) or None) for c in changes
        ]

    def _topo_delete(self, changes: list[TopologyChange]) -> list[ChangeResult]:
        from qctl.backends.capabilities.topology import ChangeResult

        allowed = [c for c in changes if not c.messages or c.force]
        results = [
            ChangeResult(c, False, f"holds {c.messages} message(s) and deletion was not forced")
            for c in changes
            if c not in allowed
        ]
        if not allowed:
            return results
        futures = self.admin().delete_topics(
            [c.name for c in allowed], operation_timeout=self.timeout, request_timeout=self.timeout
        )
        by_name = {c.name: c for c in allowed}
        results += [
            self._topo_outcome(by_name[name], f, "delete topic") for name, f in futures.items()
        ]
        return results

    def _topo_outcome(self, change: TopologyChange, future: Any, what: str) -> ChangeResult:
        from qctl.backends.capabilities.topology import ChangeResult

        try:
            self._result(future, what)
        except QctlError as exc:
            return ChangeResult(change, False, exc.what)
        return ChangeResult(change, True)

    def _topo_collect(
        self, errors: dict[str, list[str]], name: str, future: Any, what: str
    ) -> None:
        try:
            self._result(future, what)
        except QctlError as exc:
            errors.setdefault(name, []).append(exc.what)

    # -- ownership records -----------------------------------------------------------------
    def topology_owner_records(self, scope: str | None) -> list[OwnerRecord]:
        from qctl.backends.capabilities.topology import KAFKA_OWNERS_TOPIC as OWNERS_TOPIC
        from qctl.backends.capabilities.topology import OwnerRecord

        self.admin()
        metadata = self.wait_for_metadata()
        topic = metadata.topics.get(OWNERS_TOPIC)
        if topic is None or not topic.partitions:
            return []
        values = self._topo_read_compacted(OWNERS_TOPIC, list(topic.partitions))
        records = []
        for key, value in sorted(values.items()):
            try:
                record = OwnerRecord.from_json(json.loads(value))
            except ValueError:
                record = None
            if record is None:
                log.debug("ignoring a damaged ownership record for %s", key)
                continue
            records.append(record)
        return records

    def _topo_read_compacted(self, topic: str, partitions: Iterable[int]) -> dict[str, bytes]:
        """The latest value of every key (tombstones remove keys), read to the end."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            self.client_config(
                **{
                    "group.id": "qctl-topology-owners",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    "auto.offset.reset": "earliest",
                }
            )
        )
        values: dict[str, bytes] = {}
        try:
            targets: dict[int, int] = {}
            assignment = []
            for p in partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=self.timeout
                )
                if high > low:
                    targets[p] = high
                    assignment.append(TopicPartition(topic, p, low))
            if not assignment:
                return values
            consumer.assign(assignment)
            deadline = time.monotonic() + self.timeout
            done: set[int] = set()
            while len(done) < len(targets):
                if time.monotonic() > deadline:
                    raise OperationTimeout(
                        f"kafka at {self.bootstrap} did not return the ownership records "
                        f"({topic}) within {self.timeout:g}s",
                        "raise --timeout",
                    )
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    raise QctlError(f"reading {topic} failed: {msg.error().str()}")
                key = (msg.key() or b"").decode("utf-8", "replace")
                if msg.value() is None:
                    values.pop(key, None)
                else:
                    values[key] = msg.value()
                if msg.offset() + 1 >= targets[msg.partition()]:
                    done.add(msg.partition())
        except QctlError:
            raise
        except Exception as exc:
            from qctl.backends.kafka.client import translate

            raise translate(exc, self.bootstrap, "read ownership records from") from exc
        finally:
            consumer.close()
        return values

    def topology_write_owner_record(self, record: OwnerRecord, delete: bool = False) -> None:
        from confluent_kafka import Producer

        from qctl.backends.capabilities.topology import KAFKA_OWNERS_TOPIC as OWNERS_TOPIC

        self._topo_ensure_owners_topic()
        producer = Producer(self.client_config(**{"acks": "all", "enable.idempotence": True}))
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err.str())

        value = None if delete else json.dumps(record.to_json(), sort_keys=True).encode()
        producer.produce(
            OWNERS_TOPIC, key=record.owner.encode(), value=value, on_delivery=delivered
        )
        remaining = producer.flush(self.timeout)
        if remaining:
            raise OperationTimeout(
                f"kafka at {self.bootstrap} did not acknowledge the ownership record within "
                f"{self.timeout:g}s",
                "raise --timeout",
            )
        if failures:
            raise QctlError(f"writing the ownership record failed: {failures[0]}")

    def _topo_ensure_owners_topic(self) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        from qctl.backends.capabilities.topology import KAFKA_OWNERS_TOPIC as OWNERS_TOPIC

        admin = self.admin()
        metadata = self.wait_for_metadata()
        if OWNERS_TOPIC in metadata.topics:
            return
        rf = min(3, max(len(metadata.brokers), 1))
        futures = admin.create_topics(
            [
                NewTopic(
                    OWNERS_TOPIC,
                    num_partitions=1,
                    replication_factor=rf,
                    config={"cleanup.policy": "compact", "min.insync.replicas": "1"},
                )
            ],
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        for future in futures.values():
            try:
                self._result(future, f"create {OWNERS_TOPIC}")
            except QctlError as exc:
                cause = exc.__cause__
                if not (
                    isinstance(cause, KafkaException)
                    and cause.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    raise


#: Topic config -> the broker configs that default it, in precedence order, with the
#: factor to milliseconds where the broker config uses another unit (Kafka's
#: ServerTopicConfigSynonyms).
TOPIC_DEFAULT_SYNONYMS: dict[str, tuple[tuple[str, int], ...]] = {
    "cleanup.policy": (("log.cleanup.policy", 1),),
    "compression.type": (("compression.type", 1),),
    "compression.gzip.level": (("compression.gzip.level", 1),),
    "compression.lz4.level": (("compression.lz4.level", 1),),
    "compression.zstd.level": (("compression.zstd.level", 1),),
    "delete.retention.ms": (("log.cleaner.delete.retention.ms", 1),),
    "file.delete.delay.ms": (("log.segment.delete.delay.ms", 1),),
    "flush.messages": (("log.flush.interval.messages", 1),),
    "flush.ms": (("log.flush.interval.ms", 1),),
    "index.interval.bytes": (("log.index.interval.bytes", 1),),
    "local.retention.bytes": (("log.local.retention.bytes", 1),),
    "local.retention.ms": (("log.local.retention.ms", 1),),
    "max.compaction.lag.ms": (("log.cleaner.max.compaction.lag.ms", 1),),
    "max.message.bytes": (("message.max.bytes", 1),),
    "message.timestamp.after.max.ms": (("log.message.timestamp.after.max.ms", 1),),
    "message.timestamp.before.max.ms": (("log.message.timestamp.before.max.ms", 1),),
    "message.timestamp.type": (("log.message.timestamp.type", 1),),
    "min.cleanable.dirty.ratio": (("log.cleaner.min.cleanable.ratio", 1),),
    "min.compaction.lag.ms": (("log.cleaner.min.compaction.lag.ms", 1),),
    "min.insync.replicas": (("min.insync.replicas", 1),),
    "preallocate": (("log.preallocate", 1),),
    "retention.bytes": (("log.retention.bytes", 1),),
    "retention.ms": (
        ("log.retention.ms", 1),
        ("log.retention.minutes", 60_000),
        ("log.retention.hours", 3_600_000),
    ),
    "segment.bytes": (("log.segment.bytes", 1),),
    "segment.index.bytes": (("log.index.size.max.bytes", 1),),
    "segment.jitter.ms": (("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", 3_600_000)),
    "segment.ms": (("log.roll.ms", 1), ("log.roll.hours", 3_600_000)),
    "unclean.leader.election.enable": (("unclean.leader.election.enable", 1),),
}


def broker_topic_defaults(entries: dict[str, Any]) -> dict[str, str]:
    """What a topic without overrides gets, computed from one broker's configs."""
    defaults: dict[str, str] = {}
    for topic_key, synonyms in TOPIC_DEFAULT_SYNONYMS.items():
        for broker_key, factor in synonyms:
            entry = entries.get(broker_key)
            if entry is None or entry.value is None:
                continue
            if factor == 1:
                defaults[topic_key] = str(entry.value)
            else:
                try:
                    defaults[topic_key] = str(int(entry.value) * factor)
                except ValueError:
                    continue
            break
    return defaults


def _source(entry: Any) -> int:
    source = entry.source
    return int(getattr(source, "value", source))


def _synonym_default(key: str, entry: Any, topic_source: int) -> str | None:
    """The value the topic would have without its override, from the config synonyms."""
    for synonym in (entry.synonyms or {}).values():
        if _source(synonym) == topic_source or synonym.value is None:
            continue
        if synonym.name != key and synonym.name.endswith(_UNIT_SYNONYM_SUFFIXES):
            return None  # e.g. log.retention.hours: another unit, not comparable
        return str(synonym.value)
    return None


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
