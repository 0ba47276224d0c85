"""The services' business logic: what each does with one message.

A handler looks at one message and decides: which events to write (to which outbox),
and whether the input is done (acknowledged / committed) or refused (RabbitMQ: rejected
into the queue's dead-letter exchange). Its state changes go to its ``Store`` staged,
so nothing counts until the batch's outputs are confirmed (see ``store.py``).

Every handler is idempotent: it remembers the event ids it handled and drops a
redelivered one (counted as a suppressed duplicate), so a redelivered ``OrderCreated``
never charges twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from qctl.dlq.provenance import (
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_FAILED_AT,
    H_FAILURE_REASON,
    H_ORIGINAL_TOPIC,
    H_REDRIVE_COUNT,
    Failure,
    KafkaOrigin,
    RabbitOrigin,
    qctl_failure_headers,
)
from qctl.messages import Message
from qctl_orders.events import (
    DECLINED_CARD,
    LIMITED_SKU,
    BadEvent,
    Event,
    InvalidAmount,
    charge_amount,
    follow_up,
    is_poison,
    order_of,
    parse,
)
from qctl_orders.runs import RunBook
from qctl_orders.store import Store
from qctl_orders.wiring import (
    INVENTORY_RESERVED,
    KAFKA,
    ORDER_CREATED,
    OUT_OF_STOCK,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
    RETRY_KEY,
    Wiring,
)

# Outbox names.
EVENTS = "events"
RETRY = "retry"
DLQ = "dlq"
COMMANDS = "commands"

# Retry bookkeeping headers (the attempt counter restarts after each redrive).
H_ATTEMPT = "retry-attempt"
H_NOT_BEFORE = "retry-not-before"
H_RETRY_ID = "retry-id"
H_EPOCH = "retry-epoch"
_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
)

#: RabbitMQ retry queues keep a message at most this long (their message TTL).
RABBIT_MAX_BACKOFF = 5.0
KAFKA_MAX_BACKOFF = 30.0


@dataclass
class Decision:
    """What to do with one input message."""

    outputs: list[tuple[str, Message]] = field(default_factory=list)
    #: RabbitMQ: reject the delivery (the queue dead-letters it) instead of acking it.
    reject: bool = False


@dataclass(frozen=True)
class Settings:
    """Service behaviour shared by all services of a run."""

    wiring: Wiring
    max_retries: int = 3
    retry_backoff: float = 0.5
    stock: int = 1_000_000

    def backoff(self, attempt: int) -> float:
        cap = KAFKA_MAX_BACKOFF if self.wiring.backend == KAFKA else RABBIT_MAX_BACKOFF
        return float(min(self.retry_backoff * 2 ** max(attempt - 1, 0), cap))


class Service:
    """Base: a name, a store and the settings."""

    name = "service"

    def __init__(self, settings: Settings, runs: RunBook, *, resume: bool = False) -> None:
        self.settings = settings
        self.runs = runs
        self.store = Store(runs.dir / "state" / f"{self.name}.jsonl", resume=resume)

    def handle(self, message: Message, lane: str) -> Decision:
        raise NotImplementedError

    def _parse(self, message: Message) -> Event | None:
        try:
            return parse(message)
        except BadEvent:
            self.store.count("not_events")
            return None

    def _duplicate(self, event: Event) -> bool:
        if self.store.seen(event.event_id):
            self.store.count("duplicates")
            return True
        return False


class PaymentService(Service):
    """Charges orders (``OrderCreated``) and refunds them (``OutOfStock``)."""

    name = "payment"

    def handle(self, message: Message, lane: str) -> Decision:
        try:
            event = parse(message)
        except BadEvent as exc:
            return self._failed(message, None, exc, lane)
        if lane == RETRY or message.has_header(H_RETRY_ID):
            self.store.add("retries_back", message.header_text(H_RETRY_ID) or "")
            attempt = self._attempt(message, lane)
            if attempt:
                # A retry published twice (the consumer died after sending it, before
                # committing) is handled once: the chain of attempts stays single.
                key = f"attempt:{event.event_id}:{_epoch(message)}:{attempt}"
                if self.store.get(key):
                    self.store.count("duplicates")
                    return Decision()
                self.store.put(key, True)
        if event.event_type == ORDER_CREATED:
            return self._charge(event, lane)
        if event.event_type == OUT_OF_STOCK:
            return self._refund(event)
        self.store.count("ignored")
        return Decision()

    def _charge(self, event: Event, lane: str) -> Decision:
        if self._duplicate(event):
            return Decision()
        try:
            amount = charge_amount(event.body, healed=self.runs.healed(event.run_id))
        except InvalidAmount as exc:
            return self._failed(event.message, event, exc, lane)
        order = order_of(event, total=amount)
        payment = event.body.get("payment")
        token = payment.get("token") if isinstance(payment, dict) else None
        if token == DECLINED_CARD:
            out = follow_up(event, PAYMENT_FAILED, order)
            self.store.count("declined")
        else:
            out = follow_up(
                event,
                PAYMENT_COMPLETED,
                order,
                extra={"items": order.items, "amount": amount},
            )
            self.store.count("charged")
        if is_poison(event.body):
            self.store.count("healed")
        self.store.mark(event.event_id)
        return Decision([(EVENTS, out)])

    def _refund(self, event: Event) -> Decision:
        if self._duplicate(event):
            return Decision()
        body = event.body
        out = follow_up(
            event,
            PAYMENT_REFUNDED,
            order_of(event),
            extra={"payment_id": body.get("payment_id")},
        )
        self.store.count("refunded")
        self.store.mark(event.event_id)
        return Decision([(EVENTS, out)])

    # -- failures ---------------------------------------------------------------------------
    def _failed(self, message: Message, event: Event | None, exc: Exception, lane: str) -> Decision:
        """Retry with back-off, or dead-letter once the attempts are used up."""
        attempt = self._attempt(message, lane)
        order_id = event.order_id if event is not None else (message.key_text or "?")
        failure = Failure(
            reason="processing-failed", exception=type(exc).__name__, message=str(exc)
        )
        if attempt < self.settings.max_retries:
            self.store.count("retries")
            retry_id = uuid.uuid4().hex
            self.store.add("retries_out", retry_id)
            return Decision([(RETRY, self._retry_copy(message, attempt + 1, retry_id, failure))])
        event_id = event.event_id if event is not None else message.header_text("event-id")
        dead_key = f"dead:{event_id}:{_epoch(message)}"
        if self.store.get(dead_key):
            self.store.count("duplicates")  # this attempt was already dead-lettered
            return Decision()
        self.store.put(dead_key, True)
        self.store.count("dead_lettered")
        self.store.add("dead_lettered", order_id)
        if self.settings.wiring.backend == KAFKA:
            return Decision([(DLQ, self._dlq_copy(message, failure))])
        return Decision(reject=True)

    def _attempt(self, message: Message, lane: str) -> int:
        """Attempts so far: 0 for a message that has not been retried since it was
        published or last redriven."""
        if self.settings.wiring.backend == KAFKA and lane != RETRY:
            return 0
        if (message.header_text(H_EPOCH) or "0") != _epoch(message):
            return 0
        try:
            return int(message.header_text(H_ATTEMPT) or 0)
        except ValueError:
            return 0

    def _provenance(self, message: Message, failure: Failure) -> Message:
        """A copy with qctl's provenance headers: where to redrive it, and why it failed."""
        out = message.copy()
        wiring = self.settings.wiring
        origin: KafkaOrigin | RabbitOrigin | None = None
        if wiring.backend == KAFKA:
            if not out.has_header(H_ORIGINAL_TOPIC):  # keep the first failure's origin
                origin = KafkaOrigin(
                    topic=message.topic or wiring.bus.name,
                    partition=message.partition,
                    offset=message.offset,
                    timestamp=message.timestamp,
                )
        else:
            # Back to the work queue it failed in, through the default exchange (its
            # first exchange would deliver it to every service again).
            origin = RabbitOrigin(exchange=None, queue=wiring.work_queue("payment").name)
            out.remove_header(*_DEATH_HEADERS)
        if origin is not None:
            for name, value in qctl_failure_headers(origin):
                out.set_header(name, value.decode())
        out.set_header(H_FAILURE_REASON, failure.reason)
        out.set_header(H_ERROR_CLASS, failure.exception)
        out.set_header(H_ERROR_MESSAGE, failure.message)
        out.timestamp = None
        return out

    def _retry_copy(
        self, message: Message, attempt: int, retry_id: str, failure: Failure
    ) -> Message:
        out = self._provenance(message, failure)
        delay = self.settings.backoff(attempt)
        out.set_header(H_ATTEMPT, str(attempt))
        out.set_header(H_RETRY_ID, retry_id)
        out.set_header(H_EPOCH, _epoch(message))
        if self.settings.wiring.backend == KAFKA:
            out.set_header(H_NOT_BEFORE, str(int((time.time() + delay) * 1000)))
        else:
            props = dict(out.properties or {})
            props["expiration"] = str(max(int(delay * 1000), 1))
            out.properties = props
            out.source = {"routing_key": RETRY_KEY}
        return out

    def _dlq_copy(self, message: Message, failure: Failure) -> Message:
        out = self._provenance(message, failure)
        out.remove_header(H_NOT_BEFORE, H_RETRY_ID)
        out.set_header(H_FAILED_AT, str(int(time.time() * 1000)))
        return out


