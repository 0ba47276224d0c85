"""``qctl orders verify``: the pipeline's invariants, checked against what the brokers hold.

Nothing is taken from the services' memory: the events of the run are read back from
the broker (Kafka: the ``orders`` topic with ``read_committed``, from shortly before the
run started; RabbitMQ: the ``audit.log`` stream, which receives every event), and the
dead letters from the DLQs (Kafka: what comes after qctl's DLQ group, as ``qctl dlq``
sees it; RabbitMQ: what is in the queues, peeked). Only the number of orders the order
service had confirmed comes from the run record.

The invariants:

* every order reached a final state (completed, payment failed, refunded), except
  poison orders, which may instead be waiting in the DLQ (``--all-terminal``: none may);
* no order was charged twice (one distinct ``PaymentCompleted`` at most, never together
  with a ``PaymentFailed``);
* refunds equal out-of-stock events (and each refunded order is one that ran out);
* the DLQ holds exactly the poison messages that are not yet processed: each once, and
  nothing else of the run;
* every event belongs to an order that was created, and the run created as many orders
  as the order service had confirmed.

The same event id seen twice is a duplicate delivery, which at-least-once allows: it is
reported, not a failure.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from qctl.backends.base import Backend, require
from qctl.backends.capabilities.deadletters import SupportsDeadLetters
from qctl.backends.capabilities.groups import SupportsConsumerGroups
from qctl.backends.capabilities.messaging import ConsumeRequest, Position, SupportsConsume
from qctl.messages import Message
from qctl.refs import Ref
from qctl_orders.events import RUN_HEADER, is_poison
from qctl_orders.services import TERMINAL, order_state
from qctl_orders.wiring import (
    KAFKA,
    ORDER_CREATED,
    OUT_OF_STOCK,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
    Wiring,
)

#: How far before the run's start the event log is read (clock skew, slow starts).
MARGIN = dt.timedelta(minutes=1)
_EXAMPLES = 5


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    examples: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    run: str
    backend: str
    namespace: str | None
    ok: bool
    orders: int
    states: dict[str, int]
    poison: int
    dlq: dict[str, int]
    duplicate_deliveries: int
    checks: list[Check]


@dataclass
class DeadLetter:
    """One message of the run found in a DLQ."""

    dlq: str
    body: dict[str, Any] | None


def evaluate(
    run: str,
    bodies: Iterable[dict[str, Any]],
    dead: Iterable[DeadLetter],
    expected_orders: int | None,
    all_terminal: bool = False,
    backend: str = "",
    namespace: str | None = None,
) -> Verdict:
    """Check the invariants on the run's events and dead letters (pure: no broker)."""
    deliveries: Counter[str] = Counter()
    by_order: dict[str, dict[str, set[str]]] = {}
    created_bodies: dict[str, dict[str, Any]] = {}
    for body in bodies:
        event_id = str(body.get("event_id"))
        deliveries[event_id] += 1
        if deliveries[event_id] > 1:
            continue
        order_id = str(body.get("order_id"))
        event_type = str(body.get("event_type"))
        by_order.setdefault(order_id, {}).setdefault(event_type, set()).add(event_id)
        if event_type == ORDER_CREATED:
            created_bodies.setdefault(order_id, body)
    dead_list = list(dead)
    dlq_counts: Counter[str] = Counter(d.dlq for d in dead_list)
    dead_ids: Counter[str] = Counter()
    dead_orders: set[str] = set()
    strangers: list[str] = []
    for letter in dead_list:
        dead_body = letter.body
        if (
            dead_body is None
            or dead_body.get("event_type") != ORDER_CREATED
            or not is_poison(dead_body)
        ):
            what = (
                "not an event"
                if dead_body is None
                else f"{dead_body.get('event_type')} {dead_body.get('order_id')}"
            )
            strangers.append(f"{letter.dlq}: {what}")
            continue
        dead_ids[str(dead_body.get("event_id"))] += 1
        dead_orders.add(str(dead_body.get("order_id")))

    orders = set(created_bodies)
    poison = {o for o, b in created_bodies.items() if is_poison(b)}
    states: Counter[str] = Counter()
    unsettled: list[str] = []
    for order_id in sorted(orders):
        types = by_order.get(order_id, {})
        state = order_state(frozenset(types))
        if state not in TERMINAL and order_id in poison and order_id in dead_orders:
            state = "dead_lettered"
        states[state] += 1
        if state in TERMINAL or (state == "dead_lettered" and not all_terminal):
            continue
        unsettled.append(f"{order_id}: {state}")

    checks = [
        _created_check(len(orders), expected_orders),
        Check(
            "every order settled" if not all_terminal else "every order final",
            not unsettled,
            (
                f"{len(orders) - len(unsettled)} of {len(orders)} orders "
                + (
                    "completed, payment failed or refunded"
                    if all_terminal
                    else "final (completed, payment failed, refunded) or poison in the DLQ"
                )
            ),
            unsettled[:_EXAMPLES],
        ),
        _charged_once(by_order),
        _refunds(by_order),
        _dlq_check(dead_ids, dead_orders, poison, by_order, strangers),
        _orphans(by_order, orders),
    ]
    return Verdict(
        run=run,
        backend=backend,
        namespace=namespace,
        ok=all(c.ok for c in checks),
        orders=len(orders),
        states=dict(sorted(states.items())),
        poison=len(poison),
        dlq=dict(dlq_counts),
        duplicate_deliveries=sum(n - 1 for n in deliveries.values() if n > 1),
        checks=checks,
    )


def _created_check(found: int, expected: int | None) -> Check:
    if expected is None:
        return Check("orders created", True, f"{found} orders (the run did not record a count)")
    return Check(
        "orders created",
        found == expected,
        f"{found} OrderCreated events; the order service had {expected} confirmed",
    )


