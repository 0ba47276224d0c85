"""Reading timestamps out of fetched record batches (``qctl.backends.kafka.wire.timestamps``),
on batches built here byte by byte in Kafka's v2 format."""

from __future__ import annotations

import gzip
import struct

import pytest

from qctl.backends.kafka.wire.timestamps import (
    Found,
    answer_partition,
    decode_fetch_response,
    encode_fetch_request,
)

CREATE, LOG_APPEND = 0, 0x08
TXN, CONTROL = 0x10, 0x20
GZIP, LZ4 = 1, 3


def zigzag(value: int) -> bytes:
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        if raw < 0x80:
            out.append(raw)
            return bytes(out)
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7


def record(offset_delta: int, ts_delta: int, value: bytes) -> bytes:
    body = (
        b"\x00"  # attributes
        + zigzag(ts_delta)
        + zigzag(offset_delta)
        + zigzag(-1)  # null key
        + zigzag(len(value))
        + value
        + zigzag(0)  # no headers
    )
    return zigzag(len(body)) + body


def batch(
    base: int,
    records: list[tuple[int, int]],
    base_ts: int = 1_000_000,
    attributes: int = CREATE,
    last_delta: int | None = None,
    producer: int = -1,
    value: bytes = b"v" * 40,
    max_ts: int | None = None,
) -> bytes:
    """A v2 record batch; ``records`` are (offset delta, timestamp delta)."""
    body = b"".join(record(o, t, value) for o, t in records)
    if attributes & 0x07 == GZIP:
        body = gzip.compress(body)
    last = records[-1][0] if last_delta is None else last_delta
    top = max_ts if max_ts is not None else base_ts + max(t for _, t in records)
    after_length = struct.pack(
        ">ibIhiqqqhii", 0, 2, 0, attributes, last, base_ts, top, producer, 0, 0, len(records)
    )
    return struct.pack(">qi", base, len(after_length) + len(body)) + after_length + body


def test_positions_in_a_batch_and_past_the_end() -> None:
    data = batch(10, [(i, i * 5) for i in range(5)])  # offsets 10..14
    found = answer_partition(data, [10, 12, 15], end=15)
    assert found == {
        10: Found(1_000_000, 10),
        12: Found(1_000_010, 12),
        15: Found(None, None, 15),  # nothing readable after 14: the end
    }


def test_several_batches_and_a_later_offset() -> None:
    data = batch(0, [(0, 0), (1, 1)]) + batch(2, [(0, 0), (1, 7)], base_ts=2_000_000)
    assert answer_partition(data, [1, 3], end=4) == {
        1: Found(1_000_001, 1),
        3: Found(2_000_007, 3),
    }


def test_log_append_time_takes_the_batch_time() -> None:
    data = batch(0, [(0, 0), (1, 3)], attributes=LOG_APPEND, max_ts=5_000_000)
    assert answer_partition(data, [1], end=2) == {1: Found(5_000_000, 1)}


def test_gzip_batches_are_read() -> None:
    data = batch(100, [(i, i) for i in range(4)], attributes=GZIP)
    assert answer_partition(data, [102], end=104) == {102: Found(1_000_002, 102)}


def test_other_codecs_are_left_to_the_consumer() -> None:
    data = batch(0, [(0, 0)], attributes=LZ4)
    assert answer_partition(data, [0], end=1) == {}


def test_compaction_gaps_give_the_next_message() -> None:
    # offsets 0..9 once, only 0, 4 and 9 left after compaction
    data = batch(0, [(0, 0), (4, 40), (9, 90)], last_delta=9)
    assert answer_partition(data, [1, 4, 5], end=10) == {
        1: Found(1_000_040, 4),
        4: Found(1_000_040, 4),
        5: Found(1_000_090, 9),
    }


def test_markers_and_aborted_transactions() -> None:
    # offsets 0-1: an aborted transaction of producer 7, 2: its abort marker,
    # 3: a committed message of producer 8, 4: its commit marker
    aborted = batch(0, [(0, 0), (1, 1)], attributes=TXN, producer=7)
    abort_marker = batch(2, [(0, 2)], attributes=TXN | CONTROL, producer=7)
    committed = batch(3, [(0, 3)], attributes=TXN, producer=8)
    commit_marker = batch(4, [(0, 4)], attributes=TXN | CONTROL, producer=8)
    data = aborted + abort_marker + committed + commit_marker
    assert answer_partition(data, [0, 4], end=5, aborted=[(7, 0)], read_committed=True) == {
        0: Found(1_000_003, 3),  # the aborted ones and the marker are skipped
        4: Found(None, None, 5),  # only a marker after 3
    }
    assert answer_partition(data, [0], end=5, aborted=[], read_committed=False) == {
        0: Found(1_000_000, 0)
    }


def test_a_cut_off_batch_answers_what_it_holds() -> None:
    data = batch(0, [(i, i) for i in range(10)])
    cut = data[: len(data) - 200]  # the last records are missing
    found = answer_partition(cut, [1, 9], end=10)
    assert found == {1: Found(1_000_001, 1)}  # 9 is left to the consumer


def test_nothing_fetched_before_the_end_is_left_open() -> None:
    assert answer_partition(b"", [5], end=9) == {}
    assert answer_partition(b"", [9], end=9) == {9: Found(None, None, 9)}


def test_old_message_format_is_left_to_the_consumer() -> None:
    data = bytearray(batch(0, [(0, 0)]))
    data[16] = 1  # magic 1
    assert answer_partition(bytes(data), [0], end=1) == {}


@pytest.mark.parametrize("committed", [False, True])
def test_fetch_request_and_answer_round_trip(committed: bool) -> None:
    frame = encode_fetch_request(7, {"orders": [(0, 5), (3, 9)]}, committed)
    api_key, version, correlation = struct.unpack_from(">hhi", frame)
    assert (api_key, version, correlation) == (1, 4, 7)
    assert frame.endswith(struct.pack(">iqi", 3, 9, 65536))
    records = batch(5, [(0, 0)])
    answer = (
        struct.pack(">ii", 7, 0)  # correlation id, throttle
        + struct.pack(">i", 1)
        + struct.pack(">h", 6)
        + b"orders"
        + struct.pack(">i", 1)
        + struct.pack(">ihqq", 0, 0, 6, 6)
        + struct.pack(">i", 1)
        + struct.pack(">qq", 42, 5)
        + struct.pack(">i", len(records))
        + records
    )
    [(key, part)] = decode_fetch_response(answer).items()
    assert key == ("orders", 0)
    assert (part.error, part.high_watermark, part.last_stable) == (0, 6, 6)
    assert part.aborted == [(42, 5)]
    assert part.records == records