class InventoryService(Service):
    """Reserves stock for paid orders; the limited edition is sold out."""

    name = "inventory"

    def _stock(self, sku: str) -> int:
        initial = 0 if sku == LIMITED_SKU[0] else self.settings.stock
        return int(self.store.get(f"stock:{sku}", initial))

    def handle(self, message: Message, lane: str) -> Decision:
        event = self._parse(message)
        if event is None:
            return Decision()
        if event.event_type != PAYMENT_COMPLETED:
            self.store.count("ignored")
            return Decision()
        if self._duplicate(event):
            return Decision()
        body = event.body
        order = order_of(event)
        items = [i for i in order.items if isinstance(i, dict)]
        short = None
        for item in items:
            quantity = _int(item.get("quantity"), 1)
            if self._stock(str(item.get("sku"))) < quantity:
                short = item
                break
        self.store.mark(event.event_id)
        if short is not None:
            sku = str(short.get("sku"))
            requested = _int(short.get("quantity"), 1)
            available = self._stock(sku)
            out = follow_up(
                event,
                OUT_OF_STOCK,
                order,
                extra={
                    "sku": sku,
                    "requested": requested,
                    "available": available,
                    "items": [{"sku": sku, "requested": requested, "available": available}],
                    "payment_id": body.get("payment_id"),
                    "amount": body.get("amount"),
                    "currency": body.get("currency"),
                },
            )
            self.store.count("out_of_stock")
            outputs = [(EVENTS, out)]
            if self.settings.wiring.backend != KAFKA:
                outputs.append((COMMANDS, out))  # the refund command for the payment service
            return Decision(outputs)
        for item in items:
            sku = str(item.get("sku"))
            self.store.put(f"stock:{sku}", self._stock(sku) - _int(item.get("quantity"), 1))
        self.store.count("reserved")
        return Decision([(EVENTS, follow_up(event, INVENTORY_RESERVED, order))])


