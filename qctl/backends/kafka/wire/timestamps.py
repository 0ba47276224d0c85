"""Timestamps of the messages at many positions, read with one Fetch per partition leader.

Lag in time reads the message at every group's committed offset. With a consumer,
librdkafka brings thousands of assigned partitions into its fetcher a few at a time
(five fetch rounds for 5,000 partitions here, about a second) and hands every fetched
message to Python. One Fetch per leader for all the partitions, a small byte limit per
partition, and a look at record batch headers (and, for a position inside a batch, at
its record headers) answer them in one round trip.

What is settled here, and what is left to the consumer (the caller falls back to it):

* The first readable record at or after the position: its offset, and its timestamp
  (the batch's ``maxTimestamp`` for LogAppendTime batches, else ``baseTimestamp`` plus
  the record's delta). Records are walked in uncompressed and gzip batches, and in the
  readable prefix of a batch the byte limit cut off. Other codecs, a message format
  before v2, a compressed batch that was cut off, an error: left to the consumer.
* Control batches (transaction markers) are never messages. With read_committed, data
  batches of aborted transactions (the answer's aborted-transactions list, applied as
  Kafka's own consumer does) are skipped.
* Nothing readable between the position and the end the answer covers: the end (high
  watermark, or last-stable offset with read_committed) is reported, as a consumer
  reports reaching the end of the partition.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

from qctl.backends.kafka.wire.codec import WireError
from qctl.backends.kafka.wire.config import PLAINTEXT, WireConfig
from qctl.backends.kafka.wire.connection import Connection
from qctl.backends.kafka.wire.fetch import (
    FETCH,
    VERSION,
    FetchedPartition,
    decode_fetch_response,
    encode_fetch_request,
)

log = logging.getLogger(__name__)

_BATCH = struct.Struct(">qiibIhiqqqhii")  # the 61-byte record batch header (magic 2)

_CODEC_NONE, _CODEC_GZIP = 0, 1
_LOG_APPEND_TIME = 0x08
_TRANSACTIONAL = 0x10
_CONTROL = 0x20


class Found(NamedTuple):
    """What a position holds: (timestamp, offset) of a record, or the end reached."""

    timestamp: int | None
    offset: int | None
    end: int | None = None


class Truncated(Exception):
    pass


# -- decoding --------------------------------------------------------------------------------
def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos``: (value, position after it)."""
    end = len(data)
    if pos >= end:
        raise Truncated
    raw = data[pos]
    if raw < 0x80:  # one byte: small deltas
        return (raw >> 1) ^ -(raw & 1), pos + 1
    if pos + 1 < end and data[pos + 1] < 0x80:  # two bytes: lengths of small records
        raw = (raw & 0x7F) | (data[pos + 1] << 7)
        return (raw >> 1) ^ -(raw & 1), pos + 2
    shift = raw = 0
    while True:
        if pos >= end:
            raise Truncated
        byte = data[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _record_starts(body: bytes, count: int) -> Iterator[int]:
    """Where each record of ``body`` starts (after its length), as far as its header can
    be read; lazily, so the caller stops at the last offset it wants."""
    pos = 0
    for _ in range(count):
        try:
            length, start = read_varint(body, pos)
        except Truncated:
            return
        if start >= len(body):
            return
        yield start
        pos = start + length


def _record_deltas(body: bytes, start: int) -> tuple[int, int]:
    """(timestamp delta, offset delta) of the record starting at ``start``."""
    ts_delta, after = read_varint(body, start + 1)  # after the attributes byte
    offset_delta, _ = read_varint(body, after)
    return ts_delta, offset_delta


def answer_partition(
    records: bytes,
    wanted: Sequence[int],
    end: int,
    aborted: Sequence[tuple[int, int]] = (),
    read_committed: bool = False,
) -> dict[int, Found]:
    """What the fetched ``records`` say about each wanted offset (sorted ascending);
    offsets they cannot settle are left out. ``end`` is where readable data ends (the
    high watermark, or the last-stable offset with read_committed)."""
    out: dict[int, Found] = {}
    left = list(wanted)
    aborted_sorted = sorted(aborted, key=lambda a: a[1])
    next_aborted = 0
    aborting: set[int] = set()
    pos = 0
    covered = left[0] if left else 0  # readable data known up to here (exclusive)
    complete = True
    while left and pos + _BATCH.size <= len(records):
        (
            base,
            length,
            _epoch,
            magic,
            _crc,
            attributes,
            last_delta,
            base_ts,
            max_ts,
            producer,
            _pepoch,
            _seq,
            count,
        ) = _BATCH.unpack_from(records, pos)
        batch_end = pos + 12 + length
        cut = batch_end > len(records)
        if magic != 2:
            complete = False
            break
        last = base + last_delta
        if read_committed:
            while next_aborted < len(aborted_sorted) and aborted_sorted[next_aborted][1] <= last:
                aborting.add(aborted_sorted[next_aborted][0])
                next_aborted += 1
        skip = False
        if attributes & _CONTROL:
            aborting.discard(producer)  # the marker ends the producer's transaction
            skip = True
        elif read_committed and attributes & _TRANSACTIONAL and producer in aborting:
            skip = True
        if skip:
            if cut:
                complete = False
                break
            covered = max(covered, last + 1)
            pos = batch_end
            continue
        codec = attributes & 0x07
        body = records[pos + _BATCH.size : min(batch_end, len(records))]
        if codec == _CODEC_GZIP and not cut:
            try:
                body = zlib.decompress(body, 47)  # gzip or zlib header
            except zlib.error:
                complete = False
                break
        elif codec != _CODEC_NONE:
            complete = False
            break
        # Without compaction gaps (the usual case), record i holds offset base + i, and
        # only the records that answer something are decoded.
        dense = count == last_delta + 1
        for index, start in enumerate(_record_starts(body, count)):
            if dense and left[0] > base + index:
                continue
            try:
                ts_delta, offset_delta = _record_deltas(body, start)
            except Truncated:
                break
            offset = base + offset_delta
            ts = max_ts if attributes & _LOG_APPEND_TIME else base_ts + ts_delta
            while left and left[0] <= offset:
                out[left.pop(0)] = Found(ts if ts >= 0 else None, offset)
            if not left:
                break
        if cut:
            complete = False
            break
        covered = max(covered, last + 1)
        pos = batch_end
    if left and complete and covered >= end:
        for offset in left:
            out[offset] = Found(None, None, end)
    return out


def read_positions(
    leaders: Mapping[tuple[str, int], tuple[str, int]],
    wanted: Mapping[tuple[str, int], Sequence[int]],
    read_committed: bool,
    timeout: float,
    config: WireConfig = PLAINTEXT,
) -> dict[tuple[str, int, int], Found]:
    """(topic, partition, offset) -> what is there, for every position settled here.

    ``wanted`` holds each partition's offsets, sorted; partitions without a leader in
    ``leaders`` are skipped.
    """
    by_leader: dict[tuple[str, int], dict[str, list[tuple[int, int]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for (topic, partition), offsets in wanted.items():
        address = leaders.get((topic, partition))
        if address is not None and offsets:
            by_leader[address][topic].append((partition, offsets[0]))

    def ask(address: tuple[str, int]) -> dict[tuple[str, int], FetchedPartition]:
        host, port = address
        try:
            with Connection(host, port, timeout, config) as probe:
                probe.version(FETCH, VERSION, VERSION)
                fetch = partial(
                    encode_fetch_request, topics=by_leader[address], read_committed=read_committed
                )
                [answer] = probe.pipeline([fetch])
                return decode_fetch_response(answer)
        except WireError as exc:
            log.debug("Fetch at %s:%s: %s", host, port, exc)
            return {}

    addresses = list(by_leader)
    if not addresses:
        return {}
    with ThreadPoolExecutor(min(len(addresses), 8), thread_name_prefix="qctl-fetch") as pool:
        answers = list(pool.map(ask, addresses))
    out: dict[tuple[str, int, int], Found] = {}
    for fetched in answers:
        for (topic, partition), part in fetched.items():
            asked = wanted.get((topic, partition))
            if part.error != 0 or not asked:
                continue
            end = part.last_stable if read_committed and part.last_stable >= 0 else None
            end = part.high_watermark if end is None else end
            records = bytes(part.records)  # already bytes here: no copy
            found = answer_partition(records, asked, end, part.aborted, read_committed)
            for offset, what in found.items():
                out[(topic, partition, offset)] = what
    return out
