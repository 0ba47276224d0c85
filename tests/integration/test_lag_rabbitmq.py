"""RabbitMQ queues in the lag view against the real node, rabbitmqctl as the oracle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from tests.cli.test_root import run_qctl
from tests.oracles import rabbitmqctl


@pytest.fixture
def channel(rabbitmq: str) -> Iterator[Any]:
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    ch = conn.channel()
    yield ch
    conn.close()


def lag_json(*args: str, rabbitmq: str) -> dict[str, Any]:
    proc = run_qctl(
        "lag", "-b", "rabbitmq", "-o", "json", *args, env={"QCTL_RABBITMQ_URL": rabbitmq}
    )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


class Publisher(threading.Thread):
    """Publishes ``rate`` messages a second until stopped."""

    def __init__(self, url: str, queue: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.queue, self.rate = url, queue, rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        ch = conn.channel()
        started = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                ch.basic_publish(
                    "", self.queue, b"x", pika.BasicProperties(timestamp=int(time.time()))
                )
                self.sent += 1
            conn.sleep(0.02)
        conn.close()


class SlowConsumer(threading.Thread):
    """Takes one message at a time and acknowledges it after ``delay`` seconds."""

    def __init__(self, url: str, queue: str, delay: float) -> None:
        super().__init__(daemon=True)
        self.url, self.queue, self.delay = url, queue, delay
        self.stop = threading.Event()
        self.acked = 0

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)
        for method, _props, _body in ch.consume(self.queue, inactivity_timeout=0.1):
            if self.stop.is_set():
                break
            if method is None:
                continue
            conn.sleep(self.delay)
            ch.basic_ack(method.delivery_tag)
            self.acked += 1
        ch.cancel()
        conn.close()


def oracle(queue: str) -> tuple[int, int, int]:
    out = rabbitmqctl(
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
    )
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1]), int(parts[2]), int(parts[3])
    raise AssertionError(f"{queue} not listed by rabbitmqctl")


def test_depth_and_rates_for_a_queue_with_a_slow_consumer(
    rabbitmq: str, channel: Any, unique: str
) -> None:
    queue = unique
    channel.queue_declare(queue)
    publisher = Publisher(rabbitmq, queue, rate=20)
    consumer = SlowConsumer(rabbitmq, queue, delay=0.2)
    publisher.start()
    consumer.start()
    try:
        time.sleep(10)  # two of the broker's 5 s statistics intervals of steady traffic
        samples = []
        for _ in range(3):  # one-shot runs keep their history in the state directory
            samples.append(lag_json("-q", queue, rabbitmq=rabbitmq)["queues"])
            time.sleep(2.5)
    finally:
        publisher.stop.set()
        consumer.stop.set()
        publisher.join(10)
        consumer.join(10)
    [q] = samples[-1]
    assert q["queue"] == queue and q["vhost"] == "/"
    assert q["consumers"] == 1 and q["unacked"] == 1
    assert q["ready"] > 50
    assert q["publish_rate"] == pytest.approx(20, rel=0.3)
    assert q["ack_rate"] == pytest.approx(5, abs=1.5)
    assert q["deliver_rate"] == pytest.approx(5, abs=1.5)
    assert 0 <= q["consumer_utilisation"] <= 1
    assert q["time_lag_seconds"] > 5 and q["time_lag_source"] == "head-message"
    ev = q["evaluation"]
    assert ev["trend"] == "increasing"
    assert ev["status"] == "WARN", ev["reason"]  # depth rose at every sample
    assert ev["eta_seconds"] is None  # consuming slower than producing: never drains
    assert ev["samples"] == 3

    # Quiet queue: once the broker's statistics catch up, depth agrees with rabbitmqctl.
    deadline = time.monotonic() + 15
    while True:
        [q] = lag_json("-q", queue, rabbitmq=rabbitmq)["queues"]
        expected = oracle(queue)
        if (q["ready"], q["unacked"], q["consumers"]) == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (q["ready"], q["unacked"], q["consumers"]) == expected
    assert q["depth"] == expected[0] + expected[1]
    channel.queue_delete(queue)


def test_dead_letter_queue_is_marked_and_its_inflow_warns(
    rabbitmq: str, channel: Any, unique: str
) -> None:
    dlx, work, parked = f"{unique}-dlx", f"{unique}-work", f"{unique}-parked"
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(parked)
    channel.queue_bind(parked, dlx)
    channel.queue_declare(work, arguments={"x-dead-letter-exchange": dlx})
    try:

        def reject(n: int) -> None:
            for _ in range(n):
                channel.basic_publish("", work, b"bad")
            for _ in range(n):
                method, _, _ = channel.basic_get(work)
                assert method is not None
                channel.basic_reject(method.delivery_tag, requeue=False)

        reject(5)
        first = {q["queue"]: q for q in lag_json("--all", rabbitmq=rabbitmq)["queues"]}
        assert first[parked]["dead_letter"] is True
        assert first[parked]["dead_letter_reason"] == (
            f"bound to dead-letter exchange '{dlx}' of queue '{work}'"
        )
        assert first[work]["dead_letter"] is False
        time.sleep(1.5)
        reject(10)
        deadline = time.monotonic() + 15
        while True:  # the broker's queue lengths trail by up to one statistics interval
            shown = {q["queue"]: q for q in lag_json("-q", parked, rabbitmq=rabbitmq)["queues"]}
            if shown[parked]["depth"] == 15 or time.monotonic() > deadline:
                break
            time.sleep(1)
        q = shown[parked]
        assert q["depth"] == 15
        assert q["inflow_rate"] > 0
        assert q["evaluation"]["status"] == "WARN"
        assert q["evaluation"]["reason"].startswith("dead letters arriving at")
    finally:
        channel.queue_delete(work)
        channel.queue_delete(parked)
        channel.exchange_delete(dlx)


def test_unknown_queue_is_not_found(rabbitmq: str, unique: str) -> None:
    proc = run_qctl("lag", "-q", unique, env={"QCTL_RABBITMQ_URL": rabbitmq})
    assert proc.returncode == 1
    assert f"no queue named '{unique}'" in proc.stderr
