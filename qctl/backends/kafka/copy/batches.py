"""Fetched record batches turned into record batches to produce, without a message object.

A replay copies records unchanged but for one added header (the source position). Done
with confluent-kafka, each record becomes a Python message with a header list and a
produce call, which is most of a replay's time. Here the record batches of a Fetch
answer are read, and the batches of a Produce request written, by aiokafka's record
codec (compiled; its clients are not used): a record costs a fraction of that.
The records go into one batch per target partition, which ``seal`` closes with the
transactional producer's id, epoch and sequence.

This module decides which records are read, as Kafka's consumer does: transaction
markers are skipped, and with read_committed so are the batches of aborted
transactions. What it does not rewrite (a codec it cannot read, an older message
format, a malformed record) is reported, and the caller leaves it to librdkafka.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from qctl.backends.capabilities.messaging import Partitioner

_BATCH = struct.Struct(">qiibIhiqqqhii")  # the 61-byte record batch header (magic 2)
_CODEC_NONE, _CODEC_GZIP = 0, 1
#: gzip, snappy, lz4 and zstd: aiokafka's codec reads them all, the last three with
#: cramjam (qctl depends on ``aiokafka[lz4,snappy,zstd]``).
_CODECS_WITH_CRAMJAM = frozenset({1, 2, 3, 4})
_TRANSACTIONAL = 0x10
_CONTROL = 0x20
#: Bytes per batch written at most (librdkafka's default ``message.max.bytes``; a batch
#: always takes its first record, however large).
BATCH_BYTES = 1_000_000


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner, and librdkafka's
    ``murmur2``/``murmur2_random``), as an unsigned 32-bit value."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length & ~3
    for (word,) in struct.iter_unpack("<I", data[:whole]):
        k = (word * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


#: A key hash as librdkafka declares its partitioners: (topic, key, key length,
#: partition count, topic opaque, message opaque) -> partition. The copy's hot loop
#: calls it directly.
KeyHash = Callable[[None, bytes, int, int, None, None], int]


def _python_murmur2(
    _topic: None, key: bytes, _length: int, partitions: int, _opaque: None, _message: None
) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _python_crc32(
    _topic: None, key: bytes, _length: int, partitions: int, _opaque: None, _message: None
) -> int:
    """librdkafka's ``consistent`` hash: CRC-32 (zlib's) of the key."""
    return zlib.crc32(key) % partitions


def _python_random(
    _topic: None, _key: bytes, _length: int, partitions: int, _opaque: None, _message: None
) -> int:
    return random.randrange(partitions)


#: Each partitioner's function in librdkafka's public API, and the same in Python.
_FUNCTIONS: dict[Partitioner, tuple[str, KeyHash]] = {
    Partitioner.MURMUR2: ("rd_kafka_msg_partitioner_murmur2", _python_murmur2),
    Partitioner.CRC32: ("rd_kafka_msg_partitioner_consistent", _python_crc32),
}


def _librdkafka_hash(name: str, reference: KeyHash) -> KeyHash | None:
    """librdkafka's own partitioner function ``name`` (public in its API), through the
    library confluent-kafka loaded: several times cheaper per key than Python. None
    when it cannot be found, or does not give ``reference``'s answers for test keys."""
    try:
        import ctypes

        import confluent_kafka.cimpl

        # dlsym on the extension's handle also searches the libraries it links. PyDLL
        # keeps the GIL: releasing it costs more than the hash of a key.
        function = getattr(ctypes.PyDLL(confluent_kafka.cimpl.__file__), name)
        function.restype = ctypes.c_int32
        for key in (b"21", b"foobar", b"abc", b"", b"order-13"):
            if function(None, key, len(key), 1000, None, None) != reference(
                None, key, len(key), 1000, None, None
            ):
                return None
        return function  # type: ignore[no-any-return]
    except (ImportError, OSError, AttributeError):
        return None


_hashes: dict[Partitioner, KeyHash] = {}


def key_hash(partitioner: Partitioner) -> KeyHash:
    """The function that picks a keyed record's partition for ``partitioner``:
    librdkafka's own where it can be called, else the same in Python."""
    found = _hashes.get(partitioner)
    if found is None:
        if partitioner is Partitioner.RANDOM:
            found = _python_random
        else:
            name, reference = _FUNCTIONS[partitioner]
            found = _librdkafka_hash(name, reference) or reference
        _hashes[partitioner] = found
    return found


#: Keys whose partition a ``KeyPartitioner`` remembers.
CACHED_KEYS = 4096


