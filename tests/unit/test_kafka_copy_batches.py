"""``kafka.copy.batches``: which fetched records are copied, and what the written batches hold.

Source batches are built with aiokafka's record codec, then marked (control,
transactional, codec) byte by byte where a test needs it; the written batches are read
back with the same codec."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from qctl.backends.capabilities.transactions import Partitioner
from qctl.backends.kafka.copy import batches
from qctl.backends.kafka.copy.batches import (
    KeyPartitioner,
    OutBatch,
    Unsupported,
    copy_partition,
    fixed_route,
    header_spec,
    murmur2,
    seal,
)

HEADER = header_spec("qctl-replayed-from", "kafka:src/0@")
_ATTRIBUTES_AT = 21  # base offset 8, length 4, leader epoch 4, magic 1, crc 4


def batch(
    base: int,
    n: int,
    *,
    producer: int = -1,
    transactional: bool = False,
    control: bool = False,
    codec: int = 0,
    keys: bool = True,
) -> bytes:
    """``n`` records at offsets ``base``.. with keys ``k<offset>`` and one header."""
    builder = DefaultRecordBatchBuilder(2, 0, int(transactional), producer, 0, 0, 1 << 20)
    for i in range(n):
        offset = base + i
        key = f"k{offset}".encode() if keys else None
        builder.append(i, 1_000 + offset, key, f"v{offset}".encode(), [("h", b"x")])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)
    attributes = struct.unpack_from(">h", raw, _ATTRIBUTES_AT)[0]
    attributes |= codec | (0x20 if control else 0)
    struct.pack_into(">h", raw, _ATTRIBUTES_AT, attributes)
    return bytes(raw)


class Sink:
    """The written batches, sealed as the wire copier seals them."""

    def __init__(self, partitions: int = 1) -> None:
        self.outs = [OutBatch() for _ in range(partitions)]
        self.sealed: list[tuple[int, bytes]] = []

    def full(self, target: int, out: OutBatch) -> None:
        self.sealed.append((target, seal(out, 7, 1, 0)))

    def records(self) -> list[tuple[int, Any]]:
        for target, out in enumerate(self.outs):
            if out.count:
                self.full(target, out)
        found = []
        for target, raw in self.sealed:
            written = DefaultRecordBatch(raw)
            assert written.is_transactional and written.producer_id == 7
            assert written.validate_crc()
            found.extend((target, r) for r in written)
        return found


def offsets_of(sink: Sink) -> list[int]:
    return [int(r.value[1:]) for _t, r in sink.records()]


def copy(
    data: bytes,
    sink: Sink,
    position: int = 0,
    end: int = 1 << 40,
    *,
    aborted: list[tuple[int, int]] | None = None,
    read_committed: bool = True,
    route: int | KeyPartitioner = 0,
    limit: int = 1 << 62,
) -> Any:
    take = fixed_route(HEADER, route, sink.outs, sink.full)
    return copy_partition(data, position, end, aborted or [], read_committed, take, limit)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_is_kafkas(data: bytes, expected: int) -> None:
    """The Java client's test vectors (``UtilsTest.testMurmur2``), as signed ints."""
    value = murmur2(data)
    assert (value - (1 << 32) if value >= 1 << 31 else value) == expected


def test_records_are_copied_whole_with_the_position_header() -> None:
    sink = Sink()
    taken = copy(batch(0, 3) + batch(3, 2), sink)
    assert taken == (5, 5, False, None)
    records = sink.records()
    assert [r.key for _t, r in records] == [f"k{i}".encode() for i in range(5)]
    assert [r.timestamp for _t, r in records] == [1_000 + i for i in range(5)]
    assert [r.offset for _t, r in records] == list(range(5))  # renumbered from 0
    assert [r.headers for _t, r in records][4] == [
        ("h", b"x"),
        ("qctl-replayed-from", b"kafka:src/0@4"),
    ]


