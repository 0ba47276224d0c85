"""Order-pipeline templates: realistic, consistent, reproducible, loaded as plugins."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
from collections import defaultdict
from importlib.metadata import EntryPoint

import pytest

from qctl.errors import ExitCode
from qctl.plugins import GROUPS, TEMPLATES_GROUP, PluginLoadError, _validate
from qctl.templates import SEEDED_START, UnknownTemplate, load_template, template_infos
from qctl.templates.orders import order_chain

BUILT_IN = (
    "order-created",
    "payment-completed",
    "payment-failed",
    "inventory-reserved",
    "out-of-stock",
    "notification",
    "order-flow",
)
ENVELOPE = {
    "event_id",
    "event_type",
    "event_version",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "order_id",
    "customer_id",
}


def take(name: str, n: int, seed: int = 7) -> list:
    return list(
        itertools.islice(load_template(name).generate(random.Random(seed), SEEDED_START), n)
    )


def test_built_in_templates_load_through_their_entry_points() -> None:
    assert GROUPS[TEMPLATES_GROUP] == "template"
    infos = {i.name: i for i in template_infos()}
    for name in BUILT_IN:
        assert name in infos, name
        assert infos[name].error is None
        assert infos[name].description
        assert load_template(name).name == name


def test_unknown_template_is_a_usage_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownTemplate) as caught:
        load_template("order-exploded")
    assert caught.value.exit_code == ExitCode.USAGE
    assert "order-created" in str(caught.value)


@pytest.mark.parametrize("name", BUILT_IN)
def test_events_are_realistic_json_keyed_by_order(name: str) -> None:
    for message in take(name, 20):
        body = json.loads(message.value)
        assert set(body) >= ENVELOPE
        assert message.key == body["order_id"].encode()
        assert body["order_id"].startswith("ord_")
        assert body["customer_id"].startswith("cus_")
        dt.datetime.fromisoformat(body["occurred_at"])
        headers = dict(message.headers)
        assert headers["event-type"] == body["event_type"]
        assert headers["correlation-id"] == body["correlation_id"]
        assert message.properties["message_id"] == body["event_id"]
        assert message.properties["content_type"] == "application/json"
        if "currency" in body:
            assert body["currency"] in {"EUR", "USD", "GBP", "CHF", "SEK"}


def test_order_created_amounts_add_up() -> None:
    for message in take("order-created", 50):
        body = json.loads(message.value)
        assert body["items"]
        subtotal = sum(i["unit_price"] * i["quantity"] for i in body["items"])
        assert body["subtotal"] == pytest.approx(subtotal, abs=0.011)
        assert body["total"] == pytest.approx(
            body["subtotal"] + body["shipping"] + body["tax"], abs=0.011
        )


@pytest.mark.parametrize("name", BUILT_IN)
def test_seed_makes_output_identical(name: str) -> None:
    a = [m.to_line() for m in take(name, 15, seed=42)]
    b = [m.to_line() for m in take(name, 15, seed=42)]
    c = [m.to_line() for m in take(name, 15, seed=43)]
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("outcome", "types"),
    [
        (
            "completed",
            ["OrderCreated", "PaymentCompleted", "InventoryReserved", "NotificationRequested"],
        ),
        ("payment_failed", ["OrderCreated", "PaymentFailed", "NotificationRequested"]),
        (
            "out_of_stock",
            ["OrderCreated", "PaymentCompleted", "OutOfStock", "NotificationRequested"],
        ),
    ],
)
def test_order_chain_is_consistent(outcome: str, types: list[str]) -> None:
    chain = order_chain(random.Random(1), SEEDED_START, outcome)  # type: ignore[arg-type]
    bodies = [json.loads(m.value) for m in chain]
    assert [b["event_type"] for b in bodies] == types
    assert len({b["order_id"] for b in bodies}) == 1
    assert len({b["correlation_id"] for b in bodies}) == 1
    assert bodies[0]["causation_id"] is None
    for before, after in itertools.pairwise(bodies):
        assert after["causation_id"] == before["event_id"]
        assert after["occurred_at"] > before["occurred_at"]
    assert {m.key for m in chain} == {bodies[0]["order_id"].encode()}


def test_order_flow_keeps_each_orders_events_in_order() -> None:
    expected_next = {
        "OrderCreated": {"PaymentCompleted", "PaymentFailed"},
        "PaymentCompleted": {"InventoryReserved", "OutOfStock"},
        "PaymentFailed": {"NotificationRequested"},
        "InventoryReserved": {"NotificationRequested"},
        "OutOfStock": {"NotificationRequested"},
    }
    seen: dict[bytes, list[str]] = defaultdict(list)
    for message in take("order-flow", 400):
        seen[message.key].append(json.loads(message.value)["event_type"])
    assert len(seen) > 20
    for events in seen.values():
        assert events[0] == "OrderCreated"
        for before, after in itertools.pairwise(events):
            assert after in expected_next[before]


def test_a_plugin_template_must_look_like_one() -> None:
    ep = EntryPoint("broken", "x:y", TEMPLATES_GROUP)
    with pytest.raises(PluginLoadError):
        _validate(TEMPLATES_GROUP, "broken", ep, object())

    class Named:
        name = "other"
        description = "d"

        def generate(self, rng: random.Random, start: dt.datetime) -> list:
            return []

    with pytest.raises(PluginLoadError):
        _validate(TEMPLATES_GROUP, "broken", ep, Named())
