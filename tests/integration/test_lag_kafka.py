"""Kafka lag against the real broker, with Kafka's own tools as oracles where they apply."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KTP
from confluent_kafka.admin import AdminClient, NewTopic

from qctl.backends.base import BackendConfig
from qctl.backends.kafka import KafkaBackend
from qctl.lag.history import HistoryStore
from qctl.lag.kafka import read_groups
from qctl.lag.model import GroupLag, PartitionState, Status, TimeLagSource
from qctl.lag.status import Rules
from tests.cli.test_root import run_qctl
from tests.oracles import kafka_tool


@pytest.fixture
def backend(kafka: str) -> Iterator[KafkaBackend]:
    b = KafkaBackend.from_config(BackendConfig("test", {"bootstrap_servers": kafka}, 10))
    yield b
    b.close()


@pytest.fixture
def make_topic(kafka: str) -> Iterator[Any]:
    admin = AdminClient({"bootstrap.servers": kafka})
    created: list[str] = []

    def make(name: str, partitions: int) -> str:
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(15)
        created.append(name)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            topic = admin.list_topics(name, timeout=5).topics.get(name)
            if topic is not None and topic.error is None and len(topic.partitions) == partitions:
                break
            time.sleep(0.1)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.result(15)


def produce(
    kafka: str, topic: str, partition: int, count: int, timestamps: list[int] | None = None
) -> None:
    producer = Producer({"bootstrap.servers": kafka, "acks": "all", "linger.ms": 0})
    for i in range(count):
        kwargs: dict[str, Any] = {}
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[i]
        producer.produce(topic, value=f"m{i}".encode(), partition=partition, **kwargs)
    assert producer.flush(10) == 0


def commit(kafka: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False}
    )
    consumer.commit(offsets=[KTP(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    consumer.close()


def one(backend: KafkaBackend, group: str, **kwargs: Any) -> GroupLag:
    [result] = read_groups(backend, "kafka", [group], clock=time.time, **kwargs)
    return result


def lag_json(*args: str, kafka: str) -> dict[str, Any]:
    proc = run_qctl("lag", "-b", "kafka", "-o", "json", *args, env={"QCTL_KAFKA_BOOTSTRAP": kafka})
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_transactional_topic_lag_is_zero_after_a_full_read_committed_consume(
    kafka: str, backend: KafkaBackend, make_topic: Any, unique: str
) -> None:
    topic = make_topic(unique, 1)
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": f"{unique}-a"})
    producer.init_transactions(10)
    for _ in range(2):
        producer.begin_transaction()
        for i in range(5):
            producer.produce(topic, value=b"v%d" % i, partition=0)
        producer.commit_transaction(10)
    # A second producer leaves a transaction open: the LSO stops in front of it.
    open_txn = Producer({"bootstrap.servers": kafka, "transactional.id": f"{unique}-b"})
    open_txn.init_transactions(10)
    open_txn.begin_transaction()
    for i in range(3):
        open_txn.produce(topic, value=b"open%d" % i, partition=0)
    open_txn.flush(10)

    group = f"{unique}-rc"
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": group,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    read = 0
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                break  # end of what read_committed may read
            read += 1
        assert read == 10
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    g = one(backend, group)
    [p] = g.partitions
    assert (p.log_end, p.last_stable, p.committed) == (15, 12, 12)
    assert g.isolation == "read_committed"
    assert p.lag == 0 and g.lag == 0
    assert p.time_lag_seconds == 0 and p.time_lag_source is TimeLagSource.CAUGHT_UP
    assert one(backend, group, isolation="read_uncommitted").lag == 3

    # Aborting leaves 3 aborted messages and a marker after the committed offset: the
    # high watermark moves to 16, but a read_committed consumer has nothing to read.
    open_txn.abort_transaction(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        g = one(backend, group)
        if g.partitions[0].last_stable == g.partitions[0].log_end == 16:
            break
        time.sleep(0.2)
    assert g.partitions[0].log_end == 16
    assert g.lag == 0, "aborted records and markers are not lag for read_committed"
    assert one(backend, group, isolation="read_uncommitted").lag == 4


def test_never_committed_partitions_show_their_backlog_from_log_start(
    kafka: str, backend: KafkaBackend, make_topic: Any, unique: str, tmp_path: Path
) -> None:
    topic = make_topic(unique, 3)
    for p in range(3):
        produce(kafka, topic, p, 10)
    delete_records(kafka, tmp_path, {(topic, 2): 4})
    group = f"{unique}-g"
    commit(kafka, group, {(topic, 0): 7, (topic, 1): 10})
    g = one(backend, group)
    rows = {p.partition: p for p in g.partitions}
    assert rows[0].state is PartitionState.OK and rows[0].lag == 3
    assert rows[1].lag == 0
    assert rows[2].state is PartitionState.NEVER_COMMITTED
    assert rows[2].lag is None and rows[2].committed is None
    assert rows[2].log_start == 4 and rows[2].backlog == 6  # from log-start, not from 0
    assert (g.lag, g.backlog, g.never_committed) == (3, 6, 1)
    assert rows[2].evaluation.status is Status.OK


def delete_records(kafka: str, tmp_path: Path, offsets: dict[tuple[str, int], int]) -> None:
    spec = tmp_path / "delete.json"
    spec.write_text(
        json.dumps(
            {
                "version": 1,
                "partitions": [
                    {"topic": t, "partition": p, "offset": o} for (t, p), o in offsets.items()
                ],
            }
        )
    )
    kafka_tool("delete-records", "--bootstrap-server", kafka, "--offset-json-file", str(spec))


def test_data_lost_after_delete_records(
    kafka: str, backend: KafkaBackend, make_topic: Any, unique: str, tmp_path: Path
) -> None:
    topic = make_topic(unique, 1)
    now_ms = int(time.time() * 1000)
    stamps = [now_ms - 60_000 + i * 1000 for i in range(10)]
    produce(kafka, topic, 0, 10, stamps)
    group = f"{unique}-g"
    commit(kafka, group, {(topic, 0): 2})
    delete_records(kafka, tmp_path, {(topic, 0): 6})
    measured_at = time.time()
    g = one(backend, group)
    [p] = g.partitions
    assert p.state is PartitionState.DATA_LOST
    assert (p.log_start, p.committed, p.data_lost, p.lag) == (6, 2, 4, 4)
    assert g.data_lost == 4
    assert p.evaluation.status is Status.ERR and g.evaluation.status is Status.ERR
    # The message at the committed offset is gone: the next readable one, flagged.
    assert p.time_lag_source is TimeLagSource.NEXT_MESSAGE and not p.time_lag_exact
    assert p.time_lag_seconds == pytest.approx(measured_at - stamps[6] / 1000, abs=1.0)
    shown = lag_json("-g", group, kafka=kafka)["groups"][0]
    assert shown["data_lost"] == 4
    assert shown["partitions"][0]["state"] == "data-lost"


def test_time_lag_is_the_age_of_the_message_at_the_committed_offset(
    kafka: str, backend: KafkaBackend, make_topic: Any, unique: str
) -> None:
    topic = make_topic(unique, 2)
    now_ms = int(time.time() * 1000)
    stamps = [now_ms - (100 - i) * 1000 for i in range(10)]  # 100 s ago, 99 s ago, ...
    produce(kafka, topic, 0, 10, stamps)
    produce(kafka, topic, 1, 10, stamps)
    group = f"{unique}-g"
    commit(kafka, group, {(topic, 0): 5, (topic, 1): 8})
    before = time.time()
    g = one(backend, group)
    after = time.time()
    rows = {p.partition: p for p in g.partitions}
    for partition, offset in ((0, 5), (1, 8)):
        truth = (before + after) / 2 - stamps[offset] / 1000
        assert rows[partition].time_lag_seconds == pytest.approx(truth, abs=1.0)
        assert rows[partition].time_lag_source is TimeLagSource.MESSAGE
        assert rows[partition].time_lag_exact
    assert g.time_lag_seconds == rows[0].time_lag_seconds
    assert g.time_lag_exact


def oracle(kafka: str, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    out = kafka_tool("consumer-groups", "--bootstrap-server", kafka, "--describe", "--group", group)
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == group and re.fullmatch(r"\d+", parts[2]):
            rows[(parts[1], int(parts[2]))] = (int(parts[3]), int(parts[4]), int(parts[5]))
    return rows


def test_agrees_with_kafkas_tool_for_an_idle_group(
    kafka: str, make_topic: Any, unique: str
) -> None:
    topic_a = make_topic(f"{unique}-a", 3)
    topic_b = make_topic(f"{unique}-b", 2)
    for p, n in enumerate((10, 25, 7)):
        produce(kafka, topic_a, p, n)
    for p, n in enumerate((4, 40)):
        produce(kafka, topic_b, p, n)
    group = f"{unique}-idle"
    commit(
        kafka,
        group,
        {(topic_a, 0): 3, (topic_a, 1): 25, (topic_a, 2): 0, (topic_b, 0): 4, (topic_b, 1): 1},
    )
    expected = oracle(kafka, group)
    assert len(expected) == 5
    shown = lag_json("-g", group, kafka=kafka)
    [g] = shown["groups"]
    assert g["state"] == "Empty" and g["members"] == []
    ours = {
        (p["topic"], p["partition"]): (p["committed"], p["log_end"], p["lag"])
        for p in g["partitions"]
    }
    assert ours == expected
    assert g["lag"] == sum(lag for _, _, lag in expected.values())


def test_state_members_ownership_and_stall_then_stop(
    kafka: str, backend: KafkaBackend, make_topic: Any, unique: str
) -> None:
    topic = make_topic(unique, 2)
    produce(kafka, topic, 0, 5)
    produce(kafka, topic, 1, 5)
    group = f"{unique}-live"
    commit(kafka, group, {(topic, 0): 1, (topic, 1): 5})
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": group,
            "client.id": "lag-test-client",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    history = HistoryStore()
    rules = Rules(min_samples=3, min_window_seconds=2.0)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(consumer.assignment()) < 2:
            consumer.poll(0.2)
        consumer.pause(consumer.assignment())
        samples = []
        for _ in range(3):
            samples.append(one(backend, group, history=history, rules=rules))
            consumer.poll(0.1)
            time.sleep(1.1)
        g = samples[-1]
        assert g.state == "Stable" and len(g.members) == 1
        assert g.members[0].client_id == "lag-test-client"
        assert sorted(g.members[0].partitions) == [f"{topic}/0", f"{topic}/1"]
        owners = {p.partition: p.owner for p in g.partitions}
        assert all(o is not None and o.client_id == "lag-test-client" for o in owners.values())
        rows = {p.partition: p for p in g.partitions}
        assert rows[0].evaluation.status is Status.STALL, rows[0].evaluation.reason
        assert rows[1].evaluation.status is Status.OK
        assert g.evaluation.status is Status.STALL
    finally:
        consumer.close()
    time.sleep(1.1)
    g = one(backend, group, history=history, rules=rules)
    assert g.state == "Empty" and g.members == []
    assert g.evaluation.status is Status.STOP
    assert g.evaluation.reason.startswith(f"{topic}/0: no commits for")


def test_unknown_group_is_not_found(kafka: str, unique: str) -> None:
    proc = run_qctl("lag", "-g", f"{unique}-nope", env={"QCTL_KAFKA_BOOTSTRAP": kafka})
    assert proc.returncode == 1
    assert f"no consumer group named '{unique}-nope'" in proc.stderr
    assert proc.stderr.count("\n") == 1
