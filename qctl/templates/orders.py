"""The order pipeline's events: order created, paid (or not), reserved (or out of
stock), customer notified — as realistic JSON.

Every event shares an envelope: ``event_id``, ``event_type``, ``event_version``,
``occurred_at``, ``correlation_id`` (the same for all events of one order),
``causation_id`` (the event that caused this one), ``order_id`` and ``customer_id``.
The Kafka key is the order id, so all events of one order land on one partition and
stay in order. Headers carry ``event-type``, ``event-id``, ``correlation-id`` and
``content-type``; RabbitMQ gets the matching AMQP properties (``message_id``,
``correlation_id``, ``type``, ``content_type``, ``timestamp``, ``app_id``).

``order_chain()`` builds one consistent chain for one order (the order simulator plugin
uses it); the single-event templates build the event for a fresh order each time.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from qctl.messages import Message

CURRENCIES = ("EUR", "EUR", "EUR", "USD", "USD", "GBP", "CHF", "SEK")
_VAT = {"EUR": 0.19, "USD": 0.0825, "GBP": 0.2, "CHF": 0.081, "SEK": 0.25}
CATALOG = (
    ("SKU-10042", "Espresso beans 1kg", 18.90),
    ("SKU-10077", "Oat milk 6-pack", 11.94),
    ("SKU-20013", "Ceramic pour-over dripper", 24.50),
    ("SKU-20031", "Paper filters (100)", 4.99),
    ("SKU-30008", "Burr grinder", 129.00),
    ("SKU-30115", "Gooseneck kettle", 64.90),
    ("SKU-40002", "Travel mug", 19.95),
    ("SKU-40019", "Cold brew bottle", 27.40),
    ("SKU-50020", "Barista apron", 32.00),
    ("SKU-50061", "Descaling tablets", 8.75),
)
CITIES = (
    ("Berlin", "10115", "DE"),
    ("Hamburg", "20095", "DE"),
    ("Amsterdam", "1012", "NL"),
    ("Lyon", "69001", "FR"),
    ("London", "EC1A 1BB", "GB"),
    ("Boston", "02108", "US"),
    ("Zurich", "8001", "CH"),
    ("Stockholm", "111 20", "SE"),
)
FIRST_NAMES = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances", "Tim")
LAST_NAMES = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson")
STREETS = ("Hauptstrasse", "Kingsway", "Rue de la Paix", "Main Street", "Keizersgracht")
WAREHOUSES = ("FRA-1", "AMS-2", "DUB-1", "BOS-3")
PAYMENT_METHODS = ("card", "card", "card", "paypal", "sepa_debit", "apple_pay")
CARD_BRANDS = ("visa", "mastercard", "amex")
PAYMENT_FAILURES = (
    ("card_declined", "The card was declined by the issuer"),
    ("insufficient_funds", "Insufficient funds"),
    ("expired_card", "The card has expired"),
    ("gateway_timeout", "Timeout waiting for the payment gateway after 30000 ms"),
    ("fraud_suspected", "Payment blocked by fraud screening"),
)

Outcome = Literal["completed", "payment_failed", "out_of_stock"]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _code(rng: random.Random, prefix: str, length: int = 12) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
    return prefix + "".join(rng.choice(alphabet) for _ in range(length))


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(value: float) -> float:
    return round(value + 1e-9, 2)


@dataclass
class Order:
    """One order's facts, shared by every event of its chain."""

    order_id: str
    customer_id: str
    correlation_id: str
    currency: str
    items: list[dict[str, Any]]
    subtotal: float
    shipping: float
    tax: float
    total: float
    customer_name: str
    email: str
    address: dict[str, str]
    channel: str
    placed_at: dt.datetime
    events: list[str] = field(default_factory=list)  # event ids so far, for causation


def new_order(rng: random.Random, at: dt.datetime) -> Order:
    """A random but plausible order placed at ``at``."""
    currency = rng.choice(CURRENCIES)
    picks = rng.sample(CATALOG, rng.randint(1, 4))
    items: list[dict[str, Any]] = []
    for sku, name, price in picks:
        quantity = rng.choice((1, 1, 1, 2, 2, 3, 6))
        items.append(
            {
                "sku": sku,
                "name": name,
                "quantity": quantity,
                "unit_price": price,
                "line_total": _money(price * quantity),
            }
        )
    subtotal = _money(sum(i["line_total"] for i in items))
    shipping = 0.0 if subtotal >= 50 else 4.95
    tax = _money((subtotal + shipping) * _VAT[currency])
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city, postcode, country = rng.choice(CITIES)
    return Order(
        order_id=_code(rng, "ord_"),
        customer_id=_code(rng, "cus_", 10),
        correlation_id=_uuid(rng),
        currency=currency,
        items=items,
        subtotal=subtotal,
        shipping=shipping,
        tax=tax,
        total=_money(subtotal + shipping + tax),
        customer_name=f"{first} {last}",
        email=f"{first.lower()}.{last.lower()}@example.com",
        address={
            "name": f"{first} {last}",
            "street": f"{rng.choice(STREETS)} {rng.randint(1, 200)}",
            "city": city,
            "postal_code": postcode,
            "country": country,
        },
        channel=rng.choice(("web", "web", "mobile_app", "marketplace")),
        placed_at=at,
    )