class KeyPartitioner:
    """A record's target partition by key, as librdkafka's ``partitioner`` picks it
    (``Partitioner``: murmur2 or CRC32 of the key, or random), and a random partition for
    a record without a key. Keys repeat (an order's events share its id), so the
    partitions of hashed keys are kept."""

    def __init__(self, partitions: int, partitioner: Partitioner = Partitioner.MURMUR2) -> None:
        self.partitions = partitions
        self.cache: dict[bytes, int] = {}
        self._hash = key_hash(partitioner)
        #: ``random`` gives each record its own draw: nothing is kept.
        self._keeps = partitioner is not Partitioner.RANDOM

    def __call__(self, key: bytes | None) -> int:
        if key is None:
            return random.randrange(self.partitions)
        found = self.cache.get(key)
        if found is None:
            found = self.add(key)
        return found

    def add(self, key: bytes) -> int:
        """The partition of a key that is not cached yet (a copy's hot loop looks the
        cache up itself and calls this on a miss). The cache stays small: the keys that
        repeat (an order's events) mostly come close together, and inserting into a
        dictionary of a million distinct keys costs more than hashing the key again."""
        found = self._hash(None, key, len(key), self.partitions, None, None)
        if self._keeps:
            cache = self.cache
            if len(cache) >= CACHED_KEYS:
                cache.clear()
            cache[key] = found
        return found


class Unsupported(Exception):
    """A batch this module does not rewrite (the client library must take over)."""


class OutBatch:
    """Records bound for one target partition, not yet sent."""

    __slots__ = ("builder", "count")

    def __init__(self) -> None:
        self.builder: Any = None
        self.count = 0


def seal(out: OutBatch, producer_id: int, epoch: int, sequence: int) -> bytes:
    """The transactional record batch of ``out`` (base offset 0: the broker assigns);
    ``out`` is empty again afterwards."""
    out.builder.set_producer_state(producer_id, epoch, sequence)
    batch = bytes(out.builder.build())
    out.builder = None
    out.count = 0
    return batch


class Taken(NamedTuple):
    """What ``copy_partition`` did with one partition's fetched records."""

    #: The next offset to read (past skipped markers and aborted data too).
    position: int
    #: Records taken (routed: those that count towards a limit).
    copied: int
    #: The partition is done (its end reached).
    done: bool
    #: Why the batch at ``position`` cannot be rewritten here (None: it can).
    unsupported: str | None = None


#: Takes the records of one record batch (its bytes) at offsets in [position, end), at
#: most ``limit`` counted ones: (how many it counted, and the offset of the first record
#: it left for the limit, or None).
RecordTaker = Callable[[bytes | memoryview, int, int, int], tuple[int, int | None]]


def copy_partition(
    records: bytes | memoryview,
    position: int,
    end: int,
    aborted: Sequence[tuple[int, int]],
    read_committed: bool,
    take: RecordTaker,
    limit: int = 1 << 62,
    passing: tuple[type[BaseException], ...] = (),
) -> Taken:
    """Hand the readable batches of ``records`` from ``position`` up to ``end``
    (exclusive) to ``take``, which copies their records (``fixed_route`` or a mapper's
    taker), at most ``limit`` counted records.

    Stops at the first batch the fetch cut short, and at a batch of a codec or format
    it does not rewrite (``Taken.unsupported`` says which). Raises ``Unsupported`` at a
    malformed record: records of its batch may already have been taken, so the caller
    must drop them (abort the transaction). Exceptions of the types in ``passing``
    (the taker's own, from sending a full batch) pass through unchanged.
    """
    aborted_sorted = sorted(aborted, key=lambda a: a[1])
    next_aborted = 0
    aborting: set[int] = set()
    pos = 0
    copied = 0
    size = len(records)
    unpack = _BATCH.unpack_from
    while pos + _BATCH.size <= size and position < end and copied < limit:
        (
            base,
            length,
            _epoch,
            magic,
            _crc,
            attributes,
            last_delta,
            _base_ts,
            _max_ts,
            producer,
            _pepoch,
            _seq,
            _count,
        ) = unpack(records, pos)
        batch_end = pos + 12 + length
        if batch_end > size:
            break  # cut short by the fetch's byte limit: fetched again next time
        if magic != 2:
            return Taken(position, copied, False, f"message format v{magic} at offset {base}")
        last = base + last_delta
        if read_committed:
            while next_aborted < len(aborted_sorted) and aborted_sorted[next_aborted][1] <= last:
                aborting.add(aborted_sorted[next_aborted][0])
                next_aborted += 1
        if last < position:
            pos = batch_end
            continue
        if attributes & _CONTROL:
            aborting.discard(producer)
            position = max(position, min(last + 1, end))
            pos = batch_end
            continue
        if read_committed and attributes & _TRANSACTIONAL and producer in aborting:
            position = max(position, min(last + 1, end))
            pos = batch_end
            continue
        codec = attributes & 0x07
        if codec and codec not in readable_codecs():
            return Taken(position, copied, False, f"compression codec {codec} at offset {base}")
        try:
            took, stopped_at = take(records[pos:batch_end], position, end, limit - copied)
        except passing:
            raise
        except Exception as exc:  # the codec's errors have no common class
            raise Unsupported(f"a malformed record in the batch at offset {base}") from exc
        copied += took
        if stopped_at is not None:  # the limit: the rest of the batch is read next time
            return Taken(max(position, stopped_at), copied, False)
        position = max(position, min(last + 1, end))
        pos = batch_end
    return Taken(position, copied, position >= end)


