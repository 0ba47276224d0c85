"""The consumer-groups capability against the real broker, Kafka's own tool as oracle."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KTP
from confluent_kafka.admin import AdminClient

from qctl.backends.base import BackendConfig
from qctl.backends.capabilities.groups import Position, SupportsConsumerGroups, TopicPartition
from qctl.backends.kafka import KafkaBackend
from qctl.backends.kafka.groups import _state, _type
from tests.oracles import kafka_tool

BASE_TS = 1_700_000_000_000


@pytest.fixture
def backend(kafka: str) -> Iterator[KafkaBackend]:
    b = KafkaBackend.from_config(BackendConfig("test", {"bootstrap_servers": kafka}, 10))
    yield b
    b.close()


@pytest.fixture
def topic(kafka: str, unique: str) -> Iterator[str]:
    kafka_tool(
        "topics", "--bootstrap-server", kafka, "--create", "--topic", unique, "--partitions", "3"
    )
    yield unique
    kafka_tool("topics", "--bootstrap-server", kafka, "--delete", "--topic", unique)


def produce(kafka: str, topic: str, per_partition: int) -> None:
    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    for p in range(3):
        for i in range(per_partition):
            producer.produce(
                topic,
                value=f"{p}-{i}".encode(),
                partition=p,
                timestamp=BASE_TS + p * 1000_000 + i * 1000,
            )
    assert producer.flush(10) == 0


def commit(kafka: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False}
    )
    consumer.commit(offsets=[KTP(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    consumer.close()


def oracle_describe(kafka: str, group: str) -> dict[tuple[str, int], tuple[int, int]]:
    out = kafka_tool("consumer-groups", "--bootstrap-server", kafka, "--describe", "--group", group)
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == group and re.fullmatch(r"\d+", parts[2]):
            current = int(parts[3]) if parts[3].isdigit() else -1
            rows[(parts[1], int(parts[2]))] = (current, int(parts[4]))
    return rows


def test_committed_and_end_offsets_agree_with_kafkas_tool(
    kafka: str, backend: KafkaBackend, topic: str, unique: str
) -> None:
    assert isinstance(backend, SupportsConsumerGroups)
    produce(kafka, topic, 10)
    group = f"{unique}-g"
    commit(kafka, group, {(topic, 0): 4, (topic, 1): 10})
    committed = backend.committed_offsets([group])[group]
    offsets = backend.partition_offsets([TopicPartition(topic, p) for p in range(3)])
    oracle = oracle_describe(kafka, group)
    for (t, p), (current, log_end) in oracle.items():
        assert committed[TopicPartition(t, p)] == current
        assert offsets[TopicPartition(t, p)].log_end == log_end
    assert committed == {TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 10}
    assert all(o.log_start == 0 and o.last_stable == o.log_end == 10 for o in offsets.values())
    listed = {g.group_id: g for g in backend.list_groups()}
    assert listed[group].state == "Empty"
    assert backend.describe_groups([group])[group].active is False
    assert backend.topic_partitions([topic, "no-such-topic-" + unique]) == {topic: 3}


def test_message_timestamps_and_offsets_for_times(
    kafka: str, backend: KafkaBackend, topic: str
) -> None:
    produce(kafka, topic, 5)
    tp0, tp2 = TopicPartition(topic, 0), TopicPartition(topic, 2)
    wanted = [Position(tp0, 0), Position(tp0, 3), Position(tp2, 4), Position(tp2, 5)]
    found = backend.message_timestamps(wanted)
    assert found[Position(tp0, 0)].timestamp == BASE_TS
    assert found[Position(tp0, 3)].timestamp == BASE_TS + 3000
    assert found[Position(tp0, 3)].exact
    assert found[Position(tp2, 4)].timestamp == BASE_TS + 2_000_000 + 4000
    assert found[Position(tp2, 5)].timestamp is None  # at the end: nothing there yet
    by_time = backend.offsets_for_times({tp0: BASE_TS + 2500, tp2: BASE_TS + 9_999_999})
    assert by_time == {tp0: 3, tp2: None}


def test_last_stable_offset_trails_an_open_transaction(
    kafka: str, backend: KafkaBackend, topic: str, unique: str
) -> None:
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": unique})
    producer.init_transactions(10)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=b"x%d" % i, partition=0)
    producer.flush(10)
    tp = TopicPartition(topic, 0)
    open_txn = backend.partition_offsets([tp])[tp]
    assert open_txn.log_end == 5 and open_txn.last_stable == 0
    producer.commit_transaction(10)
    # The coordinator writes the commit marker asynchronously after EndTxn returns.
    deadline = time.monotonic() + 15
    committed = backend.partition_offsets([tp])[tp]
    while committed.last_stable != committed.log_end and time.monotonic() < deadline:
        time.sleep(0.1)
        committed = backend.partition_offsets([tp])[tp]
    # The commit marker takes an offset: a read_committed consumer's end is 6, not 5.
    assert committed.log_end == committed.last_stable == 6


def test_describe_an_active_group(
    kafka: str, backend: KafkaBackend, topic: str, unique: str
) -> None:
    group = f"{unique}-live"
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "client.id": "qctl-test-client"}
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and not consumer.assignment():
            consumer.poll(0.2)
        desc = backend.describe_groups([group])[group]
        assert desc.state == "Stable" and desc.active
        assert len(desc.members) == 1
        assert desc.members[0].client_id == "qctl-test-client"
        assert sorted(desc.members[0].assignment) == [TopicPartition(topic, p) for p in range(3)]
    finally:
        consumer.close()


def _admin_view(kafka: str, ids: list[str]) -> dict[str, tuple[object, ...]]:
    """What librdkafka's admin client says of the groups: the oracle of the wire client."""
    admin = AdminClient({"bootstrap.servers": kafka})
    out: dict[str, tuple[object, ...]] = {}
    for group, future in admin.describe_consumer_groups(ids, request_timeout=10).items():
        d = future.result(timeout=15)
        members = sorted(
            (
                m.member_id,
                m.client_id,
                m.host,
                m.group_instance_id,
                sorted(
                    TopicPartition(tp.topic, tp.partition) for tp in m.assignment.topic_partitions
                ),
            )
            for m in d.members
        )
        out[group] = (
            _state(d.state),
            _type(d.type),
            d.partition_assignor or None,
            d.coordinator.id,
            d.is_simple_consumer_group,
            members,
        )
    return out


