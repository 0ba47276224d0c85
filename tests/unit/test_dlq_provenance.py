"""Provenance parsing for every dead-letter convention, and robustness to bad headers."""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qctl.dlq.provenance import (
    CONNECT,
    QCTL,
    SPRING,
    UNKNOWN,
    X_DEATH,
    Failure,
    KafkaOrigin,
    RabbitOrigin,
    from_amqp_headers,
    from_kafka_headers,
    qctl_failure_headers,
)


def test_spring_kafka_binary_headers() -> None:
    headers = [
        ("kafka_dlt-original-topic", b"orders"),
        ("kafka_dlt-original-partition", struct.pack(">i", 3)),
        ("kafka_dlt-original-offset", struct.pack(">q", 123456789012)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", 1_764_000_000_000)),
        ("kafka_dlt-original-consumer-group", b"payment-service"),
        ("kafka_dlt-exception-fqcn", b"org.example.PaymentDeclinedException"),
        ("kafka_dlt-exception-message", b"card declined"),
    ]
    prov = from_kafka_headers(headers)
    assert prov.convention == SPRING
    assert prov.origin == KafkaOrigin(
        "orders", 3, 123456789012, 1_764_000_000_000, "payment-service"
    )
    assert prov.failure == Failure(None, "org.example.PaymentDeclinedException", "card declined")
    assert prov.origin_label == "kafka:orders"


def test_spring_last_header_wins_when_redelivered_twice() -> None:
    headers = [("kafka_dlt-original-topic", b"first"), ("kafka_dlt-original-topic", b"orders")]
    assert from_kafka_headers(headers).origin.topic == "orders"  # type: ignore[union-attr]


def test_kafka_connect_text_headers() -> None:
    headers = [
        ("__connect.errors.topic", b"inventory"),
        ("__connect.errors.partition", b"1"),
        ("__connect.errors.offset", b"42"),
        ("__connect.errors.stage", b"VALUE_CONVERTER"),
        ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
        ("__connect.errors.exception.message", b"bad json"),
    ]
    prov = from_kafka_headers(headers)
    assert prov.convention == CONNECT
    assert prov.origin == KafkaOrigin("inventory", 1, 42)
    assert prov.failure is not None
    assert prov.failure.reason == "VALUE_CONVERTER"
    assert prov.failure.label == "org.apache.kafka.connect.errors.DataException"


def test_qctl_headers_round_trip_and_loop_guard_counter() -> None:
    origin = KafkaOrigin("payments", 2, 77, 1_764_000_000_000)
    headers = qctl_failure_headers(
        origin, Failure("poison", "ValueError", "bad amount"), failed_at=1_764_000_000_500
    )
    headers += [("qctl-redrive-count", b"2"), ("qctl-redrive-id", b"job-1")]
    prov = from_kafka_headers(headers)
    assert prov.convention == QCTL
    assert prov.origin == origin
    assert prov.failure == Failure("poison", "ValueError", "bad amount")
    assert (prov.redrive_count, prov.redrive_id, prov.failed_at) == (2, "job-1", 1_764_000_000_500)


def test_unknown_convention() -> None:
    prov = from_kafka_headers([("trace-id", b"abc")])
    assert prov.convention == UNKNOWN and not prov.known
    assert prov.origin_label == "origin unknown"
    assert from_kafka_headers(None).convention == UNKNOWN


T1 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
T2 = dt.datetime(2026, 11, 27, 10, 5, tzinfo=dt.UTC)


def test_x_death_first_death_gives_the_origin() -> None:
    headers = {
        "x-death": [
            {
                "count": 3,
                "reason": "expired",
                "queue": "payment.retry",
                "time": T2,
                "exchange": "payment.retry-x",
                "routing-keys": ["payment"],
            },
            {
                "count": 1,
                "reason": "rejected",
                "queue": "payment",
                "time": T1,
                "exchange": "orders",
                "routing-keys": ["order.created", "cc-key"],
            },
        ],
        "x-first-death-queue": "payment",
        "x-first-death-reason": "rejected",
        "x-first-death-exchange": "orders",
    }
    prov = from_amqp_headers(headers)
    assert prov.convention == X_DEATH
    assert prov.origin == RabbitOrigin("orders", ("order.created", "cc-key"), "payment")
    assert prov.failure is not None and prov.failure.reason == "rejected"
    assert [d.queue for d in prov.deaths] == ["payment.retry", "payment"]
    assert prov.deaths[0].count == 3
    assert prov.failed_at == int(T2.timestamp() * 1000)
    assert prov.origin_label == "rabbitmq:exchange/orders"


def test_x_death_from_pika_bytes_and_without_first_death_headers() -> None:
    headers = {
        b"x-death": [
            {
                b"count": 1,
                b"reason": b"maxlen",
                b"queue": b"inventory",
                b"exchange": b"",
                b"routing-keys": [b"inventory"],
            }
        ]
    }
    prov = from_amqp_headers(headers)  # type: ignore[arg-type]
    assert prov.origin == RabbitOrigin("", ("inventory",), "inventory")
    assert prov.origin_label == "rabbitmq:queue/inventory"
    assert prov.failure is not None and prov.failure.reason == "maxlen"


def test_qctl_headers_on_amqp_win_over_x_death() -> None:
    headers: dict[str, Any] = {
        "qctl-original-exchange": "orders",
        "qctl-original-routing-key": "order.created",
        "qctl-error-class": "PoisonMessage",
        "qctl-redrive-count": 1,
        "x-death": [{"count": 1, "reason": "rejected", "queue": "payment"}],
    }
    prov = from_amqp_headers(headers)
    assert prov.convention == QCTL
    assert prov.origin == RabbitOrigin("orders", ("order.created",), None)
    assert prov.redrive_count == 1 and len(prov.deaths) == 1


header_values = st.one_of(
    st.none(),
    st.binary(max_size=12),
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=3),
)
names = st.sampled_from(
    [
        "kafka_dlt-original-topic",
        "kafka_dlt-original-partition",
        "kafka_dlt-original-offset",
        "__connect.errors.topic",
        "__connect.errors.partition",
        "qctl-original-topic",
        "qctl-original-partition",
        "qctl-redrive-count",
        "x",
        "",
    ]
)


