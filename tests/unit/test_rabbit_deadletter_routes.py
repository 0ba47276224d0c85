"""Where RabbitMQ dead letters go, from the topology alone (``deadletter_routes``)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.backends.capabilities.deadletters import DeadLetterSource, Feeds
from qctl.backends.rabbitmq.deadletter_routes import (
    dead_letter_target,
    patterns_overlap,
    topic_matches,
    topic_pattern,
)
from qctl.backends.rabbitmq.queues import classify_dead_letter_queues


def q(name: str, args: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "arguments": args or {}, **extra}


def dlx(exchange: str, key: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"x-dead-letter-exchange": exchange}
    if key is not None:
        args["x-dead-letter-routing-key"] = key
    return args


def b(source: str, dest: str, key: str = "", args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "source": source,
        "destination": dest,
        "destination_type": "queue",
        "routing_key": key,
        "arguments": args or {},
    }


def xb(source: str, dest: str, key: str = "") -> dict[str, Any]:
    return {**b(source, dest, key), "destination_type": "exchange"}


def x(**types: str) -> list[dict[str, str]]:
    return [{"name": name, "type": kind} for name, kind in types.items()]


def feeders(
    queues: list[dict[str, Any]],
    exchanges: list[dict[str, str]],
    bindings: list[dict[str, Any]],
    streams_take_at_most_once: bool = True,
) -> dict[str, dict[str, DeadLetterSource]]:
    """DLQ -> {source queue: source}."""
    dead = classify_dead_letter_queues(queues, exchanges, bindings, (), streams_take_at_most_once)
    return {dest: {s.queue: s for s in found} for dest, found in dead.sources.items()}


# -- topic patterns ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#", "", True),
        ("*", "", False),
        ("", "", True),
        ("", "a", False),
        ("a.*", "a.b.c", False),
        ("a.*.c", "a.b.c", True),
        ("#.c", "a.b.c", True),
        ("a.#.c", "a.c", True),
        ("*.*", "a", False),
        ("payment", "payment", True),
        ("payment", "analytics", False),
        ("a..b", "a..b", True),
    ],
)
def test_topic_matches_like_rabbitmq(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


def _reference_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _reference_match(rest, words[1:])


WORDS = st.lists(st.sampled_from(["a", "b", "*", "#"]), max_size=5)


@given(WORDS, WORDS)
def test_pattern_overlap_is_a_shared_matching_key(left: list[str], right: list[str]) -> None:
    """Two patterns overlap exactly when some key of known words (or a fresh one) matches
    both; keys up to the patterns' total length suffice."""
    keys = itertools.chain.from_iterable(
        itertools.product(["a", "b", "z"], repeat=n) for n in range(len(left) + len(right) + 2)
    )
    expected = any(
        _reference_match(left, list(k)) and _reference_match(right, list(k)) for k in keys
    )
    a, c = topic_pattern(".".join(left)), topic_pattern(".".join(right))
    assert patterns_overlap(a, c) is expected
    assert patterns_overlap(c, a) is expected


# -- which queue's settings -------------------------------------------------------------------
def test_arguments_win_over_policy_each_key_on_its_own() -> None:
    target = dead_letter_target(
        q(
            "w",
            {"x-dead-letter-exchange": "arg-dlx"},
            effective_policy_definition={
                "dead-letter-exchange": "policy-dlx",
                "dead-letter-routing-key": "policy-key",
            },
        )
    )
    assert target is not None
    assert (target.exchange, target.routing_key) == ("arg-dlx", "policy-key")


