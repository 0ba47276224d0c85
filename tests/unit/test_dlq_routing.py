"""The redrive's verdict (``RedriveRules.verdict``), and the four ways of moving messages
agreeing on it: the generic mover and the Kafka exactly-once copy (from a ``Message``),
the raw Kafka copy (raw header edits) and RabbitMQ's own loop (``QueueRoute``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

import pytest

from qctl.backends.capabilities.queuemove import QueueRoute
from qctl.backends.capabilities.transactions import KEEP, CopyRoute, RawRoute, Rejected
from qctl.dlq.jobs import copy_mapper, move_decider, raw_mapper
from qctl.dlq.provenance import (
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_ORIGINAL_ROUTING_KEY,
    H_REDRIVE_COUNT,
    H_REDRIVE_ID,
    Provenance,
    provenance_of,
)
from qctl.dlq.queue_redrive import READS, mapper
from qctl.dlq.routing import (
    H_PARKED_BY,
    NO_TARGET,
    UNKNOWN,
    Action,
    RedriveRules,
    Target,
    Verdict,
)
from qctl.dlq.selection import Selection
from qctl.jobs.mover import Route
from qctl.messages import Message, kafka_header_value
from qctl.refs import Ref, parse_ref

WHEN = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
RABBIT_DLQ = Ref("rabbitmq", "queue", "payment.dlq", vhost="/")
RABBIT_PARKING = Ref("rabbitmq", "queue", "payment.dlq.parking", vhost="/")
KAFKA_DLQ = parse_ref("kafka:orders.dlq")
KAFKA_PARKING = parse_ref("kafka:orders.dlq.parking")
DEATH_HEADERS = (
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-delivery-count",
)
GUARD = (H_REDRIVE_COUNT, H_REDRIVE_ID)


def x_death(exchange: str = "orders", key: str = "order.paid") -> dict[str, Any]:
    """A message dead-lettered by the broker from queue payment.work."""
    entry = {
        "count": 1,
        "reason": "rejected",
        "queue": "payment.work",
        "time": WHEN,
        "exchange": exchange,
        "routing-keys": [key],
    }
    return {
        "x-death": [entry],
        "x-first-death-queue": "payment.work",
        "x-first-death-reason": "rejected",
        "x-first-death-exchange": exchange,
        "x-delivery-count": 3,
    }


def rabbit_rules(**kw: Any) -> RedriveRules:
    return RedriveRules(dlq=RABBIT_DLQ, job_id="job-1", parking=RABBIT_PARKING, **kw)


def kafka_rules(**kw: Any) -> RedriveRules:
    return RedriveRules(dlq=KAFKA_DLQ, job_id="job-1", parking=KAFKA_PARKING, **kw)


def amqp(headers: dict[str, Any]) -> Provenance:
    return provenance_of(list(headers.items()), "rabbitmq")


def kafka(headers: list[tuple[str, bytes]]) -> Provenance:
    return provenance_of(headers, "kafka")


#: Spring's DLT headers: the origin topic, and its partition as a 4-byte integer.
SPRING_HEADERS = [
    ("kafka_dlt-original-topic", b"orders"),
    ("kafka_dlt-original-partition", (2).to_bytes(4, "big")),
]


# -- the verdict ------------------------------------------------------------------------------
def test_route_to_the_kafka_origin_with_the_loop_guard() -> None:
    v = kafka_rules().verdict(kafka([*SPRING_HEADERS, (H_REDRIVE_COUNT, b"1")]))
    assert v.action is Action.ROUTE
    assert v.target == Target(Ref("kafka", "topic", "orders", 2))  # its original partition
    assert v.replace == ((H_REDRIVE_COUNT, "2"), (H_REDRIVE_ID, "job-1"))
    assert (v.add, v.drop) == ((), frozenset())


def test_by_key_leaves_the_partition_to_the_key() -> None:
    v = kafka_rules(by_key=True).verdict(kafka(SPRING_HEADERS))
    assert v.target == Target(Ref("kafka", "topic", "orders"))
    unknown = kafka_rules().verdict(kafka([("kafka_dlt-original-topic", b"orders")]))
    assert unknown.target == Target(Ref("kafka", "topic", "orders"))  # no partition known


def test_keep_partition() -> None:
    v = kafka_rules(keep_partition=True).verdict(kafka(SPRING_HEADERS))
    assert v.target == Target(Ref("kafka", "topic", "orders", 2))
    to = kafka_rules(to=parse_ref("kafka:retry"), keep_partition=True)
    assert to.verdict(kafka(SPRING_HEADERS)).target == Target(Ref("kafka", "topic", "retry", 2))
    fixed = kafka_rules(to=parse_ref("kafka:retry/0"), keep_partition=True)
    assert fixed.verdict(kafka(SPRING_HEADERS)).target == Target(parse_ref("kafka:retry/0"))


def test_route_to_the_rabbitmq_origin_exchange_or_queue() -> None:
    prov = amqp(x_death())
    v = rabbit_rules().verdict(prov)
    assert v.action is Action.ROUTE
    assert v.target == Target(Ref("rabbitmq", "exchange", "orders", vhost="/"), "order.paid")
    queue = Target(Ref("rabbitmq", "queue", "payment.work", vhost="/"))
    assert rabbit_rules(to_origin_queue=True).verdict(prov).target == queue
    # Died in a queue reached through the default exchange: back to that queue.
    assert rabbit_rules().verdict(amqp(x_death(exchange=""))).target == queue


def test_to_overrides_the_origin() -> None:
    prov = amqp(x_death())
    retry = parse_ref("rabbitmq:queue/retry")
    assert rabbit_rules(to=retry).verdict(prov).target == Target(retry)
    exchange = parse_ref("rabbitmq:exchange/retry")
    # The origin's routing key, else --routing-key, else the key it was delivered with.
    v = rabbit_rules(to=exchange).verdict(prov, routing_key="delivered")
    assert v.target == Target(exchange, "order.paid")
    v = rabbit_rules(to=exchange, routing_key="k").verdict(prov, routing_key="delivered")
    assert v.target == Target(exchange, "k")
    v = rabbit_rules(to=exchange).verdict(amqp({}), routing_key="delivered")
    assert v.target == Target(exchange, "delivered")
    assert rabbit_rules(to=exchange).verdict(amqp({})).target == Target(exchange, "")


def test_unknown_origin_stays_unless_to_is_given() -> None:
    assert kafka_rules().verdict(kafka([("trace", b"x")])) is NO_TARGET
    assert NO_TARGET.action is Action.UNKNOWN and NO_TARGET.target is None
    assert rabbit_rules().verdict(amqp({"other": "x"})) is NO_TARGET
    v = kafka_rules(to=parse_ref("kafka:retry")).verdict(kafka([]))
    assert v.action is Action.ROUTE and v.target == Target(parse_ref("kafka:retry"))
    with pytest.raises(ValueError):
        NO_TARGET.applied(Message(b"x"))


def test_max_redrives_parks() -> None:
    rules = kafka_rules(max_redrives=2)
    assert rules.verdict(kafka([*SPRING_HEADERS, (H_REDRIVE_COUNT, b"1")])).action is Action.ROUTE
    for headers in ([*SPRING_HEADERS, (H_REDRIVE_COUNT, b"2")], [(H_REDRIVE_COUNT, b"7")]):
        v = rules.verdict(kafka(headers))
        assert v == Verdict(
            Action.PARK,
            Target(KAFKA_PARKING, KAFKA_PARKING.name),
            replace=((H_PARKED_BY, "job-1"),),
        )
    # Parking comes first: a message of unknown origin is parked too.
    assert kafka_rules(max_redrives=0).verdict(kafka([])).action is Action.PARK
    with pytest.raises(ValueError, match="parking lot"):
        RedriveRules(dlq=KAFKA_DLQ, job_id="j", max_redrives=0).verdict(kafka([]))


def test_strip_death_headers_copies_the_provenance_first() -> None:
    prov = amqp(x_death())
    v = rabbit_rules(strip_headers=DEATH_HEADERS).verdict(prov)
    assert v.drop == frozenset(DEATH_HEADERS)
    added = dict(v.add)
    assert added[H_ORIGINAL_EXCHANGE] == "orders"
    assert added[H_ORIGINAL_QUEUE] == "payment.work"
    assert added[H_ORIGINAL_ROUTING_KEY] == "order.paid"
    assert not set(added) & set(DEATH_HEADERS) and not set(added) & set(GUARD)
    # Copied once: a message that carries qctl's origin headers keeps its own.
    again = rabbit_rules(strip_headers=DEATH_HEADERS).verdict(prov, has_origin_headers=True)
    assert again.add == () and again.drop == frozenset(DEATH_HEADERS)


def test_provenance_copy_when_the_broker_will_not_keep_x_death() -> None:
    rules = rabbit_rules(copy_provenance=True)
    v = rules.verdict(amqp(x_death()))
    assert dict(v.add)[H_ORIGINAL_EXCHANGE] == "orders" and v.drop == frozenset()
    assert rules.verdict(amqp(x_death()), has_origin_headers=True).add == ()
    # Only the broker's own records are copied: qctl's headers or Kafka's stay as they are.
    declared = {H_ORIGINAL_EXCHANGE: "orders", H_ORIGINAL_ROUTING_KEY: "order.paid"}
    assert rules.verdict(amqp(declared)).add == ()
    assert kafka_rules(copy_provenance=True).verdict(kafka(SPRING_HEADERS)).add == ()
    # Without either option, nothing is copied.
    assert rabbit_rules().verdict(amqp(x_death())).add == ()


def test_applied_changes_a_copy() -> None:
    message = Message(
        b"{}",
        headers=[*x_death().items(), (H_REDRIVE_COUNT, "1"), ("other", "x")],
        properties={"message_id": "m1"},
        source={"queue": "payment.dlq", "routing_key": "dead"},
    )
    rules = rabbit_rules(strip_headers=DEATH_HEADERS)
    v = rules.message_verdict(message, provenance_of(message.headers, "rabbitmq"))
    out = v.applied(message)
    names = [name for name, _ in out.headers]
    assert names[:2] == [H_REDRIVE_COUNT, "other"]  # replaced in place, the rest kept
    assert names[-1] == H_REDRIVE_ID and not set(DEATH_HEADERS) & set(names)
    assert out.header(H_REDRIVE_COUNT) == "2" and out.header(H_ORIGINAL_QUEUE) == "payment.work"
    assert out.routing_key == "order.paid" and out.properties == {"message_id": "m1"}
    assert message.header(H_REDRIVE_COUNT) == "1" and message.routing_key == "dead"
    to_kafka = rabbit_rules(to=parse_ref("kafka:orders")).message_verdict(
        message, provenance_of(message.headers, "rabbitmq")
    )
    assert to_kafka.applied(message).properties is None


# -- the four adapters agree ----------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One adapter's answer in common terms."""

    action: Action
    #: Kafka: the target topic (and partition: a parked record's is its own);
    #: RabbitMQ: (exchange, routing key, label).
    target: Any
    #: The copy's headers, text values, in name order (the representations keep the
    #: replaced headers at different positions).
    headers: tuple[tuple[str, Any], ...] = ()