def test_groups_are_listed_and_described_as_librdkafka_does(
    kafka: str, backend: KafkaBackend, topic: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Classic, KIP-848, simple and missing groups, described by the wire client (not the
    admin client: librdkafka issue #4605) exactly as librdkafka's admin client does."""
    classic, new, simple, missing = (f"{unique}-{k}" for k in ("classic", "848", "simple", "no"))
    commit(kafka, simple, {(topic, 0): 1})
    consumers = [
        Consumer(
            {
                "bootstrap.servers": kafka,
                "group.id": classic,
                "client.id": "inventory-svc",
                "group.instance.id": f"{unique}-inv-1",
            }
        ),
        Consumer(
            {
                "bootstrap.servers": kafka,
                "group.id": new,
                "client.id": "payment-svc",
                "group.protocol": "consumer",
            }
        ),
    ]
    ids = [classic, new, simple, missing]
    try:
        for consumer in consumers:
            consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(c.assignment() for c in consumers):
            for consumer in consumers:
                consumer.poll(0.1)
        assert all(c.assignment() for c in consumers)
        caplog.set_level("DEBUG", logger="qctl.backends.kafka.groups")
        # Both views are read one after the other: a new-protocol group may still be
        # reconciling in the first, so compare until they settle.
        while True:
            described = backend.describe_groups(ids)
            wire = {
                g: (
                    d.state,
                    d.type,
                    d.assignor,
                    d.coordinator,
                    d.simple,
                    sorted(
                        (m.member_id, m.client_id, m.host, m.group_instance_id, m.assignment)
                        for m in d.members
                    ),
                )
                for g, d in described.items()
            }
            oracle = _admin_view(kafka, ids)
            if wire == oracle or time.monotonic() > deadline:
                break
            for consumer in consumers:
                consumer.poll(0.1)
        assert wire == oracle
        assert wire[classic][:2] == ("Stable", "classic")
        assert wire[new][:2] == ("Stable", "consumer")
        assert wire[simple][0] == "Empty" and wire[simple][4] is True
        assert wire[missing][0] == "Dead"
        assert wire[classic][5][0][3] == f"{unique}-inv-1"
        assert [m[4] for m in wire[new][5]] == [[TopicPartition(topic, p) for p in range(3)]]

        listed = {g.group_id: g for g in backend.list_groups() if g.group_id in ids}
        admin = AdminClient({"bootstrap.servers": kafka})
        expected = {
            g.group_id: (_state(g.state), _type(g.type), g.is_simple_consumer_group)
            for g in admin.list_consumer_groups(request_timeout=10).result(timeout=15).valid
            if g.group_id in ids
        }
        assert {g: (x.state, x.type, x.simple) for g, x in listed.items()} == expected
        assert sorted(listed) == sorted([classic, new, simple])
        assert "through the admin client" not in caplog.text
    finally:
        for consumer in consumers:
            consumer.close()
