"""Requests for cluster facts and group offsets that qctl sends itself.

* ApiVersions v3: the versions a broker speaks, and in its ``SupportedFeatures`` and
  ``FinalizedFeatures`` the ``metadata.version`` levels (the only way to tell which
  Kafka release a broker runs). Allowed before authentication.
* DescribeQuorum v0 for ``__cluster_metadata``: the active KRaft controller and the
  voters (in KRaft, the ``controller`` field of Metadata is a random broker).
* FindCoordinator v1-v4: the coordinator of a group or a transactional id.
* OffsetDelete v0: confluent-kafka does not expose deleting a group's committed offsets.
* OffsetFetch v5 and ListOffsets v4 (the last classic versions): committed offsets and
  log ends for thousands of partitions, read in place.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from qctl.backends.kafka.wire.codec import (
    INT16,
    INT32,
    Reader,
    WireError,
    WireUnsupported,
    compact_string,
    read_topic_header,
    request_header_v1,
    request_header_v2,
    uvarint,
    wire_string,
)

API_VERSIONS = 18
DESCRIBE_QUORUM = 55
FIND_COORDINATOR = 10
FETCH = 1
LIST_OFFSETS = 2
OFFSET_FETCH = 9
OFFSET_DELETE = 47
UNSUPPORTED_VERSION = 35

#: partition, committed offset, committed leader epoch
_OFFSET_FETCH_PARTITION = struct.Struct(">iqi")
#: ListOffsets v4 answer per partition: partition, error, timestamp, offset, leader epoch
_LIST_OFFSETS_PARTITION = struct.Struct(">ihqqi")
#: ListOffsets v4 question per partition: partition, current leader epoch, timestamp
_LIST_OFFSETS_ASK = struct.Struct(">iiq")
#: ListOffsets timestamps that ask for the log-start and the end offset.
EARLIEST, LATEST = -2, -1


@dataclass
class ApiVersionsInfo:
    api_keys: dict[int, tuple[int, int]] = field(default_factory=dict)
    supported_features: dict[str, tuple[int, int]] = field(default_factory=dict)
    finalized_features: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class QuorumInfo:
    leader_id: int
    leader_epoch: int
    voters: list[int]
    observers: list[int]


def encode_api_versions_request(
    correlation_id: int, software_name: str = "qctl", software_version: str = "0"
) -> bytes:
    """ApiVersions v3 with the client software's name and version (KIP-511)."""
    body = compact_string(software_name) + compact_string(software_version) + uvarint(0)
    return request_header_v2(API_VERSIONS, 3, correlation_id) + body


def decode_api_versions_response(payload: bytes) -> ApiVersionsInfo:
    """Body of an ApiVersions v3 response (its header is v0: the correlation id only)."""
    r = Reader(payload)
    r.int32()  # correlation id
    error = r.int16()
    if error == UNSUPPORTED_VERSION:
        raise WireUnsupported("the broker does not speak ApiVersions v3 (Kafka before 2.4)")
    if error:
        raise WireError(f"ApiVersions error code {error}")
    info = ApiVersionsInfo()
    for _ in range(r.compact_array_len()):
        key, low, high = r.int16(), r.int16(), r.int16()
        r.tagged_fields()
        info.api_keys[key] = (low, high)
    r.int32()  # throttle time
    tagged = r.tagged_fields()
    if 0 in tagged:
        t = Reader(tagged[0])
        for _ in range(t.compact_array_len()):
            name = t.compact_string() or ""
            low, high = t.int16(), t.int16()
            t.tagged_fields()
            info.supported_features[name] = (low, high)
    if 2 in tagged:
        t = Reader(tagged[2])
        for _ in range(t.compact_array_len()):
            name = t.compact_string() or ""
            max_level, min_level = t.int16(), t.int16()
            t.tagged_fields()
            info.finalized_features[name] = (min_level, max_level)
    return info


def encode_describe_quorum_request(correlation_id: int) -> bytes:
    body = (
        uvarint(2)  # one topic
        + compact_string("__cluster_metadata")
        + uvarint(2)  # one partition
        + struct.pack(">i", 0)
        + uvarint(0)
        + uvarint(0)
        + uvarint(0)
    )
    return request_header_v2(DESCRIBE_QUORUM, 0, correlation_id) + body


def decode_describe_quorum_response(payload: bytes) -> QuorumInfo:
    r = Reader(payload)
    r.int32()  # correlation id
    r.tagged_fields()  # response header v1
    error = r.int16()
    if error:
        raise WireError(f"DescribeQuorum error code {error}")
    for _ in range(r.compact_array_len()):
        r.compact_string()
        for _ in range(r.compact_array_len()):
            r.int32()  # partition index
            perror = r.int16()
            leader, epoch = r.int32(), r.int32()
            r.int64()  # high watermark
            voters = _replica_ids(r)
            observers = _replica_ids(r)
            r.tagged_fields()
            if perror:
                raise WireError(f"DescribeQuorum partition error code {perror}")
            return QuorumInfo(leader, epoch, voters, observers)
    raise WireError("DescribeQuorum returned no partition")


def _replica_ids(r: Reader) -> list[int]:
    ids = []
    for _ in range(r.compact_array_len()):
        ids.append(r.int32())
        r.int64()  # log end offset
        r.tagged_fields()
    return ids


@dataclass(frozen=True)
class Coordinator:
    """The broker that coordinates a group, or the error that says why there is none."""

    node_id: int
    host: str
    port: int
    error_code: int = 0
    error_message: str | None = None


