"""The byte-level AMQP frames of the RabbitMQ move loop, checked against pika's codec."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pika import frame, spec
from pika.spec import BasicProperties

from qctl.backends.rabbitmq import amqpframes as af
from qctl.backends.rabbitmq.wiremove import _death_key

names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda s: len(s.encode()) < 100)
scalars = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.none(),
    st.binary(max_size=10),
    st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False),
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=0)
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=8,
)
tables = st.dictionaries(names, values, max_size=6)


def raw_properties(props: BasicProperties) -> bytes:
    """The property bytes (flags first) of a content header, as pika writes them."""
    payload = frame.Header(1, 0, props).marshal()[7:-1]
    return payload[12:]


def decoded(raw: bytes) -> BasicProperties:
    props = BasicProperties()
    props.decode(raw)
    return props


@settings(max_examples=150, deadline=None)
@given(headers=tables, drop=st.sets(names, max_size=3), add=tables)
def test_rewritten_headers_decode_as_pika_would_write_them(
    headers: dict[str, Any], drop: set[str], add: dict[str, Any]
) -> None:
    props = BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers or None,
        delivery_mode=2,
        message_id="m-1",
        timestamp=1_700_000_000,
    )
    text = {k: str(v) for k, v in add.items()}
    parsed = af.Properties(raw_properties(props))
    entries = parsed.entries()
    assert [n.decode() for n, *_ in entries] == list(headers)
    gone = frozenset(n.encode() for n in drop) | frozenset(n.encode() for n in text)
    out = decoded(
        parsed.rewritten(entries, gone, [af.longstr_entry(n, v) for n, v in text.items()])
    )
    expected = {k: v for k, v in headers.items() if k not in drop and k not in text}
    expected.update(text)
    assert (out.headers or {}) == _decoded_like_pika(expected)
    assert out.content_type == "application/json" and out.content_encoding == "utf-8"
    assert out.delivery_mode == 2 and out.message_id == "m-1"
    assert out.timestamp == 1_700_000_000


def _decoded_like_pika(headers: dict[str, Any]) -> dict[str, Any]:
    """What pika's decoder returns for headers it encoded (text comes back as str,
    bytes as bytes, datetimes as naive UTC)."""
    return dict(decoded(raw_properties(BasicProperties(headers=headers))).headers or {})


def test_headers_are_added_to_properties_that_had_none() -> None:
    for props in (BasicProperties(), BasicProperties(content_type="text/plain", priority=4)):
        parsed = af.Properties(raw_properties(props))
        assert parsed.entries() == []
        out = decoded(parsed.rewritten([], frozenset(), [af.longstr_entry("k", "✓")]))
        assert out.headers == {"k": "✓"}
        assert out.content_type == props.content_type and out.priority == props.priority


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_malformed_properties_raise_only_frame_errors(raw: bytes) -> None:
    with contextlib.suppress(af.FrameError):  # any other exception fails the test
        af.Properties(raw).entries()


@given(headers=tables, cut=st.integers(min_value=1, max_value=40))
def test_a_cut_headers_table_is_a_frame_error(headers: dict[str, Any], cut: int) -> None:
    raw = raw_properties(BasicProperties(headers=headers or {"a": "b"}))
    with pytest.raises(af.FrameError):
        af.Properties(raw[: max(len(raw) - cut, 3)]).entries()


def test_an_unknown_field_type_is_a_frame_error() -> None:
    with pytest.raises(af.FrameError, match="unknown field type"):
        af.value_end(b"Z\x00", 0)


def test_value_end_covers_every_type_pika_writes() -> None:
    sample = {
        "s": "x",
        "i": 5,
        "l": 2**40,
        "t": True,
        "v": None,
        "x": b"\x01",
        "d": decimal.Decimal("1.25"),
        "T": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "A": [1, "a"],
        "F": {"n": {"m": 1}},
    }
    parsed = af.Properties(raw_properties(BasicProperties(headers=sample)))
    entries = parsed.entries()
    assert [n.decode() for n, *_ in entries] == list(sample)
    for (name, _start, value, stop), expected in zip(entries, sample.values(), strict=True):
        got = af.decode_value(parsed.raw[value:stop])
        assert got == expected, name


def death(queue: str, when: dt.datetime, count: int) -> bytes:
    headers = {
        "x-death": [
            {
                "count": count,
                "reason": "rejected",
                "queue": queue,
                "time": when,
                "exchange": "orders",
                "routing-keys": ["order.created"],
            }
        ]
    }
    parsed = af.Properties(raw_properties(BasicProperties(headers=headers)))
    (_name, _start, value, stop) = parsed.entries()[0]
    return parsed.raw[value:stop]


def test_death_keys_ignore_times_and_counts_only() -> None:
    t1, t2 = dt.datetime(2026, 1, 1, 10), dt.datetime(2026, 1, 1, 11)
    assert _death_key(death("work", t1, 1)) == _death_key(death("work", t2, 7))
    assert _death_key(death("work", t1, 1)) != _death_key(death("other", t1, 1))
    assert _death_key(b"S\x00\x00\x00\x01x") == b"S\x00\x00\x00\x01x"  # not an array


def test_publish_frames_decode_as_pika_frames() -> None:
    body = b"b" * 300_000
    raw = raw_properties(BasicProperties(headers={"h": "v"}, delivery_mode=2))
    data = af.publish_method(2, b"orders", b"order.created", True) + b"".join(
        af.content(2, raw, body, 131072)
    )
    got = []
    while data:
        used, f = frame.decode_frame(data)
        assert f is not None
        got.append(f)
        data = data[used:]
    method, header, *bodies = got
    assert isinstance(method.method, spec.Basic.Publish)
    assert method.method.exchange == "orders" and method.method.mandatory
    assert header.body_size == len(body) and header.properties.headers == {"h": "v"}
    assert b"".join(b.fragment for b in bodies) == body
    assert all(len(b.fragment) <= 131072 - 8 for b in bodies) and len(bodies) == 3
    used, ack = frame.decode_frame(af.ack(1, 42, True))
    assert isinstance(ack.method, spec.Basic.Ack)
    assert ack.method.delivery_tag == 42 and ack.method.multiple
