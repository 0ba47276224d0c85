"""`qctl produce` / `qctl consume` against the real Kafka broker.

Kafka's own tools are the oracles where they can answer: kafka-get-offsets for
timestamp lookups, kafka-console-consumer for what was written, kafka-consumer-groups
for committed offsets.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from qctl.messages import Message
from tests.cli.test_root import run_qctl
from tests.oracles import kafka_tool

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


@pytest.fixture
def topics(kafka: str) -> Iterator[list[str]]:
    """Names of topics created by the test; deleted afterwards."""
    created: list[str] = []
    yield created
    if created:
        admin = AdminClient({"bootstrap.servers": kafka})
        for future in admin.delete_topics(created).values():
            with contextlib.suppress(Exception):
                future.result(15)


def make_topic(kafka: str, topics: list[str], name: str, partitions: int = 3, **config: str) -> str:
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(name, partitions, 1, config=config)])[name].result(15)
    topics.append(name)
    return name


def consume_jsonl(*args: str) -> list[Message]:
    proc = run_qctl("consume", *args, "-o", "jsonl", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [Message.from_line(line) for line in proc.stdout.splitlines()]


def random_messages(n: int, seed: int) -> list[Message]:
    """Random binary keys, values and headers (repeated names, nulls, empty values)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        key = None if i % 50 == 0 else rng.randbytes(rng.randint(0, 24))
        value = None if i % 97 == 0 else rng.randbytes(rng.randint(0, 300))
        headers = []
        for _ in range(rng.randint(0, 4)):
            name = rng.choice(["a", "b", "trace", "x-bin", "ümlaut"])
            raw = None if rng.random() < 0.1 else rng.randbytes(rng.randint(0, 20))
            headers.append((name, _model_header(raw)))
        out.append(Message(value, key, headers, now - rng.randint(0, 600_000)))
    return out


def _model_header(raw: bytes | None) -> object:
    from qctl.messages import kafka_header_value

    return kafka_header_value(raw)


def content(m: Message) -> tuple[object, ...]:
    return (m.key, m.value, tuple(m.headers), m.timestamp)


def per_partition(messages: list[Message]) -> dict[int, list[tuple[object, ...]]]:
    out: dict[int, list[tuple[object, ...]]] = defaultdict(list)
    for m in sorted(messages, key=lambda m: (m.partition or 0, m.offset or 0)):
        out[m.partition or 0].append(content(m))
    return dict(out)


