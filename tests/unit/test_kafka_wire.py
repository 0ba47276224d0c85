"""The ApiVersions/DescribeQuorum/OffsetFetch codecs and the metadata.version table."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.backends.kafka.metadata_version import describe_level
from qctl.backends.kafka.wire.admin import (
    decode_api_versions_response,
    decode_describe_quorum_response,
    decode_offset_fetch_response,
    encode_api_versions_request,
    encode_offset_fetch_request,
)
from qctl.backends.kafka.wire.codec import WireError, WireUnsupported, compact_string, uvarint


def api_versions_response(finalized_level: int, supported_max: int) -> bytes:
    keys = [(0, 0, 12), (18, 0, 4)]
    body = struct.pack(">i", 7) + struct.pack(">h", 0) + uvarint(len(keys) + 1)
    for key, low, high in keys:
        body += struct.pack(">hhh", key, low, high) + uvarint(0)
    body += struct.pack(">i", 0)
    supported = (
        uvarint(2)
        + compact_string("metadata.version")
        + struct.pack(">hh", 1, supported_max)
        + uvarint(0)
    )
    finalized = (
        uvarint(2)
        + compact_string("metadata.version")
        + struct.pack(">hh", finalized_level, finalized_level)
        + uvarint(0)
    )
    body += uvarint(2)
    body += uvarint(0) + uvarint(len(supported)) + supported
    body += uvarint(2) + uvarint(len(finalized)) + finalized
    return body


def test_api_versions_response_is_decoded() -> None:
    info = decode_api_versions_response(api_versions_response(25, 27))
    assert info.api_keys == {0: (0, 12), 18: (0, 4)}
    assert info.supported_features == {"metadata.version": (1, 27)}
    assert info.finalized_features == {"metadata.version": (25, 25)}


def test_api_versions_error_code_raises() -> None:
    with pytest.raises(WireUnsupported, match="does not speak ApiVersions v3"):
        decode_api_versions_response(struct.pack(">ih", 1, 35))
    with pytest.raises(WireError, match="error code 33"):
        decode_api_versions_response(struct.pack(">ih", 1, 33))


def test_request_frame_layout() -> None:
    frame = encode_api_versions_request(9, "qctl", "1.2.3")
    api_key, version, correlation, client_len = struct.unpack(">hhih", frame[:10])
    assert (api_key, version, correlation) == (18, 3, 9)
    assert frame[10 : 10 + client_len] == b"qctl"
    # No header tags, then ClientSoftwareName and ClientSoftwareVersion (KIP-511).
    assert frame[10 + client_len :] == b"\x00" + b"\x05qctl" + b"\x061.2.3" + b"\x00"


def test_describe_quorum_response_is_decoded() -> None:
    body = struct.pack(">i", 3) + uvarint(0) + struct.pack(">h", 0)
    body += uvarint(2) + compact_string("__cluster_metadata") + uvarint(2)
    body += struct.pack(">ihiiq", 0, 0, 2, 5, 100)
    body += uvarint(4)
    for replica in (1, 2, 3):
        body += struct.pack(">iq", replica, 100) + uvarint(0)
    body += uvarint(2) + struct.pack(">iq", 4, 90) + uvarint(0)
    body += uvarint(0) + uvarint(0) + uvarint(0)
    quorum = decode_describe_quorum_response(body)
    assert quorum.leader_id == 2 and quorum.leader_epoch == 5
    assert quorum.voters == [1, 2, 3] and quorum.observers == [4]


@given(st.binary(max_size=200))
def test_garbage_never_crashes_the_decoders(data: bytes) -> None:
    for decode in (
        decode_api_versions_response,
        decode_describe_quorum_response,
        decode_offset_fetch_response,
    ):
        with contextlib.suppress(WireError):
            decode(data)


def test_offset_fetch_request_asks_for_every_partition_of_the_group() -> None:
    frame = encode_offset_fetch_request(5, "orders-svc")
    api_key, version, correlation = struct.unpack(">hhi", frame[:8])
    assert (api_key, version, correlation) == (9, 5, 5)
    assert frame.endswith(struct.pack(">h", 10) + b"orders-svc" + struct.pack(">i", -1))


def test_offset_fetch_response_is_decoded() -> None:
    def string(s: str) -> bytes:
        return struct.pack(">h", len(s)) + s.encode()

    def partition(index: int, offset: int, error: int) -> bytes:
        return (
            struct.pack(">iqi", index, offset, -1)
            + struct.pack(">h", -1)
            + struct.pack(">h", error)
        )

    body = struct.pack(">ii", 5, 0) + struct.pack(">i", 1) + string("orders")
    body += struct.pack(">i", 3) + partition(0, 42, 0) + partition(1, -1, 0) + partition(2, 7, 3)
    body += struct.pack(">h", 16)
    result = decode_offset_fetch_response(body)
    assert result.error_code == 16  # NOT_COORDINATOR: the caller finds the coordinator again
    assert result.partitions == {
        ("orders", 0): (42, 0),
        ("orders", 1): (-1, 0),
        ("orders", 2): (7, 3),
    }


@pytest.mark.parametrize(
    ("level", "release_only", "expected"),
    [
        (27, True, "4.1"),
        (27, False, "4.1-IV1"),
        (21, False, "3.9-IV0"),
        (99, True, "newer than 4.4 (metadata.version level 99)"),
        (3, False, "metadata.version level 3"),
    ],
)
def test_metadata_version_names(level: int, release_only: bool, expected: str) -> None:
    assert describe_level(level, release_only=release_only) == expected