def text(value: Any) -> Any:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def sorted_headers(headers: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(((k, text(v)) for k, v in headers), key=lambda kv: (kv[0], repr(kv[1]))))


KAFKA_CASES: dict[str, list[tuple[str, bytes]]] = {
    "qctl": [("qctl-original-topic", b"orders"), ("qctl-original-partition", b"3")],
    "spring": [*SPRING_HEADERS, ("trace", b"t")],
    "connect": [("__connect.errors.topic", b"orders"), ("__connect.errors.partition", b"1")],
    "redriven": [*SPRING_HEADERS, (H_REDRIVE_COUNT, b"1"), (H_REDRIVE_ID, b"old")],
    "twice": [("trace", b"t"), (H_REDRIVE_COUNT, b"2"), *SPRING_HEADERS],
    "parked before": [*SPRING_HEADERS, (H_PARKED_BY, b"old"), (H_REDRIVE_COUNT, b"5")],
    "unknown": [("trace", b"t")],
    "unknown, redriven": [(H_REDRIVE_COUNT, b"3"), (H_REDRIVE_ID, b"old")],
}
KAFKA_RULES: dict[str, dict[str, Any]] = {
    "origin": {},
    "--keep-partition": {"keep_partition": True},
    "--to": {"to": parse_ref("kafka:retry")},
    "--to --keep-partition": {"to": parse_ref("kafka:retry"), "keep_partition": True},
    "--max-redrives 2": {"max_redrives": 2},
}
SOURCE_PARTITION = 1


