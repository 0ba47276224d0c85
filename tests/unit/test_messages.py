"""The Message model and the JSONL archive format: exact round trips, clear errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qctl.errors import ExitCode
from qctl.messages import (
    ArchiveError,
    ArchiveWriter,
    Message,
    amqp_headers,
    decode_value,
    encode_bytes,
    encode_value,
    iter_archive,
    kafka_header_bytes,
    kafka_header_value,
    kafka_source,
    rabbitmq_source,
    read_archive,
)

# -- strategies ------------------------------------------------------------------------------
names = st.text(min_size=0, max_size=12)
content = st.none() | st.binary(max_size=64) | st.text(max_size=40).map(str.encode)
timestamps = st.none() | st.integers(min_value=0, max_value=2**53)
whole_seconds = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
).map(lambda d: d.replace(microsecond=0))
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.floats(allow_nan=False)
    | decimals
    | whole_seconds
)
typed = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
    max_leaves=12,
)
headers = st.lists(st.tuples(names, typed), max_size=6)
kafka_headers = st.lists(st.tuples(names, st.none() | st.binary(max_size=30)), max_size=6)


def same(a: object, b: object) -> bool:
    """Equality that also compares types (True != 1, 1.0 != 1, str != bytes)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# -- round trips -----------------------------------------------------------------------------
@settings(max_examples=300)
@given(key=content, value=content, hdrs=headers, ts=timestamps)
def test_archive_line_round_trips_byte_exact(
    key: bytes | None, value: bytes | None, hdrs: list[tuple[str, object]], ts: int | None
) -> None:
    message = Message(value=value, key=key, headers=list(hdrs), timestamp=ts)
    line = message.to_line()
    assert "\n" not in line, "one message is one line"
    back = Message.from_line(line)
    assert back.key == key
    assert back.value == value
    assert back.timestamp == ts
    assert len(back.headers) == len(hdrs)
    for (n1, v1), (n2, v2) in zip(back.headers, hdrs, strict=True):
        assert n1 == n2
        assert same(v1, v2), (v1, v2)


@given(key=content, value=content, hdrs=kafka_headers)
def test_kafka_headers_survive_as_bytes(
    key: bytes | None, value: bytes | None, hdrs: list[tuple[str, bytes | None]]
) -> None:
    """Consumed Kafka headers -> model -> archive -> model -> the same bytes on the wire."""
    model = Message(value, key, [(k, kafka_header_value(v)) for k, v in hdrs])
    back = Message.from_line(model.to_line())
    assert [(k, kafka_header_bytes(v)) for k, v in back.headers] == hdrs


@settings(max_examples=200)
@given(
    hdrs=st.dictionaries(
        names,
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.text(max_size=20)
            | st.binary(max_size=20)
            | decimals.filter(lambda d: abs(d.as_tuple().exponent) < 10)
            | whole_seconds,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
            max_leaves=8,
        ),
        max_size=5,
    ),
    props=st.fixed_dictionaries(
        {},
        optional={
            "content_type": st.text(max_size=20),
            "delivery_mode": st.sampled_from([1, 2]),
            "priority": st.integers(0, 9),
            "message_id": st.text(max_size=20),
            "timestamp": st.integers(0, 2**32),
            "expiration": st.integers(0, 10**6).map(str),
        },
    ),
)
def test_amqp_headers_and_properties_survive_the_wire_encoding(
    hdrs: dict[str, object], props: dict[str, object]
) -> None:
    """archive -> pika's field-table encoding -> decoding -> archive is exact."""
    import pika
    from pika import data as amqp

    hdrs = {k: v for k, v in hdrs.items() if _decimal_fits(v)}
    message = Message(value=b"x", headers=list(hdrs.items()), properties=dict(props))
    back = Message.from_line(message.to_line())
    table, repeated = amqp_headers(back.headers)
    assert not repeated
    pieces: list[bytes] = []
    amqp.encode_table(pieces, table)
    decoded, _ = amqp.decode_table(b"".join(pieces), 0)
    arrived = Message(value=b"x", headers=list(decoded.items()), properties=back.properties)
    again = Message.from_line(arrived.to_line())
    assert same(dict(again.headers), hdrs)
    # Properties go through BasicProperties too.
    properties = pika.BasicProperties(**(again.properties or {}))
    encoded = properties.encode()
    decoded_props = pika.BasicProperties()
    decoded_props.decode(b"".join(encoded))
    for name, value in props.items():
        assert getattr(decoded_props, name) == value


def _decimal_fits(value: object) -> bool:
    """AMQP decimals are an int32 with a scale: values beyond that cannot be sent."""
    if isinstance(value, decimal.Decimal):
        normalized = value.normalize()
        exponent = normalized.as_tuple().exponent
        assert isinstance(exponent, int)
        scaled = int(normalized.scaleb(-exponent)) if exponent < 0 else int(normalized)
        return (-(2**31) <= scaled < 2**31 and exponent <= 0) or normalized == 0
    if isinstance(value, dict):
        return all(_decimal_fits(v) for v in value.values())
    if isinstance(value, list):
        return all(_decimal_fits(v) for v in value)
    return True


