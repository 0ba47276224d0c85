"""The queue redrive's mapper gives the generic mover's answers: same target, same
headers (the RabbitMQ 3.x and the 4.x rules alike), for messages whose headers may make
no sense."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qctl.backends.capabilities.queuemove import QueueRoute
from qctl.backends.capabilities.transactions import Rejected
from qctl.dlq.provenance import H_REDRIVE_COUNT, provenance_of
from qctl.dlq.queue_redrive import READS, mapper
from qctl.dlq.routing import RedriveRules
from qctl.messages import Message
from qctl.refs import Ref, parse_ref

DLQ = Ref("rabbitmq", "queue", "payment.dlq", vhost="/")
PARKING = Ref("rabbitmq", "queue", "payment.dlq.parking", vhost="/")
WHEN = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
DEATH_HEADERS = ("x-death", "x-first-death-queue", "x-first-death-reason", "x-delivery-count")


def rules_variants() -> list[RedriveRules]:
    base: dict[str, Any] = {"dlq": DLQ, "job_id": "redrive-1", "parking": PARKING}
    return [
        RedriveRules(**base),
        RedriveRules(**base, to_origin_queue=True),
        RedriveRules(**base, max_redrives=2),
        RedriveRules(**base, to=parse_ref("rabbitmq:queue/retry")),
        RedriveRules(**base, to=parse_ref("rabbitmq:exchange/orders")),
        RedriveRules(**base, to=parse_ref("rabbitmq:exchange/orders"), routing_key="again"),
        RedriveRules(**base, strip_headers=DEATH_HEADERS),
        RedriveRules(**base, copy_provenance=True),  # RabbitMQ 4.x: x-death is not kept
    ]


death_entry = st.fixed_dictionaries(
    {},
    optional={
        "count": st.one_of(st.integers(-2, 5), st.text(max_size=3)),
        "reason": st.sampled_from(["rejected", "expired", "maxlen", "delivery_limit", ""]),
        "queue": st.sampled_from(["payment.work", "orders.work", ""]),
        "time": st.just(WHEN),
        "exchange": st.sampled_from(["orders", "", "payments"]),
        "routing-keys": st.one_of(st.lists(st.sampled_from(["order.paid", "x"]), max_size=2)),
    },
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "x-death": st.one_of(st.lists(death_entry, max_size=2), st.text(max_size=4)),
        "x-first-death-queue": st.sampled_from(["payment.work", "orders.work"]),
        "x-first-death-reason": st.sampled_from(["rejected", "expired"]),
        "x-first-death-exchange": st.sampled_from(["orders", ""]),
        "x-delivery-count": st.integers(0, 9),
        H_REDRIVE_COUNT: st.one_of(st.sampled_from(["0", "1", "2", "7", "x"]), st.integers(0, 3)),
        "qctl-original-exchange": st.sampled_from(["orders", ""]),
        "qctl-original-queue": st.just("payment.work"),
        "other": st.text(max_size=5),
    },
)


def applied(route: QueueRoute, original: dict[str, Any]) -> dict[str, Any]:
    """The headers a copy leaves the wire loop with."""
    drop = set(route.drop) | {name for name, _ in route.add}
    out = {k: v for k, v in original.items() if k not in drop}
    out.update(route.add)
    return out


@settings(max_examples=300, deadline=None)
@given(h=headers, delivered_key=st.sampled_from(["order.paid", ""]))
def test_mapper_matches_the_generic_redrive(h: dict[str, Any], delivered_key: str) -> None:
    for rules in rules_variants():
        message = Message(
            b"{}",
            headers=list(h.items()),
            source={"queue": DLQ.name, "routing_key": delivered_key, "exchange": "dlx"},
        )
        prov = provenance_of(message.headers, "rabbitmq")
        relevant = {k: v for k, v in h.items() if k in READS}
        decision = mapper(rules).decide(relevant, "dlx", delivered_key)
        if rules.parked(prov):
            assert isinstance(decision, QueueRoute) and decision.parked
            assert decision.routing_key == PARKING.name and decision.exchange == ""
            expected = dict(rules.to_parking(message).headers)
            assert applied(decision, h) == expected
            continue
        target = rules.target(message, prov)
        if target is None:
            assert isinstance(decision, Rejected)
            continue
        assert isinstance(decision, QueueRoute) and not decision.parked
        copy = rules.redriven(message, prov, target)
        assert applied(decision, h) == dict(copy.headers)
        assert decision.label == target.label
        if target.ref.kind == "queue":
            assert (decision.exchange, decision.routing_key) == ("", target.ref.name)
        else:
            assert decision.exchange == target.ref.name
            assert decision.routing_key == copy.routing_key


def test_times_matter_only_when_provenance_is_copied() -> None:
    timeless = [mapper(rules).timeless for rules in rules_variants()]
    assert timeless == [True, True, True, True, True, True, False, False]
