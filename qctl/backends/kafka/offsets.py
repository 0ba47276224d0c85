"""Writing and deleting a Kafka consumer group's committed offsets.

Writing goes through AdminClient.alter_consumer_group_offsets (OffsetCommit outside any
generation), whose result carries an error per partition. Deleting has no binding in
confluent-kafka (librdkafka has DeleteConsumerGroupOffsets, its Python binding does not),
so it speaks OffsetDelete to the group coordinator with qctl's own wire client. A context
the wire client leaves to librdkafka (``wire.config``: GSSAPI, OAUTHBEARER, OpenSSL
engines...) cannot delete offsets: that is one clear error naming the property.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from qctl.backends.capabilities.groups import TopicPartition
from qctl.backends.capabilities.offsets import PartitionError
from qctl.backends.kafka.core import KafkaCore
from qctl.errors import (
    AuthenticationError,
    OperationTimeout,
    QctlError,
    UsageError,
)

if TYPE_CHECKING:
    from qctl.backends.kafka.wire.config import WireConfig

#: Error codes after which asking the (new) coordinator again can succeed.
_RETRIABLE = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR

#: Per-partition errors, by the name librdkafka or the broker gives them, in plain words.
_EXPLAIN = {
    "UNKNOWN_TOPIC_OR_PART": "the topic or partition does not exist (deleted?)",
    "UNKNOWN_TOPIC_OR_PARTITION": "the topic or partition does not exist (deleted?)",
    "UNKNOWN_MEMBER_ID": "the group has active members now; stop them and retry",
    "ILLEGAL_GENERATION": "the group has active members now; stop them and retry",
    "REBALANCE_IN_PROGRESS": "the group is rebalancing; stop its consumers and retry",
    "STALE_MEMBER_EPOCH": "the group has active members now; stop them and retry",
    "TOPIC_AUTHORIZATION_FAILED": "not authorized for this topic (check the ACLs)",
    "GROUP_AUTHORIZATION_FAILED": "not authorized for this group (check the ACLs)",
    "GROUP_SUBSCRIBED_TO_TOPIC": (
        "the group's active members subscribe to this topic; stop them first"
    ),
    "OFFSET_METADATA_TOO_LARGE": "the offset metadata is too large",
    "INVALID_COMMIT_OFFSET_SIZE": "the commit is too large for the broker",
}


def explain(code: str, fallback: str) -> str:
    return _EXPLAIN.get(code, fallback)


class KafkaOffsetAdmin(KafkaCore):
    """``SupportsOffsetAdmin`` for Kafka."""

    def alter_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, int]
    ) -> list[PartitionError]:
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka import TopicPartition as KTP

        if not offsets:
            return []
        admin = self.admin()
        request = ConsumerGroupTopicPartitions(
            group_id, [KTP(tp.topic, tp.partition, off) for tp, off in sorted(offsets.items())]
        )
        future = admin.alter_consumer_group_offsets([request], request_timeout=self.timeout)[
            group_id
        ]
        result = self._result(future, f"write the offsets of group {group_id!r}")
        errors = []
        answered = set()
        for ktp in result.topic_partitions or []:
            tp = TopicPartition(ktp.topic, ktp.partition)
            answered.add(tp)
            if ktp.error is not None:
                name = ktp.error.name()
                errors.append(PartitionError(tp, name, explain(name, ktp.error.str())))
        for tp in sorted(set(offsets) - answered):
            errors.append(PartitionError(tp, "NO_ANSWER", "the broker did not answer for it"))
        return errors

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> list[PartitionError]:
        """OffsetDelete at the group's coordinator, over qctl's own client (confluent-
        kafka does not expose the call), found and asked again as every group request
        of that client is (``CoordinatedWire.per_group``): deleting is idempotent, so a
        request whose answer was lost is sent again."""
        from qctl.backends.kafka.wire.admin import OFFSET_DELETE, OffsetDeleteResult
        from qctl.backends.kafka.wire.codec import WireRefused, WireUnsupported, error_name
        from qctl.backends.kafka.wire.connection import Connection
        from qctl.backends.kafka.wire.coordinators import (
            RETRIABLE,
            Address,
            CoordinatedWire,
            GroupRefused,
        )

        wanted = sorted(set(partitions))
        if not wanted:
            return []
        by_topic: dict[str, list[int]] = defaultdict(list)
        for tp in wanted:
            by_topic[tp.topic].append(tp.partition)

        def ask(probe: Connection, _address: Address) -> OffsetDeleteResult:
            probe.version(OFFSET_DELETE, 0, 0)
            result = probe.offset_delete(group_id, dict(by_topic))
            if result.error_code in RETRIABLE:
                raise GroupRefused(result.error_code)
            return result

        wire = CoordinatedWire(
            _bootstrap_addresses(self.bootstrap), self.bootstrap, self.timeout, self._wire_config()
        )
        try:
            result = wire.per_group(group_id, ask, "offset delete")
        except WireRefused as exc:
            raise AuthenticationError(
                f"kafka {exc}", "check sasl.username, sasl.password and sasl.mechanism"
            ) from None
        except WireUnsupported as exc:
            raise QctlError(
                f"kafka at {self.bootstrap} is too old to delete offsets ({exc})",
                "use Kafka 2.4 or newer",
            ) from None
        finally:
            wire.close()
        self._raise_group_error(group_id, result.error_code)
        errors = []
        for tp in wanted:
            code = result.partitions.get((tp.topic, tp.partition))
            if code is None:
                errors.append(PartitionError(tp, "NO_ANSWER", "the broker did not answer for it"))
            elif code != 0:
                name = error_name(code)
                errors.append(PartitionError(tp, name, explain(name, name)))
        return errors

    # -- helpers ---------------------------------------------------------------------------
    def _raise_group_error(self, group_id: str, code: int) -> None:
        from qctl.backends.kafka.wire.codec import error_name

        # These three are reported per partition as well (Kafka's own tool does the same).
        if code in (0, 3, 29, 86):
            return
        name = error_name(code)
        if code == 69:
            raise UsageError(
                f"consumer group {group_id!r} does not exist on kafka at {self.bootstrap}",
                "check the group id (case matters)",
            )
        if code == 30:
            raise AuthenticationError(
                f"kafka at {self.bootstrap} refused access to group {group_id!r} ({name})",
                "check the ACLs of the user",
            )
        if code == 68:
            raise QctlError(
                f"group {group_id!r} has active members ({name})",
                "stop its consumers and retry",
            )
        if code in _RETRIABLE:
            raise OperationTimeout(
                f"the coordinator of group {group_id!r} was not available within "
                f"{self.timeout:g}s ({name})",
                "raise --timeout or check the cluster's health",
            )
        raise QctlError(f"kafka refused to delete offsets of group {group_id!r}: {name}")

    def _wire_config(self) -> WireConfig:
        from qctl.backends.kafka.wire.config import Handover, decide

        security = decide(self.settings)
        if isinstance(security, Handover):
            # librdkafka could, but confluent-kafka does not expose the call.
            raise QctlError(
                f"deleting committed offsets needs qctl's own Kafka client, which leaves "
                f"this context to librdkafka ({security}); librdkafka's Python binding "
                f"cannot delete offsets (kafka at {self.bootstrap})",
                "use Kafka's kafka-consumer-groups --delete-offsets, or a context the wire "
                "client speaks (docs/security.md)",
            )
        return security


def _bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port,host2:port`` (optionally ``PROTO://host:port``, ``[::1]:9092``)."""
    out = []
    for raw in bootstrap.split(","):
        entry = raw.strip()
        if "://" in entry:
            entry = entry.split("://", 1)[1]
        host, sep, port = entry.rpartition(":")
        if not sep:
            host, port = entry, "9092"
        host = host.strip("[]")
        try:
            out.append((host, int(port)))
        except ValueError:
            continue
    return out