def test_a_position_inside_a_batch_and_an_end_inside_the_next() -> None:
    sink = Sink()
    taken = copy(batch(0, 4) + batch(4, 4), sink, position=2, end=6)
    assert taken.position == 6 and taken.done
    assert offsets_of(sink) == [2, 3, 4, 5]


def test_markers_are_skipped_and_aborted_data_with_read_committed() -> None:
    data = (
        batch(0, 3, producer=9, transactional=True)
        + batch(3, 1, producer=9, transactional=True, control=True)  # commit marker
        + batch(4, 3, producer=9, transactional=True)
        + batch(7, 1, producer=9, transactional=True, control=True)  # abort marker
        + batch(8, 2)
    )
    committed = Sink()
    taken = copy(data, committed, aborted=[(9, 4)])
    assert taken.position == 10
    assert offsets_of(committed) == [0, 1, 2, 8, 9]
    everything = Sink()
    copy(data, everything, aborted=[(9, 4)], read_committed=False)
    assert offsets_of(everything) == [0, 1, 2, 4, 5, 6, 8, 9]


def test_a_batch_cut_off_by_the_fetch_is_left_for_the_next_one() -> None:
    sink = Sink()
    data = batch(0, 3) + batch(3, 3)
    taken = copy(data[:-5], sink)
    assert taken.position == 3 and not taken.done
    assert offsets_of(sink) == [0, 1, 2]


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_compressed_batches_are_read(codec: int) -> None:
    """gzip, snappy, lz4 and zstd batches (compressed by aiokafka's codec, as a
    producer would) are read like plain ones."""
    sink = Sink()
    taken = copy(batch(0, 2) + compressed(2, 3, codec), sink)
    assert (taken.position, taken.copied, taken.unsupported) == (5, 5, None)
    assert offsets_of(sink) == [0, 1, 2, 3, 4]


