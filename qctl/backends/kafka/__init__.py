"""The Kafka backend, registered under the ``qctl.backends`` entry point ``kafka``."""

from qctl.backends.kafka.backend import KafkaBackend

__all__ = ["KafkaBackend"]
