"""The RabbitMQ backend class: the core plus one mixin per capability."""

from __future__ import annotations

from qctl.backends.rabbitmq.deadletters import RabbitDeadLetters
from qctl.backends.rabbitmq.info import RabbitClusterInfo
from qctl.backends.rabbitmq.messaging import RabbitMessaging
from qctl.backends.rabbitmq.queues import RabbitQueueStats
from qctl.backends.rabbitmq.topology import RabbitTopologyAdmin


class RabbitMQBackend(
    RabbitClusterInfo, RabbitQueueStats, RabbitTopologyAdmin, RabbitMessaging, RabbitDeadLetters
):
    """RabbitMQ through AMQP 0-9-1 (pika) and the management HTTP API (httpx)."""
