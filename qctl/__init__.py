"""qctl: one operations CLI for Kafka and RabbitMQ."""

__version__ = "0.1.0"