def encode_find_coordinator_request(
    correlation_id: int, group_id: str, version: int, key_type: int = 0
) -> bytes:
    """FindCoordinator for a group (key type 0) or a transactional id (1): v4+ (batched,
    flexible) or v1-v3 (one key)."""
    kind = struct.pack(">b", key_type)
    if version >= 4:
        body = kind + uvarint(2) + compact_string(group_id) + uvarint(0)
        return request_header_v2(FIND_COORDINATOR, version, correlation_id) + body
    if version == 3:
        body = compact_string(group_id) + kind + uvarint(0)
        return request_header_v2(FIND_COORDINATOR, 3, correlation_id) + body
    body = wire_string(group_id) + kind
    return request_header_v1(FIND_COORDINATOR, version, correlation_id) + body


def decode_find_coordinator_response(payload: bytes, version: int) -> Coordinator:
    r = Reader(payload)
    r.int32()  # correlation id
    if version >= 3:
        r.tagged_fields()  # response header v1
    r.int32()  # throttle time
    if version >= 4:
        found = None
        for _ in range(r.compact_array_len()):
            r.compact_string()  # key
            node_id = r.int32()
            host = r.compact_string() or ""
            port = r.int32()
            error = r.int16()
            message = r.compact_string()
            r.tagged_fields()
            found = found or Coordinator(node_id, host, port, error, message)
        if found is None:
            raise WireError("FindCoordinator returned no coordinator")
        return found
    error = r.int16()
    message = (r.compact_string() if version == 3 else r.string()) if version >= 1 else None
    node_id = r.int32()
    host = (r.compact_string() if version == 3 else r.string()) or ""
    port = r.int32()
    return Coordinator(node_id, host, port, error, message)


@dataclass
class OffsetDeleteResult:
    """Top-level error of an OffsetDelete response, and the error of each partition."""

    error_code: int
    partitions: dict[tuple[str, int], int] = field(default_factory=dict)


def encode_offset_delete_request(
    correlation_id: int, group_id: str, partitions: dict[str, list[int]]
) -> bytes:
    """OffsetDelete v0 (the only version): group, then topics with partition indexes."""
    body = wire_string(group_id) + struct.pack(">i", len(partitions))
    for topic, indexes in partitions.items():
        body += wire_string(topic) + struct.pack(">i", len(indexes))
        body += b"".join(struct.pack(">i", p) for p in indexes)
    return request_header_v1(OFFSET_DELETE, 0, correlation_id) + body


def decode_offset_delete_response(payload: bytes) -> OffsetDeleteResult:
    r = Reader(payload)
    r.int32()  # correlation id (response header v0)
    result = OffsetDeleteResult(error_code=r.int16())
    r.int32()  # throttle time
    for _ in range(r.array_len()):
        topic = r.string() or ""
        for _ in range(r.array_len()):
            partition = r.int32()
            result.partitions[(topic, partition)] = r.int16()
    return result


@dataclass
class OffsetFetchResult:
    """Top-level error of an OffsetFetch response, and each partition's offset and error."""

    error_code: int
    partitions: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)


def encode_offset_fetch_request(correlation_id: int, group_id: str) -> bytes:
    """OffsetFetch v5 (the last non-flexible one) for every partition the group committed.

    A null topic array asks for all of the group's offsets, as Kafka's own tools do.
    """
    body = wire_string(group_id) + struct.pack(">i", -1)
    return request_header_v1(OFFSET_FETCH, 5, correlation_id) + body


def decode_offset_fetch_response(payload: bytes) -> OffsetFetchResult:
    """OffsetFetch v5, decoded with offsets into the buffer: a lag overview decodes one
    of these per group, thousands of partitions in all."""
    partitions: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        pos = 8  # correlation id (response header v0), throttle time
        (topics,) = INT32.unpack_from(payload, pos)
        pos += 4
        for _ in range(max(topics, 0)):
            topic, count, pos = read_topic_header(payload, pos)
            for _ in range(count):
                partition, offset, _epoch = _OFFSET_FETCH_PARTITION.unpack_from(payload, pos)
                (size,) = INT16.unpack_from(payload, pos + 16)  # metadata
                pos += 18 + max(size, 0)
                (code,) = INT16.unpack_from(payload, pos)
                pos += 2
                partitions[(topic, partition)] = (offset, code)
        (error_code,) = INT16.unpack_from(payload, pos)
    except struct.error:
        raise WireError("truncated response") from None
    return OffsetFetchResult(error_code=error_code, partitions=partitions)


def encode_list_offsets_request(
    correlation_id: int, topics: Mapping[str, Sequence[int]], timestamp: int, committed: bool
) -> bytes:
    """ListOffsets v4 (the last non-flexible one) for every partition of ``topics``:
    ``timestamp`` EARLIEST or LATEST, the end read_committed (last-stable) or not."""
    parts = [struct.pack(">ibi", -1, 1 if committed else 0, len(topics))]
    for topic, partitions in topics.items():
        parts.append(wire_string(topic) + INT32.pack(len(partitions)))
        parts.extend(_LIST_OFFSETS_ASK.pack(p, -1, timestamp) for p in partitions)
    return request_header_v1(LIST_OFFSETS, 4, correlation_id) + b"".join(parts)


def decode_list_offsets_response(payload: bytes) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (error code, offset) of a ListOffsets v4 answer."""
    out: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        pos = 8  # correlation id (response header v0), throttle time
        (topics,) = INT32.unpack_from(payload, pos)
        pos += 4
        for _ in range(max(topics, 0)):
            topic, count, pos = read_topic_header(payload, pos)
            for _ in range(count):
                partition, code, _ts, offset, _epoch = _LIST_OFFSETS_PARTITION.unpack_from(
                    payload, pos
                )
                pos += _LIST_OFFSETS_PARTITION.size
                out[(topic, partition)] = (code, offset)
    except struct.error:
        raise WireError("truncated response") from None
    return out