def kafka_expected(rules: RedriveRules, headers: list[tuple[str, bytes]]) -> Outcome:
    """The verdict, applied to the header list by hand."""
    v = rules.verdict(kafka(headers))
    if v.target is None:
        return Outcome(Action.UNKNOWN, None)
    gone = v.drop | {name for name, _ in v.replace}
    out = [(k, text(x)) for k, x in headers if k not in gone] + [*v.add, *v.replace]
    ref = v.target.ref
    partition = SOURCE_PARTITION if v.action is Action.PARK else ref.partition
    return Outcome(v.action, (ref.name, partition), sorted_headers(out))


def kafka_message(headers: list[tuple[str, bytes]]) -> Message:
    return Message(
        b"v",
        key=b"k",
        headers=[(k, kafka_header_value(v)) for k, v in headers],
        source={"topic": KAFKA_DLQ.name, "partition": SOURCE_PARTITION, "offset": 7},
    )


def kafka_generic(rules: RedriveRules, headers: list[tuple[str, bytes]]) -> Outcome:
    decide = move_decider(rules, Selection.of([], None, "kafka"), "kafka", from_file=False)
    route = decide(kafka_message(headers))
    assert isinstance(route, Route)
    kind, where = cast(tuple[str, Any], route.key)
    if kind == "reject":
        return Outcome(Action.UNKNOWN, None)
    action = Action.PARK if route.parked else Action.ROUTE
    # The produce lane writes a parked message to its source partition.
    partition = SOURCE_PARTITION if route.parked else where.partition
    return Outcome(action, (where.name, partition), sorted_headers(route.message.headers))


