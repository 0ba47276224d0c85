"""The ListGroups, DescribeGroups and ConsumerGroupDescribe codecs of the groups wire client.

The two answers below were captured from a Kafka 4.1 broker: a classic group
``inventory`` (one static member, range assignor) and a KIP-848 group ``payments`` (one
member, uniform assignor), both reading the six partitions of ``orders``.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.backends.capabilities.groups import TopicPartition
from qctl.backends.kafka.wire.codec import Reader, WireError, compact_string, uvarint
from qctl.backends.kafka.wire.groups import (
    CONSUMER_GROUP_DESCRIBE,
    DESCRIBE_GROUPS,
    LIST_GROUPS,
    METADATA,
    consumer_assignment,
    decode_consumer_group_describe_response,
    decode_describe_groups_response,
    decode_list_groups_response,
    decode_metadata_brokers,
    encode_consumer_group_describe_request,
    encode_describe_groups_request,
    encode_list_groups_request,
    encode_metadata_request,
)

DESCRIBE_GROUPS_V4 = bytes.fromhex(
    "00000001000000000000000200000009696e76656e746f72790006537461626c650008636f6e73756d65"
    "72000572616e676500000001002a696e762d312d32313333383033382d666230642d343136392d3930"
    "30662d6636376532333230663131620005696e762d31000d696e76656e746f72792d737663000a2f31"
    "32372e302e302e310000001c00030000000100066f72646572730000000000000000ffffffff000000"
    "00002e00000000000100066f7264657273000000060000000000000001000000020000000300000004"
    "000000050000000080000000000000087061796d656e7473000444656164000000000000000080000000"
)
CONSUMER_GROUP_DESCRIBE_V0 = bytes.fromhex(
    "0000000200000000000300452947726f757020696e76656e746f7279206973206e6f74206120636f6e73"
    "756d65722067726f75702e0a696e76656e746f727901000000000000000001018000000000000000097061"
    "796d656e747307537461626c65000000010000000108756e69666f726d021752714f693335776352512b2f"
    "3578647643546b7a33510000000000010c7061796d656e742d7376630b2f3132372e302e302e3102076f72"
    "646572730102b76f66d4c8d047b5b8b8e118dc3b0583076f726465727307000000000000000100000002"
    "000000030000000400000005000002b76f66d4c8d047b5b8b8e118dc3b0583076f7264657273070000000000"
    "00000100000002000000030000000400000005000000800000000000"
)
ORDERS = [TopicPartition("orders", p) for p in range(6)]


def header(frame: bytes) -> tuple[int, int, int, str | None]:
    r = Reader(frame)
    return r.int16(), r.int16(), r.int32(), r.string()


def test_describe_groups_v4_answer_of_a_classic_and_a_new_protocol_group() -> None:
    answers = decode_describe_groups_response(DESCRIBE_GROUPS_V4, coordinator=1)
    error, inventory = answers["inventory"]
    assert error == 0
    assert (inventory.state, inventory.assignor, inventory.type) == ("Stable", "range", "classic")
    assert not inventory.simple and inventory.coordinator == 1
    [member] = inventory.members
    assert member.member_id.startswith("inv-1-")
    assert (member.client_id, member.host, member.group_instance_id) == (
        "inventory-svc",
        "/127.0.0.1",
        "inv-1",
    )
    assert member.assignment == ORDERS
    # A broker describes a KIP-848 group only with ConsumerGroupDescribe: here it is Dead.
    error, payments = answers["payments"]
    assert (error, payments.state, payments.members, payments.simple) == (0, "Dead", [], True)


def test_consumer_group_describe_v0_answer() -> None:
    answers = decode_consumer_group_describe_response(CONSUMER_GROUP_DESCRIBE_V0, coordinator=1)
    assert answers["inventory"][0] == 69  # GROUP_ID_NOT_FOUND: a classic group
    error, payments = answers["payments"]
    assert error == 0
    assert (payments.state, payments.assignor, payments.type) == ("Stable", "uniform", "consumer")
    [member] = payments.members
    assert (member.member_id, member.client_id, member.host, member.group_instance_id) == (
        "RqOi35wcRQ+/5xdvCTkz3Q",
        "payment-svc",
        "/127.0.0.1",
        None,
    )
    assert member.assignment == ORDERS


def test_request_layouts() -> None:
    r = Reader(encode_describe_groups_request(5, ["a", "bc"]))
    assert (r.int16(), r.int16(), r.int32(), r.string()) == (DESCRIBE_GROUPS, 4, 5, "qctl")
    assert [r.string() for _ in range(r.array_len())] == ["a", "bc"]
    assert r.int8() == 0 and r.pos == len(r.data)  # no authorized operations

    r = Reader(encode_metadata_request(6))
    assert (r.int16(), r.int16(), r.int32(), r.string()) == (METADATA, 4, 6, "qctl")
    assert (r.int32(), r.int8()) == (0, 0)  # no topic (not null: all); no auto-creation

    r = Reader(encode_consumer_group_describe_request(7, ["payments"]))
    assert (r.int16(), r.int16(), r.int32(), r.string()) == (CONSUMER_GROUP_DESCRIBE, 0, 7, "qctl")
    r.tagged_fields()
    assert [r.compact_string() for _ in range(r.compact_array_len())] == ["payments"]
    assert (r.int8(), r.uvarint()) == (0, 0)


@pytest.mark.parametrize(("version", "filters"), [(3, 0), (4, 1), (5, 2)])
def test_list_groups_request_has_an_empty_filter_per_version(version: int, filters: int) -> None:
    r = Reader(encode_list_groups_request(9, version))
    assert (r.int16(), r.int16(), r.int32(), r.string()) == (LIST_GROUPS, version, 9, "qctl")
    r.tagged_fields()
    assert [r.compact_array_len() for _ in range(filters)] == [0] * filters
    assert r.uvarint() == 0 and r.pos == len(r.data)


def listed(group: str, protocol: str, state: str, kind: str) -> bytes:
    return b"".join(map(compact_string, (group, protocol, state, kind))) + uvarint(0)


def test_list_groups_keeps_consumer_and_simple_groups_only() -> None:
    payload = (
        struct.pack(">i", 1)
        + uvarint(0)
        + struct.pack(">ih", 0, 0)
        + uvarint(5)
        + listed("orders-svc", "consumer", "Stable", "classic")
        + listed("payments", "consumer", "Reconciling", "consumer")
        + listed("qctl.replay.x", "", "Empty", "classic")
        + listed("connect-cluster", "connect", "Stable", "classic")
        + uvarint(0)
    )
    error, groups = decode_list_groups_response(payload, 5)
    assert error == 0
    assert [(g.group_id, g.state, g.type, g.simple) for g in groups] == [
        ("orders-svc", "Stable", "classic", False),
        ("payments", "Reconciling", "consumer", False),
        ("qctl.replay.x", "Empty", "classic", True),
    ]


def test_list_groups_v3_has_no_state_or_type() -> None:
    payload = (
        struct.pack(">i", 1)
        + uvarint(0)
        + struct.pack(">ih", 0, 15)
        + uvarint(2)
        + compact_string("g")
        + compact_string("consumer")
        + uvarint(0)
        + uvarint(0)
    )
    error, [group] = decode_list_groups_response(payload, 3)
    assert error == 15
    assert (group.group_id, group.state, group.type) == ("g", "Unknown", "unknown")


def test_metadata_brokers() -> None:
    payload = struct.pack(">iii", 1, 0, 2)
    for node, host, port, rack in ((1, "k1", 9092, None), (2, "k2", 9093, "eu-1a")):
        payload += struct.pack(">ih", node, len(host)) + host.encode() + struct.pack(">i", port)
        payload += struct.pack(">h", -1) if rack is None else struct.pack(">h", 5) + rack.encode()
    payload += struct.pack(">hii", -1, 1, 0)  # cluster id, controller, no topics
    brokers = decode_metadata_brokers(payload)
    assert [(b.node_id, b.host, b.port) for b in brokers] == [(1, "k1", 9092), (2, "k2", 9093)]


def test_assignment_of_a_later_consumer_protocol_version_is_read() -> None:
    data = struct.pack(">hi", 3, 1) + struct.pack(">h", 1) + b"t" + struct.pack(">iii", 2, 4, 1)
    data += struct.pack(">i", -1) + b"future fields"
    assert consumer_assignment(data) == [TopicPartition("t", 1), TopicPartition("t", 4)]


@given(st.binary(max_size=200))
def test_a_member_assignment_never_raises(data: bytes) -> None:
    assert all(isinstance(tp, TopicPartition) for tp in consumer_assignment(data))


@pytest.mark.parametrize(
    ("answer", "decode"),
    [
        (DESCRIBE_GROUPS_V4, decode_describe_groups_response),
        (CONSUMER_GROUP_DESCRIBE_V0, decode_consumer_group_describe_response),
    ],
    ids=["DescribeGroups", "ConsumerGroupDescribe"],
)
def test_every_cut_off_answer_is_a_wire_error(answer: bytes, decode: Any) -> None:
    assert decode(answer, None)
    for cut in range(len(answer)):
        with pytest.raises(WireError):
            decode(answer[:cut], None)


@given(st.binary(max_size=300))
def test_garbage_is_a_wire_error_or_a_result(data: bytes) -> None:
    for decode in (
        lambda: decode_describe_groups_response(data, None),
        lambda: decode_consumer_group_describe_response(data, None),
        lambda: decode_list_groups_response(data, 5),
        lambda: decode_metadata_brokers(data),
    ):
        with contextlib.suppress(WireError):
            decode()
