"""The requests that list and describe consumer groups, encoded and decoded.

* Metadata v4 with no topics: the brokers, since every broker lists only the groups it
  coordinates.
* ListGroups v3-v5: the groups, with state (v4+) and type (v5+). Like librdkafka's call,
  only consumer groups are kept: protocol type ``consumer``, or none for the "simple"
  groups that only commit offsets (not Connect, share or streams groups).
* DescribeGroups v4: the classic groups, their members and assignments (decoded from the
  consumer protocol).
* ConsumerGroupDescribe v0 (KIP-848): groups of the new consumer protocol.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from qctl.backends.capabilities.groups import (
    GroupDescription,
    GroupListing,
    GroupMember,
    TopicPartition,
)
from qctl.backends.kafka.wire.codec import (
    Reader,
    WireError,
    compact_string,
    request_header_v1,
    request_header_v2,
    uvarint,
    wire_string,
)

log = logging.getLogger(__name__)

METADATA = 3
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
CONSUMER_GROUP_DESCRIBE = 69
GROUP_ID_NOT_FOUND = 69
#: Protocol types of the groups librdkafka calls consumer groups ("" = simple group).
CONSUMER_PROTOCOL_TYPES = ("", "consumer")


@dataclass(frozen=True)
class Broker:
    node_id: int
    host: str
    port: int


# -- Metadata ------------------------------------------------------------------------------
def encode_metadata_request(correlation_id: int) -> bytes:
    """Metadata v4 for no topic (an empty, not null, topic array): the brokers only."""
    return request_header_v1(METADATA, 4, correlation_id) + struct.pack(">ib", 0, 0)


def decode_metadata_brokers(payload: bytes) -> list[Broker]:
    r = Reader(payload)
    r.int32()  # correlation id (response header v0)
    r.int32()  # throttle time
    brokers = []
    for _ in range(r.array_len()):
        node_id, host, port = r.int32(), r.string() or "", r.int32()
        r.string()  # rack
        brokers.append(Broker(node_id, host, port))
    return brokers


# -- ListGroups ----------------------------------------------------------------------------
def encode_list_groups_request(correlation_id: int, version: int) -> bytes:
    """ListGroups v3-v5 with no state (v4+) or type (v5+) filter: every group."""
    filters = uvarint(1) * max(version - 3, 0)
    return request_header_v2(LIST_GROUPS, version, correlation_id) + filters + uvarint(0)


def decode_list_groups_response(payload: bytes, version: int) -> tuple[int, list[GroupListing]]:
    """The error code and the consumer groups of a ListGroups v3-v5 answer."""
    r = Reader(payload)
    r.int32()  # correlation id
    r.tagged_fields()  # response header v1
    r.int32()  # throttle time
    error = r.int16()
    groups = []
    for _ in range(r.compact_array_len()):
        group_id = r.compact_string() or ""
        protocol_type = r.compact_string() or ""
        state = (r.compact_string() or "Unknown") if version >= 4 else "Unknown"
        kind = (r.compact_string() or "unknown").lower() if version >= 5 else "unknown"
        r.tagged_fields()
        if protocol_type in CONSUMER_PROTOCOL_TYPES:
            groups.append(GroupListing(group_id, state, kind, simple=not protocol_type))
    r.tagged_fields()
    return error, groups


# -- DescribeGroups ------------------------------------------------------------------------
def encode_describe_groups_request(correlation_id: int, group_ids: list[str]) -> bytes:
    """DescribeGroups v4 (the last non-flexible one), without authorized operations."""
    body = struct.pack(">i", len(group_ids)) + b"".join(wire_string(g) for g in group_ids)
    return request_header_v1(DESCRIBE_GROUPS, 4, correlation_id) + body + b"\x00"


def decode_describe_groups_response(
    payload: bytes, coordinator: int | None
) -> dict[str, tuple[int, GroupDescription]]:
    """group -> (error code, description) of a DescribeGroups v4 answer."""
    r = Reader(payload)
    r.int32()  # correlation id (response header v0)
    r.int32()  # throttle time
    out = {}
    for _ in range(r.array_len()):
        error = r.int16()
        group_id = r.string() or ""
        state = r.string() or "Unknown"
        protocol_type = r.string() or ""
        protocol = r.string() or ""
        members = []
        for _ in range(r.array_len()):
            member_id = r.string() or ""
            instance = r.string()
            client_id = r.string() or ""
            host = r.string() or ""
            _bytes(r)  # member metadata (the subscription)
            assignment = _bytes(r)
            members.append(
                GroupMember(
                    member_id,
                    client_id,
                    host,
                    instance,
                    consumer_assignment(assignment) if protocol_type == "consumer" else [],
                )
            )
        r.int32()  # authorized operations
        description = GroupDescription(
            group_id, state, members, protocol or None, coordinator, "classic", not protocol_type
        )
        out[group_id] = (error, description)
    return out


def _bytes(r: Reader) -> bytes:
    size = r.int32()
    return r.take(size) if size > 0 else b""


def consumer_assignment(data: bytes) -> list[TopicPartition]:
    """The partitions in a consumer-protocol assignment (``ConsumerProtocolAssignment``:
    a version, then topics with partitions; later versions only append fields). A
    member's assignment is its client's own bytes: what cannot be read is left out."""
    out: list[TopicPartition] = []
    r = Reader(data)
    try:
        r.int16()  # version
        for _ in range(r.array_len()):
            topic = r.string() or ""
            out.extend(TopicPartition(topic, r.int32()) for _ in range(r.array_len()))
    except WireError:
        log.debug("a member's assignment is cut short after %d partitions", len(out))
    return sorted(out)


# -- ConsumerGroupDescribe (KIP-848) -------------------------------------------------------
def encode_consumer_group_describe_request(correlation_id: int, group_ids: list[str]) -> bytes:
    body = uvarint(len(group_ids) + 1) + b"".join(compact_string(g) for g in group_ids)
    body += b"\x00" + uvarint(0)  # no authorized operations; no tagged fields
    return request_header_v2(CONSUMER_GROUP_DESCRIBE, 0, correlation_id) + body


def decode_consumer_group_describe_response(
    payload: bytes, coordinator: int | None
) -> dict[str, tuple[int, GroupDescription]]:
    """group -> (error code, description) of a ConsumerGroupDescribe v0 answer."""
    r = Reader(payload)
    r.int32()  # correlation id
    r.tagged_fields()  # response header v1
    r.int32()  # throttle time
    out = {}
    for _ in range(r.compact_array_len()):
        error = r.int16()
        r.compact_string()  # error message
        group_id = r.compact_string() or ""
        state = r.compact_string() or "Unknown"
        r.int32()  # group epoch
        r.int32()  # assignment epoch
        assignor = r.compact_string()
        members = []
        for _ in range(r.compact_array_len()):
            member_id = r.compact_string() or ""
            instance = r.compact_string()
            r.compact_string()  # rack
            r.int32()  # member epoch
            client_id = r.compact_string() or ""
            host = r.compact_string() or ""
            for _ in range(r.compact_array_len()):
                r.compact_string()  # subscribed topic
            r.compact_string()  # subscribed regex
            assignment = _assignment(r)
            _assignment(r)  # the target assignment
            r.tagged_fields()
            members.append(GroupMember(member_id, client_id, host, instance, assignment))
        r.int32()  # authorized operations
        r.tagged_fields()
        description = GroupDescription(
            group_id, state, members, assignor or None, coordinator, "consumer", False
        )
        out[group_id] = (error, description)
    r.tagged_fields()
    return out


def _assignment(r: Reader) -> list[TopicPartition]:
    out: list[TopicPartition] = []
    for _ in range(r.compact_array_len()):
        r.take(16)  # topic id
        topic = r.compact_string() or ""
        out.extend(TopicPartition(topic, r.int32()) for _ in range(r.compact_array_len()))
        r.tagged_fields()
    r.tagged_fields()
    return sorted(out)
