"""Which RabbitMQ queues are dead-letter queues, and queue rows from the management API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qctl.backends.rabbitmq.deadletter_routes import dead_letter_target
from qctl.backends.rabbitmq.queues import (
    DEFAULT_DLQ_PATTERNS,
    classify_dead_letter_queues,
    queue_from_listing,
)


def q(name: str, args: dict[str, object] | None = None, policy: object = None) -> dict[str, object]:
    return {"name": name, "arguments": args or {}, "effective_policy_definition": policy or {}}


def b(source: str, dest: str, kind: str = "queue") -> dict[str, str]:
    return {"source": source, "destination": dest, "destination_type": kind}


def x(**types: str) -> list[dict[str, str]]:
    """An exchange listing: ``x(dlx="fanout")``."""
    return [{"name": name, "type": kind} for name, kind in types.items()]


def reasons(
    queues: Sequence[Mapping[str, Any]],
    exchanges: Sequence[Mapping[str, Any]],
    bindings: Sequence[Mapping[str, Any]],
    patterns: tuple[str, ...] = DEFAULT_DLQ_PATTERNS,
) -> dict[str, str]:
    return dict(classify_dead_letter_queues(queues, exchanges, bindings, patterns).reasons)


def test_queue_argument_dead_lettering_into_a_bound_exchange() -> None:
    queues = [q("orders", {"x-dead-letter-exchange": "dlx"}), q("orders-failed"), q("other")]
    found = reasons(queues, x(dlx="fanout"), [b("dlx", "orders-failed"), b("", "other")])
    assert found == {"orders-failed": "bound to dead-letter exchange 'dlx' of queue 'orders'"}


def test_policy_dead_lettering_and_exchange_to_exchange_bindings() -> None:
    queues = [q("payments", policy={"dead-letter-exchange": "dead"}), q("parking")]
    bindings = [b("dead", "dead-fanout", "exchange"), b("dead-fanout", "parking")]
    found = reasons(queues, x(dead="fanout", **{"dead-fanout": "fanout"}), bindings)
    assert set(found) == {"parking"}


def test_default_exchange_with_a_routing_key() -> None:
    queues = [
        q("a", {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "a-errors"}),
        q("a-errors"),
    ]
    assert reasons(queues, [], []) == {"a-errors": "queue 'a' dead-letters to it by routing key"}


def test_argument_wins_over_policy() -> None:
    target = dead_letter_target(
        q("x", {"x-dead-letter-exchange": "arg-dlx"}, {"dead-letter-exchange": "policy-dlx"})
    )
    assert target is not None and target.exchange == "arg-dlx"
    assert dead_letter_target(q("y", policy=[])) is None  # an empty policy rendered as []


def test_name_patterns_case_insensitive_and_extra_ones() -> None:
    names = ["a.dlq", "b-dlq", "c.DLT", "d.dead", "e.dlqx", "f_parking"]
    found = reasons(
        [q(n) for n in names], [], [], ("*.dlq", "*-dlq", "*.dlt", "*.dead", "*_parking")
    )
    assert set(found) == {"a.dlq", "b-dlq", "c.DLT", "d.dead", "f_parking"}


def test_a_queue_dead_lettering_to_itself_is_not_its_own_dlq() -> None:
    queues = [q("loop", {"x-dead-letter-exchange": "ex"})]
    dead = classify_dead_letter_queues(queues, x(ex="fanout"), [b("ex", "loop")])
    assert dead.reasons == {} and dead.sources == {}


def test_queue_from_listing_with_and_without_statistics() -> None:
    item = {
        "name": "jobs",
        "vhost": "/",
        "type": "quorum",
        "state": "running",
        "messages_ready": 5,
        "messages_unacknowledged": 2,
        "consumers": 1,
        "consumer_utilisation": 0.5,
        "head_message_timestamp": 1700000000,
        "arguments": {"x-dead-letter-exchange": "dlx"},
        "message_stats": {
            "publish_details": {"rate": 3.0},
            "deliver_get_details": {"rate": 2.0},
            "ack_details": {"rate": 1.5},
        },
        "messages_details": {"rate": 0.5},
    }
    stats = queue_from_listing(item, None)
    assert stats.depth == 7 and stats.consumers == 1
    assert stats.rates.publish == 3.0 and stats.rates.ack == 1.5 and stats.rates.redeliver is None
    assert stats.rates.depth_change == 0.5
    assert stats.head_message_timestamp == 1700000000.0
    assert stats.dead_letter_exchange == "dlx" and not stats.dead_letter
    bare = queue_from_listing({"name": "new", "consumer_utilisation": ""}, "name matches '*.dlq'")
    assert bare.rates.publish is None and bare.consumer_utilisation is None
    assert bare.dead_letter and bare.dead_letter_reason == "name matches '*.dlq'"


def kb(source: str, dest: str, key: str) -> dict[str, str]:
    return {"source": source, "destination": dest, "destination_type": "queue", "routing_key": key}


def test_retry_loops_are_not_dead_letter_queues_and_keys_are_matched() -> None:
    """The order pipeline's shape: work queues retry through TTL queues that dead-letter
    back, and give up into per-service DLQs behind one exchange, routed by key."""
    queues = [
        q(
            "inventory.work",
            {"x-dead-letter-exchange": "orders.retry", "x-dead-letter-routing-key": "inventory"},
        ),
        q(
            "payment.work",
            {"x-dead-letter-exchange": "orders.dlx", "x-dead-letter-routing-key": "payment"},
        ),
        q(
            "inventory.retry",
            {
                "x-message-ttl": 1000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "inventory.work",
            },
        ),
        q(
            "payment.retry",
            {
                "x-message-ttl": 1000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "payment.work",
            },
        ),
        q("payment.failures"),
        q("inventory.failures"),
    ]
    bindings = [
        kb("orders.retry", "inventory.retry", "inventory"),
        kb("orders.retry", "payment.retry", "payment"),
        kb("orders.dlx", "payment.failures", "payment"),
        kb("orders.dlx", "inventory.failures", "inventory"),
    ]
    exchanges = x(**{"orders.retry": "direct", "orders.dlx": "direct"})
    assert reasons(queues, exchanges, bindings) == {
        "payment.failures": "bound to dead-letter exchange 'orders.dlx' of queue 'payment.work'"
    }


def test_topic_patterns_route_by_binding_key_only() -> None:
    queues = [
        q("src", {"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "a.b.c"}),
        q("hash"),
        q("star"),
        q("miss"),
        q("args"),
    ]
    bindings = [
        kb("dlx", "hash", "a.#"),
        kb("dlx", "star", "a.*.c"),
        kb("dlx", "miss", "a.*"),
        {  # arguments mean nothing to a topic exchange
            "source": "dlx",
            "destination": "args",
            "destination_type": "queue",
            "routing_key": "zzz",
            "arguments": {"x-match": "any"},
        },
    ]
    assert set(reasons(queues, x(dlx="topic"), bindings)) == {"hash", "star"}
