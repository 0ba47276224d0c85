"""qctl-orders: the order pipeline of qctl's examples, running, as a command plugin.

Five services (order, payment, inventory, notification, analytics) exchange events over
the topology of ``examples/order-pipeline.yaml`` on Kafka or RabbitMQ, with failures,
retries, dead letters, crashes and back-pressure to look at with ``qctl lag`` and
``qctl dlq``. It uses only qctl's public plugin API and backend capabilities.
"""

__version__ = "0.1.0"
