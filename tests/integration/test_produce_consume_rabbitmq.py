"""`qctl produce` / `qctl consume` against the real RabbitMQ node.

rabbitmqctl is the oracle for what stays in a queue.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from qctl.messages import Message
from tests.cli.test_root import run_qctl
from tests.oracles import rabbitmqctl

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


@pytest.fixture
def channel(rabbitmq: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    yield conn.channel()
    conn.close()


@pytest.fixture
def cleanup(rabbitmq: str) -> Iterator[list[tuple[str, str]]]:
    made: list[tuple[str, str]] = []
    yield made
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    ch = conn.channel()
    for kind, name in made:
        if kind == "queue":
            ch.queue_delete(name)
        else:
            ch.exchange_delete(name)
    conn.close()


def queue(ch: object, cleanup: list[tuple[str, str]], name: str, **args: object) -> str:
    ch.queue_declare(name, durable=True, arguments=args or None)  # type: ignore[attr-defined]
    cleanup.append(("queue", name))
    return name


def ready(name: str) -> int:
    """Messages ready in a queue (a passive declare: quick, exact once nothing is unacked)."""
    conn = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/"))
    try:
        return int(conn.channel().queue_declare(name, passive=True).method.message_count)
    finally:
        conn.close()


def depth(name: str) -> int:
    """rabbitmqctl's message count: the oracle."""
    out = rabbitmqctl("list_queues", "name", "messages", "--no-table-headers", "--quiet")
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] == name:
            return int(cols[1])
    raise AssertionError(f"queue {name} not listed")


def settled_depth(name: str, expected: int, within: float = 15.0) -> int:
    """rabbitmqctl's count once it shows ``expected`` (quorum queue stats lag a little)."""
    deadline = time.monotonic() + within
    while True:
        current = depth(name)
        if current == expected or time.monotonic() > deadline:
            return current
        time.sleep(0.5)


def consume_jsonl(*args: str) -> list[Message]:
    proc = run_qctl("consume", *args, "-o", "jsonl", timeout=180)
    assert proc.returncode == 0, proc.stderr
    return [Message.from_line(line) for line in proc.stdout.splitlines()]


def typed_headers(rng: random.Random, i: int) -> list[tuple[str, object]]:
    """Every AMQP field type qctl promises to carry."""
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randint(0, 10**7))
    return [
        ("text", f"n-{i} ü"),
        ("bytes", rng.randbytes(rng.randint(0, 12))),
        ("int", rng.randint(-(2**40), 2**40)),
        ("bool", bool(i % 2)),
        ("none", None),
        ("decimal", decimal.Decimal(rng.randint(-99999, 99999)) / 100),
        ("when", stamp),
        ("table", {"count": i, "nested": {"deep": [1, "two", b"\x03"]}}),
        (
            "x-death",
            [
                {
                    "count": 2,
                    "reason": "rejected",
                    "queue": "q",
                    "time": stamp,
                    "exchange": "",
                    "routing-keys": ["q"],
                }
            ],
        ),
    ]