def test_round_trip_of_10000_random_binary_messages_is_byte_exact(
    kafka: str, topics: list[str], unique: str, tmp_path: Path
) -> None:
    source = make_topic(kafka, topics, f"{unique}-a")
    copy = make_topic(kafka, topics, f"{unique}-b")
    originals = random_messages(10_000, seed=4)
    archive = tmp_path / "in.jsonl"
    archive.write_text("".join(m.to_line() + "\n" for m in originals))

    proc = run_qctl("produce", f"kafka:{source}", "--file", str(archive), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sent 10000, failed 0" in proc.stderr

    consumed = consume_jsonl(f"kafka:{source}")
    assert sorted(map(content, consumed), key=repr) == sorted(map(content, originals), key=repr)
    # Keys decide partitions, so each key's messages keep their order.
    by_key: dict[object, list[object]] = defaultdict(list)
    for m in originals:
        by_key[m.key].append(m.value)
    got_by_key: dict[object, list[object]] = defaultdict(list)
    for m in sorted(consumed, key=lambda m: (m.partition or 0, m.offset or 0)):
        got_by_key[m.key].append(m.value)
    for key, values in by_key.items():
        if key is not None:  # null keys are spread over partitions
            assert got_by_key[key] == values

    # The documented pipe: consume -o jsonl | produce --format jsonl.
    qctl = f"{sys.executable} -m qctl"
    pipe = subprocess.run(
        f"{qctl} consume kafka:{source} -o jsonl | {qctl} produce kafka:{copy} --format jsonl",
        shell=True,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert pipe.returncode == 0, pipe.stderr
    copied = consume_jsonl(f"kafka:{copy}")
    assert sorted(map(content, copied), key=repr) == sorted(map(content, consumed), key=repr)
    # Keyed messages land on the same partitions, in the same order (null keys are
    # spread at random by the partitioner, as with Java clients).
    assert per_partition([m for m in copied if m.key is not None]) == per_partition(
        [m for m in consumed if m.key is not None]
    )


def test_each_orders_events_stay_in_order(kafka: str, topics: list[str], unique: str) -> None:
    topic = make_topic(kafka, topics, unique, partitions=4)
    proc = run_qctl(
        "produce", f"kafka:{topic}", "--template", "order-flow", "--count", "400", "--seed", "11"
    )
    assert proc.returncode == 0, proc.stderr
    events = consume_jsonl(f"kafka:{topic}")
    assert len(events) == 400
    chains: dict[bytes | None, list[dict[str, object]]] = defaultdict(list)
    partitions: dict[bytes | None, set[int | None]] = defaultdict(set)
    for m in sorted(events, key=lambda m: (m.partition or 0, m.offset or 0)):
        chains[m.key].append(json.loads(m.value or b""))
        partitions[m.key].add(m.partition)
    assert len(chains) > 50
    for key, chain in chains.items():
        assert len(partitions[key]) == 1, "one order, one partition"
        assert chain[0]["event_type"] == "OrderCreated" or chain[0]["causation_id"] is None
        for before, after in itertools.pairwise(chain):
            assert after["causation_id"] == before["event_id"], key


def test_consume_from_a_timestamp_matches_kafkas_get_offsets(
    kafka: str, topics: list[str], unique: str, tmp_path: Path
) -> None:
    topic = make_topic(kafka, topics, unique, partitions=3)
    base = int(time.time() * 1000) - 120_000
    lines = [
        Message(f"v{i}".encode(), f"k{i % 7}".encode(), timestamp=base + i * 1000).to_line()
        for i in range(60)
    ]
    archive = tmp_path / "t.jsonl"
    archive.write_text("\n".join(lines) + "\n")
    assert run_qctl("produce", f"kafka:{topic}", "--file", str(archive)).returncode == 0
    cut = base + 30_500
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut // 1000)) + f".{cut % 1000:03d}Z"
    got = {(m.partition, m.offset) for m in consume_jsonl(f"kafka:{topic}", "--from", iso)}

    def offsets(at: str) -> dict[int, int]:
        out = kafka_tool("get-offsets", "--bootstrap-server", kafka, "--topic", topic, "--time", at)
        result = {}
        for line in out.split():
            _, part, offset = line.rsplit(":", 2)
            result[int(part)] = int(offset)
        return result

    starts, ends = offsets(str(cut)), offsets("-1")
    expected = {(p, o) for p, end in ends.items() for o in range(starts.get(p, end), end)}
    assert got == expected
    assert len(got) == 29  # messages 31..59 are at or after the cut
    # And what the console consumer reads from one of those offsets is what qctl read.
    part = next(p for p in starts if starts[p] < ends[p])
    console = kafka_tool(
        "console-consumer",
        "--bootstrap-server",
        kafka,
        "--topic",
        topic,
        "--partition",
        str(part),
        "--offset",
        str(starts[part]),
        "--max-messages",
        "1",
        "--timeout-ms",
        "20000",
    )
    first = next(iter(consume_jsonl(f"kafka:{topic}/{part}", "--from", iso)))
    assert console.strip() == first.value_text


def test_positions_partitions_max_and_until(kafka: str, topics: list[str], unique: str) -> None:
    topic = make_topic(kafka, topics, unique, partitions=2)
    proc = run_qctl("produce", f"kafka:{topic}/1", "m", "--count", "10", "--key", "k")
    assert proc.returncode == 0, proc.stderr
    everything = consume_jsonl(f"kafka:{topic}")
    assert {m.partition for m in everything} == {1}
    assert [m.offset for m in everything] == list(range(10))
    assert [m.offset for m in consume_jsonl(f"kafka:{topic}/1", "--from", "3", "--until", "7")] == [
        3,
        4,
        5,
        6,
    ]
    assert [m.offset for m in consume_jsonl(f"kafka:{topic}/1", "--from", "-2")] == [8, 9]
    assert len(consume_jsonl(f"kafka:{topic}", "--max", "4")) == 4
    assert consume_jsonl(f"kafka:{topic}", "--from", "latest") == []
    assert consume_jsonl(f"kafka:{topic}/0") == []
    raw = run_qctl("consume", f"kafka:{topic}", "-o", "raw", "--max", "2")
    assert raw.stdout == "m\nm\n"
    fmt = run_qctl("consume", f"kafka:{topic}", "--format-string", "%p:%o:%k;", "--max", "2")
    assert fmt.stdout == "1:0:k;1:1:k;"
    where = consume_jsonl(f"kafka:{topic}", "--where", "offset >= 8")
    assert [m.offset for m in where] == [8, 9]
    missing = run_qctl("consume", f"kafka:{topic}/5")
    assert missing.returncode == 1 and "has no partition 5" in missing.stderr


def test_follow_stops_after_an_explicit_idle_timeout(
    kafka: str, topics: list[str], unique: str
) -> None:
    topic = make_topic(kafka, topics, unique, partitions=1)
    run_qctl("produce", f"kafka:{topic}", "x", "--count", "3")
    start = time.monotonic()
    proc = run_qctl("consume", f"kafka:{topic}", "--follow", "--timeout", "2", "-o", "raw")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "x\nx\nx\n"
    assert 2 <= elapsed < 15


def test_group_offsets_are_committed_and_resumed(
    kafka: str, topics: list[str], unique: str
) -> None:
    topic = make_topic(kafka, topics, unique, partitions=1)
    run_qctl("produce", f"kafka:{topic}", "--template", "order-created", "--count", "10")
    group = f"{unique}-g"
    first = consume_jsonl(f"kafka:{topic}", "--group", group, "--max", "4")
    second = consume_jsonl(f"kafka:{topic}", "--group", group)
    assert [m.offset for m in first] == [0, 1, 2, 3]
    assert [m.offset for m in second] == list(range(4, 10))
    assert committed(kafka, group, topic) == {0: 10}
    # Without a group nothing is committed, and a throwaway group does not linger.
    consume_jsonl(f"kafka:{topic}")
    listing = kafka_tool("consumer-groups", "--bootstrap-server", kafka, "--list")
    assert not [g for g in listing.split() if g.startswith("qctl-consume-")]


def committed(kafka: str, group: str, topic: str) -> dict[int, int]:
    """CURRENT-OFFSET per partition, as kafka-consumer-groups reports it."""
    out = kafka_tool("consumer-groups", "--bootstrap-server", kafka, "--describe", "--group", group)
    result = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[0] == group and cols[1] == topic and cols[3] != "-":
            result[int(cols[2])] = int(cols[3])
    return result


@pytest.mark.parametrize("mode", ["at-least-once", "at-most-once"])
def test_kill_mid_stream_shows_the_commit_semantics(
    kafka: str, topics: list[str], unique: str, tmp_path: Path, mode: str
) -> None:
    """Read part of the output, kill -9 the consumer, compare written with committed."""
    topic = make_topic(kafka, topics, unique, partitions=1)
    total = 30_000
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"{i:06d}{'.' * 500}\n" for i in range(total)))
    assert run_qctl("produce", f"kafka:{topic}", "--file", str(lines), timeout=120).returncode == 0
    group = f"{unique}-{mode}"
    args = [
        sys.executable,
        "-m",
        "qctl",
        "consume",
        f"kafka:{topic}",
        "--group",
        group,
        "-o",
        "raw",
    ]
    if mode == "at-most-once":
        args.append("--commit-before")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        read = [proc.stdout.readline() for _ in range(20_000)]
        time.sleep(1.5)  # qctl is now blocked writing into the full pipe, mid-batch
        os.kill(proc.pid, signal.SIGKILL)
        read += proc.stdout.read().splitlines(keepends=True)
    finally:
        proc.kill()
        proc.wait(30)
    written = [line for line in read if line.endswith(b"\n")]
    assert [int(line[:6]) for line in written] == list(range(len(written))), "in order"
    assert 20_000 <= len(written) < total
    offsets = committed(kafka, group, topic)
    if mode == "at-least-once":
        # Committed only what was written: a restart re-reads, never skips.
        assert 0 < offsets[0] <= len(written)
    else:
        # Committed before writing: a restart skips what was lost, never re-reads.
        assert offsets[0] > len(written)