def test_at_least_once_needs_a_quorum_queue_and_reject_publish_where_the_policy_wins() -> None:
    args = {**dlx("d"), "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    quorum = dead_letter_target(q("w", args, type="quorum"))
    classic = dead_letter_target(q("w", args, type="classic"))
    overruled = dead_letter_target(
        q("w", args, type="quorum", effective_policy_definition={"overflow": "drop-head"})
    )
    assert quorum is not None and quorum.at_least_once
    assert classic is not None and not classic.at_least_once
    assert overruled is not None and not overruled.at_least_once


# -- routes -----------------------------------------------------------------------------------
def test_a_shared_direct_dead_letter_exchange_routes_by_each_queues_key() -> None:
    """The order pipeline: one direct DLX, one DLQ per service, keyed by service."""
    queues = [
        q("payment.work", dlx("orders.dlx", "payment")),
        q("analytics.work", dlx("orders.dlx", "analytics")),
        q("payment.dlq"),
        q("analytics.dlq"),
        q("inventory.dlq"),
    ]
    bindings = [
        b("orders.dlx", "payment.dlq", "payment"),
        b("orders.dlx", "analytics.dlq", "analytics"),
        b("orders.dlx", "inventory.dlq", "inventory"),
    ]
    dead = classify_dead_letter_queues(queues, x(**{"orders.dlx": "direct"}), bindings, ())
    assert dead.reasons == {
        "payment.dlq": "bound to dead-letter exchange 'orders.dlx' of queue 'payment.work'",
        "analytics.dlq": "bound to dead-letter exchange 'orders.dlx' of queue 'analytics.work'",
    }
    (payment,) = dead.sources["payment.dlq"]
    assert payment == DeadLetterSource("payment.work", "orders.dlx", "payment", Feeds.ALWAYS)
    assert "inventory.dlq" not in dead.sources


def test_fanout_feeds_every_bound_queue_from_every_source() -> None:
    queues = [q("a", dlx("f", "x")), q("b", dlx("f")), q("one"), q("two")]
    found = feeders(queues, x(f="fanout"), [b("f", "one"), b("f", "two", "ignored")])
    assert {d: sorted(s) for d, s in found.items()} == {"one": ["a", "b"], "two": ["a", "b"]}
    assert {s.feeds for s in found["one"].values()} == {Feeds.ALWAYS}
    dead = classify_dead_letter_queues(queues, x(f="fanout"), [b("f", "one")], ())
    assert dead.reasons["one"] == "bound to dead-letter exchange 'f' of queues 'a', 'b'"


def test_headers_bindings_depend_on_headers_unless_they_have_no_conditions() -> None:
    queues = [q("src", dlx("h", "k")), q("all"), q("any"), q("cond"), q("xonly")]
    bindings = [
        b("h", "all", args={"x-match": "all"}),
        b("h", "any", args={"x-match": "any"}),
        b("h", "cond", args={"x-match": "any", "domain": "orders"}),
        b("h", "xonly", args={"x-match": "all", "x-first-death-queue": "src"}),
    ]
    found = feeders(queues, x(h="headers"), bindings)
    assert found["all"]["src"].feeds is Feeds.ALWAYS
    assert "any" not in found  # any of no conditions matches nothing
    cond = found["cond"]["src"]
    assert cond.feeds is Feeds.MAYBE
    assert cond.reason == (
        "headers exchange 'h': depends on the message headers (x-match any of domain)"
    )
    assert found["xonly"]["src"].feeds is Feeds.ALWAYS  # x- keys count only with -with-x


def test_exchange_to_exchange_bindings_are_followed_and_keep_the_least_certainty() -> None:
    queues = [q("src", dlx("d", "k")), q("sure"), q("maybe"), q("wrong")]
    bindings = [
        xb("d", "fan", "k"),
        xb("d", "nowhere", "other"),
        b("fan", "sure"),
        xb("fan", "hdr"),
        b("hdr", "maybe", args={"x-match": "all", "kind": "x"}),
        b("nowhere", "wrong"),
    ]
    found = feeders(queues, x(d="direct", fan="fanout", hdr="headers", nowhere="fanout"), bindings)
    assert found["sure"]["src"].feeds is Feeds.ALWAYS
    assert found["maybe"]["src"].feeds is Feeds.MAYBE
    assert "wrong" not in found


def test_an_unmodelled_exchange_type_may_feed() -> None:
    queues = [q("src", dlx("hash", "k")), q("dest")]
    found = feeders(queues, x(hash="x-consistent-hash"), [b("hash", "dest", "1")])
    source = found["dest"]["src"]
    assert source.feeds is Feeds.MAYBE
    assert source.reason == "x-consistent-hash exchange 'hash': qctl does not model its routing"


def test_without_a_dead_letter_key_the_sources_own_keys_decide_maybe() -> None:
    """No dead-letter routing key: the messages keep the keys they came with, which the
    queue's own bindings tell (and its name, through the default exchange)."""
    queues = [
        q("payment.work", dlx("dlx")),
        q("charges.dlq"),
        q("refunds.dlq"),
        q("other.dlq"),
        q("own-name.dlq"),
    ]
    bindings = [
        b("commands", "payment.work", "charge"),
        b("events", "payment.work", "order.*"),
        b("dlx", "charges.dlq", "charge"),
        b("dlx", "refunds.dlq", "order.refunded"),
        b("dlx", "other.dlq", "shipping"),
        b("dlx", "own-name.dlq", "payment.work"),
    ]
    found = feeders(queues, x(commands="direct", events="topic", dlx="direct"), bindings)
    assert set(found) == {"charges.dlq", "refunds.dlq", "own-name.dlq"}
    charges = found["charges.dlq"]["payment.work"]
    assert charges.feeds is Feeds.MAYBE and charges.dead_letter_routing_key is None
    assert charges.reason == (
        "no dead-letter routing key: the messages keep their own, and 'payment.work' "
        "receives 'charge' (through 'commands')"
    )
    assert "'order.*' (through 'events')" in str(found["refunds.dlq"]["payment.work"].reason)
    assert "its name, through the default exchange" in str(
        found["own-name.dlq"]["payment.work"].reason
    )


def test_a_source_reached_by_any_key_may_feed_every_binding_of_a_direct_dlx() -> None:
    queues = [q("w", dlx("dlx")), q("d1"), q("d2")]
    bindings = [b("fan", "w"), b("dlx", "d1", "one"), b("dlx", "d2", "two")]
    found = feeders(queues, x(fan="fanout", dlx="direct"), bindings)
    assert set(found) == {"d1", "d2"}
    assert "any key (through fanout exchange 'fan')" in str(found["d1"]["w"].reason)


def test_default_exchange_without_a_key_lists_only_queues_named_by_known_keys() -> None:
    queues = [q("w", dlx("")), q("charge"), q("unrelated"), q("f", dlx(""))]
    bindings = [b("commands", "w", "charge"), b("fan", "f")]
    found = feeders(queues, x(commands="direct", fan="fanout"), bindings)
    # w's key 'charge' names a queue; f can receive any key, which would be every queue.
    assert found == {"charge": {"w": found["charge"]["w"]}}
    assert found["charge"]["w"].feeds is Feeds.MAYBE


def test_streams_before_312_drop_at_most_once_dead_letters() -> None:
    queues = [
        q("classic", dlx("d", "k")),
        q(
            "quorum",
            {**dlx("d", "k"), "x-dead-letter-strategy": "at-least-once"},
            type="quorum",
            effective_policy_definition={"overflow": "reject-publish"},
        ),
        q("log", type="stream"),
        q("queue"),
    ]
    bindings = [b("d", "log", "k"), b("d", "queue", "k")]
    old = feeders(queues, x(d="direct"), bindings, streams_take_at_most_once=False)
    assert sorted(old["log"]) == ["quorum"]
    assert sorted(old["queue"]) == ["classic", "quorum"]
    new = feeders(queues, x(d="direct"), bindings, streams_take_at_most_once=True)
    assert sorted(new["log"]) == ["classic", "quorum"]


def test_the_reason_names_every_source_sure_ones_first() -> None:
    queues = [
        q("a", dlx("d", "k")),
        q("b", dlx("d", "k")),
        q("c", dlx("d")),
        q("e", dlx("", "dlq")),
        q("dlq"),
    ]
    dead = classify_dead_letter_queues(
        queues, x(d="direct", commands="direct"), [b("d", "dlq", "k"), b("commands", "c", "k")], ()
    )
    assert dead.reasons["dlq"] == (
        "queue 'e' dead-letters to it by routing key; "
        "bound to dead-letter exchange 'd' of queues 'a', 'b'; "
        "may be fed through dead-letter exchange 'd' by queue 'c'"
    )
