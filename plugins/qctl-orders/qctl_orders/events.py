"""The pipeline's events: built with qctl's order templates, identified deterministically.

Every event carries the envelope of ``qctl.templates.orders`` (event id, type, order
id, correlation and causation ids) plus the pipeline's own fields: ``run_id`` (in the
body and the ``run-id`` header, so runs sharing a topology stay apart) and the
``domain: orders`` header (RabbitMQ's ``analytics`` headers exchange routes on it).

Event ids are derived, never random: an ``OrderCreated`` id from the run and the order,
every later event's id from the id of the event that caused it and its own type
(``uuid5``). A service that handles the same input twice (at-least-once delivery, a
crash before the commit) therefore writes the *same* event again, and everyone
downstream recognises the duplicate by its id; ``verify`` counts distinct ids.

Faults are part of the orders, as in life: a declined card (``tok_chargeDeclined``) makes
the payment fail, an item of the sold-out limited edition makes the reservation fail,
and a *poison* order carries its total as text with a decimal comma (``"49,90"``), which
the payment service cannot parse until ``qctl orders heal`` deploys the fix.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qctl.messages import Message
from qctl.templates.orders import (
    Order,
    inventory_reserved,
    new_order,
    order_created,
    out_of_stock,
    payment_completed,
    payment_failed,
    payment_refunded,
)
from qctl_orders.wiring import (
    INVENTORY_RESERVED,
    ORDER_CREATED,
    OUT_OF_STOCK,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
    ROUTING_KEYS,
)

RUN_HEADER = "run-id"
DOMAIN_HEADER = "domain"
DOMAIN = "orders"
_IDS = uuid.UUID("6f1d3c52-8a4e-4f0b-9a57-0c2b7e3d9a10")

#: The card tokens the order service uses (Stripe-style test tokens).
GOOD_CARD = "tok_visa"
DECLINED_CARD = "tok_chargeDeclined"
#: The limited edition nobody has in stock.
LIMITED_SKU = ("SKU-90001", "Limited edition grinder (numbered)", 249.00)


class BadEvent(ValueError):
    """The message is not an event of the pipeline (not JSON, no type or ids)."""


class InvalidAmount(ValueError):
    """The payment service cannot read the amount to charge (the poison bug)."""


def derived_id(cause_id: str, event_type: str) -> str:
    """The id of the ``event_type`` event caused by ``cause_id``: the same every time."""
    return str(uuid.uuid5(_IDS, f"{cause_id}/{event_type}"))


def created_id(run_id: str, order_id: str) -> str:
    return str(uuid.uuid5(_IDS, f"{run_id}/{order_id}/{ORDER_CREATED}"))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Event:
    """A consumed event: its JSON body and the message it came in."""

    body: dict[str, Any]
    message: Message

    @property
    def event_id(self) -> str:
        return str(self.body["event_id"])

    @property
    def event_type(self) -> str:
        return str(self.body["event_type"])

    @property
    def order_id(self) -> str:
        return str(self.body["order_id"])

    @property
    def run_id(self) -> str | None:
        run = self.body.get("run_id") or self.message.header_text(RUN_HEADER)
        return str(run) if run else None


def parse(message: Message) -> Event:
    """The event in ``message``; BadEvent when it is not one."""
    try:
        body = json.loads(message.value or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent(f"not a JSON event: {exc}") from None
    if not isinstance(body, dict):
        raise BadEvent("not a JSON object")
    for field in ("event_id", "event_type", "order_id"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise BadEvent(f"the event has no {field}")
    return Event(body, message)


def charge_amount(body: dict[str, Any], healed: bool) -> float:
    """The amount to charge for an ``OrderCreated``.

    The bug: totals sent as text with a decimal comma (``"49,90"``) are refused. The fix
    (``healed``) reads them the way the customer's locale wrote them.
    """
    raw = body.get("total")
    if isinstance(raw, bool) or raw is None:
        raise InvalidAmount("the order has no total")
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        text = raw.strip().replace(",", ".") if healed else raw.strip()
        try:
            return float(text)
        except ValueError:
            raise InvalidAmount(f"total {raw!r} is not a decimal number") from None
    raise InvalidAmount(f"total has the wrong type ({type(raw).__name__})")


def is_poison(body: dict[str, Any]) -> bool:
    """Whether an ``OrderCreated`` trips the payment service's (unhealed) parser."""
    if body.get("event_type") != ORDER_CREATED:
        return False
    try:
        charge_amount(body, healed=False)
    except InvalidAmount:
        return True
    return False


