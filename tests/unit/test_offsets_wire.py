"""The FindCoordinator and OffsetDelete encoders/decoders behind `qctl offsets delete`."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.backends.kafka.offsets import _bootstrap_addresses
from qctl.backends.kafka.wire.admin import (
    FIND_COORDINATOR,
    OFFSET_DELETE,
    decode_find_coordinator_response,
    decode_offset_delete_response,
    encode_find_coordinator_request,
    encode_offset_delete_request,
)
from qctl.backends.kafka.wire.codec import Reader, WireError, compact_string, error_name, uvarint


def s16(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def test_offset_delete_request_layout() -> None:
    frame = encode_offset_delete_request(7, "g1", {"orders": [0, 2], "pay": [1]})
    r = Reader(frame)
    assert (r.int16(), r.int16(), r.int32()) == (OFFSET_DELETE, 0, 7)
    assert r.string() == "qctl"  # client id; header v1 has no tagged fields
    assert r.string() == "g1"
    topics = {}
    for _ in range(r.array_len()):
        name = r.string()
        topics[name] = [r.int32() for _ in range(r.array_len())]
    assert topics == {"orders": [0, 2], "pay": [1]}
    assert r.pos == len(frame)


def offset_delete_response(top: int, partitions: dict[str, list[tuple[int, int]]]) -> bytes:
    body = struct.pack(">ihi", 7, top, 0) + struct.pack(">i", len(partitions))
    for topic, parts in partitions.items():
        body += s16(topic) + struct.pack(">i", len(parts))
        body += b"".join(struct.pack(">ih", p, code) for p, code in parts)
    return body


def test_offset_delete_response_per_partition_errors() -> None:
    payload = offset_delete_response(0, {"orders": [(0, 0), (1, 86)], "gone": [(0, 3)]})
    result = decode_offset_delete_response(payload)
    assert result.error_code == 0
    assert result.partitions == {("orders", 0): 0, ("orders", 1): 86, ("gone", 0): 3}
    assert error_name(86) == "GROUP_SUBSCRIBED_TO_TOPIC"
    assert error_name(3) == "UNKNOWN_TOPIC_OR_PARTITION"
    assert error_name(12345) == "error code 12345"


def test_offset_delete_group_error_has_no_topics() -> None:
    result = decode_offset_delete_response(struct.pack(">ihi", 1, 69, 0) + struct.pack(">i", -1))
    assert result.error_code == 69 and result.partitions == {}


@pytest.mark.parametrize("version", [1, 2])
def test_find_coordinator_classic_versions(version: int) -> None:
    frame = encode_find_coordinator_request(3, "grp", version)
    r = Reader(frame)
    assert (r.int16(), r.int16(), r.int32(), r.string()) == (FIND_COORDINATOR, version, 3, "qctl")
    assert (r.string(), r.int8()) == ("grp", 0)
    response = (
        struct.pack(">iih", 3, 0, 0)
        + s16("")
        + struct.pack(">i", 2)
        + s16("b2")
        + struct.pack(">i", 9093)
    )
    found = decode_find_coordinator_response(response, version)
    assert (found.node_id, found.host, found.port, found.error_code) == (2, "b2", 9093, 0)


def test_find_coordinator_v3_is_flexible_with_one_key() -> None:
    frame = encode_find_coordinator_request(3, "grp", 3)
    r = Reader(frame)
    assert (r.int16(), r.int16(), r.int32(), r.string()) == (FIND_COORDINATOR, 3, 3, "qctl")
    r.tagged_fields()
    assert (r.compact_string(), r.int8()) == ("grp", 0)
    response = (
        struct.pack(">i", 3)
        + uvarint(0)
        + struct.pack(">ih", 0, 15)
        + compact_string("not yet")
        + struct.pack(">i", -1)
        + compact_string("")
        + struct.pack(">i", -1)
        + uvarint(0)
    )
    found = decode_find_coordinator_response(response, 3)
    assert found.error_code == 15 and found.error_message == "not yet"


def test_find_coordinator_v4_batched() -> None:
    frame = encode_find_coordinator_request(5, "grp", 4)
    r = Reader(frame)
    assert (r.int16(), r.int16(), r.int32(), r.string()) == (FIND_COORDINATOR, 4, 5, "qctl")
    r.tagged_fields()
    assert r.int8() == 0
    assert [r.compact_string() for _ in range(r.compact_array_len())] == ["grp"]
    response = (
        struct.pack(">i", 5)
        + uvarint(0)
        + struct.pack(">i", 0)
        + uvarint(2)
        + compact_string("grp")
        + struct.pack(">i", 1)
        + compact_string("kafka-1")
        + struct.pack(">ih", 9092, 0)
        + uvarint(0)  # null error message
        + uvarint(0)
        + uvarint(0)
    )
    found = decode_find_coordinator_response(response, 4)
    assert (found.node_id, found.host, found.port, found.error_code) == (1, "kafka-1", 9092, 0)
    assert found.error_message is None
    empty = struct.pack(">i", 5) + uvarint(0) + struct.pack(">i", 0) + uvarint(1) + uvarint(0)
    with pytest.raises(WireError, match="no coordinator"):
        decode_find_coordinator_response(empty, 4)


@given(st.binary(max_size=64))
def test_decoders_fail_cleanly_on_garbage(payload: bytes) -> None:
    for decode in (
        decode_offset_delete_response,
        lambda p: decode_find_coordinator_response(p, 4),
        lambda p: decode_find_coordinator_response(p, 1),
    ):
        with contextlib.suppress(WireError):
            decode(payload)


def test_bootstrap_addresses() -> None:
    assert _bootstrap_addresses("a:9092, SSL://b:9093,[::1]:9094,c") == [
        ("a", 9092),
        ("b", 9093),
        ("::1", 9094),
        ("c", 9092),
    ]


def test_delete_with_a_sasl_mechanism_qctl_cannot_speak_is_refused_before_any_io() -> None:
    from qctl.backends.base import BackendConfig
    from qctl.backends.capabilities.groups import TopicPartition
    from qctl.backends.kafka import KafkaBackend
    from qctl.errors import ExitCode, QctlError

    # No sasl.mechanism: librdkafka's default, GSSAPI (Kerberos), which the wire client
    # does not speak (PLAIN and SCRAM it does; the secured-listener tests use SCRAM).
    settings = {"bootstrap_servers": "127.0.0.1:1", "security.protocol": "SASL_SSL"}
    backend = KafkaBackend.from_config(BackendConfig("t", settings, 1))
    with pytest.raises(QctlError) as caught:
        backend.delete_offsets("g", [TopicPartition("t", 0)])
    assert caught.value.exit_code == ExitCode.FAILED
    assert "leaves this context to librdkafka (sasl.mechanism: " in str(caught.value)
    assert "does not speak GSSAPI" in str(caught.value)
    assert "kafka-consumer-groups --delete-offsets" in caught.value.hint
    assert backend.delete_offsets("g", []) == []