#: What the notification service tells the customer about, by event type.
NOTIFY = {
    ORDER_CREATED: "order-received",
    PAYMENT_FAILED: "payment-failed",
    INVENTORY_RESERVED: "order-confirmation",
    PAYMENT_REFUNDED: "order-cancelled-refunded",
}


class NotificationService(Service):
    """Records what it would tell customers (nothing is really sent)."""

    name = "notification"

    def handle(self, message: Message, lane: str) -> Decision:
        event = self._parse(message)
        if event is None or self._duplicate(event):
            return Decision()
        self.store.mark(event.event_id)
        template = NOTIFY.get(event.event_type)
        if template is not None:
            self.store.count("notifications")
            self.store.count(f"notify:{template}")
        return Decision()


#: Order states, from the events seen for an order (in any order).
TERMINAL = ("completed", "payment_failed", "refunded")


def order_state(types: set[str] | frozenset[str]) -> str:
    if PAYMENT_FAILED in types:
        return "payment_failed"
    if PAYMENT_REFUNDED in types:
        return "refunded"
    if INVENTORY_RESERVED in types:
        return "completed"
    if OUT_OF_STOCK in types:
        return "out_of_stock"
    if PAYMENT_COMPLETED in types:
        return "paid"
    return "created"


class AnalyticsService(Service):
    """Counts events per type and orders per state."""

    name = "analytics"

    def handle(self, message: Message, lane: str) -> Decision:
        event = self._parse(message)
        if event is None or self._duplicate(event):
            return Decision()
        self.store.mark(event.event_id)
        self.store.count(f"events:{event.event_type}")
        key = f"state:{event.order_id}"
        types = frozenset(self.store.get(key, frozenset())) | {event.event_type}
        self.store.put(key, types)
        if order_state(types) in TERMINAL:
            self.store.add("terminal", event.order_id)
        return Decision()

    def states(self, order_ids: set[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for order_id in order_ids:
            state = order_state(self.store.committed(f"state:{order_id}", frozenset()))
            counts[state] = counts.get(state, 0) + 1
        return counts


def _epoch(message: Message) -> str:
    """How often the message was redriven: its attempts are counted anew each time."""
    return message.header_text(H_REDRIVE_COUNT) or "0"


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
