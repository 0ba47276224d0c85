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

from qctl.backends.rabbitmq.amqp import frames as af
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


# -- reading: the frame checks and the receive buffer ----------------------------------------
def deliver(tag: int, body: bytes, properties: BasicProperties | None = None) -> bytes:
    """A ``basic.deliver`` on channel 1 with its content, as the broker sends it."""
    method = frame.Method(
        1,
        spec.Basic.Deliver(
            consumer_tag="ctag", delivery_tag=tag, exchange="orders", routing_key="order.x"
        ),
    ).marshal()
    raw = raw_properties(properties or BasicProperties(headers={"n": tag}))
    return method + b"".join(af.content(1, raw, body, 131072))


def wire_move() -> Any:
    from qctl.backends.capabilities.queuemove import QueueMapper, QueueMoveRequest
    from qctl.backends.rabbitmq.wiremove import WireMove
    from qctl.refs import Ref

    request = QueueMoveRequest(
        source=Ref("rabbitmq", "queue", "q"),
        mapper=QueueMapper(frozenset(), lambda *_: None),  # type: ignore[arg-type,return-value]
    )
    return WireMove(None, request, None)  # type: ignore[arg-type]


def connection() -> Any:
    from qctl.backends.rabbitmq.amqp.connection import Connection

    return Connection(None, timeout=1.0)  # type: ignore[arg-type]


def test_frame_at_checks_the_end_octet_and_the_size() -> None:
    good = af.ack(2, 7, False)
    assert af.frame_at(good, 0, len(good), 131072) == len(good) - 1
    assert af.frame_at(good, 0, len(good) - 1, 131072) == -1  # not all here yet
    assert af.frame_at(good[:6], 0, 6, 131072) == -1
    bad = good[:-1] + b"\x00"
    with pytest.raises(af.FrameError, match="0xce"):
        af.frame_at(bad, 0, len(bad), 131072)
    huge = af.FRAME_HEAD.pack(af.FRAME_BODY, 1, 200_000)
    with pytest.raises(af.FrameError, match="frame_max"):
        af.frame_at(huge, 0, len(huge), 131072)  # refused before it arrives whole


@settings(max_examples=60)
@given(cuts=st.lists(st.integers(0, 600_000), max_size=12))
def test_deliveries_cut_anywhere_arrive_whole(cuts: list[int]) -> None:
    """The receive buffer takes what arrives in any pieces; complete deliveries reach
    the backlog (a 400 kB body spans four frames), partial ones wait, nothing is
    copied into the backlog twice."""
    stream = deliver(1, b"a" * 10) + deliver(2, b"b" * 400_000) + deliver(3, b"")
    stream += af.HEARTBEAT + deliver(4, b"d")
    move = wire_move()
    conn = connection()
    points = sorted({min(c, len(stream)) for c in cuts} | {len(stream)})
    start = 0
    for point in points:
        conn.buffer += stream[start:point]
        start = point
        move._frames(conn)
    assert [(tag, body) for tag, _x, _k, _p, body in move.backlog] == [
        (1, b"a" * 10),
        (2, b"b" * 400_000),
        (3, b""),
        (4, b"d"),
    ]
    assert move.backlog[0][1:3] == (b"orders", b"order.x")
    assert not conn.buffer and move.received == 4


@pytest.mark.parametrize("at", ["method", "header", "body", "second body"])
def test_a_wrong_frame_end_in_a_delivery_is_a_frame_error(at: str) -> None:
    stream = bytearray(deliver(1, b"x" * 200_000))
    ends = [i for i in range(len(stream)) if stream[i] == af.FRAME_END]
    # The frame ends in order: method, content header, then the two body frames.
    frame_ends = []
    pos = 0
    while pos < len(stream):
        stop = af.frame_at(stream, pos, len(stream), 131072)
        frame_ends.append(stop)
        pos = stop + 1
    assert set(frame_ends) <= set(ends)
    index = ["method", "header", "body", "second body"].index(at)
    stream[frame_ends[index]] = 0x00
    move = wire_move()
    conn = connection()
    conn.buffer += stream
    with pytest.raises(af.FrameError):
        move._frames(conn)
    assert not move.backlog  # nothing after the bad octet was taken


def test_a_wrong_frame_end_of_a_confirm_is_a_frame_error() -> None:
    move = wire_move()
    conn = connection()
    conn.buffer += af.ack(2, 1, False)[:-1] + b"\xcd"
    with pytest.raises(af.FrameError):
        move._frames(conn)


def test_setup_answers_are_checked_and_flow_notices_taken_in_passing() -> None:
    """``Connection.expect`` over a real socket pair: blocked/unblocked between setup
    answers are noted, a wrong frame-end octet is a FrameError."""
    import socket

    ours, theirs = socket.socketpair()
    conn = connection()
    conn.sock = ours
    blocked = frame.Method(0, spec.Connection.Blocked(reason="low on memory")).marshal()
    unblocked = frame.Method(0, spec.Connection.Unblocked()).marshal()
    open_ok = frame.Method(1, spec.Channel.OpenOk()).marshal()
    theirs.sendall(blocked + af.HEARTBEAT + open_ok)
    assert isinstance(conn.expect(1, spec.Channel.OpenOk), spec.Channel.OpenOk)
    assert conn.blocked.active and conn.blocked.reason == "low on memory"
    theirs.sendall(unblocked + open_ok[:-1] + b"\x00")
    with pytest.raises(af.FrameError):
        conn.expect(1, spec.Channel.OpenOk)
    assert not conn.blocked.active
    warning = conn.blocked.warning()
    assert warning is not None and "low on memory" in warning
    ours.close()
    theirs.close()