@given(st.lists(st.tuples(names, header_values), max_size=8))
def test_kafka_provenance_never_crashes(headers: list[tuple[str, Any]]) -> None:
    prov = from_kafka_headers(headers)
    assert prov.redrive_count >= 0
    assert isinstance(prov.origin_label, str)


x_death_entries = st.lists(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=5),
        st.dictionaries(
            st.sampled_from(
                [
                    "count",
                    "reason",
                    "queue",
                    "exchange",
                    "time",
                    "routing-keys",
                    "original-expiration",
                    b"queue",
                ]
            ),
            header_values,
            max_size=7,
        ),
    ),
    max_size=4,
)


@given(
    x_death_entries,
    st.dictionaries(
        st.sampled_from(
            [
                "x-first-death-queue",
                "x-first-death-reason",
                "x-first-death-exchange",
                "qctl-redrive-count",
                "qctl-original-exchange",
            ]
        ),
        header_values,
        max_size=4,
    ),
)
def test_amqp_provenance_never_crashes(x_death: list[Any], extra: dict[str, Any]) -> None:
    prov = from_amqp_headers({"x-death": x_death, **extra})
    assert all(d.count >= 1 for d in prov.deaths)
    assert isinstance(prov.origin_label, str)


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(),
        st.binary(),
        st.dictionaries(st.text(max_size=3), header_values, max_size=3),
    )
)
def test_amqp_headers_of_any_shape(headers: Any) -> None:
    from_amqp_headers(headers)
