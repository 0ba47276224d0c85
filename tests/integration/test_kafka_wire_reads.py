"""The wire reads of large lag overviews (ListOffsets and Fetch over qctl's own client)
give exactly what librdkafka gives, on a real broker: plain, gzip and lz4 batches,
committed and aborted transactions, positions in and past the data."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from qctl.backends.base import BackendConfig
from qctl.backends.capabilities.groups import Position, TopicPartition
from qctl.backends.kafka import KafkaBackend
from qctl.backends.kafka import groups as kafka_groups

PARTITIONS = 3
PER_PARTITION = 30


@pytest.fixture(params=["plaintext", "sasl-ssl"])
def backend(kafka: str, request: pytest.FixtureRequest) -> Iterator[KafkaBackend]:
    """The wire client connects the way librdkafka does: also with TLS and a SCRAM login."""
    settings: dict[str, Any] = {"bootstrap_servers": kafka}
    if request.param == "sasl-ssl":
        settings = request.getfixturevalue("secure_brokers").kafka()
    b = KafkaBackend.from_config(BackendConfig("test", settings, 10))
    yield b
    b.close()


@pytest.fixture
def data(kafka: str, unique: str) -> Iterator[dict[str, str]]:
    """Topics filled four ways; their names by kind."""
    admin = AdminClient({"bootstrap.servers": kafka})
    names = {kind: f"{unique}-{kind}" for kind in ("plain", "gzip", "lz4", "txn")}
    for future in admin.create_topics(
        [NewTopic(n, PARTITIONS, 1) for n in names.values()]
    ).values():
        future.result(15)
    base = int(time.time() * 1000) - 600_000
    # Values that compress well: librdkafka sends a batch that lz4 would not shrink
    # uncompressed, and the wire read would then settle it.
    for kind in ("plain", "gzip", "lz4"):
        conf: dict[str, Any] = {"bootstrap.servers": kafka, "linger.ms": 50}
        if kind != "plain":
            conf["compression.type"] = kind
        producer = Producer(conf)
        for p in range(PARTITIONS):
            for i in range(PER_PARTITION):
                producer.produce(
                    names[kind], f"{kind}-{i}".encode() * 40, partition=p, timestamp=base + i * 10
                )
        assert producer.flush(15) == 0
    txn = Producer({"bootstrap.servers": kafka, "transactional.id": f"{unique}-txn"})
    txn.init_transactions(15)
    for commit in (True, False, True):  # offsets 0-4, marker 5, 6-10, marker 11, 12-16, 17
        txn.begin_transaction()
        for i in range(5):
            txn.produce(names["txn"], b"t" * 40, partition=0, timestamp=base + i)
        assert txn.flush(15) == 0  # written before the abort, not purged by it
        if commit:
            txn.commit_transaction(15)
        else:
            txn.abort_transaction(15)
    yield names
    for future in admin.delete_topics(list(names.values())).values():
        future.result(15)


def positions(names: dict[str, str]) -> list[Position]:
    out = []
    for kind in ("plain", "gzip", "lz4"):
        for p in range(PARTITIONS):
            for offset in (0, 1, 13, PER_PARTITION - 1, PER_PARTITION):  # the last: the end
                out.append(Position(TopicPartition(names[kind], p), offset))
    for offset in (0, 4, 5, 6, 9, 11, 12, 16, 17):  # messages, markers, aborted, the end
        out.append(Position(TopicPartition(names["txn"], 0), offset))
    return out


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_fetched_timestamps_equal_the_consumers(
    backend: KafkaBackend, data: dict[str, str], isolation: str, monkeypatch: Any
) -> None:
    wanted = positions(data)
    monkeypatch.setattr(kafka_groups, "WIRE_FROM", 10**9)
    by_consumer = backend.message_timestamps(wanted, isolation=isolation)
    monkeypatch.setattr(kafka_groups, "WIRE_FROM", 1)
    by_wire = backend.message_timestamps(wanted, isolation=isolation)
    assert by_wire == by_consumer
    assert len(by_consumer) == len(wanted)

    # The wire read itself settled everything but the lz4 batches (left to the consumer).
    pending: dict[TopicPartition, list[int]] = defaultdict(list)
    for pos in wanted:
        pending[pos.tp].append(pos.offset)
    for offsets in pending.values():
        offsets.sort()
    direct = backend._timestamps_by_wire(pending, isolation)
    lz4 = {pos for pos in wanted if pos.tp.topic == data["lz4"]}
    assert set(direct) == set(wanted) - lz4
    assert all(direct[pos] == by_consumer[pos] for pos in direct)
    if isolation == "read_committed":  # offset 6 is in the aborted transaction
        txn = TopicPartition(data["txn"], 0)
        assert direct[Position(txn, 6)].offset == 12


def test_listed_offsets_equal_the_admin_clients(
    backend: KafkaBackend, data: dict[str, str], monkeypatch: Any
) -> None:
    tps = [TopicPartition(t, p) for t in data.values() for p in range(PARTITIONS)]
    monkeypatch.setattr(kafka_groups, "WIRE_FROM", 10**9)
    by_admin = backend.partition_offsets(tps)
    monkeypatch.setattr(kafka_groups, "WIRE_FROM", 1)
    assert backend._ends_by_wire(tps) == by_admin
    assert backend.partition_offsets(tps) == by_admin
    assert by_admin[TopicPartition(data["txn"], 0)].log_end == 18
