"""The Kafka backend class: the core plus one mixin per capability."""

from __future__ import annotations

from qctl.backends.kafka.copy.transactional import KafkaTransactions
from qctl.backends.kafka.deadletters import KafkaDeadLetters
from qctl.backends.kafka.groups import KafkaConsumerGroups
from qctl.backends.kafka.info import KafkaClusterInfo
from qctl.backends.kafka.messaging import KafkaMessaging
from qctl.backends.kafka.offsets import KafkaOffsetAdmin
from qctl.backends.kafka.topology import KafkaTopologyAdmin


class KafkaBackend(
    KafkaClusterInfo,
    KafkaConsumerGroups,
    KafkaOffsetAdmin,
    KafkaTopologyAdmin,
    KafkaMessaging,
    KafkaDeadLetters,
    KafkaTransactions,
):
    """Apache Kafka (and compatible brokers) through confluent-kafka (librdkafka)."""
