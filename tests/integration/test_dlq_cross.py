"""Redrives across brokers (at-least-once): a Kafka DLQ into a RabbitMQ queue, a RabbitMQ
DLQ into a Kafka topic."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_root import run_qctl
from tests.integration.dlq_support import (
    KafkaTopics,
    RabbitSetup,
    fill_kafka,
    ids,
    qctl_dead_letter,
    rabbit_ids,
    read_kafka,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.rabbitmq]


def test_kafka_dlq_into_a_queue_keeps_the_unselected(
    kafka: str, topics: KafkaTopics, rabbit: RabbitSetup, unique: str
) -> None:
    dlq = topics.make(f"{unique}.dlq")
    fill_kafka(kafka, dlq, 60, lambda i: qctl_dead_letter("orders", i))
    queue = rabbit.queue(f"{unique}.q")
    proc = run_qctl(
        "dlq",
        "redrive",
        f"kafka:{dlq}",
        "--to",
        f"rabbitmq:queue/{queue}",
        "--where",
        "header.qctl-error-class == TimeoutError",
        "--yes",
        "-o",
        "json",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    assert job["guarantee"] == "at-least-once"
    assert job["counters"]["moved"] == 30 and job["counters"]["kept"] == 30
    bodies = rabbit.drain_bodies(queue)
    assert sorted(rabbit_ids(bodies)) == [i for i in range(60) if i % 2]
    assert bodies[0][0].headers["qctl-redrive-count"] == "1"
    # The others stay: written back after the group's position, unchanged.
    left = run_qctl("dlq", "peek", f"kafka:{dlq}", "--max", "100", "-o", "jsonl")
    stay = [json.loads(line) for line in left.stdout.splitlines()]
    assert sorted(json.loads(s["value"])["id"] for s in stay) == [
        i for i in range(60) if i % 2 == 0
    ]
    assert all(s["provenance"]["redrive_count"] == 0 for s in stay)


def test_rabbitmq_dlq_into_a_topic(
    kafka: str, topics: KafkaTopics, rabbit: RabbitSetup, unique: str
) -> None:
    names = rabbit.pipeline()
    rabbit.dead_letter_by_rejection(40)
    topic = topics.make(f"{unique}-from-rabbit")
    proc = run_qctl(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"kafka:{topic}",
        "--yes",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert rabbit.count(names["dlq"]) == 0
    got = read_kafka(kafka, topic)
    assert ids(got) == dict.fromkeys(range(40), 1)
    headers = dict(got[0][2])
    assert headers["qctl-redrive-count"] == b"1"
    assert b"rejected" in headers["x-death"]  # provenance kept, as text