def test_isolation_levels(kafka: str, topics: list[str], unique: str) -> None:
    topic = make_topic(kafka, topics, unique, partitions=1)
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": unique})
    producer.init_transactions(15)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, f"committed-{i}".encode())
    producer.commit_transaction(15)
    producer.begin_transaction()
    for i in range(2):
        producer.produce(topic, f"aborted-{i}".encode())
    producer.flush(15)
    producer.abort_transaction(15)
    committed_only = run_qctl("consume", f"kafka:{topic}", "-o", "raw")
    assert committed_only.stdout.split() == ["committed-0", "committed-1", "committed-2"]
    everything = run_qctl(
        "consume", f"kafka:{topic}", "-o", "raw", "--isolation", "read_uncommitted"
    )
    assert everything.stdout.split() == [
        "committed-0",
        "committed-1",
        "committed-2",
        "aborted-0",
        "aborted-1",
    ]


def test_timestamps_are_kept_unless_asked(
    kafka: str, topics: list[str], unique: str, tmp_path: Path
) -> None:
    topic = make_topic(kafka, topics, unique, partitions=1)
    stamp = int(time.time() * 1000) - 3_600_000
    archive = tmp_path / "one.jsonl"
    archive.write_text(Message(b"x", timestamp=stamp).to_line() + "\n")
    run_qctl("produce", f"kafka:{topic}", "--file", str(archive))
    run_qctl("produce", f"kafka:{topic}", "--file", str(archive), "--new-timestamps")
    first, second = consume_jsonl(f"kafka:{topic}")
    assert first.timestamp == stamp
    assert second.timestamp is not None and second.timestamp > stamp + 3_000_000