def kafka_copy(rules: RedriveRules, headers: list[tuple[str, bytes]]) -> Outcome:
    decision = copy_mapper(rules, Selection.of([], None, "kafka"))(kafka_message(headers))
    if decision == UNKNOWN:
        return Outcome(Action.UNKNOWN, None)
    assert isinstance(decision, CopyRoute)
    action = Action.PARK if decision.topic == KAFKA_PARKING.name else Action.ROUTE
    return Outcome(
        action, (decision.topic, decision.partition), sorted_headers(decision.message.headers)
    )


def kafka_raw(rules: RedriveRules, headers: list[tuple[str, bytes]]) -> Outcome:
    given: list[tuple[str, bytes | None]] = list(headers)
    route = raw_mapper(rules)(given, SOURCE_PARTITION, 7)
    if route == UNKNOWN:
        assert given == headers  # left as it was
        return Outcome(Action.UNKNOWN, None)
    assert isinstance(route, RawRoute)
    action = Action.PARK if route.topic == KAFKA_PARKING.name else Action.ROUTE
    written = given if route.headers is None else route.headers
    return Outcome(action, (route.topic, route.partition), sorted_headers(written))


@pytest.mark.parametrize("variant", KAFKA_RULES)
@pytest.mark.parametrize("case", KAFKA_CASES)
def test_kafka_adapters_agree(case: str, variant: str) -> None:
    headers = KAFKA_CASES[case]
    rules = kafka_rules(**KAFKA_RULES[variant])
    expected = kafka_expected(rules, headers)
    assert kafka_generic(rules, headers) == expected
    assert kafka_copy(rules, headers) == expected
    assert kafka_raw(rules, headers) == expected


def test_kafka_cases_cover_every_action() -> None:
    seen = {
        kafka_expected(kafka_rules(**kw), headers).action
        for kw in KAFKA_RULES.values()
        for headers in KAFKA_CASES.values()
    }
    assert seen == set(Action)


def test_raw_adapter_caches_and_replays_the_same_edits() -> None:
    rules = kafka_rules(max_redrives=2)
    decide = raw_mapper(rules)
    for headers in KAFKA_CASES.values():
        first: list[tuple[str, bytes | None]] = list(headers)
        second: list[tuple[str, bytes | None]] = list(headers)
        a, b = decide(first, 0, 1), decide(second, 0, 2)
        assert a is b and first == second


RABBIT_CASES: dict[str, dict[str, Any]] = {
    "exchange": {**x_death(), "other": "x"},
    "default exchange": x_death(exchange=""),
    "copied before": {
        **x_death(),
        H_ORIGINAL_EXCHANGE: "orders",
        H_ORIGINAL_QUEUE: "payment.work",
        H_ORIGINAL_ROUTING_KEY: "order.paid",
    },
    "qctl only": {H_ORIGINAL_QUEUE: "payment.work", H_REDRIVE_COUNT: "1"},
    "redriven": {**x_death(), H_REDRIVE_COUNT: "1", H_REDRIVE_ID: "old"},
    "twice": {**x_death(), H_REDRIVE_COUNT: 2},
    "parked before": {**x_death(), H_PARKED_BY: "old", H_REDRIVE_COUNT: "4"},
    "unknown": {"other": "x"},
}
RABBIT_RULES: dict[str, dict[str, Any]] = {
    "origin": {},
    "--to-origin-queue": {"to_origin_queue": True},
    "--to queue": {"to": parse_ref("rabbitmq:queue/retry")},
    "--to exchange": {"to": parse_ref("rabbitmq:exchange/retry")},
    "--to exchange --routing-key": {
        "to": parse_ref("rabbitmq:exchange/retry"),
        "routing_key": "again",
    },
    "--strip-death-headers": {"strip_headers": DEATH_HEADERS},
    "provenance copy": {"copy_provenance": True},
    "--max-redrives 2": {"max_redrives": 2},
}
DELIVERED_KEY = "order.paid.dead"


