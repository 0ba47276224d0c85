"""The RabbitMQ backend, registered under the ``qctl.backends`` entry point ``rabbitmq``."""

from qctl.backends.rabbitmq.backend import RabbitMQBackend

__all__ = ["RabbitMQBackend"]
