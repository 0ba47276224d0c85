"""The Kafka backend class: the core plus one mixin per capability."""

from __future__ import annotations

from qctl.backends.kafka.info import KafkaClusterInfo


class KafkaBackend(KafkaClusterInfo):
    """Apache Kafka (and compatible brokers) through confluent-kafka (librdkafka)."""