def test_a_codec_it_cannot_read_stops_the_copy_where_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without cramjam only gzip is readable: a snappy batch is left to librdkafka."""
    monkeypatch.setattr(batches, "_readable", [frozenset({1})])
    sink = Sink()
    taken = copy(batch(0, 2) + compressed(2, 2, 2), sink)
    assert taken.position == 2 and taken.unsupported == "compression codec 2 at offset 2"
    assert offsets_of(sink) == [0, 1]


def compressed(base: int, n: int, codec: int) -> bytes:
    """``n`` records at ``base``.. in one batch compressed with ``codec``."""
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, 0, 0, 1 << 20)
    for i in range(n):
        offset = base + i
        builder.append(i, 1_000 + offset, f"k{offset}".encode(), f"v{offset}".encode(), [])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)
    return bytes(raw)


def test_a_malformed_record_is_an_error() -> None:
    raw = bytearray(batch(0, 2))
    raw[61] = 0xFF  # the first record's length: a varint that never ends
    raw[62:70] = b"\xff" * 8
    with pytest.raises(Unsupported, match="malformed"):
        copy(bytes(raw), Sink())


def test_the_limit_stops_inside_a_batch() -> None:
    sink = Sink()
    taken = copy(batch(0, 5) + batch(5, 5), sink, limit=7)
    assert taken == (7, 7, False, None)
    assert offsets_of(sink) == list(range(7))


def test_records_go_to_the_partition_of_their_key() -> None:
    route = KeyPartitioner(4)
    sink = Sink(4)
    copy(batch(0, 50) + batch(50, 10, keys=False), sink, route=route)
    records = sink.records()
    assert len(records) == 60
    for target, r in records:
        if r.key is not None:
            assert target == (murmur2(r.key) & 0x7FFFFFFF) % 4


def test_more_keys_than_the_cache_holds_keep_their_partitions() -> None:
    from qctl.backends.kafka.copy.batches import CACHED_KEYS

    route = KeyPartitioner(7)
    keys = [f"order-{i % (CACHED_KEYS * 3)}".encode() for i in range(CACHED_KEYS * 6)]
    for key in keys:
        found = route.cache.get(key)
        assert (found if found is not None else route.add(key)) == route(key)
        assert route(key) == (murmur2(key) & 0x7FFFFFFF) % 7
        assert len(route.cache) <= CACHED_KEYS


def test_full_batches_are_sealed_as_they_fill() -> None:
    sink = Sink()
    big = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 24)
    for i in range(40):
        big.append(i, 1_000 + i, None, b"x" * 50_000, [])
    taken = copy(bytes(big.build()), sink)
    assert taken.copied == 40
    assert len(sink.sealed) >= 1  # a million bytes do not fit one batch
    assert sum(1 for _ in sink.records()) == 40
    assert all(len(raw) <= 1_000_000 for _t, raw in sink.sealed)


@pytest.mark.parametrize(
    ("partitioner", "reference"),
    [
        (Partitioner.MURMUR2, lambda key, n: (murmur2(key) & 0x7FFFFFFF) % n),
        (Partitioner.CRC32, lambda key, n: zlib.crc32(key) % n),
    ],
)
def test_librdkafkas_partitioners_are_found_and_agree_with_the_reference(
    partitioner: Partitioner, reference: Any
) -> None:
    """Keys are hashed by librdkafka's own partitioner functions (cheaper than Python):
    murmur2 gives Kafka's murmur2, consistent gives zlib's CRC-32, for any key."""
    import random

    from qctl.backends.kafka.copy.batches import _FUNCTIONS, _librdkafka_hash

    name, python = _FUNCTIONS[partitioner]
    by_librdkafka = _librdkafka_hash(name, python)
    assert by_librdkafka is not None
    rng = random.Random(7)
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(0, 40))
        partitions = rng.randrange(1, 500)
        found = by_librdkafka(None, key, len(key), partitions, None, None)
        assert found == reference(key, partitions)


def test_random_partitioning_keeps_no_key() -> None:
    """``random`` draws a partition per record, keyed or not."""
    route = KeyPartitioner(50, Partitioner.RANDOM)
    seen = {route(b"order-13") for _ in range(200)}
    assert len(seen) > 10 and not route.cache


def test_the_codec_loads_without_aiokafkas_clients_which_still_load_on_demand() -> None:
    """The copier imports only aiokafka's record codec; a later ``from aiokafka import``
    (a plugin's, say) still gets the whole package."""
    import subprocess
    import sys

    script = "\n".join(
        [
            "import sys",
            "from qctl.backends.kafka.copy.wire_engine import _import_codec",
            "_import_codec()",
            "clients = ('aiokafka.client', 'aiokafka.producer', 'aiokafka.util',",
            "           'aiokafka.record.memory_records', 'aiokafka.record.default_records')",
            "print(sorted(m for m in clients if m in sys.modules))",
            "from qctl.backends.kafka.copy.batches import new_builder, records_of",
            "b = new_builder()",
            "b.append(0, 7, b'k', b'v', [('h', b'x')])",
            "b.set_producer_state(1, 0, 0)",
            "print([(r.key, r.value, r.headers) for r in records_of(bytes(b.build()))])",
            "from aiokafka import AIOKafkaProducer",
            "import aiokafka",
            "print(AIOKafkaProducer.__name__, aiokafka.record.__name__,",
            "      bool(aiokafka.__version__))",
            "from aiokafka.record import MemoryRecords",
            "from aiokafka.record.default_records import DefaultRecordBatch",
            "from qctl.backends.kafka.copy.batches import codec",
            "print(MemoryRecords.__name__, DefaultRecordBatch is codec().DefaultRecordBatch)",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == [
        "[]",
        "[(b'k', b'v', [('h', b'x')])]",
        "AIOKafkaProducer aiokafka.record True",
        "MemoryRecords True",
    ]