def same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_round_trip_of_10000_messages_with_typed_headers_is_exact(
    channel: object, cleanup: list[tuple[str, str]], unique: str, tmp_path: Path
) -> None:
    first = queue(channel, cleanup, f"{unique}-a")
    second = queue(channel, cleanup, f"{unique}-b")
    rng = random.Random(9)
    originals = []
    for i in range(10_000):
        props: dict[str, object] = {"delivery_mode": 2, "message_id": f"m{i}"}
        if i % 3 == 0:
            props.update(
                content_type="application/octet-stream",
                priority=i % 10,
                correlation_id=f"c{i}",
                timestamp=1767225600 + i,
                type="Binary",
                app_id="test",
                expiration="600000",
                reply_to="r",
                content_encoding="identity",
            )
        originals.append(
            Message(
                rng.randbytes(rng.randint(0, 200)), None, typed_headers(rng, i), properties=props
            )
        )
    archive = tmp_path / "in.jsonl"
    archive.write_text("".join(m.to_line() + "\n" for m in originals))
    proc = run_qctl("produce", f"rabbitmq:queue/{first}", "--file", str(archive), timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "sent 10000, failed 0" in proc.stderr
    assert depth(first) == 10_000

    qctl = f"{sys.executable} -m qctl"
    pipe = subprocess.run(
        f"{qctl} consume rabbitmq:queue/{first} --ack -o jsonl | "
        f"{qctl} produce rabbitmq:queue/{second} --format jsonl",
        shell=True,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert pipe.returncode == 0, pipe.stderr
    assert ready(first) == 0
    copied = consume_jsonl(f"rabbitmq:queue/{second}", "--ack")
    assert len(copied) == 10_000
    for want, got in zip(originals, copied, strict=True):
        assert got.value == want.value
        assert got.properties == want.properties
        assert got.routing_key == second
        assert [k for k, _ in got.headers] == [k for k, _ in want.headers]
        for (name, a), (_, b) in zip(got.headers, want.headers, strict=True):
            assert same(a, b), (name, a, b)
    assert depth(second) == 0


def test_peek_leaves_messages_in_order_and_ack_takes_them(
    channel: object, cleanup: list[tuple[str, str]], unique: str
) -> None:
    name = queue(channel, cleanup, unique)
    proc = run_qctl(
        "produce",
        f"rabbitmq:queue/{name}",
        "--template",
        "payment-failed",
        "--count",
        "5",
        "--seed",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    first = consume_jsonl(f"rabbitmq:queue/{name}")
    second = consume_jsonl(f"rabbitmq:queue/{name}", "--max", "3")
    assert len(first) == 5
    assert [m.value for m in second] == [m.value for m in first[:3]]
    assert depth(name) == 5, "a peek removes nothing"
    some = consume_jsonl(f"rabbitmq:queue/{name}", "--ack", "--max", "2")
    assert [m.value for m in some] == [m.value for m in first[:2]]
    assert ready(name) == 3
    rest = consume_jsonl(f"rabbitmq:queue/{name}", "--ack")
    assert [m.value for m in rest] == [m.value for m in first[2:]]
    assert depth(name) == 0


def test_ack_with_a_filter_takes_only_the_matches(
    channel: object, cleanup: list[tuple[str, str]], unique: str, tmp_path: Path
) -> None:
    name = queue(channel, cleanup, unique)
    lines = tmp_path / "n.txt"
    lines.write_text("".join(f'{{"n": {i}}}\n' for i in (0, 3, 1, 4, 2, 5)))
    run_qctl("produce", f"rabbitmq:queue/{name}", "--file", str(lines))
    taken = consume_jsonl(f"rabbitmq:queue/{name}", "--ack", "--where", "value.n >= 3")
    assert [m.json_value()["n"] for m in taken] == [3, 4, 5]
    assert ready(name) == 3
    left = consume_jsonl(f"rabbitmq:queue/{name}")
    assert [m.json_value()["n"] for m in left] == [0, 1, 2]


def test_unroutable_messages_are_failures(
    channel: object, cleanup: list[tuple[str, str]], unique: str, tmp_path: Path
) -> None:
    bound = queue(channel, cleanup, unique)
    exchange = f"{unique}-x"
    channel.exchange_declare(exchange, "topic", durable=True)  # type: ignore[attr-defined]
    cleanup.append(("exchange", exchange))
    channel.queue_bind(bound, exchange, "order.*")  # type: ignore[attr-defined]
    proc = run_qctl("produce", f"rabbitmq:exchange/{exchange}", "x", "--routing-key", "nope")
    assert proc.returncode == 1
    assert "sent 0, failed 1" in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("qctl: error: all 1 messages failed: unroutable: 312 NO_ROUTE")
    )
    # Without --routing-key each message's key routes it: two land, one is returned.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        "".join(
            Message(f"v{i}".encode(), key.encode()).to_line() + "\n"
            for i, key in enumerate(["order.created", "payment.done", "order.paid"])
        )
    )
    proc = run_qctl("produce", f"rabbitmq:exchange/{exchange}", "--file", str(mixed))
    assert proc.returncode == 4, proc.stderr
    assert "sent 2, failed 1" in proc.stderr
    assert [m.value for m in consume_jsonl(f"rabbitmq:queue/{bound}")] == [b"v0", b"v2"]
    # --no-mandatory drops silently, as the broker does by default.
    proc = run_qctl(
        "produce", f"rabbitmq:exchange/{exchange}", "x", "--routing-key", "nope", "--no-mandatory"
    )
    assert proc.returncode == 0 and "sent 1, failed 0" in proc.stderr