def test_failed_deliveries_are_counted_and_set_the_exit_code(
    kafka: str, topics: list[str], unique: str, tmp_path: Path
) -> None:
    topic = make_topic(kafka, topics, unique, partitions=1)
    # Larger than the producer's message.max.bytes (1 MB): refused per message.
    small, big = Message(b"s" * 10), Message(b"B" * 1_500_000)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(m.to_line() + "\n" for m in [small, big, small, big, small]))
    proc = run_qctl("produce", f"kafka:{topic}", "--file", str(mixed))
    assert proc.returncode == 4, proc.stderr
    assert "sent 3, failed 2" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("qctl: error: 2 of 5 messages failed")
    only_big = tmp_path / "big.jsonl"
    only_big.write_text(big.to_line() + "\n")
    proc = run_qctl("produce", f"kafka:{topic}", "--file", str(only_big))
    assert proc.returncode == 1, proc.stderr
    assert "all 1 messages failed" in proc.stderr
    assert len(consume_jsonl(f"kafka:{topic}")) == 3


def test_bad_input_and_missing_topics(kafka: str, unique: str) -> None:
    for args in (("consume", f"kafka:{unique}"), ("produce", f"kafka:{unique}", "x")):
        proc = run_qctl(*args)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1
        assert f"topic {unique!r} does not exist" in proc.stderr
    unreachable = run_qctl(
        "produce", "kafka:t", "x", "--timeout", "2", env={"QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    )
    assert unreachable.returncode == 3
    assert "unreachable" in unreachable.stderr


def test_a_full_local_queue_only_slows_sending_down(
    kafka: str, topics: list[str], unique: str, tmp_path: Path, isolated_config: Path
) -> None:
    """With a tiny producer queue every batch hits BufferError; nothing is lost or reordered."""
    topic = make_topic(kafka, topics, unique, partitions=1)
    isolated_config.parent.mkdir(parents=True, exist_ok=True)
    isolated_config.write_text(
        "current_context: tiny\ncontexts:\n  tiny:\n    kafka:\n"
        f"      bootstrap_servers: {kafka}\n"
        "      queue.buffering.max.messages: 50\n      linger.ms: 1\n"
    )
    isolated_config.chmod(0o600)
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"{i}\n" for i in range(5000)))
    proc = run_qctl("produce", f"kafka:{topic}", "--file", str(lines), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sent 5000, failed 0" in proc.stderr
    got = run_qctl("consume", f"kafka:{topic}", "-o", "raw")
    assert got.stdout.split() == [str(i) for i in range(5000)]
