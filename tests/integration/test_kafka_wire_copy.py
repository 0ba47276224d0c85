"""The wire copier (qctl's own Fetch, Produce and transaction requests) writes exactly
what the librdkafka copier writes, on a real broker: keys, values, headers, timestamps,
the target partition a key hashes to, and the position header. Sources: plain, gzip, a
transactional topic with an aborted transaction, and every compression codec in one
topic. Plaintext and SASL_SSL."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from qctl.backends.base import BackendConfig
from qctl.backends.capabilities.transactions import (
    CopyProgress,
    CopyReport,
    CopyRequest,
    FixedRoute,
)
from qctl.backends.kafka import KafkaBackend
from qctl.backends.kafka.copy.wire_engine import ENV_SWITCH
from qctl.refs import parse_ref
from tests.integration.dlq_support import read_kafka

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

PARTITIONS = 3
HEADER = "qctl-replayed-from"


class Control:
    def __init__(self) -> None:
        self.commits: list[int] = []

    def started(self, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
        pass

    def stopping(self) -> bool:
        return False

    def committed(self, progress: CopyProgress) -> None:
        self.commits.append(progress.routed)


@pytest.fixture(params=["plaintext", "sasl-ssl"])
def backend(kafka: str, request: pytest.FixtureRequest) -> Iterator[KafkaBackend]:
    settings: dict[str, Any] = {"bootstrap_servers": kafka}
    if request.param == "sasl-ssl":
        settings = request.getfixturevalue("secure_brokers").kafka()
    b = KafkaBackend.from_config(BackendConfig("test", settings, 15))
    yield b
    b.close()


@pytest.fixture
def admin(kafka: str) -> Iterator[AdminClient]:
    client = AdminClient({"bootstrap.servers": kafka})
    created: list[str] = []
    client.created = created  # type: ignore[attr-defined]
    yield client
    if created:
        for future in client.delete_topics(created).values():
            future.result(30)


def make_topic(admin: AdminClient, name: str, partitions: int = PARTITIONS) -> str:
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(15)
    admin.created.append(name)  # type: ignore[attr-defined]
    return name


def fill(kafka: str, topic: str, n: int, codec: str = "none", start: int = 0) -> None:
    """``n`` messages, most keyed (some without a key), with headers and timestamps."""
    conf: dict[str, Any] = {"bootstrap.servers": kafka, "linger.ms": 20}
    if codec != "none":
        conf["compression.type"] = codec
    producer = Producer(conf)
    base = int(time.time() * 1000) - 3_600_000
    for i in range(start, start + n):
        key = None if i % 17 == 0 else f"order-{i % 97}".encode()
        headers = [("event-type", b"OrderCreated"), ("seq", str(i).encode())]
        if i % 5 == 0:
            headers.append(("empty", None))  # type: ignore[arg-type]
        producer.produce(
            topic, f"value-{i}".encode() * 3, key, partition=i % PARTITIONS,
            timestamp=base + i, headers=headers,
        )  # fmt: skip
    assert producer.flush(30) == 0


def fill_transactions(kafka: str, topic: str, unique: str) -> None:
    """Committed, aborted and committed transactions of 200 messages each."""
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": f"{unique}-src"})
    producer.init_transactions(15)
    for round_, commit in enumerate((True, False, True)):
        producer.begin_transaction()
        for i in range(200):
            seq = round_ * 200 + i
            headers = [("seq", str(seq).encode())]
            producer.produce(topic, f"t-{seq}".encode(), f"k{seq % 13}".encode(), headers=headers)
        assert producer.flush(15) == 0
        if commit:
            producer.commit_transaction(15)
        else:
            producer.abort_transaction(15)


def replay(
    backend: KafkaBackend,
    source: str,
    target: str,
    monkeypatch: pytest.MonkeyPatch,
    wire: bool,
    keep_partition: bool = False,
) -> CopyReport:
    monkeypatch.setenv(ENV_SWITCH, "1" if wire else "0")
    job = uuid.uuid4().hex[:8]
    request = CopyRequest(
        source=parse_ref(f"kafka:{source}"),
        group=f"qctl-test-replay-{job}",
        transactional_id=f"qctl-test-{job}",
        fixed=FixedRoute(topic=target, keep_partition=keep_partition, position_header=HEADER),
    )
    return backend.transactional_copy(request, Control())


def written(kafka: str, topic: str) -> Counter[tuple[Any, ...]]:
    """What ``topic`` holds: (key, value, headers, partition or None for no key, ts)."""
    return Counter(
        (key, value, tuple(headers), partition if key is not None else None, ts)
        for key, value, headers, partition, _offset, ts in read_kafka(kafka, topic)
    )


@pytest.mark.parametrize(
    "kind", ["plain", "gzip", "transactions", "keep-partition", "plain-in-workers"]
)
def test_the_wire_copy_writes_what_librdkafka_writes(
    backend: KafkaBackend,
    kafka: str,
    admin: AdminClient,
    unique: str,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if kind == "plain-in-workers":
        monkeypatch.setenv("QCTL_KAFKA_COPY_WORKERS", "3")
    source = make_topic(admin, f"{unique}-src")
    if kind == "transactions":
        fill_transactions(kafka, source, unique)
        expected = 400
    else:
        fill(kafka, source, 3000, "gzip" if kind == "gzip" else "none")
        expected = 3000
    by_wire = make_topic(admin, f"{unique}-wire", 4)
    by_library = make_topic(admin, f"{unique}-lib", 4)
    keep = kind == "keep-partition"
    with caplog.at_level(logging.DEBUG, logger="qctl.backends.kafka"):
        report = replay(backend, source, by_wire, monkeypatch, wire=True, keep_partition=keep)
    assert "copying over the wire" in caplog.text
    assert ("worker processes" in caplog.text) == (kind == "plain-in-workers")
    assert "continues through librdkafka" not in caplog.text
    assert report.routed == expected and report.remaining == 0
    library = replay(backend, source, by_library, monkeypatch, wire=False, keep_partition=keep)
    assert library.routed == expected
    copies = written(kafka, by_wire)
    assert sum(copies.values()) == expected
    assert copies == written(kafka, by_library)  # the same partitions by key too
    positions = {dict(headers)[HEADER] for _k, _v, headers, _p, _t in copies}
    assert len(positions) == expected  # each source position once
    if kind == "transactions":
        seqs = {int(dict(h)["seq"]) for _k, _v, h, _p, _t in copies}
        assert seqs == set(range(200)) | set(range(400, 600))  # the aborted 200 left out


def test_only_a_later_run_fences_the_worker_ids(
    kafka: str,
    admin: AdminClient,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job's first run has no earlier producer to fence; a resumed run fences every
    worker id a run may have used, and both copy every record once."""
    monkeypatch.setenv(ENV_SWITCH, "1")
    monkeypatch.setenv("QCTL_KAFKA_COPY_WORKERS", "3")
    backend = KafkaBackend.from_config(BackendConfig("test", {"bootstrap_servers": kafka}, 15))
    source = make_topic(admin, f"{unique}-src")
    fill(kafka, source, 900)
    target = make_topic(admin, f"{unique}-dst")
    request = CopyRequest(
        source=parse_ref(f"kafka:{source}"),
        group=f"qctl-test-fence-{unique}",
        transactional_id=f"qctl-test-fence-{unique}",
        fixed=FixedRoute(topic=target, position_header=HEADER),
        end_offsets=dict.fromkeys(range(PARTITIONS), 200),
        first_run=True,
    )
    try:
        with caplog.at_level(logging.DEBUG, logger="qctl.backends.kafka"):
            first = backend.transactional_copy(request, Control())
        assert "worker processes" in caplog.text
        assert "fencing the worker ids" not in caplog.text
        caplog.clear()
        later = replace(request, end_offsets=None, first_run=False)
        with caplog.at_level(logging.DEBUG, logger="qctl.backends.kafka"):
            rest = backend.transactional_copy(later, Control())
        assert f"fencing the worker ids of {request.transactional_id}" in caplog.text
    finally:
        backend.close()
    assert (first.routed, rest.routed) == (600, 300)
    positions = Counter(dict(h)[HEADER] for _k, _v, h, _p, _o, _t in read_kafka(kafka, target))
    assert len(positions) == 900 and set(positions.values()) == {1}


def test_compressed_sources_are_copied_over_the_wire(
    backend: KafkaBackend,
    kafka: str,
    admin: AdminClient,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Batches of every codec Kafka has (none, gzip, snappy, lz4, zstd) in one source:
    the wire copy reads them all itself, and every message arrives once."""
    source = make_topic(admin, f"{unique}-src")
    codecs = ("none", "gzip", "snappy", "lz4", "zstd")
    for i, codec in enumerate(codecs):
        fill(kafka, source, 800, codec, start=i * 800)
    target = make_topic(admin, f"{unique}-dst")
    with caplog.at_level(logging.INFO, logger="qctl.backends.kafka"):
        report = replay(backend, source, target, monkeypatch, wire=True)
    assert "continues through librdkafka" not in caplog.text
    total = 800 * len(codecs)
    assert report.routed == total and report.remaining == 0
    seqs = Counter(int(dict(h)["seq"]) for _k, _v, h, _p, _o, _t in read_kafka(kafka, target))
    assert seqs == Counter(range(total))
