"""The pipeline's logic without brokers: events, idempotent services, the staged store,
the invariants, the namespaced topology, and that every name it uses is in the example."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from orders_helpers import EXAMPLE, qctl
from qctl_orders.events import (
    DECLINED_CARD,
    Faults,
    InvalidAmount,
    OrderFactory,
    charge_amount,
    derived_id,
    follow_up,
    is_poison,
    order_of,
    parse,
)
from qctl_orders.runs import RunBook
from qctl_orders.services import (
    COMMANDS,
    DLQ,
    EVENTS,
    RETRY,
    AnalyticsService,
    InventoryService,
    NotificationService,
    PaymentService,
    Settings,
)
from qctl_orders.store import Store
from qctl_orders.topology import namespaced
from qctl_orders.verify import DeadLetter, evaluate
from qctl_orders.wiring import (
    INVENTORY_RESERVED,
    ORDER_CREATED,
    OUT_OF_STOCK,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
    SERVICES,
    Wiring,
)

from qctl.dlq.provenance import from_amqp_headers, from_kafka_headers
from qctl.messages import Message, kafka_source


def body(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.value or b"")
    return data


def orders(n: int, faults: Faults | None = None, seed: int = 3) -> list[Message]:
    factory = OrderFactory("run-20260101T000000-abc123", faults or Faults(), seed)
    return [factory.next() for _ in range(n)]


def services(
    backend: str, tmp_path: Path, retries: int = 2, resume: bool = False
) -> dict[str, Any]:
    wiring = Wiring(backend, "ns")
    runs = RunBook("test", wiring, root=tmp_path)
    settings = Settings(wiring, max_retries=retries, retry_backoff=0.01)
    return {
        "runs": runs,
        "payment": PaymentService(settings, runs, resume=resume),
        "inventory": InventoryService(settings, runs, resume=resume),
        "notification": NotificationService(settings, runs, resume=resume),
        "analytics": AnalyticsService(settings, runs, resume=resume),
    }


def delivered(message: Message, offset: int = 0) -> Message:
    """A message as a consumer of the Kafka bus receives it."""
    out = message.copy()
    out.source = kafka_source("ns.orders", 0, offset)
    return out


# -- events -------------------------------------------------------------------------------------
def test_orders_are_reproducible_keyed_and_carry_their_run() -> None:
    a, b = orders(50), orders(50)
    for x, y in zip(a, b, strict=True):  # the same seed: the same orders (times aside)
        assert body(x)["event_id"] == body(y)["event_id"]
        assert body(x)["items"] == body(y)["items"] and body(x)["total"] == body(y)["total"]
    for message in a:
        data = body(message)
        assert message.key == data["order_id"].encode()
        assert message.header("run-id") == data["run_id"] == "run-20260101T000000-abc123"
        assert message.header("domain") == "orders"  # the analytics headers exchange
        assert message.header("event-id") == data["event_id"]
        assert message.properties is not None
        assert message.properties["message_id"] == data["event_id"]
        assert message.routing_key == "order.created"
    assert len({body(m)["order_id"] for m in a}) == 50


def test_faults_are_planted_at_the_given_rates() -> None:
    batch = [body(m) for m in orders(4000, Faults(0.05, 0.02, 0.01), seed=1)]
    declined = sum(b["payment"]["token"] == DECLINED_CARD for b in batch)
    sold_out = sum(any(i["sku"] == "SKU-90001" for i in b["items"]) for b in batch)
    poison = sum(is_poison(b) for b in batch)
    assert 150 <= declined <= 250 and 45 <= sold_out <= 120 and 20 <= poison <= 65
    assert not any(is_poison(b) for b in (body(m) for m in orders(500, Faults(0, 0, 0))))


def test_the_poison_bug_and_its_fix() -> None:
    poison = {"event_type": ORDER_CREATED, "total": "49,90"}
    with pytest.raises(InvalidAmount, match="49,90"):
        charge_amount(poison, healed=False)
    assert charge_amount(poison, healed=True) == pytest.approx(49.90)
    assert charge_amount({"total": 12.5}, healed=False) == 12.5
    assert is_poison(poison) and not is_poison({"event_type": ORDER_CREATED, "total": 3.0})


def test_follow_up_events_have_the_same_id_however_often_they_are_made() -> None:
    created = parse(orders(1)[0])
    first = follow_up(created, PAYMENT_COMPLETED, order_of(created, 10.0))
    again = follow_up(created, PAYMENT_COMPLETED, order_of(created, 10.0))
    assert body(first)["event_id"] == body(again)["event_id"]
    assert body(first)["event_id"] == derived_id(created.event_id, PAYMENT_COMPLETED)
    assert body(first)["causation_id"] == created.event_id
    assert body(first)["payment_id"] == body(again)["payment_id"]  # details too
    assert first.routing_key == "payment.completed"


# -- the store ----------------------------------------------------------------------------------
def test_store_changes_count_only_when_committed_and_per_thread() -> None:
    store = Store()
    store.put("k", 1)
    store.count("n")
    store.add("s", "a")
    assert store.get("k") == 1 and store.committed("k") is None and store.counter("n") == 0
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(store.get("k")))
    thread.start()
    thread.join()
    assert other == [None]  # another consumer thread does not see an uncommitted batch
    store.rollback()
    assert store.get("k") is None and store.members("s") == set()
    store.put("k", 2)
    store.count("n")
    store.add("s", "a")
    store.commit()
    assert store.committed("k") == 2 and store.counter("n") == 1 and store.members("s") == {"a"}


# -- the services -------------------------------------------------------------------------------
def test_a_redelivered_order_is_never_charged_twice(tmp_path: Path) -> None:
    payment = services("kafka", tmp_path)["payment"]
    order = next(m for m in orders(30) if not is_poison(body(m)))
    first = payment.handle(delivered(order), "main")
    payment.store.commit()
    again = payment.handle(delivered(order), "main")
    payment.store.commit()
    assert len(first.outputs) == 1 and first.outputs[0][0] == EVENTS
    assert body(first.outputs[0][1])["event_type"] in (PAYMENT_COMPLETED, PAYMENT_FAILED)
    assert again.outputs == [] and payment.store.counter("duplicates") == 1


def test_a_crashed_batch_is_handled_again_with_the_same_events(tmp_path: Path) -> None:
    payment = services("kafka", tmp_path)["payment"]
    order = next(m for m in orders(30) if not is_poison(body(m)))
    first = payment.handle(delivered(order), "main")
    payment.store.rollback()  # the consumer died before committing
    again = payment.handle(delivered(order), "main")
    assert body(first.outputs[0][1])["event_id"] == body(again.outputs[0][1])["event_id"]


def test_poison_is_retried_then_dead_lettered_with_qctl_provenance_on_kafka(
    tmp_path: Path,
) -> None:
    payment = services("kafka", tmp_path, retries=2)["payment"]
    poison = next(m for m in orders(400) if is_poison(body(m)))
    decision = payment.handle(delivered(poison, offset=41), "main")
    assert [box for box, _ in decision.outputs] == [RETRY]
    attempt = decision.outputs[0][1]
    assert attempt.header("retry-attempt") == "1" and attempt.header("retry-not-before")
    payment.store.commit()
    duplicate = payment.handle(attempt, RETRY)
    payment.store.commit()
    assert [box for box, _ in duplicate.outputs] == [RETRY]  # attempt 2
    assert payment.handle(attempt, RETRY).outputs == []  # attempt 1 again: a duplicate
    payment.store.commit()
    final = payment.handle(duplicate.outputs[0][1], RETRY)
    payment.store.commit()
    assert [box for box, _ in final.outputs] == [DLQ]
    dead = final.outputs[0][1]
    prov = from_kafka_headers(dead.headers)
    assert prov.convention == "qctl" and prov.origin is not None
    assert (prov.origin.topic, prov.origin.partition, prov.origin.offset) == ("ns.orders", 0, 41)  # type: ignore[union-attr]
    assert prov.failure is not None and prov.failure.exception == "InvalidAmount"
    assert payment.store.members("dead_lettered") == {body(poison)["order_id"]}


def test_poison_on_rabbitmq_is_retried_through_the_retry_exchange_then_rejected(
    tmp_path: Path,
) -> None:
    svc = services("rabbitmq", tmp_path, retries=1)
    payment = svc["payment"]
    poison = next(m for m in orders(400) if is_poison(body(m)))
    decision = payment.handle(poison, "main")
    retry = decision.outputs[0][1]
    assert decision.outputs[0][0] == RETRY and retry.routing_key == "payment"
    assert retry.properties is not None and retry.properties["expiration"] == "10"
    prov = from_amqp_headers(dict(retry.headers))
    assert prov.origin is not None and prov.origin.queue == "ns.payment.work"  # type: ignore[union-attr]
    payment.store.commit()
    final = payment.handle(retry, "main")  # back from ns.payment.retry
    assert final.reject and final.outputs == []
    payment.store.commit()
    # The fix is deployed and the message redriven: it is charged.
    svc["runs"].save(svc["runs"].create({}))  # a record to heal
    run_id = svc["runs"].latest().run_id
    healed_msg = retry.copy()
    healed_msg.set_header("run-id", run_id)
    data = body(healed_msg)
    data["run_id"] = run_id
    healed_msg.value = json.dumps(data).encode()
    healed_msg.set_header("qctl-redrive-count", "1")
    svc["runs"].heal(run_id)
    charged = payment.handle(healed_msg, "main")
    assert body(charged.outputs[0][1])["event_type"] == PAYMENT_COMPLETED


def test_inventory_sells_out_and_asks_for_a_refund(tmp_path: Path) -> None:
    svc = services("rabbitmq", tmp_path)
    payment, inventory = svc["payment"], svc["inventory"]
    batch = orders(400, Faults(0, 0.5, 0))
    sold_out = next(m for m in batch if any(i["sku"] == "SKU-90001" for i in body(m)["items"]))
    paid = payment.handle(sold_out, "main").outputs[0][1]
    decision = inventory.handle(paid, "main")
    boxes = [box for box, _ in decision.outputs]
    assert boxes == [EVENTS, COMMANDS]
    out_of_stock = decision.outputs[0][1]
    assert body(out_of_stock)["event_type"] == OUT_OF_STOCK
    assert body(out_of_stock)["sku"] == "SKU-90001"
    refund = payment.handle(out_of_stock, "main").outputs[0][1]
    assert body(refund)["event_type"] == PAYMENT_REFUNDED
    assert body(refund)["payment_id"] == body(paid)["payment_id"]
    fine = next(m for m in batch if m is not sold_out and not is_poison(body(m)))
    paid_fine = payment.handle(fine, "main").outputs
    if body(paid_fine[0][1])["event_type"] == PAYMENT_COMPLETED and not any(
        i["sku"] == "SKU-90001" for i in body(fine)["items"]
    ):
        reserved = inventory.handle(paid_fine[0][1], "main").outputs
        assert [body(m)["event_type"] for _, m in reserved] == [INVENTORY_RESERVED]


def test_analytics_and_notifications_count_each_event_once(tmp_path: Path) -> None:
    svc = services("kafka", tmp_path)
    created = orders(1, Faults(0, 0, 0))[0]
    paid = svc["payment"].handle(delivered(created), "main").outputs[0][1]
    reserved = svc["inventory"].handle(delivered(paid), "main").outputs[0][1]
    for service in (svc["analytics"], svc["notification"]):
        for message in (created, paid, reserved, paid):
            service.handle(delivered(message), "main")
        service.store.commit()
    analytics = svc["analytics"]
    order_id = body(created)["order_id"]
    assert analytics.store.members("terminal") == {order_id}
    assert analytics.states({order_id}) == {"completed": 1}
    assert analytics.store.counter("duplicates") == 1
    assert svc["notification"].store.counter("notifications") == 2  # received, confirmed


def test_a_resumed_process_remembers_what_its_services_handled(tmp_path: Path) -> None:
    created = orders(1, Faults(0, 0, 0))[0]
    first = services("kafka", tmp_path)
    paid = first["payment"].handle(delivered(created), "main").outputs[0][1]
    first["payment"].store.commit()
    first["notification"].handle(delivered(paid), "main")
    first["notification"].store.commit()
    first["notification"].handle(delivered(created), "main")  # never committed: crashed
    for name in ("payment", "notification"):
        first[name].store.close()

    resumed = services("kafka", tmp_path, resume=True)
    assert resumed["payment"].handle(delivered(created), "main").outputs == []
    resumed["notification"].handle(delivered(paid), "main")
    resumed["notification"].handle(delivered(created), "main")
    for name in ("payment", "notification"):
        resumed[name].store.commit()
    assert resumed["payment"].store.counter("duplicates") == 1
    assert resumed["notification"].store.counter("duplicates") == 1  # only the paid event
    assert resumed["notification"].store.counter("notifications") == 1

    fresh = services("kafka", tmp_path)  # a new run starts with a clean state
    assert fresh["payment"].handle(delivered(created), "main").outputs != []


def test_a_journal_cut_short_by_a_crash_keeps_its_complete_entries(tmp_path: Path) -> None:
    journal = tmp_path / "s.jsonl"
    store = Store(journal)
    store.put("k", frozenset({"b", "a"}))
    store.add("s", "x")
    store.commit()
    store.close()
    with journal.open("a") as f:
        f.write('{"values": {"lost"')
    again = Store(journal, resume=True)
    assert sorted(again.get("k")) == ["a", "b"] and again.members("s") == {"x"}
    assert again.get("lost") is None


# -- the invariants -----------------------------------------------------------------------------
def chain(order: str, *types: str, total: Any = 10.0) -> list[dict[str, Any]]:
    out = []
    for event_type in types:
        event: dict[str, Any] = {
            "event_id": f"{order}-{event_type}",
            "event_type": event_type,
            "order_id": order,
        }
        if event_type == ORDER_CREATED:
            event["total"] = total
        out.append(event)
    return out


GOOD = [
    *chain("a", ORDER_CREATED, PAYMENT_COMPLETED, INVENTORY_RESERVED),
    *chain("b", ORDER_CREATED, PAYMENT_FAILED),
    *chain("c", ORDER_CREATED, PAYMENT_COMPLETED, OUT_OF_STOCK, PAYMENT_REFUNDED),
    *chain("p", ORDER_CREATED, total="9,50"),
]
POISON_LETTER = DeadLetter("kafka:orders.dlq", chain("p", ORDER_CREATED, total="9,50")[0])


def test_a_good_run_holds_every_invariant() -> None:
    verdict = evaluate("r", GOOD + GOOD[:2], [POISON_LETTER], 4)
    assert verdict.ok, verdict.checks
    assert verdict.states == {
        "completed": 1,
        "dead_lettered": 1,
        "payment_failed": 1,
        "refunded": 1,
    }
    assert verdict.duplicate_deliveries == 2 and verdict.poison == 1
    strict = evaluate("r", GOOD, [POISON_LETTER], 4, all_terminal=True)
    assert not strict.ok  # the poison order still waits in the DLQ


DLQ_CHECK = "the DLQ holds exactly the poison messages"
SETTLED = "every order settled"


@pytest.mark.parametrize(
    ("events", "dead", "expected", "broken"),
    [
        # A dead letter whose order was never created (and one order fewer).
        (GOOD[:-1], [POISON_LETTER], 4, ["orders created", DLQ_CHECK]),
        (GOOD, [POISON_LETTER, POISON_LETTER], 4, [DLQ_CHECK]),
        # A poison order that is neither processed nor dead-lettered: lost.
        (GOOD, [], 4, [SETTLED, DLQ_CHECK]),
        (GOOD, [POISON_LETTER], 5, ["orders created"]),
        (
            [*GOOD, {"event_id": "a-2", "event_type": PAYMENT_COMPLETED, "order_id": "a"}],
            [POISON_LETTER],
            4,
            ["no order charged twice"],
        ),
        ([e for e in GOOD if e["event_type"] != PAYMENT_REFUNDED], [POISON_LETTER], 4,
         [SETTLED, "refunds equal out-of-stock events"]),
        ([e for e in GOOD if e["event_type"] != INVENTORY_RESERVED], [POISON_LETTER], 4,
         [SETTLED]),
        ([*GOOD, *chain("z", PAYMENT_FAILED)], [POISON_LETTER], 4,
         ["every event belongs to a created order"]),
        (GOOD, [POISON_LETTER, DeadLetter("q", chain("a", ORDER_CREATED)[0])], 4, [DLQ_CHECK]),
    ],
)  # fmt: skip
def test_each_broken_invariant_is_reported(
    events: list[dict[str, Any]], dead: list[DeadLetter], expected: int, broken: list[str]
) -> None:
    verdict = evaluate("r", events, dead, expected)
    assert not verdict.ok
    assert [c.name for c in verdict.checks if not c.ok] == broken


# -- topology and names -------------------------------------------------------------------------
def test_every_name_the_pipeline_uses_is_declared_in_the_example() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    topics = {t["name"] for t in doc["kafka"]["topics"]}
    topics |= {f"{t['name']}.dlq" for t in doc["kafka"]["topics"] if t.get("dlq")}
    rabbit = doc["rabbitmq"]
    queues = {q["name"] for q in rabbit["queues"]}
    exchanges = {e["name"] for e in rabbit["exchanges"]}
    kafka, rmq = Wiring("kafka"), Wiring("rabbitmq")
    assert set(kafka.required()) <= topics
    assert set(rmq.required()) <= queues
    for ref in (rmq.events_exchange, rmq.commands_exchange, rmq.retry_exchange):
        assert ref.name in exchanges
    keys = {
        (b["source"], k)
        for b in rabbit["bindings"]
        for k in b.get("routing_keys", [b.get("routing_key")])
    }
    assert ("orders.events", "order.created") in keys and (
        "orders.events",
        "payment.completed",
    ) in keys
    assert ("payments.commands", "refund") in keys and ("orders.retry", "payment") in keys
    assert {q.name for q in rmq.dlqs} == {f"{s}.dlq" for s in SERVICES}


def test_namespaced_topology_prefixes_every_reference(tmp_path: Path) -> None:
    doc = namespaced(yaml.safe_load(EXAMPLE.read_text()), "ci7")
    assert doc["owner"] == "order-pipeline.ci7"
    assert all(t["name"].startswith("ci7.") for t in doc["kafka"]["topics"])
    queues = {q["name"]: q for q in doc["rabbitmq"]["queues"]}
    assert queues["ci7.payment.work"]["dead_letter_exchange"] == "ci7.orders.dlx"
    assert queues["ci7.payment.retry"]["dead_letter_exchange"] == ""
    assert queues["ci7.payment.retry"]["dead_letter_routing_key"] == "ci7.payment.work"
    for binding in doc["rabbitmq"]["bindings"]:
        assert binding["source"].startswith("ci7.") and binding["destination"].startswith("ci7.")
    policy = doc["rabbitmq"]["policies"][0]
    assert policy["pattern"].startswith(r"^ci7\.(") and policy["name"] == "ci7.order-dlq-limits"
    dev = doc["environments"]["dev"]["kafka"]["topics"]
    assert all(t["name"].startswith("ci7.") for t in dev)
    # qctl's own validator accepts the result in every environment.
    out = tmp_path / "ci7.yaml"
    made = qctl("orders", "topology", str(EXAMPLE), "-n", "ci7", "-f", str(out))
    assert made.returncode == 0, made.stderr
    checked = qctl("topology", "validate", str(out))
    assert checked.returncode == 0, checked.stderr
