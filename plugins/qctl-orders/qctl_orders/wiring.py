"""Which topic, queue, exchange and consumer group each service uses, per backend.

The names are those of ``examples/order-pipeline.yaml``. A *namespace* prefixes every
one of them (``ci1.orders``, ``ci1.payment.work``, ``ci1.payment-service``), so several
pipelines share one cluster without seeing each other's orders: tests run side by side,
and a demo never meets a test. ``qctl orders topology FILE --namespace NS`` writes the
example topology with the same prefix.

Kafka: every order event travels on one topic, ``orders``, keyed by order id, so all
events of one order are on one partition in the order they happened. Each service is
one consumer group on it. A payment that cannot be processed waits in ``orders.retry``
(read by its own group) and ends in ``orders.dlq``.

RabbitMQ: events are published to the ``orders.events`` topic exchange with the event
type as routing key (``order.created``, ``payment.completed``, ...); the bindings of the
example deliver them to one work queue per service and to the ``audit.log`` stream.
Refunds are commands to ``payments.commands`` (``refund``); retries go through
``orders.retry`` to ``payment.retry`` (a TTL queue that dead-letters back to
``payment.work``); a payment that keeps failing is rejected into ``orders.dlx`` →
``payment.dlq``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qctl.errors import UsageError
from qctl.refs import Ref

KAFKA = "kafka"
RABBITMQ = "rabbitmq"
BACKENDS = (KAFKA, RABBITMQ)

#: The consuming services, in the order the pipeline starts them.
SERVICES = ("payment", "inventory", "notification", "analytics")

# Event types and their RabbitMQ routing keys.
ORDER_CREATED = "OrderCreated"
PAYMENT_COMPLETED = "PaymentCompleted"
PAYMENT_FAILED = "PaymentFailed"
PAYMENT_REFUNDED = "PaymentRefunded"
INVENTORY_RESERVED = "InventoryReserved"
OUT_OF_STOCK = "OutOfStock"
ROUTING_KEYS = {
    ORDER_CREATED: "order.created",
    PAYMENT_COMPLETED: "payment.completed",
    PAYMENT_FAILED: "payment.failed",
    PAYMENT_REFUNDED: "payment.refunded",
    INVENTORY_RESERVED: "inventory.reserved",
    OUT_OF_STOCK: "inventory.out_of_stock",
}
EVENT_TYPES = tuple(ROUTING_KEYS)
REFUND_COMMAND_KEY = "refund"
RETRY_KEY = "payment"

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


def check_namespace(namespace: str | None) -> str | None:
    """The namespace, or a usage error when it would make invalid names."""
    if namespace is None or namespace == "":
        return None
    if not _NAMESPACE_RE.match(namespace):
        raise UsageError(
            f"namespace {namespace!r} is not usable as a name prefix",
            "use letters, digits, '-' and '_' (at most 40, starting with a letter or digit)",
        )
    return namespace


@dataclass(frozen=True)
class Wiring:
    """The names one pipeline (backend + namespace) runs on."""

    backend: str
    namespace: str | None = None

    def name(self, base: str) -> str:
        return f"{self.namespace}.{base}" if self.namespace else base

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.namespace}" if self.namespace else self.backend

    # -- Kafka -------------------------------------------------------------------------------
    @property
    def bus(self) -> Ref:
        """Kafka: the topic every order event is written to."""
        return Ref(KAFKA, "topic", self.name("orders"))

    @property
    def retry_topic(self) -> Ref:
        return Ref(KAFKA, "topic", self.name("orders.retry"))

    @property
    def dlq_topic(self) -> Ref:
        return Ref(KAFKA, "topic", self.name("orders.dlq"))

    def group(self, service: str) -> str:
        """Kafka: the consumer group of a service (``payment-retry`` for the retries)."""
        if service == "payment-retry":
            return self.name("payment-service.retry")
        return self.name(f"{service}-service")

    # -- RabbitMQ ----------------------------------------------------------------------------
    @property
    def events_exchange(self) -> Ref:
        return Ref(RABBITMQ, "exchange", self.name("orders.events"))

    @property
    def commands_exchange(self) -> Ref:
        return Ref(RABBITMQ, "exchange", self.name("payments.commands"))

    @property
    def retry_exchange(self) -> Ref:
        return Ref(RABBITMQ, "exchange", self.name("orders.retry"))

    def work_queue(self, service: str) -> Ref:
        return Ref(RABBITMQ, "queue", self.name(f"{service}.work"))

    @property
    def audit_log(self) -> Ref:
        return Ref(RABBITMQ, "queue", self.name("audit.log"))

    def dlq_queue(self, service: str) -> Ref:
        return Ref(RABBITMQ, "queue", self.name(f"{service}.dlq"))

    # -- both --------------------------------------------------------------------------------
    @property
    def dlqs(self) -> list[Ref]:
        """Every DLQ of the pipeline (only payment dead-letters; the rest must stay empty)."""
        if self.backend == KAFKA:
            return [self.dlq_topic]
        return [self.dlq_queue(s) for s in SERVICES]

    @property
    def payment_dlq(self) -> Ref:
        return self.dlq_topic if self.backend == KAFKA else self.dlq_queue("payment")

    @property
    def payment_work(self) -> str:
        """What the order service watches for back-pressure: a group or a queue."""
        return self.group("payment") if self.backend == KAFKA else self.name("payment.work")

    def required(self) -> list[str]:
        """Topics (Kafka) or queues (RabbitMQ) that must exist before a run."""
        if self.backend == KAFKA:
            return [self.bus.name, self.retry_topic.name, self.dlq_topic.name]
        names = [self.work_queue(s).name for s in SERVICES]
        names += [self.name("payment.retry"), self.audit_log.name]
        return names + [q.name for q in self.dlqs]

    def apply_hint(self) -> str:
        if self.namespace:
            return (
                f"apply it first: `qctl orders topology examples/order-pipeline.yaml "
                f"--namespace {self.namespace} > pipeline.yaml && qctl topology apply "
                f"pipeline.yaml -b {self.backend} --yes`"
            )
        return (
            "apply it first: `qctl topology apply examples/order-pipeline.yaml "
            f"-b {self.backend} --yes`"
        )
