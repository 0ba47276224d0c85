"""The Kafka backend class: the core plus one mixin per capability."""

from __future__ import annotations

from qctl.backends.kafka.groups import KafkaConsumerGroups
from qctl.backends.kafka.info import KafkaClusterInfo


class KafkaBackend(KafkaClusterInfo, KafkaConsumerGroups):
    """Apache Kafka (and compatible brokers) through confluent-kafka (librdkafka)."""