def fixed_route(
    header: tuple[str, bytes] | None,
    route: int | KeyPartitioner,
    outs: list[OutBatch],
    full: Callable[[int, OutBatch], None],
) -> RecordTaker:
    """The taker of a fixed route: every record into ``outs`` (a batch per target
    partition), with the header ``header`` appended when given (``header_spec`` makes
    it). ``route`` is the target partition, or the partitioner that picks it by key;
    ``full`` is called with a batch that reached ``BATCH_BYTES`` (and must empty it)."""

    def take(
        batch: bytes | memoryview, position: int, end: int, limit: int
    ) -> tuple[int, int | None]:
        return _copy_records(batch, position, end, limit, header, route, outs, full)

    return take


def _copy_records(
    batch: bytes | memoryview,
    position: int,
    end: int,
    limit: int,
    header: tuple[str, bytes] | None,
    route: int | KeyPartitioner,
    outs: list[OutBatch],
    full: Callable[[int, OutBatch], None],
) -> tuple[int, int | None]:
    """``fixed_route``'s taker: the hottest loop of a replay, so aiokafka's compiled
    record codec reads and writes the records."""
    DefaultRecordBatch = codec().DefaultRecordBatch

    copied = 0
    name, template = header if header is not None else ("", b"")
    with_header = header is not None
    keyed = isinstance(route, KeyPartitioner)
    cache = route.cache if isinstance(route, KeyPartitioner) else {}
    target = route if isinstance(route, int) else 0
    out = outs[target]
    for record in DefaultRecordBatch(batch):
        offset = record.offset
        if offset < position:
            continue
        if offset >= end:
            break
        if copied >= limit:
            return copied, offset
        headers = record.headers
        if with_header:
            headers.append((name, template % offset))
        key = record.key
        if keyed:
            found = cache.get(key) if key is not None else None
            target = route(key) if found is None else found  # type: ignore[operator]
            out = outs[target]
        builder = out.builder
        if builder is None:
            builder = out.builder = new_builder()
        if builder.append(out.count, record.timestamp, key, record.value, headers) is None:
            full(target, out)  # the batch is full: send it, start the next
            builder = out.builder = new_builder()
            builder.append(0, record.timestamp, key, record.value, headers)
        out.count += 1
        copied += 1
    return copied, None


def append(out: OutBatch, record: Any, headers: list[Any]) -> bool:
    """Add ``record`` with ``headers`` to ``out``; False when ``out`` is full (send it,
    then the record fits the emptied batch)."""
    builder = out.builder
    if builder is None:
        builder = out.builder = new_builder()
    if builder.append(out.count, record.timestamp, record.key, record.value, headers) is None:
        return False
    out.count += 1
    return True


def records_of(batch: bytes | memoryview) -> Any:
    """The records of one record batch, decoded (gzip too)."""
    return codec().DefaultRecordBatch(batch)


_readable: list[frozenset[int]] = []


def readable_codecs() -> frozenset[int]:
    """The compression codecs whose batches this module reads: gzip always; snappy,
    lz4 and zstd where aiokafka's codec has cramjam (else they are left to
    librdkafka)."""
    if not _readable:
        try:
            import cramjam  # noqa: F401  (aiokafka's codec uses it)

            _readable.append(_CODECS_WITH_CRAMJAM)
        except ImportError:
            _readable.append(frozenset({_CODEC_GZIP}))
    return _readable[0]


def new_builder() -> Any:
    """An empty transactional record batch (the producer state is set when sealed)."""
    return codec().DefaultRecordBatchBuilder(2, _CODEC_NONE, 1, -1, -1, -1, BATCH_BYTES)


#: aiokafka's compiled record codec, and its Python module that re-exports the same
#: classes (or, on a build without extensions, its own).
CODEC_MODULES = ("aiokafka.record._crecords.default_records", "aiokafka.record.default_records")
_codec: list[Any] = []


def codec() -> Any:
    """The module of aiokafka's record classes, the compiled one where it is built."""
    if not _codec:
        import importlib

        for name in CODEC_MODULES:
            try:
                _codec.append(importlib.import_module(name))
                break
            except ImportError:
                continue
        else:
            raise ImportError("aiokafka's record codec is not installed")
    return _codec[0]


def header_spec(name: str, prefix: str) -> tuple[str, bytes]:
    """The ``header`` argument of ``copy_partition`` for a header ``name`` whose value
    is ``prefix`` followed by the record's offset."""
    return name, prefix.encode().replace(b"%", b"%%") + b"%d"