# -- the format, by example -----------------------------------------------------------------
def test_text_and_binary_encodings() -> None:
    assert encode_bytes(b"plain") == "plain"
    assert encode_bytes("grüße".encode()) == "grüße"
    assert encode_bytes(b"\xff\x00") == {"b64": "/wA="}
    assert encode_bytes(None) is None
    assert encode_bytes(b"") == ""


def test_typed_value_encodings() -> None:
    stamp = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
    assert encode_value(b"\x01") == {"b64": "AQ=="}
    assert encode_value(decimal.Decimal("1.50")) == {"decimal": "1.50"}
    assert encode_value(stamp) == {"timestamp": "2026-11-27T10:00:00Z"}
    assert encode_value({"count": 2, "queue": "q"}) == {"table": {"count": 2, "queue": "q"}}
    assert encode_value([1, "a", True, None]) == [1, "a", True, None]
    assert decode_value({"timestamp": "2026-11-27T10:00:00Z"}) == stamp
    assert decode_value({"float": "inf"}) == float("inf")
    assert encode_value(float("nan")) == {"float": "nan"}


def test_a_rabbitmq_x_death_header_round_trips_with_its_types() -> None:
    x_death = [
        {
            "count": 3,
            "reason": "rejected",
            "queue": "payments",
            "time": dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC),
            "exchange": "orders",
            "routing-keys": ["payment.completed"],
        }
    ]
    source = rabbitmq_source(
        vhost="/",
        queue="payments.dlq",
        exchange="dlx",
        routing_key="payment.completed",
        redelivered=False,
        x_death=x_death,
    )
    message = Message(
        b"{}", headers=[("x-death", x_death)], properties={"delivery_mode": 2}, source=source
    )
    obj = json.loads(message.to_line())
    assert obj["source"]["x-death"][0]["time"] == "2026-11-27T10:00:00Z"  # readable copy
    assert obj["source"]["properties"] == {"delivery_mode": 2}
    back = Message.from_json(obj)
    assert same(back.header("x-death"), x_death)
    assert back.properties == {"delivery_mode": 2}
    assert back.queue == "payments.dlq"
    assert back.origin() == "rabbitmq:queue/payments.dlq"


def test_line_layout_is_stable() -> None:
    m = Message(b"v", b"k", [("h", "1")], 5, source=kafka_source("t", 1, 7, "create"))
    assert m.to_line() == (
        '{"key":"k","value":"v","headers":[["h","1"]],"timestamp":5,'
        '"source":{"backend":"kafka","topic":"t","partition":1,"offset":7,'
        '"timestamp_type":"create"}}'
    )
    assert m.origin() == "kafka:t/1@7"


def test_hand_written_conveniences() -> None:
    back = Message.from_json(
        {
            "key": "o1",
            "value": {"status": "NEW"},
            "headers": {"a": "1"},
            "timestamp": "2026-01-01T00:00:00Z",
            "properties": {"content_type": "application/json"},
        }
    )
    assert back.value == b'{"status":"NEW"}'
    assert back.headers == [("a", "1")]
    assert back.timestamp == 1767225600000
    assert back.properties == {"content_type": "application/json"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"value": {"b64": "%%%"}}', "invalid base64"),
        ('{"value": "x", "headers": [["a"]]}', "[name, value] pair"),
        ('{"value": "x", "headers": [["a", {"weird": 1}]]}', "objects must be one of"),
        ('{"value": "x", "timestamp": true}', "timestamp"),
        ('{"value": "x", "source": 3}', "'source' must be an object"),
    ],
)
def test_bad_lines_name_the_line_number(line: str, problem: str) -> None:
    lines = ['{"value": "ok"}', "", line]
    with pytest.raises(ArchiveError) as caught:
        list(iter_archive(lines, "in.jsonl"))
    assert caught.value.exit_code == ExitCode.USAGE
    assert "in.jsonl line 3" in str(caught.value)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


@given(st.text(max_size=200))
def test_reading_never_crashes_on_garbage(text: str) -> None:
    with contextlib.suppress(ArchiveError):
        list(iter_archive([text], "x"))


def test_header_helpers_keep_order_and_repeats() -> None:
    m = Message(b"", headers=[("a", "1"), ("b", "2"), ("a", "3")])
    assert m.header("a") == "3"
    assert m.header_values("a") == ["1", "3"]
    assert m.has_header("b") and not m.has_header("c")
    m.set_header("a", "x")
    assert m.headers == [("a", "x"), ("b", "2")]
    m.add_header("qctl-redrive-count", 1)
    assert m.header_text("qctl-redrive-count") == "1"
    assert m.remove_header("b", "nope") == 1
    copy = m.copy()
    copy.add_header("c", "3")
    assert not m.has_header("c")
    table, repeated = amqp_headers([("a", 1), ("a", 2), ("f", 1.5)])
    assert table == {"a": 2, "f": "1.5"}  # pika cannot send floats: text
    assert repeated == ["a"]


def test_archive_writer_and_reader(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "a.jsonl"
    writer = ArchiveWriter.open(path)
    writer.write(Message(b"\xff", b"k"))
    writer.write_all([Message(b"two"), Message(None)])
    writer.sync()
    writer.close()
    assert writer.count == 3
    back = list(read_archive(path))
    assert [m.value for m in back] == [b"\xff", b"two", None]
    stream = io.StringIO()
    ArchiveWriter(stream).write(Message(b"x"))
    assert stream.getvalue().endswith("\n")
