"""Fetch v4: record batches of many partitions in one request, read in place.

v4 is the oldest version a Kafka 4 broker answers and the newest without fetch
sessions, which a client that fetches once or copies from fixed positions does not
need. Both readers of qctl use it: ``timestamps`` (the message at a position, for lag
in time) and the exactly-once copy (``kafka.copy.wire_engine``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from qctl.backends.kafka.wire.codec import (
    WireError,
    read_topic_header,
    request_header_v1,
    wire_string,
)

FETCH = 1
#: The version of Fetch spoken here.
VERSION = 4
#: Bytes asked per partition by default. A partition whose first batch is larger comes
#: back empty.
PARTITION_MAX_BYTES = 65536
#: Bytes asked per request by default; partitions beyond it come back empty.
MAX_BYTES = 32 * 1024 * 1024

_PARTITION_HEAD = struct.Struct(">ihqq")  # partition, error, high watermark, LSO
_ASK = struct.Struct(">iqi")  # partition, fetch offset, partition max bytes
_I32 = struct.Struct(">i")
_ABORTED = struct.Struct(">qq")  # producer id, first offset


def encode_fetch_request(
    correlation_id: int,
    topics: Mapping[str, Sequence[tuple[int, int]]],
    read_committed: bool,
    max_bytes: int = MAX_BYTES,
    partition_max_bytes: int = PARTITION_MAX_BYTES,
    max_wait_ms: int = 0,
) -> bytes:
    """Fetch v4 (the oldest a Kafka 4 broker answers): every partition at its offset."""
    parts = [struct.pack(">iiiib", -1, max_wait_ms, 0, max_bytes, 1 if read_committed else 0)]
    parts.append(_I32.pack(len(topics)))
    for topic, asks in topics.items():
        parts.append(wire_string(topic) + _I32.pack(len(asks)))
        parts.extend(_ASK.pack(p, offset, partition_max_bytes) for p, offset in asks)
    return request_header_v1(FETCH, VERSION, correlation_id) + b"".join(parts)


class FetchedPartition(NamedTuple):
    error: int
    high_watermark: int
    last_stable: int
    aborted: list[tuple[int, int]]
    #: A view into the answer when it was received as one (``Connection.receive_view``).
    records: bytes | memoryview


def decode_fetch_response(
    payload: bytes | memoryview,
) -> dict[tuple[str, int], FetchedPartition]:
    out: dict[tuple[str, int], FetchedPartition] = {}
    try:
        pos = 8  # correlation id, throttle time
        (topics,) = _I32.unpack_from(payload, pos)
        pos += 4
        for _ in range(max(topics, 0)):
            topic, count, pos = read_topic_header(payload, pos)
            for _ in range(count):
                partition, error, high, stable = _PARTITION_HEAD.unpack_from(payload, pos)
                pos += _PARTITION_HEAD.size
                (n_aborted,) = _I32.unpack_from(payload, pos)
                pos += 4
                aborted = []
                for _ in range(max(n_aborted, 0)):
                    aborted.append(_ABORTED.unpack_from(payload, pos))
                    pos += _ABORTED.size
                (size,) = _I32.unpack_from(payload, pos)
                pos += 4
                records = payload[pos : pos + max(size, 0)]
                pos += max(size, 0)
                if len(records) < max(size, 0):
                    raise WireError("truncated response")
                out[(topic, partition)] = FetchedPartition(error, high, stable, aborted, records)
    except struct.error:
        raise WireError("truncated response") from None
    return out