def _charged_once(by_order: dict[str, dict[str, set[str]]]) -> Check:
    bad = []
    for order_id, types in sorted(by_order.items()):
        charges = len(types.get(PAYMENT_COMPLETED, ()))
        failures = len(types.get(PAYMENT_FAILED, ()))
        if charges > 1:
            bad.append(f"{order_id}: charged {charges} times")
        elif charges and failures:
            bad.append(f"{order_id}: both charged and failed")
        elif failures > 1:
            bad.append(f"{order_id}: failed {failures} times")
    charged = sum(1 for t in by_order.values() if t.get(PAYMENT_COMPLETED))
    return Check(
        "no order charged twice",
        not bad,
        f"{charged} orders charged once" if not bad else f"{len(bad)} orders charged wrongly",
        bad[:_EXAMPLES],
    )


def _refunds(by_order: dict[str, dict[str, set[str]]]) -> Check:
    refunds = sum(len(t.get(PAYMENT_REFUNDED, ())) for t in by_order.values())
    stockouts = sum(len(t.get(OUT_OF_STOCK, ())) for t in by_order.values())
    bad = []
    for order_id, types in sorted(by_order.items()):
        refunded = len(types.get(PAYMENT_REFUNDED, ()))
        out = len(types.get(OUT_OF_STOCK, ()))
        if refunded != out:
            bad.append(f"{order_id}: {out} out-of-stock, {refunded} refunds")
        elif refunded and not types.get(PAYMENT_COMPLETED):
            bad.append(f"{order_id}: refunded without a payment")
    return Check(
        "refunds equal out-of-stock events",
        not bad and refunds == stockouts,
        f"{refunds} refunds, {stockouts} out-of-stock events",
        bad[:_EXAMPLES],
    )


def _dlq_check(
    dead_ids: Counter[str],
    dead_orders: set[str],
    poison: set[str],
    by_order: dict[str, dict[str, set[str]]],
    strangers: list[str],
) -> Check:
    bad = list(strangers)
    bad += [f"{event_id}: in the DLQ {n} times" for event_id, n in dead_ids.items() if n > 1]
    waiting = {o for o in poison if order_state(frozenset(by_order.get(o, {}))) not in TERMINAL}
    bad += [f"{o}: poison, neither processed nor in the DLQ" for o in sorted(waiting - dead_orders)]
    bad += [f"{o}: processed, but still in the DLQ" for o in sorted(dead_orders - waiting)]
    return Check(
        "the DLQ holds exactly the poison messages",
        not bad,
        f"{len(dead_orders)} poison orders in the DLQ, {len(poison) - len(waiting)} processed "
        f"after a heal, of {len(poison)} poison orders",
        bad[:_EXAMPLES],
    )


def _orphans(by_order: dict[str, dict[str, set[str]]], orders: set[str]) -> Check:
    orphans = sorted(set(by_order) - orders)
    return Check(
        "every event belongs to a created order",
        not orphans,
        f"{len(orphans)} orders with events but no OrderCreated" if orphans else "yes",
        orphans[:_EXAMPLES],
    )


# -- reading the brokers ----------------------------------------------------------------------
class Reader:
    """Reads a run's events and dead letters from one backend."""

    def __init__(self, backend: Backend, wiring: Wiring, run: str, since: dt.datetime) -> None:
        self.backend = backend
        self.wiring = wiring
        self.run = run
        self.since = since - MARGIN
        self.consumer = require(backend, SupportsConsume, "consume")

    def events(self) -> list[dict[str, Any]]:
        if self.wiring.backend == KAFKA:
            source = self.wiring.bus
            request = ConsumeRequest(
                start=Position("timestamp", instant=self.since), isolation="read_committed"
            )
        else:
            source = self.wiring.audit_log
            request = ConsumeRequest(start=Position("timestamp", instant=self.since), idle_end=1.5)
        return [b for b in (self._body(m) for m in self._read(source, request)) if b is not None]

    def dead_letters(self) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for ref in self.wiring.dlqs:
            for message in self._read(ref, self._dlq_request(ref)):
                if message.header_text(RUN_HEADER) == self.run:
                    found.append(DeadLetter(str(ref), self._json(message)))
        return found

    def _dlq_request(self, ref: Ref) -> ConsumeRequest:
        if self.wiring.backend != KAFKA:
            return ConsumeRequest()  # a peek: everything goes back to the queue
        dead = require(self.backend, SupportsDeadLetters, "dead-letter queues")
        group = dead.dead_letter_group(ref.name)
        start: dict[int, int] = {}
        if group:
            groups = require(self.backend, SupportsConsumerGroups, "consumer groups")
            committed = groups.committed_offsets([group]).get(group, {})
            start = {tp.partition: o for tp, o in committed.items() if o is not None}
        return ConsumeRequest(
            start=Position("earliest"), start_offsets=start or None, isolation="read_committed"
        )

    def _read(self, source: Ref, request: ConsumeRequest) -> list[Message]:
        out: list[Message] = []
        with self.consumer.open_consumer(source, request) as session:
            while True:
                batch = session.next_batch(5000)
                if batch is None:
                    break
                out.extend(batch.messages())
                # Commits nothing here (no group, a peek); on a stream it grants credit.
                session.commit(batch, len(batch))
        return out

    def _body(self, message: Message) -> dict[str, Any] | None:
        if message.header_text(RUN_HEADER) != self.run:
            return None
        return self._json(message)

    @staticmethod
    def _json(message: Message) -> dict[str, Any] | None:
        try:
            body = json.loads(message.value or b"")
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None
