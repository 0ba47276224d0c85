"""Building dead-letter queues on the real brokers, and reading what landed where.

Kafka DLQs are filled the way frameworks fill them (qctl's, Spring's and Kafka
Connect's headers); RabbitMQ DLQs are filled by the broker itself (a work queue with a
dead-letter exchange whose messages expire or are rejected), so they carry a real
``x-death``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from qctl.jobs.store import JobStore

REPO = Path(__file__).resolve().parent.parent.parent


# -- Kafka -----------------------------------------------------------------------------------
@dataclass
class KafkaTopics:
    bootstrap: str
    created: list[str] = field(default_factory=list)

    def make(self, name: str, partitions: int = 3) -> str:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(20)
        self.created.append(name)
        _wait_for_topic(admin, name)
        return name

    def delete(self, name: str) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        with contextlib.suppress(Exception):
            admin.delete_topics([name])[name].result(20)

    def cleanup(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [*self.created, *(f"{n}.parking" for n in self.created)]
        existing = set(admin.list_topics(timeout=10).topics)
        doomed = [n for n in names if n in existing]
        if doomed:
            for future in admin.delete_topics(doomed).values():
                with contextlib.suppress(Exception):
                    future.result(20)


def _wait_for_topic(admin: AdminClient, name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=5)
        if name in md.topics and md.topics[name].partitions:
            return
        time.sleep(0.1)


def qctl_dead_letter(origin: str, i: int, partition: int | None = None) -> list[tuple[str, bytes]]:
    headers = [
        ("qctl-original-topic", origin.encode()),
        ("qctl-original-offset", str(i).encode()),
        ("qctl-error-class", b"TimeoutError" if i % 2 else b"IllegalStateException"),
        ("qctl-failed-at", str(int(time.time() * 1000)).encode()),
    ]
    if partition is not None:
        headers.append(("qctl-original-partition", str(partition).encode()))
    return headers


def spring_dead_letter(origin: str, i: int) -> list[tuple[str, bytes]]:
    return [
        ("kafka_dlt-original-topic", origin.encode()),
        ("kafka_dlt-original-partition", (i % 3).to_bytes(4, "big")),
        ("kafka_dlt-original-offset", i.to_bytes(8, "big")),
        ("kafka_dlt-exception-fqcn", b"org.example.PaymentException"),
        ("kafka_dlt-exception-message", b"card declined"),
    ]


def connect_dead_letter(origin: str, i: int) -> list[tuple[str, bytes]]:
    return [
        ("__connect.errors.topic", origin.encode()),
        ("__connect.errors.partition", b"0"),
        ("__connect.errors.offset", str(i).encode()),
        ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
    ]


def fill_kafka(
    bootstrap: str,
    topic: str,
    n: int,
    headers: Callable[[int], list[tuple[str, bytes]]],
    partition_of: Callable[[int], int] | None = None,
) -> None:
    """``n`` messages ``{"id": i}`` keyed ``k<i>``."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for i in range(n):
        kw: dict[str, Any] = {"headers": headers(i)}
        if partition_of is not None:
            kw["partition"] = partition_of(i)
        while True:
            try:
                producer.produce(topic, json.dumps({"id": i}).encode(), f"k{i}".encode(), **kw)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def read_kafka(
    bootstrap: str, topic: str, isolation: str = "read_committed", timeout: float = 30
) -> list[Any]:
    """Every message of ``topic`` as (key, value, headers, partition, offset, timestamp)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"qctl-test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
        }
    )
    md = consumer.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out = []
    eof: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(eof) < len(parts) and time.monotonic() < deadline:
            for m in consumer.consume(5000, 0.5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        eof.add(m.partition())
                    continue
                eof.discard(m.partition())
                out.append(
                    (
                        m.key(),
                        m.value(),
                        m.headers() or [],
                        m.partition(),
                        m.offset(),
                        m.timestamp()[1],
                    )
                )
    finally:
        consumer.close()
    return out


def kafka_end(bootstrap: str, topic: str) -> int:
    """Sum of the partitions' high watermarks (grows with uncommitted writes too)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "qctl-test-probe"})
    try:
        md = consumer.list_topics(topic, timeout=10)
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in md.topics[topic].partitions
        )
    finally:
        consumer.close()


def ids(messages: list[Any]) -> Counter[int]:
    return Counter(json.loads(m[1])["id"] for m in messages)


