"""Identical bodies with mixed routability, for every mover that confirms before it
acknowledges a source (or reports a failure).

A ``basic.return`` names no publish: only its exchange, routing key, properties and
body. The messages here all have the same body and are routed by a header (a headers
exchange, one binding per tenant), and one tenant's binding is removed after the
messages died: half of every run is unroutable. Each message carries its number in
header ``n``; the broker is asked afterwards where every number is: the routed ones
in their queue once, the unroutable ones still in the DLQ (or named in the report),
none lost, none doubled.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from qctl.jobs.store import JobStore
from qctl.messages import Message
from tests.cli.test_root import run_qctl
from tests.fixtures.tcp_proxy import TcpProxy
from tests.integration.dlq_support import KafkaTopics, RabbitSetup, only_job
from tests.integration.test_topology_support import apply, prefix, write

__all__ = ["prefix"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.rabbitmq,
    pytest.mark.usefixtures("no_stray_qctl"),
]

N = 400
BODY = b'{"order": "the same for every tenant"}'
ROUTING_KEY = "tenant.order"


@dataclass
class Tenants:
    """A headers exchange routing ``tenant=a`` to queue ``a`` and ``tenant=b`` to
    ``b``; both dead-letter into ``dlq``."""

    exchange: str
    a: str
    b: str
    dlq: str
    binding: dict[str, Any]


def tenants(rabbit: RabbitSetup, value: Any = "a", other: Any = "b") -> Tenants:
    p = rabbit.prefix
    ch = rabbit.channel()
    exchange, dlx = f"{p}.tenants", f"{p}.dlx"
    ch.exchange_declare(exchange, "headers", durable=True)
    ch.exchange_declare(dlx, "fanout", durable=True)
    rabbit.exchanges += [exchange, dlx]
    names = {}
    for name, tenant in (("a", value), ("b", other)):
        queue = f"{p}.{name}"
        ch.queue_declare(queue, durable=True, arguments={"x-dead-letter-exchange": dlx})
        ch.queue_bind(queue, exchange, "", arguments={"x-match": "all", "tenant": tenant})
        names[name] = queue
    dlq = f"{p}.dlq"
    ch.queue_declare(dlq, durable=True)
    ch.queue_bind(dlq, dlx, "")
    rabbit.queues += [names["a"], names["b"], dlq, f"{dlq}.parking"]
    ch.connection.close()
    binding = {"x-match": "all", "tenant": other}
    return Tenants(exchange, names["a"], names["b"], dlq, binding)


def unbind_b(rabbit: RabbitSetup, t: Tenants) -> None:
    ch = rabbit.channel()
    ch.queue_unbind(t.b, t.exchange, "", arguments=t.binding)
    ch.connection.close()


def failures(job: Any) -> list[dict[str, Any]]:
    """The messages a job's ledger names as failed."""
    ledger = JobStore().read_ledger(job)
    return [e for e in ledger if e.get("event") == "failed" and "source" in e]


def tenant_of(n: int) -> str:
    return "a" if n % 2 == 0 else "b"