def test_stream_queue_positions(
    channel: object, cleanup: list[tuple[str, str]], unique: str, tmp_path: Path
) -> None:
    name = queue(channel, cleanup, unique, **{"x-queue-type": "stream"})
    lines = tmp_path / "s.txt"
    lines.write_text("".join(f"s{i}\n" for i in range(10)))
    assert run_qctl("produce", f"rabbitmq:queue/{name}", "--file", str(lines)).returncode == 0
    everything = consume_jsonl(f"rabbitmq:queue/{name}")
    assert [m.value for m in everything] == [f"s{i}".encode() for i in range(10)]
    assert [m.offset for m in everything] == list(range(10))
    assert [m.offset for m in consume_jsonl(f"rabbitmq:queue/{name}", "--from", "6")] == [
        6,
        7,
        8,
        9,
    ]
    window = consume_jsonl(f"rabbitmq:queue/{name}", "--from", "2", "--until", "5")
    assert [m.offset for m in window] == [2, 3, 4]
    assert consume_jsonl(f"rabbitmq:queue/{name}", "--from", "next") == []
    assert len(consume_jsonl(f"rabbitmq:queue/{name}", "--max", "3")) == 3
    assert depth(name) == 10, "reading a stream consumes nothing"


def test_peeking_a_quorum_queue_with_a_delivery_limit_warns(
    channel: object, cleanup: list[tuple[str, str]], unique: str
) -> None:
    from qctl.backends.rabbitmq.behaviour import behaviour_for

    version = channel.connection._impl.server_properties["version"]  # type: ignore[attr-defined]
    costs = behaviour_for(version).peek_uses_delivery_attempts
    name = queue(channel, cleanup, unique, **{"x-queue-type": "quorum", "x-delivery-limit": 5})
    run_qctl("produce", f"rabbitmq:queue/{name}", "q", "--count", "2")
    proc = run_qctl("consume", f"rabbitmq:queue/{name}", "-o", "raw")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "q\nq\n"
    assert ("qctl: warning: peeking quorum queue" in proc.stderr) is costs
    assert settled_depth(name, 2) == 2
    again = consume_jsonl(f"rabbitmq:queue/{name}", "--ack")
    # Where the version counts a requeue as a delivery attempt, the broker did.
    assert [m.header("x-delivery-count") for m in again] == ([1, 1] if costs else [None, None])
    assert settled_depth(name, 0) == 0


def test_properties_headers_and_rate(
    channel: object, cleanup: list[tuple[str, str]], unique: str
) -> None:
    name = queue(channel, cleanup, unique)
    start = time.monotonic()
    proc = run_qctl(
        "produce",
        f"rabbitmq:queue/{name}",
        '{"a": 1}',
        "--count",
        "12",
        "--rate",
        "20",
        "--header",
        "source=cli",
        "--property",
        "content_type=application/json",
        "--property",
        "delivery_mode=2",
        "--property",
        "priority=3",
        "--property",
        "message_id=abc",
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed >= 0.5, "12 messages at 20/s take more than half a second"
    got = consume_jsonl(f"rabbitmq:queue/{name}")
    assert len(got) == 12
    assert got[0].headers == [("source", "cli")]
    assert got[0].properties == {
        "content_type": "application/json",
        "delivery_mode": 2,
        "priority": 3,
        "message_id": "abc",
    }
    table = run_qctl("consume", f"rabbitmq:queue/{name}", "-o", "table", "--max", "1")
    assert table.stdout.splitlines()[0].split()[:3] == ["#", "TIMESTAMP", "ROUTING"]


def test_missing_queues_and_exchanges(rabbitmq: str, unique: str) -> None:
    for args in (
        ("consume", f"rabbitmq:queue/{unique}"),
        ("produce", f"rabbitmq:queue/{unique}", "x"),
        ("produce", f"rabbitmq:exchange/{unique}", "x", "--routing-key", "k"),
    ):
        proc = run_qctl(*args)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("\n") == 1
        assert f"{unique!r} does not exist" in proc.stderr
    proc = run_qctl(
        "produce",
        "rabbitmq:queue/q",
        "x",
        "--timeout",
        "2",
        env={"QCTL_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/"},
    )
    assert proc.returncode == 3
    assert "unreachable" in proc.stderr
