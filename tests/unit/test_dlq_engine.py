"""DLQ logic without a broker: redrive targets and headers, selection by age, the inspect
histogram and peek rows — including headers from other people's code that make no sense,
which must never crash anything."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qctl.dlq.inspect import death_timeline, histogram, peek_row, table_row
from qctl.dlq.provenance import (
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_REDRIVE_COUNT,
    H_REDRIVE_ID,
    X_DEATH,
    origin_headers,
    parse_x_death,
    provenance_of,
)
from qctl.dlq.routing import H_PARKED_BY, RedriveRules
from qctl.dlq.selection import Selection, age_bucket
from qctl.messages import Message
from qctl.refs import Ref, parse_ref

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def x_death_message(count: int = 1, redrives: int | None = None) -> Message:
    headers: list[tuple[str, Any]] = [
        (
            "x-death",
            [
                {
                    "count": count,
                    "reason": "rejected",
                    "queue": "payment.work",
                    "time": NOW,
                    "exchange": "orders",
                    "routing-keys": ["order.paid"],
                }
            ],
        ),
        ("x-first-death-queue", "payment.work"),
        ("x-first-death-reason", "rejected"),
        ("x-first-death-exchange", "orders"),
        ("x-delivery-count", 3),
    ]
    if redrives is not None:
        headers.append((H_REDRIVE_COUNT, str(redrives)))
    return Message(
        b"{}", headers=headers, properties={"message_id": "m1"}, source={"queue": "payment.dlq"}
    )


def spring_message(partition: int = 2) -> Message:
    return Message(
        b"v",
        key=b"k",
        headers=[
            ("kafka_dlt-original-topic", "orders"),
            ("kafka_dlt-original-partition", partition.to_bytes(4, "big")),
            ("kafka_dlt-original-offset", (42).to_bytes(8, "big")),
            ("kafka_dlt-exception-fqcn", "java.lang.IllegalStateException"),
        ],
        timestamp=1_700_000_000_000,
        source={"topic": "orders.dlq", "partition": 0, "offset": 7},
    )


def rules(**kw: Any) -> RedriveRules:
    return RedriveRules(
        dlq=parse_ref(kw.pop("dlq", "rabbitmq:queue/payment.dlq")), job_id="job-1", **kw
    )


# -- targets ----------------------------------------------------------------------------------
def test_rabbitmq_origin_is_the_first_death_exchange_and_key() -> None:
    m = x_death_message()
    target = rules().target(m, provenance_of(m.headers, "rabbitmq"))
    assert target is not None
    assert (target.ref.kind, target.ref.name, target.routing_key) == (
        "exchange",
        "orders",
        "order.paid",
    )
    target = rules(to_origin_queue=True).target(m, provenance_of(m.headers, "rabbitmq"))
    assert target is not None and (target.ref.kind, target.ref.name) == ("queue", "payment.work")


def test_kafka_origin_topic_and_partition() -> None:
    m = spring_message(partition=2)
    prov = provenance_of(m.headers, "kafka")
    r = rules(dlq="kafka:orders.dlq")
    assert r.target(m, prov).ref == Ref("kafka", "topic", "orders", 2)  # type: ignore[union-attr]
    by_key = rules(dlq="kafka:orders.dlq", by_key=True).target(m, prov)
    assert by_key is not None and by_key.ref == Ref("kafka", "topic", "orders")


def test_unknown_origin_needs_to() -> None:
    m = Message(b"x", headers=[("foo", "bar")])
    prov = provenance_of(m.headers, "kafka")
    assert rules(dlq="kafka:x.dlq").target(m, prov) is None
    to = rules(dlq="kafka:x.dlq", to=parse_ref("kafka:x")).target(m, prov)
    assert to is not None and to.ref.name == "x"


def test_to_exchange_keeps_the_original_routing_key_unless_given() -> None:
    m = x_death_message()
    prov = provenance_of(m.headers, "rabbitmq")
    t = rules(to=parse_ref("rabbitmq:exchange/retry")).target(m, prov)
    assert t is not None and t.routing_key == "order.paid"
    t = rules(to=parse_ref("rabbitmq:exchange/retry"), routing_key="k").target(m, prov)
    assert t is not None and t.routing_key == "k"


# -- headers ----------------------------------------------------------------------------------
def test_loop_guard_counts_and_keeps_provenance() -> None:
    m = x_death_message(redrives=2)
    prov = provenance_of(m.headers, "rabbitmq")
    r = rules()
    out = r.redriven(m, prov, r.target(m, prov))  # type: ignore[arg-type]
    assert out.header(H_REDRIVE_COUNT) == "3"
    assert out.header(H_REDRIVE_ID) == "job-1"
    assert out.has_header("x-death") and out.has_header("x-delivery-count")
    assert out.routing_key == "order.paid"
    assert m.header(H_REDRIVE_COUNT) == "2"  # the original is untouched
    again = provenance_of(out.headers, "rabbitmq")
    assert again.redrive_count == 3 and again.origin_label == "rabbitmq:exchange/orders"


def test_strip_death_headers_moves_provenance_into_qctl_headers() -> None:
    m = x_death_message()
    prov = provenance_of(m.headers, "rabbitmq")
    strip = (
        "x-death",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-first-death-exchange",
        "x-delivery-count",
    )
    r = rules(strip_headers=strip)
    out = r.redriven(m, prov, r.target(m, prov))  # type: ignore[arg-type]
    names = [k for k, _ in out.headers]
    assert not set(strip) & set(names)
    assert out.header(H_ORIGINAL_EXCHANGE) == "orders"
    assert out.header(H_ORIGINAL_QUEUE) == "payment.work"
    after = provenance_of(out.headers, "rabbitmq")
    assert after.convention == "qctl" and after.origin_label == "rabbitmq:exchange/orders"


def test_copy_provenance_when_the_broker_will_not_keep_x_death() -> None:
    m = x_death_message()
    prov = provenance_of(m.headers, "rabbitmq")
    r = rules(copy_provenance=True)
    out = r.redriven(m, prov, r.target(m, prov))  # type: ignore[arg-type]
    assert out.has_header("x-death") and out.header(H_ORIGINAL_EXCHANGE) == "orders"
    twice = r.redriven(out, provenance_of(out.headers, "rabbitmq"), r.target(m, prov))  # type: ignore[arg-type]
    assert [k for k, _ in twice.headers].count(H_ORIGINAL_EXCHANGE) == 1


def test_parking() -> None:
    r = rules(max_redrives=2, parking=parse_ref("rabbitmq:queue/payment.dlq.parking"))
    assert not r.parked(provenance_of(x_death_message(redrives=1).headers, "rabbitmq"))
    parked_msg = x_death_message(redrives=2)
    assert r.parked(provenance_of(parked_msg.headers, "rabbitmq"))
    out = r.to_parking(parked_msg)
    assert out.header(H_PARKED_BY) == "job-1"
    assert rules(max_redrives=0).parked(provenance_of([], "kafka"))


def test_origin_headers_round_trip() -> None:
    prov = provenance_of(x_death_message().headers, "rabbitmq")
    assert prov.convention == X_DEATH
    assert dict(origin_headers(prov))["qctl-original-routing-key"] == "order.paid"


# -- selection and inspect --------------------------------------------------------------------
def test_older_than_uses_the_death_time() -> None:
    now_ms = time.time() * 1000
    old = Message(b"", headers=[("qctl-failed-at", str(int(now_ms - 3_600_000)))])
    new = Message(b"", headers=[("qctl-failed-at", str(int(now_ms - 1000)))])
    unknown = Message(b"")
    select = Selection.of([], "30m", "kafka")
    assert select(old) and not select(new) and not select(unknown)
    assert Selection.of(["value == x"], None, "kafka")(Message(b"x"))


def test_age_buckets() -> None:
    assert [age_bucket(s) for s in (5, 600, 7200, 3 * 86400, 30 * 86400, None)] == [
        "< 1m",
        "1m-1h",
        "1h-1d",
        "1d-7d",
        "> 7d",
        "unknown",
    ]


def test_histogram() -> None:
    now = NOW.timestamp() * 1000
    msgs = [x_death_message(), x_death_message(redrives=5), spring_message(), Message(b"?")]
    h = histogram("kafka:x", msgs[:2], "rabbitmq", now_ms=now + 30_000)
    assert h.total == 2 and h.by_origin == {"rabbitmq:exchange/orders": 2}
    assert h.by_age == {"< 1m": 2}
    assert h.by_redrives == {"0": 1, "3+": 1}
    k = histogram("kafka:x", msgs[2:], "kafka", now_ms=now)
    assert k.by_origin == {"kafka:orders": 1, "origin unknown": 1}
    assert k.by_failure["java.lang.IllegalStateException"] == 1


def test_peek_row_and_timeline() -> None:
    m = x_death_message(count=3)
    row = peek_row(1, m, "rabbitmq", now_ms=NOW.timestamp() * 1000 + 5000)
    assert row["provenance"]["deaths"][0]["count"] == 3
    assert row["age_seconds"] == 5.0
    view = table_row(row)
    assert view["deaths"] == "rejected in payment.work ×3"
    assert death_timeline(
        parse_x_death(
            [{"queue": "a", "reason": "expired"}, {"queue": "b", "reason": "rejected", "count": 2}]
        )
    ) == ("rejected in b ×2 → expired in a")


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text()
    | st.binary()
    | st.datetimes(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
names = st.sampled_from(
    [
        "x-death",
        "x-first-death-queue",
        "x-first-death-exchange",
        "kafka_dlt-original-topic",
        "kafka_dlt-original-partition",
        "__connect.errors.topic",
        "qctl-original-topic",
        "qctl-original-exchange",
        "qctl-redrive-count",
        "qctl-failed-at",
        "other",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=6), st.sampled_from(["kafka", "rabbitmq"]))
def test_malformed_headers_never_crash_the_dlq_views(
    headers: list[tuple[str, Any]], backend: str
) -> None:
    m = Message(b"v", headers=headers, timestamp=None)
    prov = provenance_of(headers, backend)
    histogram("x", [m], backend)
    table_row(peek_row(1, m, backend))
    r = rules(
        dlq="kafka:x.dlq" if backend == "kafka" else "rabbitmq:queue/x",
        to=None,
        max_redrives=1,
        strip_headers=("x-death",),
        copy_provenance=True,
    )
    target = r.target(m, prov)
    if target is not None:
        r.redriven(m, prov, target)
    Selection.of([], "1h", backend)(m, prov)


kafka_header_values = st.one_of(
    st.none(),
    st.binary(max_size=9),
    st.sampled_from([b"orders", b"payments", b"2", b"0", b"\x00\x00\x00\x01", b"3", b"x"]),
)
kafka_names = st.sampled_from(
    [
        "qctl-original-topic",
        "qctl-original-partition",
        "kafka_dlt-original-topic",
        "kafka_dlt-original-partition",
        "__connect.errors.topic",
        "__connect.errors.partition",
        "qctl-redrive-count",
        "qctl-redrive-id",
        "trace",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(kafka_names, kafka_header_values), max_size=7),
    st.booleans(),
    st.sampled_from([None, 1, 3]),
)
def test_raw_kafka_redrive_decides_like_the_message_path(
    headers: list[tuple[str, bytes | None]], keep_partition: bool, max_redrives: int | None
) -> None:
    from qctl.backends.capabilities.transactions import RawRoute
    from qctl.dlq.jobs import UNKNOWN, raw_mapper
    from qctl.messages import kafka_header_value

    r = rules(
        dlq="kafka:x.dlq",
        keep_partition=keep_partition,
        max_redrives=max_redrives,
        parking=parse_ref("kafka:x.dlq.parking"),
    )
    given = list(headers)  # a route without headers carries this list as the mapper left it
    raw = raw_mapper(r)(given, 1, 7)
    message = Message(
        b"v",
        headers=[(k, kafka_header_value(v)) for k, v in headers],
        source={"topic": "x.dlq", "partition": 1, "offset": 7},
    )
    prov = provenance_of(message.headers, "kafka")
    if r.parked(prov):
        assert isinstance(raw, RawRoute) and raw.topic == "x.dlq.parking"
        return
    target = r.target(message, prov)
    if target is None:
        assert raw == UNKNOWN
        return
    assert isinstance(raw, RawRoute)
    assert (raw.topic, raw.partition) == (target.ref.name, target.ref.partition)
    out = r.redriven(message, prov, target)
    written = given if raw.headers is None else raw.headers
    guard = [(k, v) for k, v in written if k in ("qctl-redrive-count", "qctl-redrive-id")]
    assert dict(guard) == {
        "qctl-redrive-count": str(out.header("qctl-redrive-count")).encode(),
        "qctl-redrive-id": b"job-1",
    }
    assert len(guard) == 2
