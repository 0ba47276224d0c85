"""The requests of Kafka's transactional producer, for the exactly-once wire copy.

A transaction as Kafka's own producer runs it (KIP-98), in versions every broker from
2.8 to 4.x answers (the classic, non-flexible ones where they exist):

* FindCoordinator with key type 1 names the transaction coordinator;
* InitProducerId v4 gives a producer id and epoch for the transactional id. Asked
  without one, it fences the id's earlier producers and aborts their open transaction;
  asked with the producer's own (KIP-360, KIP-588), it tells a producer whose
  transaction the coordinator aborted for outliving its timeout (a new epoch) from one
  another producer fenced (PRODUCER_FENCED);
* AddPartitionsToTxn v1 and AddOffsetsToTxn v1 tell the coordinator which partitions and
  which group a transaction touches, before anything is written to them;
* Produce v7 writes record batches marked transactional; TxnOffsetCommit v2 writes the
  group's offsets; EndTxn v1 commits or aborts all of it at once.

Each encoder takes the correlation id first, so the requests fit ``Connection.pipeline``
(``kafka.copy.wire_engine`` sends them).
Each decoder returns the error codes the caller must act on.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from qctl.backends.kafka.wire.codec import (
    Reader,
    WireError,
    compact_string,
    read_topic_header,
    request_header_v1,
    request_header_v2,
    uvarint,
    wire_string,
)

PRODUCE = 0
INIT_PRODUCER_ID = 22
ADD_PARTITIONS_TO_TXN = 24
ADD_OFFSETS_TO_TXN = 25
END_TXN = 26
TXN_OFFSET_COMMIT = 28

#: The version of each request this module speaks.
VERSIONS = {
    PRODUCE: 7,
    INIT_PRODUCER_ID: 4,
    ADD_PARTITIONS_TO_TXN: 1,
    ADD_OFFSETS_TO_TXN: 1,
    END_TXN: 1,
    TXN_OFFSET_COMMIT: 2,
}

NONE = 0
NOT_LEADER_OR_FOLLOWER = 6
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
REQUEST_TIMED_OUT = 7
CONCURRENT_TRANSACTIONS = 51
OPERATION_NOT_ATTEMPTED = 55
PRODUCER_FENCED = 90
#: Produce errors that may pass (a new leader not ready yet, replicas catching up, a
#: slow disk): the transaction is done again.
PRODUCE_AGAIN = frozenset({6, 7, 19, 20})
#: Errors that say this producer's epoch is no longer the transactional id's: another
#: producer took over, or the coordinator aborted the transaction for taking longer
#: than its timeout (requests older than InitProducerId v4 cannot tell the two apart).
FENCED = frozenset({INVALID_PRODUCER_EPOCH, PRODUCER_FENCED})
#: Coordinator errors after which the coordinator must be found again (Kafka's
#: producer looks it up anew for both).
MOVED = frozenset({COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR})
#: Errors a coordinator answers while it is busy or moving: ask again (``MOVED`` ones
#: after finding it anew).
RETRY = frozenset({COORDINATOR_LOAD_IN_PROGRESS, CONCURRENT_TRANSACTIONS, *MOVED})
#: TxnOffsetCommit errors worth asking again: ``RETRY`` and a request that timed out
#: (the group coordinator's answers; Kafka's producer retries the same ones).
OFFSETS_RETRY = frozenset({REQUEST_TIMED_OUT, *RETRY})

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_PRODUCER = struct.Struct(">qh")  # producer id, epoch
_COMMIT = struct.Struct(">iqi")  # partition, offset, leader epoch
_PRODUCED = struct.Struct(">ihqqq")  # partition, error, base offset, append time, log start


def nullable_string(text: str | None) -> bytes:
    return _I16.pack(-1) if text is None else wire_string(text)


# -- InitProducerId --------------------------------------------------------------------------
class ProducerId(NamedTuple):
    error: int
    producer_id: int
    epoch: int


def encode_init_producer_id(
    correlation_id: int, transactional_id: str, timeout_ms: int, producer_id: int, epoch: int
) -> bytes:
    """InitProducerId v4 (flexible) for the producer id and epoch this client holds (-1,
    -1 for a first one)."""
    body = (
        compact_string(transactional_id)
        + _I32.pack(timeout_ms)
        + _PRODUCER.pack(producer_id, epoch)
        + uvarint(0)
    )
    return request_header_v2(INIT_PRODUCER_ID, VERSIONS[INIT_PRODUCER_ID], correlation_id) + body


def decode_init_producer_id(payload: bytes) -> ProducerId:
    """An InitProducerId v4 answer (flexible: response header v1)."""
    r = Reader(payload)
    r.int32()  # correlation id
    r.tagged_fields()
    r.int32()  # throttle time
    error = r.int16()
    producer_id = r.int64()
    return ProducerId(error, producer_id, r.int16())


# -- AddPartitionsToTxn, AddOffsetsToTxn, EndTxn --------------------------------------------
def _txn_head(transactional_id: str, producer_id: int, epoch: int) -> bytes:
    return wire_string(transactional_id) + _PRODUCER.pack(producer_id, epoch)


def encode_add_partitions(
    correlation_id: int,
    transactional_id: str,
    producer_id: int,
    epoch: int,
    topics: Mapping[str, Sequence[int]],
) -> bytes:
    parts = [_txn_head(transactional_id, producer_id, epoch), _I32.pack(len(topics))]
    for topic, partitions in topics.items():
        parts.append(wire_string(topic) + _I32.pack(len(partitions)))
        parts.extend(_I32.pack(p) for p in partitions)
    return request_header_v1(ADD_PARTITIONS_TO_TXN, 1, correlation_id) + b"".join(parts)


def decode_partition_errors(payload: bytes) -> dict[tuple[str, int], int]:
    """The error of each partition in an AddPartitionsToTxn or TxnOffsetCommit answer
    (both: throttle time, then topics of (partition, error))."""
    out: dict[tuple[str, int], int] = {}
    try:
        pos = 8  # correlation id, throttle time
        (topics,) = _I32.unpack_from(payload, pos)
        pos += 4
        for _ in range(max(topics, 0)):
            topic, count, pos = read_topic_header(payload, pos)
            for _ in range(count):
                partition, error = struct.unpack_from(">ih", payload, pos)
                pos += 6
                out[(topic, partition)] = error
    except struct.error:
        raise WireError("truncated transaction answer") from None
    return out


def encode_add_offsets(
    correlation_id: int, transactional_id: str, producer_id: int, epoch: int, group_id: str
) -> bytes:
    body = _txn_head(transactional_id, producer_id, epoch) + wire_string(group_id)
    return request_header_v1(ADD_OFFSETS_TO_TXN, 1, correlation_id) + body


def encode_end_txn(
    correlation_id: int, transactional_id: str, producer_id: int, epoch: int, commit: bool
) -> bytes:
    body = _txn_head(transactional_id, producer_id, epoch) + struct.pack(">b", 1 if commit else 0)
    return request_header_v1(END_TXN, 1, correlation_id) + body


def decode_error(payload: bytes) -> int:
    """The error of an AddOffsetsToTxn or EndTxn answer (throttle time, error)."""
    try:
        return int(_I16.unpack_from(payload, 8)[0])
    except struct.error:
        raise WireError("truncated transaction answer") from None


# -- TxnOffsetCommit -------------------------------------------------------------------------
def encode_txn_offset_commit(
    correlation_id: int,
    transactional_id: str,
    group_id: str,
    producer_id: int,
    epoch: int,
    offsets: Mapping[str, Mapping[int, int]],
) -> bytes:
    parts = [
        wire_string(transactional_id),
        wire_string(group_id),
        _PRODUCER.pack(producer_id, epoch),
        _I32.pack(len(offsets)),
    ]
    for topic, partitions in offsets.items():
        parts.append(wire_string(topic) + _I32.pack(len(partitions)))
        for partition, offset in partitions.items():
            parts.append(_COMMIT.pack(partition, offset, -1) + nullable_string(None))
    return request_header_v1(TXN_OFFSET_COMMIT, 2, correlation_id) + b"".join(parts)


# -- Produce ---------------------------------------------------------------------------------
def encode_produce(
    correlation_id: int,
    transactional_id: str,
    batches: Mapping[str, Mapping[int, bytes]],
    timeout_ms: int,
) -> bytes:
    """Produce v7 with acks=all: one record batch per partition."""
    parts = [nullable_string(transactional_id), struct.pack(">hi", -1, timeout_ms)]
    parts.append(_I32.pack(len(batches)))
    for topic, partitions in batches.items():
        parts.append(wire_string(topic) + _I32.pack(len(partitions)))
        for partition, batch in partitions.items():
            parts.append(_I32.pack(partition) + _I32.pack(len(batch)))
            parts.append(batch)
    return request_header_v1(PRODUCE, 7, correlation_id) + b"".join(parts)


def decode_produce(payload: bytes) -> dict[tuple[str, int], int]:
    """The error of each partition of a Produce v7 answer."""
    out: dict[tuple[str, int], int] = {}
    try:
        pos = 4  # correlation id
        (topics,) = _I32.unpack_from(payload, pos)
        pos += 4
        for _ in range(max(topics, 0)):
            topic, count, pos = read_topic_header(payload, pos)
            for _ in range(count):
                partition, error, _base, _append, _start = _PRODUCED.unpack_from(payload, pos)
                pos += _PRODUCED.size
                out[(topic, partition)] = error
    except struct.error:
        raise WireError("truncated Produce answer") from None
    return out