# -- events ---------------------------------------------------------------------------------
def _event(
    rng: random.Random, order: Order, event_type: str, at: dt.datetime, payload: dict[str, Any]
) -> Message:
    event_id = _uuid(rng)
    body: dict[str, Any] = {
        "event_id": event_id,
        "event_type": event_type,
        "event_version": 1,
        "occurred_at": _iso(at),
        "correlation_id": order.correlation_id,
        "causation_id": order.events[-1] if order.events else None,
        "order_id": order.order_id,
        "customer_id": order.customer_id,
    }
    body.update(payload)
    order.events.append(event_id)
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Message(
        value=value,
        key=order.order_id.encode(),
        headers=[
            ("event-type", event_type),
            ("event-id", event_id),
            ("correlation-id", order.correlation_id),
            ("content-type", "application/json"),
        ],
        properties={
            "content_type": "application/json",
            "delivery_mode": 2,
            "message_id": event_id,
            "correlation_id": order.correlation_id,
            "type": event_type,
            "timestamp": int(at.timestamp()),
            "app_id": "qctl",
        },
    )


def order_created(rng: random.Random, order: Order, at: dt.datetime) -> Message:
    return _event(
        rng,
        order,
        "OrderCreated",
        at,
        {
            "status": "CREATED",
            "channel": order.channel,
            "items": order.items,
            "currency": order.currency,
            "subtotal": order.subtotal,
            "shipping": order.shipping,
            "tax": order.tax,
            "total": order.total,
            "shipping_address": order.address,
        },
    )


def payment_completed(rng: random.Random, order: Order, at: dt.datetime) -> Message:
    method = rng.choice(PAYMENT_METHODS)
    payload: dict[str, Any] = {
        "status": "COMPLETED",
        "payment_id": _code(rng, "pay_"),
        "amount": order.total,
        "currency": order.currency,
        "method": method,
        "psp_reference": _code(rng, "psp_", 16),
        "captured_at": _iso(at),
    }
    if method == "card":
        payload["card"] = {"brand": rng.choice(CARD_BRANDS), "last4": f"{rng.randint(0, 9999):04d}"}
    return _event(rng, order, "PaymentCompleted", at, payload)


def payment_failed(rng: random.Random, order: Order, at: dt.datetime) -> Message:
    code, message = rng.choice(PAYMENT_FAILURES)
    return _event(
        rng,
        order,
        "PaymentFailed",
        at,
        {
            "status": "FAILED",
            "payment_id": _code(rng, "pay_"),
            "amount": order.total,
            "currency": order.currency,
            "method": rng.choice(PAYMENT_METHODS),
            "attempt": rng.randint(1, 3),
            "retryable": code in ("gateway_timeout", "insufficient_funds"),
            "failure": {"code": code, "message": message},
        },
    )


def inventory_reserved(rng: random.Random, order: Order, at: dt.datetime) -> Message:
    return _event(
        rng,
        order,
        "InventoryReserved",
        at,
        {
            "status": "RESERVED",
            "reservation_id": _code(rng, "res_"),
            "warehouse": rng.choice(WAREHOUSES),
            "items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in order.items],
            "expires_at": _iso(at + dt.timedelta(minutes=30)),
        },
    )


def out_of_stock(rng: random.Random, order: Order, at: dt.datetime) -> Message:
    item = rng.choice(order.items)
    available = rng.randint(0, max(0, item["quantity"] - 1))
    return _event(
        rng,
        order,
        "OutOfStock",
        at,
        {
            "status": "OUT_OF_STOCK",
            "warehouse": rng.choice(WAREHOUSES),
            "sku": item["sku"],
            "requested": item["quantity"],
            "available": available,
            "items": [
                {
                    "sku": item["sku"],
                    "requested": item["quantity"],
                    "available": available,
                }
            ],
        },
    )


def payment_refunded(
    rng: random.Random,
    order: Order,
    at: dt.datetime,
    payment_id: str | None = None,
    reason: str = "out_of_stock",
) -> Message:
    """The compensation of a captured payment (e.g. after ``OutOfStock``): the whole
    amount goes back to the customer."""
    return _event(
        rng,
        order,
        "PaymentRefunded",
        at,
        {
            "status": "REFUNDED",
            "refund_id": _code(rng, "rfd_"),
            "payment_id": payment_id,
            "amount": order.total,
            "currency": order.currency,
            "reason": reason,
            "refunded_at": _iso(at),
        },
    )