def dead_letters(rabbit: RabbitSetup, t: Tenants) -> None:
    """N messages with the same body, tenants alternating, dead-lettered by rejection
    in publishing order (so the DLQ alternates too); then tenant b's binding goes."""
    ch = rabbit.channel()
    ch.confirm_delivery()
    for n in range(N):
        props = pika.BasicProperties(headers={"tenant": tenant_of(n), "n": n}, delivery_mode=2)
        ch.basic_publish(t.exchange, ROUTING_KEY, BODY, props, mandatory=True)
    for _ in range(N // 2):
        for queue in (t.a, t.b):
            while True:
                method, _props, _body = ch.basic_get(queue)
                if method is not None:
                    break
                time.sleep(0.02)
            ch.basic_reject(method.delivery_tag, requeue=False)
    ch.connection.close()
    assert rabbit.wait_count(t.dlq, N) == N
    unbind_b(rabbit, t)


def numbers(rabbit: RabbitSetup, queue: str) -> Counter[int]:
    """Every message of ``queue`` taken, counted by its header ``n``."""
    got: Counter[int] = Counter()
    for props, body in rabbit.drain_bodies(queue):
        assert body == BODY
        got[int(props.headers["n"])] += 1
    return got


EVEN = Counter(dict.fromkeys(range(0, N, 2), 1))
ODD = Counter(dict.fromkeys(range(1, N, 2), 1))


def assert_exactly_where_they_belong(rabbit: RabbitSetup, t: Tenants) -> None:
    assert numbers(rabbit, t.a) == EVEN  # every routed one once, none kept back
    assert rabbit.count(t.b) == 0
    assert numbers(rabbit, t.dlq) == ODD  # every unroutable one still there, once


@pytest.mark.parametrize(
    ("path", "extra", "env"),
    [
        ("wire", (), {}),
        ("where", ("--where", "exists header.tenant"), {}),
        ("generic", (), {"QCTL_RABBITMQ_WIRE_MOVE": "0"}),
    ],
)
def test_redrive_keeps_exactly_the_unroutable_dead_letters(
    rabbit: RabbitSetup, path: str, extra: tuple[str, ...], env: dict[str, str]
) -> None:
    """The wire loop (no selection), the generic mover (``--where``), and the generic
    mover on its own: the routed half lands once, the unroutable half stays."""
    t = tenants(rabbit)
    dead_letters(rabbit, t)
    proc = run_qctl(
        "dlq", "redrive", f"rabbitmq:queue/{t.dlq}", "--yes", "-o", "json", *extra, env=env
    )
    assert proc.returncode == 4, proc.stderr  # partial: the unroutable half stays
    assert "Traceback" not in proc.stderr
    counters = json.loads(proc.stdout)["counters"]
    assert counters["moved"] == N // 2 and counters["failed"] == N // 2, counters
    assert_exactly_where_they_belong(rabbit, t)
    reasons = Counter(e["reason"] for e in failures(JobStore().load(only_job("redrive"))))
    assert sum(reasons.values()) == N // 2 and all("NO_ROUTE" in r for r in reasons), reasons


def test_produce_names_exactly_the_unroutable_messages(rabbit: RabbitSetup, tmp_path: Path) -> None:
    t = tenants(rabbit)
    unbind_b(rabbit, t)
    source = tmp_path / "orders.jsonl"
    source.write_text(
        "".join(
            Message(BODY, headers=[("tenant", tenant_of(n)), ("n", n)]).to_line() + "\n"
            for n in range(N)
        )
    )
    proc = run_qctl(
        "produce",
        f"rabbitmq:exchange/{t.exchange}",
        "--routing-key",
        ROUTING_KEY,
        "--file",
        str(source),
        "-o",
        "json",
        "--yes",
    )
    assert proc.returncode == 4, proc.stderr
    report = json.loads(proc.stdout)
    assert report["sent"] == N // 2 and report["failed"] == N // 2, report
    # Message k of the input (1-based) is line k: tenant b are the even numbers.
    named = sorted(f["message"] for f in report["failures"])
    assert named == list(range(2, N + 1, 2)), named[:10]
    assert all("NO_ROUTE" in f["reason"] for f in report["failures"])
    assert numbers(rabbit, t.a) == EVEN
    assert rabbit.count(t.b) == 0


@pytest.mark.kafka
def test_replay_to_rabbitmq_stops_before_the_first_unroutable(
    kafka: str, topics: KafkaTopics, rabbit: RabbitSetup, unique: str
) -> None:
    """A Kafka topic replayed into the headers exchange (Kafka header values arrive as
    AMQP byte strings, so the bindings match bytes). A log's position cannot skip a
    message: it stays before the first unroutable one, and the failures named are
    exactly the unroutable offsets."""
    t = tenants(rabbit, b"a", b"b")
    unbind_b(rabbit, t)
    topic = topics.make(unique, partitions=1)
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5})
    for n in range(N):
        headers = [("tenant", tenant_of(n).encode()), ("n", str(n).encode())]
        producer.produce(topic, BODY, headers=headers, partition=0)
    assert producer.flush(30) == 0
    proc = run_qctl(
        "replay",
        f"kafka:{topic}",
        "--to",
        f"rabbitmq:exchange/{t.exchange}",
        "--routing-key",
        ROUTING_KEY,
        "--yes",
        timeout=120,
    )
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    job = JobStore().load(only_job("replay"))
    failed = [
        e for e in JobStore().read_ledger(job) if e.get("event") == "failed" and "source" in e
    ]
    offsets = sorted(int(e["source"].rsplit("@", 1)[1]) for e in failed)
    assert offsets == list(range(1, N, 2)), offsets[:10]
    got: Counter[int] = Counter()
    for props, body in rabbit.drain_bodies(t.a):
        assert body == BODY
        got[int(props.headers["n"])] += 1
    assert got == EVEN  # every message was published once; the routed half arrived
    assert committed(kafka, f"qctl.replay.{job.id}", topic) == 1


def committed(kafka: str, group: str, topic: str) -> int | None:
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return None if tp.offset < 0 else int(tp.offset)
    finally:
        consumer.close()


# -- queue migration -----------------------------------------------------------------------
def fill(rabbit: RabbitSetup, queue: str, n: int) -> None:
    ch = rabbit.channel()
    for i in range(n):
        props = pika.BasicProperties(headers={"n": i}, delivery_mode=2)
        ch.basic_publish("", queue, BODY, props)
    ch.connection.close()
    assert rabbit.wait_count(queue, n) == n


