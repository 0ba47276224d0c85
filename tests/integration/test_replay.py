"""`qctl replay` against the real brokers: windows, exactly-once resume, other targets, streams."""

from __future__ import annotations

import datetime as dt
import json
import time

import pika
import pytest

from qctl.jobs.store import JobStore
from tests.cli.test_root import run_qctl
from tests.integration.dlq_support import (
    KafkaTopics,
    RabbitSetup,
    fill_kafka,
    ids,
    kafka_end,
    kill_when,
    only_job,
    qctl_process,
    rabbit_ids,
    read_kafka,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_qctl")]


def plain(i: int) -> list[tuple[str, bytes]]:
    return [("event-type", b"OrderCreated" if i % 2 else b"OrderPaid"), ("seq", str(i).encode())]


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("wire", "workers"),
    [("1", "1"), ("1", "3"), ("0", "1")],
    ids=["wire-copier", "wire-copier-workers", "librdkafka-copier"],
)
def test_kafka_replay_is_exactly_once_across_kill_9(
    kafka: str,
    topics: KafkaTopics,
    unique: str,
    wire: str,
    workers: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both copiers: qctl's own protocol client (the default for a plain replay; in one
    process, and in worker processes) and librdkafka's transactional producer."""
    monkeypatch.setenv("QCTL_KAFKA_WIRE_COPY", wire)
    monkeypatch.setenv("QCTL_KAFKA_COPY_WORKERS", workers)
    source = topics.make(unique)
    target = topics.make(f"{unique}-copy")
    fill_kafka(kafka, source, 10_000, plain)
    original = {json.loads(m[1])["id"]: m for m in read_kafka(kafka, source)}
    proc = qctl_process("replay", f"kafka:{source}", "--to", f"kafka:{target}", "--rate", "2000")
    kill_when(proc, lambda: kafka_end(kafka, target) > 0, seed=4)
    job = only_job("replay")
    assert JobStore().display_state(JobStore().load(job)) == "killed"
    done = run_qctl("replay", "--resume", job, timeout=120)
    assert done.returncode == 0, done.stderr
    copies = read_kafka(kafka, target)
    assert ids(copies) == dict.fromkeys(range(10000), 1)
    for key, value, headers, _p, _o, ts in copies:
        i = json.loads(value)["id"]
        src = original[i]
        assert key == src[0] and ts == src[5]
        assert headers[:-1] == src[2]  # headers kept, in order
        name, position = headers[-1]
        assert name == "qctl-replayed-from"
        assert position == f"kafka:{source}/{src[3]}@{src[4]}".encode()


@pytest.mark.kafka
def test_window_where_limit_and_dry_run(kafka: str, topics: KafkaTopics, unique: str) -> None:
    source = topics.make(unique, partitions=1)
    target = topics.make(f"{unique}-copy", partitions=1)
    fill_kafka(kafka, source, 100, plain)
    time.sleep(1.2)
    middle = dt.datetime.now(dt.UTC)
    time.sleep(1.2)
    fill_kafka(kafka, source, 50, lambda i: plain(i + 100))
    dry = run_qctl(
        "replay",
        f"kafka:{source}",
        "--to",
        f"kafka:{target}",
        "--from",
        middle.isoformat(),
        "--dry-run",
        "-o",
        "json",
    )
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan[0]["start"] == 100 and plan[0]["end"] == 150 and plan[0]["messages"] == 50
    assert read_kafka(kafka, target) == []
    proc = run_qctl(
        "replay",
        f"kafka:{source}",
        "--to",
        f"kafka:{target}",
        "--from",
        "10",
        "--until",
        "60",
        "--where",
        "header.event-type == OrderCreated",
        "--limit",
        "20",
        "-o",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    got = ids(read_kafka(kafka, target))
    assert sorted(got) == [i for i in range(10, 60) if i % 2][:20]
    assert json.loads(proc.stdout)["counters"]["moved"] == 20


@pytest.mark.kafka
@pytest.mark.rabbitmq
def test_kafka_to_rabbitmq_keeps_headers_and_timestamps(
    kafka: str, topics: KafkaTopics, rabbit: RabbitSetup, unique: str
) -> None:
    source = topics.make(unique)
    fill_kafka(kafka, source, 300, plain)
    queue = rabbit.queue(f"{unique}.replayed")
    proc = run_qctl("replay", f"kafka:{source}", "--to", f"rabbitmq:queue/{queue}")
    assert proc.returncode == 0, proc.stderr
    bodies = rabbit.drain_bodies(queue)
    assert rabbit_ids(bodies) == dict.fromkeys(range(300), 1)
    props, _body = bodies[0]
    assert props.headers["event-type"] in ("OrderCreated", "OrderPaid")
    assert props.headers["qctl-replayed-from"].startswith(f"kafka:{source}/")
    assert props.timestamp is not None and abs(props.timestamp - time.time()) < 600


@pytest.mark.rabbitmq
def test_stream_replay_from_a_timestamp_is_exactly_what_came_after(
    rabbit: RabbitSetup, unique: str
) -> None:
    stream = rabbit.queue(f"{unique}.stream", **{"x-queue-type": "stream"})
    target = rabbit.queue(f"{unique}.target")
    ch = rabbit.channel()
    ch.confirm_delivery()

    def publish(start: int, n: int) -> None:
        for i in range(start, start + n):
            ch.basic_publish(
                "", stream, json.dumps({"id": i}).encode(), pika.BasicProperties(message_id=str(i))
            )

    publish(0, 40)
    time.sleep(1.5)
    cut = dt.datetime.now(dt.UTC)
    time.sleep(1.5)
    publish(40, 25)
    ch.connection.close()
    proc = run_qctl(
        "replay",
        f"rabbitmq:queue/{stream}",
        "--to",
        f"rabbitmq:queue/{target}",
        "--from",
        cut.isoformat(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    bodies = rabbit.drain_bodies(target)
    assert rabbit_ids(bodies) == dict.fromkeys(range(40, 65), 1)
    assert bodies[0][0].headers["qctl-replayed-from"].startswith(f"rabbitmq:queue/{stream}@")
    # A stream replay resumes from its recorded offset: a second run of a fresh job
    # over an offset window gives exactly that window.
    proc = run_qctl(
        "replay",
        f"rabbitmq:queue/{stream}",
        "--to",
        f"rabbitmq:queue/{target}",
        "--from",
        "5",
        "--until",
        "15",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert rabbit_ids(rabbit.drain_bodies(target)) == dict.fromkeys(range(5, 15), 1)