def notification(
    rng: random.Random, order: Order, at: dt.datetime, template: str | None = None
) -> Message:
    channel = rng.choice(("email", "email", "sms", "push"))
    recipient = order.email if channel == "email" else f"+49 151 {rng.randint(1000000, 9999999)}"
    return _event(
        rng,
        order,
        "NotificationRequested",
        at,
        {
            "status": "QUEUED",
            "notification_id": _code(rng, "ntf_"),
            "channel": channel,
            "template": template or rng.choice(("order-confirmation", "order-shipped")),
            "recipient": recipient,
            "locale": rng.choice(("en-GB", "de-DE", "fr-FR", "nl-NL", "en-US")),
        },
    )


# -- chains -----------------------------------------------------------------------------------
_NOTIFY = {
    "completed": "order-confirmation",
    "payment_failed": "payment-failed",
    "out_of_stock": "order-cancelled-out-of-stock",
}


def order_chain(
    rng: random.Random,
    start: dt.datetime,
    outcome: Outcome = "completed",
    order: Order | None = None,
) -> list[Message]:
    """All events of one order, in order, sharing order id, customer and correlation id.

    completed:      OrderCreated → PaymentCompleted → InventoryReserved → NotificationRequested
    payment_failed: OrderCreated → PaymentFailed → NotificationRequested
    out_of_stock:   OrderCreated → PaymentCompleted → OutOfStock → NotificationRequested

    Each event's ``causation_id`` is the previous event's id; times advance by a few
    hundred milliseconds to a few seconds per step.
    """
    order = order or new_order(rng, start)
    at = start
    events = [order_created(rng, order, at)]

    def later() -> dt.datetime:
        nonlocal at
        at = at + dt.timedelta(milliseconds=rng.randint(150, 4000))
        return at

    if outcome == "payment_failed":
        events.append(payment_failed(rng, order, later()))
    else:
        events.append(payment_completed(rng, order, later()))
        if outcome == "out_of_stock":
            events.append(out_of_stock(rng, order, later()))
        else:
            events.append(inventory_reserved(rng, order, later()))
    events.append(notification(rng, order, later(), _NOTIFY[outcome]))
    return events


def random_outcome(rng: random.Random) -> Outcome:
    """Mostly happy orders: 80% completed, 12% payment failed, 8% out of stock."""
    roll = rng.random()
    if roll < 0.8:
        return "completed"
    return "payment_failed" if roll < 0.92 else "out_of_stock"


# -- the registered templates -----------------------------------------------------------------
@dataclass(frozen=True)
class EventTemplate:
    """A single-event template: each message is this event of a fresh order."""

    name: str
    description: str
    build: Callable[[random.Random, Order, dt.datetime], Message]
    #: Events that must precede this one in a chain (so causation ids are realistic).
    before: tuple[Callable[[random.Random, Order, dt.datetime], Message], ...] = ()

    def generate(self, rng: random.Random, start: dt.datetime) -> Iterator[Message]:
        at = start
        while True:
            order = new_order(rng, at - dt.timedelta(seconds=rng.randint(1, 90)))
            for step in self.before:  # fill in causation without emitting those events
                step(random.Random(rng.getrandbits(64)), order, order.placed_at)
            yield self.build(rng, order, at)
            at += dt.timedelta(milliseconds=rng.randint(20, 2000))


@dataclass(frozen=True)
class OrderFlowTemplate:
    """Whole order chains, several orders interleaved, each order's events in order."""

    name: str = "order-flow"
    description: str = (
        "complete order chains (created, paid or failed, reserved or out of stock, "
        "notified), several orders interleaved, each order's events in order"
    )
    concurrency: int = 5

    def generate(self, rng: random.Random, start: dt.datetime) -> Iterator[Message]:
        at = start
        active: list[list[Message]] = []
        while True:
            while len(active) < self.concurrency:
                active.append(order_chain(rng, at, random_outcome(rng)))
            chain = rng.choice(active)
            yield chain.pop(0)
            if not chain:
                active.remove(chain)
            at += dt.timedelta(milliseconds=rng.randint(20, 1500))


ORDER_CREATED = EventTemplate(
    "order-created",
    "OrderCreated: a customer placed an order (items, amounts, currency, address)",
    order_created,
)
PAYMENT_COMPLETED = EventTemplate(
    "payment-completed",
    "PaymentCompleted: the order was paid (method, amount, PSP reference)",
    payment_completed,
    before=(order_created,),
)
PAYMENT_FAILED = EventTemplate(
    "payment-failed",
    "PaymentFailed: the payment was declined or timed out (failure code and message)",
    payment_failed,
    before=(order_created,),
)
INVENTORY_RESERVED = EventTemplate(
    "inventory-reserved",
    "InventoryReserved: stock was reserved in a warehouse for the order's items",
    inventory_reserved,
    before=(order_created, payment_completed),
)
OUT_OF_STOCK = EventTemplate(
    "out-of-stock",
    "OutOfStock: an item of the order could not be reserved",
    out_of_stock,
    before=(order_created, payment_completed),
)
NOTIFICATION = EventTemplate(
    "notification",
    "NotificationRequested: tell the customer (email, SMS or push) about the order",
    notification,
    before=(order_created, payment_completed, inventory_reserved),
)
ORDER_FLOW = OrderFlowTemplate()
