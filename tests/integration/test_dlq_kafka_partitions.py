"""Which partition a redriven (or replayed) Kafka record lands in.

A record's key's other records sit where the original producer's partitioner put them:
murmur2 for Kafka's Java client, CRC32 (``consistent_random``) for every librdkafka
producer (Python, Go, .NET, kcat). Hashing the key again with one of them can put a
redriven record beside the wrong siblings, where it overtakes or trails them. The
original partition, which dead letters name in their provenance headers, is right
whatever the producer used: the redrive keeps it by default, and hashes keys only
where no partition is known, the partition no longer exists, or ``--by-key`` says so.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import Producer

from qctl.backends.kafka.copy.batches import murmur2
from tests.cli.test_root import run_qctl
from tests.integration.dlq_support import KafkaTopics, read_kafka

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.usefixtures("no_stray_qctl")]

PARTITIONS = 3
KEYS = 40
PER_KEY = 5


def produce_like_librdkafka(kafka: str, topic: str) -> dict[bytes, int]:
    """PER_KEY records of each of KEYS keys, placed by confluent-kafka's default
    partitioner (CRC32 of the key), as a Python service writes them; each key's
    partition."""
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5})
    for n in range(PER_KEY):
        for k in range(KEYS):
            producer.produce(topic, json.dumps({"n": n}).encode(), f"order-{k}".encode())
    assert producer.flush(30) == 0
    where: dict[bytes, set[int]] = defaultdict(set)
    for key, _v, _h, partition, _o, _t in read_kafka(kafka, topic):
        where[key].add(partition)
    assert all(len(p) == 1 for p in where.values())
    return {key: partitions.pop() for key, partitions in where.items()}


def dead_letter(
    kafka: str, dlq: str, origin: str, siblings: dict[bytes, int], partition: Any = "original"
) -> None:
    """One dead letter per key, as Spring Kafka writes it: the key, and the original
    topic and partition in ``kafka_dlt-*`` headers (``partition`` None: no partition
    header; an int: that partition, whatever the key's)."""
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5})
    for key, at in siblings.items():
        headers = [
            ("kafka_dlt-original-topic", origin.encode()),
            ("kafka_dlt-exception-message", b"card declined"),
        ]
        named = at if partition == "original" else partition
        if named is not None:
            headers.append(("kafka_dlt-original-partition", int(named).to_bytes(4, "big")))
        producer.produce(dlq, b'{"dead": true}', key, partition=0, headers=headers)
    assert producer.flush(30) == 0


def redriven(kafka: str, origin: str) -> dict[bytes, set[int]]:
    """The partitions of each key's redriven copy (the records with the loop guard)."""
    out: dict[bytes, set[int]] = defaultdict(set)
    for key, _v, headers, partition, _o, _t in read_kafka(kafka, origin):
        if any(name == "qctl-redrive-count" for name, _ in headers):
            out[key].add(partition)
    return out