class Watcher:
    """Consumes ``queue`` (auto-ack) in a thread, counting every number it sees."""

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        self.seen: Counter[int] = Counter()
        self.last = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        ch = conn.channel()

        def on_message(_ch: Any, _method: Any, props: Any, _body: bytes) -> None:
            self.seen[int(props.headers["n"])] += 1
            self.last = time.monotonic()

        ch.basic_consume(self.queue, on_message, auto_ack=True)
        while not self.done.is_set():
            conn.process_data_events(time_limit=0.02)
        conn.close()

    def quiet_for(self, seconds: float) -> bool:
        return time.monotonic() - self.last >= seconds


def rabbit_backend(url: str) -> Any:
    from qctl.backends.base import BackendConfig
    from qctl.backends.rabbitmq.backend import RabbitMQBackend
    from tests.conftest import RABBITMQ_MANAGEMENT

    settings = {"url": url, "management_url": RABBITMQ_MANAGEMENT}
    return RabbitMQBackend(BackendConfig("test", settings, timeout=10.0))


def test_queue_migration_move_stops_at_a_return_and_loses_nothing(
    rabbit: RabbitSetup, tcp_proxy: Callable[[str], TcpProxy]
) -> None:
    """The move a migration makes (``topology_move_messages``) while its target is
    deleted: qctl's connections go through a proxy, which holds them while the test
    deletes the (momentarily empty) target, so every copy the broker took was consumed
    and every later one is returned. The move stops with an error naming both queues;
    the returned copies stay in the source; moving again finishes the job."""
    from qctl.errors import QctlError

    source = rabbit.queue(f"{rabbit.prefix}.old")
    target = rabbit.queue(f"{rabbit.prefix}.new")
    total = 3000
    fill(rabbit, source, total)
    proxy = tcp_proxy("127.0.0.1:5672")
    backend = rabbit_backend(f"amqp://guest:guest@{proxy.address}/")
    watcher = Watcher(rabbit.url, target)
    failure: list[BaseException] = []

    def move() -> None:
        try:
            backend.topology_move_messages(None, source, target, None)
        except BaseException as exc:
            failure.append(exc)

    mover = threading.Thread(target=move, daemon=True)
    mover.start()
    deadline = time.monotonic() + 60
    while sum(watcher.seen.values()) < 300:
        assert time.monotonic() < deadline and mover.is_alive(), failure
        time.sleep(0.001)
    proxy.pause()  # nothing more reaches the broker; what did is consumed
    while not watcher.quiet_for(0.5) or rabbit.count(target) != 0:
        time.sleep(0.05)
    ch = rabbit.channel()
    ch.queue_delete(target, if_empty=True)
    ch.connection.close()
    proxy.resume()
    mover.join(60)
    watcher.done.set()
    watcher.thread.join(10)
    backend.close()
    assert len(failure) == 1 and isinstance(failure[0], QctlError), failure
    message = str(failure[0])
    assert source in message and target in message and "NO_ROUTE" in message, message
    assert "\n" not in message
    seen = watcher.seen
    assert rabbit.count(source) > 0  # it stopped: the rest waits in the source
    # Moving again, into the queue declared anew, finishes the job.
    rabbit.queue(target)
    direct = rabbit_backend(rabbit.url)
    moved = direct.topology_move_messages(None, source, target, None)
    direct.close()
    assert rabbit.count(source) == 0
    later = numbers(rabbit, target)
    assert moved == sum(later.values())
    assert max(later.values()) == 1 and max(seen.values()) == 1
    assert set(later) | set(seen) == set(range(total))  # nothing lost
    assert len(set(later) & set(seen)) <= 2000  # doubled: at most the move's window


def test_topology_apply_recreates_a_queue_of_identical_messages(
    rabbit: RabbitSetup, tmp_path: Path, prefix: str
) -> None:
    """``topology apply --allow-recreate`` moves a backlog of identical bodies out and
    back (one confirm round trip each: no two identical copies are unconfirmed at
    once): every message is in the recreated queue exactly once."""
    queue = f"{prefix}work"

    def spec(args: str) -> Path:
        return write(
            tmp_path,
            f"""\
            owner: {prefix.rstrip("-")}
            rabbitmq:
              queues:
                - name: {queue}
                  {args}
            """,
        )

    assert apply(spec("message_ttl: 3600000"))[0] == 0
    fill(rabbit, queue, 500)
    code, _report, stderr = apply(spec("message_ttl: 7200000"), "--allow-recreate")
    assert code == 0, stderr
    assert numbers(rabbit, queue) == Counter(dict.fromkeys(range(500), 1))
