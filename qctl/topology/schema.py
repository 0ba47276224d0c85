"""What a topology file may say: keys, Kafka topic configs, RabbitMQ arguments.

One table serves the loader (types and "did you mean"), the planner (which queue
arguments a policy could carry instead) and export (friendly names for ``x-`` arguments).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TOP_KEYS = ("version", "owner", "prefixes", "kafka", "rabbitmq", "environments")
ENV_KEYS = ("owner", "prefixes", "kafka", "rabbitmq")
KAFKA_KEYS = ("topics", "defaults")
KAFKA_DEFAULT_KEYS = ("partitions", "replication_factor", "configs")
TOPIC_KEYS = ("name", "partitions", "replication_factor", "configs", "dlq")
DLQ_KEYS = ("name", "partitions", "replication_factor", "configs")
RABBIT_KEYS = ("vhost", "exchanges", "queues", "bindings", "policies")
EXCHANGE_KEYS = (
    "name",
    "type",
    "durable",
    "auto_delete",
    "internal",
    "alternate_exchange",
    "arguments",
)
BINDING_KEYS = (
    "source",
    "destination",
    "destination_type",
    "routing_key",
    "routing_keys",
    "arguments",
)
POLICY_KEYS = ("name", "pattern", "apply_to", "definition", "priority")

EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")
QUEUE_TYPES = ("classic", "quorum", "stream")
POLICY_APPLY_TO = ("all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams")

#: Topic configs of Apache Kafka 4.1 (plus ones older brokers still have).
KAFKA_INT_CONFIGS = frozenset(
    {
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
        "delete.retention.ms",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "index.interval.bytes",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.index.bytes",
        "segment.jitter.ms",
        "segment.ms",
    }
)
KAFKA_BOOL_CONFIGS = frozenset(
    {
        "preallocate",
        "unclean.leader.election.enable",
        "remote.storage.enable",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "message.downconversion.enable",
    }
)
KAFKA_CHOICE_CONFIGS: dict[str, tuple[str, ...]] = {
    "compression.type": ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
    "message.timestamp.type": ("CreateTime", "LogAppendTime"),
}
KAFKA_OTHER_CONFIGS = frozenset(
    {
        "cleanup.policy",
        "min.cleanable.dirty.ratio",
        "follower.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        "message.format.version",
    }
)
KAFKA_TOPIC_CONFIGS = (
    KAFKA_INT_CONFIGS | KAFKA_BOOL_CONFIGS | set(KAFKA_CHOICE_CONFIGS) | KAFKA_OTHER_CONFIGS
)

#: Sane defaults of a ``dlq: true`` topic: kept two weeks, never compacted.
DLQ_TOPIC_CONFIGS = {"cleanup.policy": "delete", "retention.ms": "1209600000"}


@dataclass(frozen=True)
class ArgSpec:
    """A RabbitMQ ``x-`` argument: friendly key, value type, where it is allowed.

    A value or queue type RabbitMQ refuses is an error in a file; one RabbitMQ accepts
    although it means nothing (or not what it seems) is a warning, so that an export of
    whatever a live vhost holds loads back.
    """

    key: str
    argument: str
    kind: str  # "int", "str", "bool", "choice", "duration"
    queue_types: tuple[str, ...]
    #: The policy key that can set the same thing without recreating the queue.
    policy_key: str | None = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    #: The smallest value RabbitMQ accepts, where it is below ``minimum``: values in
    #: between load with a warning (saying ``accepted_meaning``, what RabbitMQ makes of them).
    accepted_minimum: int | None = None
    accepted_meaning: str = ""
    #: False when RabbitMQ (3.10 to 4.2) does not check the value on declare, so a value
    #: of the wrong type or range loads with a warning.
    broker_checks_value: bool = True
    #: Queue types outside ``queue_types`` that RabbitMQ still accepts the argument on,
    #: each with the reason shown in the warning.
    accepted_on: Mapping[str, str] = field(default_factory=dict, hash=False)


_CQ = ("classic", "quorum")
_ALL = ("classic", "quorum", "stream")

QUEUE_ARGS: tuple[ArgSpec, ...] = (
    ArgSpec("dead_letter_exchange", "x-dead-letter-exchange", "str", _CQ, "dead-letter-exchange"),
    ArgSpec(
        "dead_letter_routing_key",
        "x-dead-letter-routing-key",
        "str",
        _CQ,
        "dead-letter-routing-key",
    ),
    ArgSpec(
        "dead_letter_strategy",
        "x-dead-letter-strategy",
        "choice",
        ("quorum",),
        "dead-letter-strategy",
        choices=("at-most-once", "at-least-once"),
    ),
    ArgSpec("message_ttl", "x-message-ttl", "int", _CQ, "message-ttl", minimum=0),
    ArgSpec("expires", "x-expires", "int", _CQ, "expires", minimum=1),
    ArgSpec("max_length", "x-max-length", "int", _CQ, "max-length", minimum=0),
    ArgSpec("max_length_bytes", "x-max-length-bytes", "int", _ALL, "max-length-bytes", minimum=0),
    ArgSpec(
        "overflow",
        "x-overflow",
        "choice",
        _CQ,
        "overflow",
        choices=("drop-head", "reject-publish", "reject-publish-dlx"),
    ),
    ArgSpec(
        "max_priority",
        "x-max-priority",
        "int",
        ("classic",),
        minimum=1,
        maximum=255,
        accepted_minimum=0,
        accepted_meaning="treats it as 1",
    ),
    ArgSpec("delivery_limit", "x-delivery-limit", "int", ("quorum",), "delivery-limit", minimum=-1),
    ArgSpec("single_active_consumer", "x-single-active-consumer", "bool", _CQ),
    ArgSpec(
        "queue_mode",
        "x-queue-mode",
        "choice",
        ("classic",),
        "queue-mode",
        choices=("default", "lazy"),
    ),
    ArgSpec(
        "queue_version",
        "x-queue-version",
        "int",
        ("classic",),
        "queue-version",
        minimum=1,
        maximum=2,
    ),
    ArgSpec("max_age", "x-max-age", "duration", ("stream",), "max-age"),
    ArgSpec(
        "stream_max_segment_size_bytes",
        "x-stream-max-segment-size-bytes",
        "int",
        ("stream",),
        "stream-max-segment-size-bytes",
        minimum=1,
        accepted_minimum=0,
    ),
    ArgSpec("initial_group_size", "x-quorum-initial-group-size", "int", ("quorum",), minimum=1),
    ArgSpec("initial_cluster_size", "x-initial-cluster-size", "int", ("stream",), minimum=1),
    ArgSpec(
        "leader_locator",
        "x-queue-leader-locator",
        "choice",
        ("quorum", "stream"),
        "queue-leader-locator",
        choices=("client-local", "balanced", "random", "least-leaders"),
        accepted_on={
            "classic": "RabbitMQ 4.0 and later accept it on classic queues; 3.x refuses "
            "the declaration"
        },
    ),
    ArgSpec(
        "consumer_timeout",
        "x-consumer-timeout",
        "int",
        _CQ,
        "consumer-timeout",
        minimum=1,
        broker_checks_value=False,
        accepted_on={"stream": "RabbitMQ accepts it on a stream, and streams ignore it"},
    ),
)
#: RabbitMQ queue arguments without a friendly key: kept as raw arguments, and never
#: taken for a misspelling of one with a key (``x-queue-master-locator`` is not a typo of
#: ``x-queue-leader-locator``).
OTHER_QUEUE_ARGUMENTS = frozenset(
    {
        "x-consumer-disconnected-timeout",
        "x-max-in-memory-bytes",
        "x-max-in-memory-length",
        "x-member-placement-tag",
        "x-queue-master-locator",
        "x-stream-filter-size-bytes",
    }
)
QUEUE_ARGS_BY_KEY = {a.key: a for a in QUEUE_ARGS}
QUEUE_ARGS_BY_ARGUMENT = {a.argument: a for a in QUEUE_ARGS}
QUEUE_KEYS = ("name", "type", "durable", "auto_delete", "arguments", "dlq", *QUEUE_ARGS_BY_KEY)

#: Known policy definition keys (plugins add more; only near-misses are rejected).
POLICY_DEFINITION_KEYS = (
    "alternate-exchange",
    "consumer-timeout",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "dead-letter-strategy",
    "delivery-limit",
    "expires",
    "federation-upstream",
    "federation-upstream-set",
    "ha-mode",
    "ha-params",
    "ha-promote-on-failure",
    "ha-promote-on-shutdown",
    "ha-sync-batch-size",
    "ha-sync-mode",
    "initial-cluster-size",
    "max-age",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "max-length",
    "max-length-bytes",
    "message-ttl",
    "overflow",
    "queue-leader-locator",
    "queue-master-locator",
    "queue-mode",
    "queue-version",
    "stream-max-segment-size-bytes",
    "target-group-size",
)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else an empty string."""
    matches = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def near_miss(word: str, known: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(known), n=1, cutoff=0.8)
    return matches[0] if matches else None