def qctl(*args: str, env: dict[str, str] | None = None) -> Any:
    proc = run_qctl(*args, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize(
    ("how", "env"),
    [
        ("wire", {}),
        ("where", {}),
        ("librdkafka", {"QCTL_KAFKA_WIRE_COPY": "0"}),
    ],
)
def test_a_redrive_puts_each_record_back_beside_its_keys_siblings(
    kafka: str, topics: KafkaTopics, unique: str, how: str, env: dict[str, str]
) -> None:
    """Records produced with librdkafka's default partitioner (CRC32), dead-lettered
    with their original partition: every redriven record lands in the partition of
    its key's other records, whichever copy engine moves it. (Hashing the key with
    murmur2, as the redrive once did, puts about two in three elsewhere.)"""
    origin = topics.make(unique, PARTITIONS)
    dlq = topics.make(f"{unique}.dlq", 1)
    siblings = produce_like_librdkafka(kafka, origin)
    dead_letter(kafka, dlq, origin, siblings)
    where = ["--where", "key ~ order"] if how == "where" else []
    qctl("dlq", "redrive", f"kafka:{dlq}", *where, "--yes", env=env)
    landed = redriven(kafka, origin)
    assert set(landed) == set(siblings)
    astray = {key for key, at in landed.items() if at != {siblings[key]}}
    assert not astray, f"{len(astray)} of {KEYS} keys landed away from their siblings"


def test_by_key_uses_the_partitioner_asked_for(
    kafka: str, topics: KafkaTopics, unique: str
) -> None:
    """``--by-key`` places every record by its key even where its partition is known:
    with ``--partitioner crc32`` beside its siblings (CRC32 is what placed them), with
    the default murmur2 as Kafka's Java client would."""
    origin = topics.make(unique, PARTITIONS)
    dlq = topics.make(f"{unique}.dlq", 1)
    siblings = produce_like_librdkafka(kafka, origin)
    assert all(zlib.crc32(key) % PARTITIONS == at for key, at in siblings.items())
    dead_letter(kafka, dlq, origin, siblings)
    qctl("dlq", "redrive", f"kafka:{dlq}", "--by-key", "--partitioner", "crc32", "--yes")
    assert redriven(kafka, origin) == {key: {at} for key, at in siblings.items()}
    dlq2 = topics.make(f"{unique}.dlq2", 1)
    dead_letter(kafka, dlq2, origin, siblings)
    qctl("dlq", "redrive", f"kafka:{dlq2}", "--by-key", "--yes")
    by_murmur2 = {key: (murmur2(key) & 0x7FFFFFFF) % PARTITIONS for key in siblings}
    landed = redriven(kafka, origin)
    assert all(landed[key] == {siblings[key], by_murmur2[key]} for key in siblings)


def test_a_partition_that_is_gone_or_unknown_falls_back_to_the_key(
    kafka: str, topics: KafkaTopics, unique: str
) -> None:
    """A dead letter naming no partition, or one the origin does not have (7 of 3), is
    placed by its key; the dry run says which rule applies to how many records."""
    origin = topics.make(unique, PARTITIONS)
    dlq = topics.make(f"{unique}.dlq", 1)
    siblings = produce_like_librdkafka(kafka, origin)
    keys = sorted(siblings)
    dead_letter(kafka, dlq, origin, {k: siblings[k] for k in keys[:10]})
    dead_letter(kafka, dlq, origin, {k: siblings[k] for k in keys[10:25]}, partition=None)
    dead_letter(kafka, dlq, origin, {k: siblings[k] for k in keys[25:]}, partition=7)
    plan = json.loads(qctl("dlq", "redrive", f"kafka:{dlq}", "--dry-run", "-o", "json").stdout)
    counts = {row["action"]: row["count"] for row in plan}
    assert counts == {
        "redrive: original partition": 10,
        "redrive: by key (murmur2)": 15,
        "redrive: by key (murmur2), its partition 7 is gone": 15,
    }
    run = qctl("dlq", "redrive", f"kafka:{dlq}", "--yes")
    assert "no partition 7" in run.stderr
    landed = redriven(kafka, origin)
    for key in keys:
        expected = siblings[key] if key in keys[:10] else (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        assert landed[key] == {expected}, key


def test_a_replay_by_key_uses_the_partitioner_asked_for(
    kafka: str, topics: KafkaTopics, unique: str
) -> None:
    """``qctl replay --partitioner crc32`` places each record where librdkafka's default
    partitioner would (the source's own placement, for a source it wrote)."""
    source = topics.make(unique, PARTITIONS)
    target = topics.make(f"{unique}-copy", PARTITIONS)
    siblings = produce_like_librdkafka(kafka, source)
    qctl("replay", f"kafka:{source}", "--to", f"kafka:{target}", "--partitioner", "crc32", "--yes")
    where: dict[bytes, set[int]] = defaultdict(set)
    for key, _v, _h, partition, _o, _t in read_kafka(kafka, target):
        where[key].add(partition)
    assert where == {key: {at} for key, at in siblings.items()}