# -- building ---------------------------------------------------------------------------------
def stamp(
    message: Message,
    *,
    event_id: str,
    run_id: str | None,
    causation_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Message:
    """Give a template's event the pipeline's identity: id, run, domain, routing key."""
    body = json.loads(message.value or b"{}")
    body["event_id"] = event_id
    if causation_id is not None:
        body["causation_id"] = causation_id
    if run_id:
        body["run_id"] = run_id
    if extra:
        body.update(extra)
    message.value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    message.set_header("event-id", event_id)
    if run_id:
        message.set_header(RUN_HEADER, run_id)
    message.set_header(DOMAIN_HEADER, DOMAIN)
    if message.properties is not None:
        message.properties["message_id"] = event_id
        message.properties["app_id"] = "qctl-orders"
    message.source = {"routing_key": ROUTING_KEYS.get(str(body.get("event_type")), "")}
    return message


@dataclass(frozen=True)
class Faults:
    """How often each fault is planted in new orders (probabilities 0..1)."""

    payment_failure: float = 0.05
    out_of_stock: float = 0.02
    poison: float = 0.01


class OrderFactory:
    """The order service's customers: new orders, some of them with faults."""

    def __init__(self, run_id: str, faults: Faults, seed: int | None) -> None:
        self.run_id = run_id
        self.faults = faults
        self.rng = random.Random(seed)
        self.tag = run_id.rsplit("-", 1)[-1][:6].upper()
        self.count = 0

    def next(self) -> Message:
        self.count += 1
        rng = self.rng
        declined = rng.random() < self.faults.payment_failure
        sold_out = rng.random() < self.faults.out_of_stock
        poison = rng.random() < self.faults.poison
        order = new_order(rng, now())
        order.order_id = f"ord_{self.tag}{self.count:07d}"
        if sold_out:
            _add_limited_edition(order)
        message = order_created(rng, order, order.placed_at)
        extra: dict[str, Any] = {
            "payment": {"method": "card", "token": DECLINED_CARD if declined else GOOD_CARD}
        }
        if poison:
            extra["total"] = f"{order.total:.2f}".replace(".", ",")
        return stamp(
            message,
            event_id=created_id(self.run_id, order.order_id),
            run_id=self.run_id,
            extra=extra,
        )


def _add_limited_edition(order: Order) -> None:
    sku, name, price = LIMITED_SKU
    order.items.append(
        {"sku": sku, "name": name, "quantity": 1, "unit_price": price, "line_total": price}
    )
    ratio = (order.subtotal + price) / order.subtotal if order.subtotal else 1.0
    order.subtotal = round(order.subtotal + price, 2)
    order.tax = round(order.tax * ratio, 2)
    order.total = round(order.subtotal + order.shipping + order.tax, 2)


def order_of(event: Event, total: float | None = None) -> Order:
    """The order an event is about, rebuilt from the event (for the next event's body)."""
    body = event.body
    address = body.get("shipping_address") if isinstance(body.get("shipping_address"), dict) else {}
    amount = total if total is not None else body.get("amount", body.get("total", 0.0))
    try:
        amount = float(amount)
    except (TypeError, ValueError):
        amount = 0.0
    items = body.get("items") if isinstance(body.get("items"), list) else []
    return Order(
        order_id=event.order_id,
        customer_id=str(body.get("customer_id") or ""),
        correlation_id=str(body.get("correlation_id") or ""),
        currency=str(body.get("currency") or "EUR"),
        items=list(items or []),
        subtotal=amount,
        shipping=0.0,
        tax=0.0,
        total=amount,
        customer_name=str((address or {}).get("name") or ""),
        email="",
        address=dict(address or {}),
        channel=str(body.get("channel") or "web"),
        placed_at=now(),
        events=[event.event_id],
    )


Builder = Callable[[random.Random, Order, dt.datetime], Message]
_BUILDERS: dict[str, Builder] = {
    PAYMENT_COMPLETED: payment_completed,
    PAYMENT_FAILED: payment_failed,
    INVENTORY_RESERVED: inventory_reserved,
    OUT_OF_STOCK: out_of_stock,
}


def follow_up(
    cause: Event,
    event_type: str,
    order: Order,
    extra: dict[str, Any] | None = None,
) -> Message:
    """The ``event_type`` event caused by ``cause``, with its derived id.

    The template fills the realistic details from a generator seeded by the derived id,
    so even those are the same when the cause is handled twice.
    """
    event_id = derived_id(cause.event_id, event_type)
    rng = random.Random(event_id)
    if event_type == PAYMENT_REFUNDED:
        payment_id = (extra or {}).get("payment_id")
        message = payment_refunded(rng, order, now(), payment_id=payment_id)
    else:
        message = _BUILDERS[event_type](rng, order, now())
    return stamp(
        message,
        event_id=event_id,
        run_id=cause.run_id,
        causation_id=cause.event_id,
        extra=extra,
    )