# -- RabbitMQ --------------------------------------------------------------------------------
@dataclass
class RabbitSetup:
    url: str
    prefix: str
    queues: list[str] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)

    def channel(self) -> Any:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        return conn.channel()

    def pipeline(
        self, quorum_dlq: bool = False, delivery_limit: int | None = None
    ) -> dict[str, str]:
        """``<p>.orders`` (topic exchange) → ``<p>.work`` (bound to order.*), which
        dead-letters through ``<p>.dlx`` into ``<p>.dlq``."""
        p = self.prefix
        ch = self.channel()
        ch.exchange_declare(f"{p}.orders", "topic", durable=True)
        ch.exchange_declare(f"{p}.dlx", "fanout", durable=True)
        self.exchanges += [f"{p}.orders", f"{p}.dlx"]
        ch.queue_declare(
            f"{p}.work", durable=True, arguments={"x-dead-letter-exchange": f"{p}.dlx"}
        )
        ch.queue_bind(f"{p}.work", f"{p}.orders", "order.*")
        dlq_args: dict[str, Any] = {}
        if quorum_dlq:
            dlq_args["x-queue-type"] = "quorum"
        if delivery_limit is not None:
            dlq_args["x-delivery-limit"] = delivery_limit
        ch.queue_declare(f"{p}.dlq", durable=True, arguments=dlq_args or None)
        ch.queue_bind(f"{p}.dlq", f"{p}.dlx", "")
        ch.queue_declare(
            f"{p}.expire",
            durable=True,
            arguments={
                "x-dead-letter-exchange": f"{p}.dlx",
                "x-message-ttl": 0,
            },
        )
        self.queues += [f"{p}.work", f"{p}.dlq", f"{p}.expire", f"{p}.dlq.parking"]
        ch.connection.close()
        return {"exchange": f"{p}.orders", "work": f"{p}.work", "dlq": f"{p}.dlq"}

    def queue(self, name: str, **arguments: Any) -> str:
        ch = self.channel()
        ch.queue_declare(name, durable=True, arguments=arguments or None)
        ch.connection.close()
        self.queues.append(name)
        return name

    def dead_letter_by_rejection(self, n: int, start: int = 0) -> None:
        """Publish ``n`` messages to the pipeline and reject them from the work queue."""
        p = self.prefix
        ch = self.channel()
        ch.confirm_delivery()
        for i in range(start, start + n):
            ch.basic_publish(
                f"{p}.orders",
                "order.created",
                json.dumps({"id": i}).encode(),
                pika.BasicProperties(
                    delivery_mode=2, message_id=str(i), content_type="application/json"
                ),
            )
        done = 0
        while done < n:
            method, _props, _body = ch.basic_get(f"{p}.work")
            if method is None:
                time.sleep(0.05)
                continue
            ch.basic_reject(method.delivery_tag, requeue=False)
            done += 1
        ch.connection.close()

    def dead_letter_by_expiry(self, n: int, start: int = 0) -> None:
        """Bulk: messages to a queue with a zero TTL expire straight into the DLQ."""
        from qctl.backends.rabbitmq.amqp.publisher import ConfirmingPublisher, Publication

        p = self.prefix
        pubs = (
            Publication(
                "",
                f"{p}.expire",
                json.dumps({"id": i}).encode(),
                pika.BasicProperties(delivery_mode=2, message_id=str(i)),
            )
            for i in range(start, start + n)
        )
        stats = ConfirmingPublisher(pika.URLParameters(self.url), window=1000).run(pubs)
        assert stats.confirmed == n

    def count(self, queue: str) -> int:
        ch = self.channel()
        try:
            return int(ch.queue_declare(queue, passive=True).method.message_count)
        finally:
            ch.connection.close()

    def wait_count(self, queue: str, expected: int, within: float = 20) -> int:
        deadline = time.monotonic() + within
        while True:
            got = self.count(queue)
            if got == expected or time.monotonic() > deadline:
                return got
            time.sleep(0.2)

    def drain_bodies(self, queue: str) -> list[tuple[Any, bytes]]:
        """Take every message of ``queue`` (properties, body)."""
        ch = self.channel()
        out = []
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            out.append((props, body))
        ch.connection.close()
        return out

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            ch = self.channel()
            for q in self.queues:
                with contextlib.suppress(Exception):
                    ch.queue_delete(q)
            for e in self.exchanges:
                with contextlib.suppress(Exception):
                    ch.exchange_delete(e)
            ch.connection.close()


def rabbit_ids(bodies: list[tuple[Any, bytes]]) -> Counter[int]:
    return Counter(json.loads(b)["id"] for _, b in bodies)


# -- running qctl ------------------------------------------------------------------------------
#: Every qctl started in the background; tests/conftest-style cleanup kills leftovers.
STARTED: list[subprocess.Popen[str]] = []


def kill_leftovers() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def qctl_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "qctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    STARTED.append(proc)
    return proc


def kill_when(
    proc: subprocess.Popen[str], progressed: Callable[[], bool], seed: int, within: float = 60
) -> None:
    """SIGKILL ``proc`` at a random moment after ``progressed()`` first holds."""
    deadline = time.monotonic() + within
    while not progressed():
        assert proc.poll() is None, f"qctl ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 0.6))
    assert proc.poll() is None, "qctl finished before the kill; slow it down with --rate"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def only_job(kind: str) -> str:
    jobs = JobStore().jobs((kind,))
    assert len(jobs) == 1, [j.id for j in jobs]
    return jobs[0].id


def wait_for(condition: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def jobs_dir() -> Iterator[Path]:
    yield JobStore().root
