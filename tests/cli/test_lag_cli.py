"""``qctl lag``: arguments, exit codes, thresholds, output formats, the plain watch."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as KTP
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.test_root import run_qctl


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all", "-g", "x"], "--all cannot be combined with --group or --queue"),
        (["--watch", "--threshold", "5"], "--threshold and --max-time-lag are checks of one"),
        (["--max-time-lag", "soon"], "'soon' is not a duration"),
        (["--isolation", "dirty"], "'dirty' is not one of"),
        (["--threshold", "-1"], "-1 is not in the range"),
        (["-g", "x", "-b", "rabbitmq"], "backend 'rabbitmq' does not support consumer groups"),
        (["-q", "x", "-b", "kafka"], "backend 'kafka' does not support queues"),
        (["-o", "xml"], "'xml' is not one of"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    proc = run_qctl("lag", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.startswith("qctl: error: ") and proc.stderr.count("\n") == 1


def test_unreachable_kafka_is_exit_3_within_the_timeout() -> None:
    started = time.monotonic()
    proc = run_qctl(
        "lag", "-b", "kafka", "--timeout", "2", env={"QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    )
    assert time.monotonic() - started < 15
    assert proc.returncode == 3
    assert "kafka at 127.0.0.1:1 is unreachable" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_one_unreachable_backend_still_shows_the_other(kafka: str, rabbitmq: str) -> None:
    proc = run_qctl(
        "lag",
        "-o",
        "json",
        "--timeout",
        "2",
        env={"QCTL_KAFKA_BOOTSTRAP": kafka, "QCTL_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:1"},
    )
    assert proc.returncode == 3
    data = json.loads(proc.stdout)
    assert [e["backend"] for e in data["errors"]] == ["rabbitmq"]
    assert "management API at http://127.0.0.1:1 is unreachable" in proc.stderr
    assert isinstance(data["groups"], list)


@pytest.fixture
def lagging_group(kafka: str, unique: str) -> Iterator[tuple[str, str]]:
    """A group 10 messages behind on a one-partition topic, the oldest 90 s old."""
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(unique, 1, 1)])[unique].result(15)
    producer = Producer({"bootstrap.servers": kafka})
    now_ms = int(time.time() * 1000)
    for i in range(15):
        producer.produce(unique, b"x", partition=0, timestamp=now_ms - 95_000 + i * 1000)
    assert producer.flush(10) == 0
    group = f"{unique}-g"
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    for attempt in range(50):  # the group coordinator may still be loading after a start
        try:
            consumer.commit(offsets=[KTP(unique, 0, 5)], asynchronous=False)
            break
        except KafkaException as exc:
            if attempt == 49 or not exc.args[0].retriable():
                raise
            time.sleep(0.2)
    consumer.close()
    yield unique, group
    admin.delete_topics([unique])[unique].result(15)


def test_threshold_exit_codes(kafka: str, lagging_group: tuple[str, str]) -> None:
    _, group = lagging_group
    env = {"QCTL_KAFKA_BOOTSTRAP": kafka}
    ok = run_qctl("lag", "-g", group, "--threshold", "10", env=env)
    assert ok.returncode == 0, ok.stderr
    over = run_qctl("lag", "-g", group, "--threshold", "9", env=env)
    assert over.returncode == 6
    assert f"over the threshold: group {group} (kafka): lag 10 > 9" in over.stderr
    assert group in over.stdout  # the data is still shown
    timed = run_qctl("lag", "-g", group, "--max-time-lag", "1m", "-o", "json", env=env)
    assert timed.returncode == 6
    report = json.loads(timed.stdout)["thresholds"]
    assert report["time_lag_seconds"] == 60
    [breach] = report["exceeded"]
    assert breach["metric"] == "time_lag_seconds" and 88 < breach["value"] < 120
    relaxed = run_qctl("lag", "-g", group, "--max-time-lag", "PT10M", "--threshold", "10", env=env)
    assert relaxed.returncode == 0, relaxed.stderr


def test_table_yaml_and_prometheus(kafka: str, lagging_group: tuple[str, str]) -> None:
    _, group = lagging_group
    env = {"QCTL_KAFKA_BOOTSTRAP": kafka}
    shown = run_qctl("lag", "-g", group, env=env)
    assert shown.returncode == 0, shown.stderr
    header = shown.stdout.splitlines()[0].split()
    assert header[:5] == ["GROUP", "STATE", "MEMBERS", "STATUS", "TREND"]
    assert f"group {group} (Empty, read_committed): partitions" in shown.stdout
    assert "not enough history (1 of 3 samples)" in shown.stdout
    yaml_out = run_qctl("lag", "-g", group, "-o", "yaml", env=env)
    assert f"group: {group}" in yaml_out.stdout
    prom = run_qctl("lag", "-g", group, "-o", "prometheus", env=env)
    assert prom.returncode == 0, prom.stderr
    samples = {
        (s.name, s.labels.get("partition")): s.value
        for f in text_string_to_metric_families(prom.stdout)
        for s in f.samples
        if s.labels.get("group") == group
    }
    assert samples[("qctl_consumergroup_lag", None)] == 10
    assert samples[("qctl_consumergroup_partition_committed_offset", "0")] == 5


def test_one_shot_runs_keep_a_history(kafka: str, lagging_group: tuple[str, str]) -> None:
    _, group = lagging_group
    env = {"QCTL_KAFKA_BOOTSTRAP": kafka}
    for expected in (1, 2, 3):
        proc = run_qctl("lag", "-g", group, "-o", "json", env=env)
        assert proc.returncode == 0, proc.stderr
        ev = json.loads(proc.stdout)["groups"][0]["evaluation"]
        assert ev["samples"] == expected
        time.sleep(1.05)
    assert ev["trend"] == "stable"
    history = Path(os.environ["QCTL_STATE_DIR"]) / "lag" / "history-local.json"
    assert f"kafka:{group}" in json.loads(history.read_text())["groups"]


def test_plain_watch_prints_one_snapshot_per_interval(
    kafka: str, lagging_group: tuple[str, str]
) -> None:
    _, group = lagging_group
    env = {"QCTL_KAFKA_BOOTSTRAP": kafka}
    started = time.monotonic()
    proc = run_qctl("lag", "-g", group, "--watch", "--interval", "1", "--count", "3", env=env)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 2
    assert proc.stdout.count("== ") == 3
    assert proc.stdout.count(f"group {group} (Empty") == 3
    as_json = run_qctl(
        "lag", "-g", group, "-w", "--interval", "1.5", "--count", "2", "-o", "json", env=env
    )
    lines = as_json.stdout.splitlines()
    assert len(lines) == 2
    samples = [json.loads(line)["groups"][0]["evaluation"]["samples"] for line in lines]
    assert samples == [1, 2]  # the in-memory history of this run, not the state file