def rabbit_expected(rules: RedriveRules, headers: dict[str, Any]) -> Outcome:
    """The verdict, applied to the header table by hand."""
    recorded = any(name in headers for name in (H_ORIGINAL_EXCHANGE, H_ORIGINAL_QUEUE))
    v = rules.verdict(amqp(headers), routing_key=DELIVERED_KEY, has_origin_headers=recorded)
    if v.target is None:
        return Outcome(Action.UNKNOWN, None)
    out = {k: x for k, x in headers.items() if k not in v.drop}
    out.update(v.add)
    out.update(v.replace)
    ref = v.target.ref
    where: tuple[str, str | None, str]
    if ref.kind == "queue":
        where = ("", ref.name, v.target.label)
    else:
        where = (ref.name, v.target.routing_key, v.target.label)
    return Outcome(v.action, where, sorted_headers(out.items()))


def rabbit_generic(rules: RedriveRules, headers: dict[str, Any]) -> Outcome:
    decide = move_decider(rules, Selection.of([], None, "rabbitmq"), "rabbitmq", from_file=False)
    message = Message(
        b"{}",
        headers=list(headers.items()),
        properties={"message_id": "m1"},
        source={"queue": RABBIT_DLQ.name, "routing_key": DELIVERED_KEY, "exchange": "dlx"},
    )
    route = decide(message)
    assert isinstance(route, Route)
    kind, where = cast(tuple[str, Any], route.key)
    if kind == "reject":
        return Outcome(Action.UNKNOWN, None)
    action = Action.PARK if route.parked else Action.ROUTE
    copy = route.message
    if where.kind == "queue":  # published through the default exchange
        target = ("", where.name, route.label)
    else:
        target = (where.name, copy.routing_key, route.label)
    return Outcome(action, target, sorted_headers(dict(copy.headers).items()))


def rabbit_queue(rules: RedriveRules, headers: dict[str, Any]) -> Outcome:
    relevant = {k: v for k, v in headers.items() if k in READS}
    decision = mapper(rules).decide(relevant, "dlx", DELIVERED_KEY)
    if isinstance(decision, Rejected):
        assert decision == UNKNOWN
        return Outcome(Action.UNKNOWN, None)
    assert isinstance(decision, QueueRoute)
    out = {k: v for k, v in headers.items() if k not in decision.drop}
    out.update(decision.add)
    action = Action.PARK if decision.parked else Action.ROUTE
    target = (decision.exchange, decision.routing_key, decision.label)
    return Outcome(action, target, sorted_headers(out.items()))


@pytest.mark.parametrize("variant", RABBIT_RULES)
@pytest.mark.parametrize("case", RABBIT_CASES)
def test_rabbitmq_adapters_agree(case: str, variant: str) -> None:
    headers = RABBIT_CASES[case]
    rules = rabbit_rules(**RABBIT_RULES[variant])
    expected = rabbit_expected(rules, headers)
    assert rabbit_generic(rules, headers) == expected
    assert rabbit_queue(rules, headers) == expected


def test_rabbitmq_cases_cover_every_action_and_header_change() -> None:
    verdicts = [
        rabbit_rules(**kw).verdict(amqp(headers))
        for kw in RABBIT_RULES.values()
        for headers in RABBIT_CASES.values()
    ]
    assert {v.action for v in verdicts} == set(Action)
    assert any(v.add for v in verdicts) and any(v.drop for v in verdicts)


def test_generic_mover_keeps_what_is_not_selected() -> None:
    select = Selection.of(['key == "nothing-matches"'], None, "kafka")
    message = kafka_message(KAFKA_CASES["spring"])
    decide = move_decider(kafka_rules(), select, "kafka", from_file=False)
    assert decide(message) == KEEP
    assert copy_mapper(kafka_rules(), select)(message) == KEEP
