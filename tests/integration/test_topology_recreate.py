"""--allow-recreate: a queue with immutable changes is migrated without losing a message."""

from __future__ import annotations

import time
from pathlib import Path

import pika

from tests.conftest import RABBITMQ_URL
from tests.integration.test_topology_support import (
    apply,
    plan,
    prefix,
    qctl,
    rabbit_queue,
    write,
)
from tests.oracles import rabbitmqctl

__all__ = ["prefix"]

MESSAGES = 10_000


def publish(exchange: str, routing_key: str, count: int, queue: str) -> None:
    """Publish ``count`` persistent messages and wait until ``queue`` holds them all."""
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as conn:
        channel = conn.channel()
        before = channel.queue_declare(queue, passive=True).method.message_count
        for seq in range(count):
            props = pika.BasicProperties(delivery_mode=2, headers={"seq": seq})
            channel.basic_publish(exchange, routing_key, f"message {seq}".encode(), props)
        deadline = time.monotonic() + 30
        while channel.queue_declare(queue, passive=True).method.message_count < before + count:
            assert time.monotonic() < deadline, "the broker did not take every message"
            time.sleep(0.1)


def queue_depth(name: str, expected: int) -> int:
    """The count rabbitmqctl reports, once it settles (quorum queue stats lag a little)."""
    deadline = time.monotonic() + 20
    while True:
        lines = rabbitmqctl("list_queues", "name", "messages", "--quiet", "--no-table-headers")
        counts = dict(line.split("\t") for line in lines.splitlines() if "\t" in line)
        count = int(counts[name])
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(1)


def read_all(queue: str) -> list[int]:
    """Every message's sequence number, in queue order (consumed and acknowledged)."""
    seqs: list[int] = []
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as conn:
        channel = conn.channel()
        channel.basic_qos(prefetch_count=1000)
        for method, props, _body in channel.consume(queue, inactivity_timeout=1):
            if method is None:
                break
            seqs.append(props.headers["seq"])
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    return seqs


def queue_file(tmp_path: Path, p: str, args: str) -> Path:
    return write(
        tmp_path,
        f"""\
        owner: {p.rstrip("-")}
        rabbitmq:
          exchanges:
            - {{name: {p}orders, type: topic}}
          queues:
            - name: {p}work
              {args}
          bindings:
            - {{source: {p}orders, destination: {p}work, routing_keys: [order.created, order.paid]}}
        """,
    )


def test_recreate_moves_10000_messages_and_keeps_bindings(tmp_path: Path, prefix: str) -> None:
    p = prefix
    path = queue_file(tmp_path, p, "message_ttl: 3600000")
    assert apply(path)[0] == 0
    publish(f"{p}orders", "order.created", MESSAGES, f"{p}work")
    before = queue_depth(f"{p}work", MESSAGES)
    assert before == MESSAGES

    changed = queue_file(tmp_path, p, "message_ttl: 7200000\n              max_length: 50000")
    refused = qctl("topology", "apply", str(changed), "--yes")
    assert refused.returncode == 1 and "--allow-recreate" in refused.stderr
    assert rabbit_queue(f"{p}work")["arguments"]["x-message-ttl"] == 3600000

    preview = plan(changed, "--allow-recreate")
    (change,) = preview["changes"]
    assert change["action"] == "recreate" and change["messages"] == MESSAGES

    start = time.monotonic()
    code, report, stderr = apply(changed, "--allow-recreate")
    elapsed = time.monotonic() - start
    assert code == 0, stderr
    (result,) = report["results"]
    details = result["details"]
    assert result["ok"] and report["verified"]
    assert details["messages_before"] == MESSAGES
    assert details["moved_out"] == MESSAGES and details["moved_back"] == MESSAGES
    assert details["messages_after"] == MESSAGES
    assert details["bindings"] == 2
    assert elapsed < 60

    # RabbitMQ's own count agrees; the queue has its new arguments; no temporary queue.
    assert queue_depth(f"{p}work", before) == before
    arguments = rabbit_queue(f"{p}work")["arguments"]
    assert arguments["x-message-ttl"] == 7200000 and arguments["x-max-length"] == 50000
    names = rabbitmqctl("list_queues", "name", "--quiet", "--no-table-headers").split()
    assert f"{p}work.qctl-migrate" not in names
    # Bindings were restored: new publishes on both keys still arrive.
    publish(f"{p}orders", "order.paid", 1, f"{p}work")
    publish(f"{p}orders", "order.created", 1, f"{p}work")
    seqs = read_all(f"{p}work")
    assert len(seqs) == MESSAGES + 2
    assert sorted(seqs[:MESSAGES]) == list(range(MESSAGES))  # every message, once
    assert seqs[:MESSAGES] == list(range(MESSAGES))  # and in the original order
    assert plan(changed)["changes"] == []


def test_classic_to_quorum_and_consumers_block_the_migration(tmp_path: Path, prefix: str) -> None:
    p = prefix
    path = queue_file(tmp_path, p, "max_length: 1000")
    assert apply(path)[0] == 0
    publish(f"{p}orders", "order.created", 500, f"{p}work")
    quorum = queue_file(tmp_path, p, "type: quorum\n              max_length: 1000")
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as conn:
        channel = conn.channel()
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(f"{p}work", lambda *_: None)
        code, report, _ = apply(quorum, "--allow-recreate")
        assert code == 1
        (result,) = report["results"]
        assert "consumer" in result["error"]
    code, report, stderr = apply(quorum, "--allow-recreate")
    assert code == 0, stderr
    queue = rabbit_queue(f"{p}work")
    assert queue["type"] == "quorum"
    assert report["results"][0]["details"]["messages_after"] == 500
    assert queue_depth(f"{p}work", 500) == 500
