"""The RabbitMQ backend class: the core plus one mixin per capability."""

from __future__ import annotations

from qctl.backends.rabbitmq.info import RabbitClusterInfo


class RabbitMQBackend(RabbitClusterInfo):
    """RabbitMQ through AMQP 0-9-1 (pika) and the management HTTP API (httpx)."""
