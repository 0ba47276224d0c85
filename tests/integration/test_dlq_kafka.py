"""`qctl dlq` against the real Kafka broker.

The group ``qctl.dlq.<topic>`` is the DLQ's position: Kafka's own kafka-consumer-groups
is the oracle for where it is, and a read_committed consumer for what the targets hold.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from qctl.jobs.store import JobStore
from tests.cli.test_root import run_qctl
from tests.integration.dlq_support import (
    KafkaTopics,
    connect_dead_letter,
    fill_kafka,
    ids,
    kafka_end,
    kill_when,
    only_job,
    qctl_dead_letter,
    qctl_process,
    read_kafka,
    spring_dead_letter,
    wait_for,
)
from tests.oracles import kafka_tool

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.usefixtures("no_stray_qctl")]


def group_lag(kafka: str, group: str) -> dict[int, tuple[int, int]]:
    """kafka-consumer-groups --describe: partition -> (current offset, log end)."""
    out = kafka_tool("consumer-groups", "--bootstrap-server", kafka, "--describe", "--group", group)
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[0] == group and cols[2].isdigit():
            rows[int(cols[2])] = (int(cols[3]) if cols[3].isdigit() else -1, int(cols[4]))
    return rows


def qctl_json(*args: str) -> object:
    proc = run_qctl(*args, "-o", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_list_inspect_and_peek_change_nothing(kafka: str, topics: KafkaTopics, unique: str) -> None:
    origin = topics.make(unique)
    dlq = topics.make(f"{unique}.dlq")
    fill_kafka(kafka, dlq, 10, lambda i: qctl_dead_letter(origin, i))
    fill_kafka(kafka, dlq, 6, lambda i: spring_dead_letter(origin, i))
    fill_kafka(kafka, dlq, 4, lambda i: connect_dead_letter(origin, i))
    fill_kafka(kafka, dlq, 2, lambda i: [("trace", b"x")])
    rows = qctl_json("dlq", "list", "-b", "kafka")
    mine = next(r for r in rows if r["name"] == dlq)  # type: ignore[union-attr]
    assert mine["messages"] == 22 and mine["group"] == f"qctl.dlq.{dlq}"
    assert mine["oldest"] is not None and mine["inflow_rate"] > 0
    assert "*.dlq" in mine["why"]
    hist = qctl_json("dlq", "inspect", f"kafka:{dlq}")
    assert hist["total"] == 22  # type: ignore[index]
    assert hist["by_origin"] == {f"kafka:{origin}": 20, "origin unknown": 2}  # type: ignore[index]
    assert hist["by_convention"] == {
        "qctl": 10,
        "spring-kafka": 6,
        "kafka-connect": 4,
        "unknown": 2,
    }  # type: ignore[index]
    assert hist["by_failure"]["org.example.PaymentException"] == 6  # type: ignore[index]
    peek = run_qctl("dlq", "peek", f"kafka:{dlq}", "--max", "30", "-o", "jsonl")
    assert peek.returncode == 0, peek.stderr
    lines = [json.loads(line) for line in peek.stdout.splitlines()]
    assert len(lines) == 22
    spring = [ln for ln in lines if ln["provenance"]["convention"] == "spring-kafka"]
    assert spring[0]["provenance"]["origin"]["partition"] in (0, 1, 2)
    assert spring[0]["provenance"]["failure"]["message"] == "card declined"
    # Nothing read a committed offset into existence.
    assert group_lag(kafka, f"qctl.dlq.{dlq}") == {}


@pytest.mark.parametrize("workers", ["1", "3"], ids=["one-process", "worker-processes"])
def test_redrive_is_exactly_once_across_kill_9_and_resume(
    kafka: str, topics: KafkaTopics, unique: str, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one process, and split over worker processes (one per partition)."""
    monkeypatch.setenv("QCTL_KAFKA_COPY_WORKERS", workers)
    origin = topics.make(unique)
    dlq = topics.make(f"{unique}.dlq")
    fill_kafka(kafka, dlq, 10_000, lambda i: qctl_dead_letter(origin, i, i % 3), lambda i: i % 3)
    proc = qctl_process(
        "dlq", "redrive", f"kafka:{dlq}", "--keep-partition", "--rate", "2000", "--yes"
    )
    kill_when(proc, lambda: kafka_end(kafka, origin) > 0, seed=1)
    job = only_job("redrive")
    assert JobStore().display_state(JobStore().load(job)) == "killed"
    proc2 = run_qctl("dlq", "redrive", "--resume", job, timeout=120)
    assert proc2.returncode == 0, proc2.stderr
    got = read_kafka(kafka, origin)
    counts = ids(got)
    assert len(got) == 10_000 and set(counts) == set(range(10_000))
    assert max(counts.values()) == 1  # exactly once for read_committed readers
    for key, value, headers, partition, _offset, _ts in got[:200]:
        i = json.loads(value)["id"]
        assert key == f"k{i}".encode() and partition == i % 3
        names = dict(headers)
        assert names["qctl-redrive-count"] == b"1" and names["qctl-redrive-id"] == job.encode()
        assert names["qctl-original-topic"] == origin.encode()
    lag = group_lag(kafka, f"qctl.dlq.{dlq}")
    assert lag and all(cur == end for cur, end in lag.values()), lag
    listed = qctl_json("dlq", "list", "-b", "kafka")
    assert next(r for r in listed if r["name"] == dlq)["messages"] == 0  # type: ignore[union-attr]


def test_what_cannot_be_delivered_stays_and_is_reported(
    kafka: str, topics: KafkaTopics, unique: str
) -> None:
    origin = topics.make(unique)
    gone = topics.make(f"{unique}-gone")
    dlq = topics.make(f"{unique}.dlq")
    fill_kafka(kafka, dlq, 50, lambda i: qctl_dead_letter(origin, i))
    fill_kafka(kafka, dlq, 20, lambda i: qctl_dead_letter(gone, i))
    fill_kafka(kafka, dlq, 5, lambda i: [("no", b"provenance")])
    topics.delete(gone)
    time.sleep(1)
    proc = run_qctl("dlq", "redrive", f"kafka:{dlq}", "--yes", "-o", "json", timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "does not exist" in proc.stderr and "origin unknown" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["counters"]["moved"] == 50 and report["counters"]["failed"] == 25
    assert len(read_kafka(kafka, origin)) == 50
    left = run_qctl("dlq", "peek", f"kafka:{dlq}", "--max", "100", "-o", "jsonl")
    stay = [json.loads(line) for line in left.stdout.splitlines()]
    assert len(stay) == 25
    assert {s["provenance"]["origin_label"] for s in stay} == {f"kafka:{gone}", "origin unknown"}
    # With --to they can go, after their turn.
    out = run_qctl("dlq", "redrive", f"kafka:{dlq}", "--to", f"kafka:{origin}", "--yes")
    assert out.returncode == 0, out.stderr
    assert len(read_kafka(kafka, origin)) == 75


def test_where_keeps_the_rest_and_the_loop_guard_parks(
    kafka: str, topics: KafkaTopics, unique: str
) -> None:
    origin = topics.make(unique)
    dlq = topics.make(f"{unique}.dlq")
    fill_kafka(kafka, dlq, 40, lambda i: qctl_dead_letter(origin, i))
    proc = run_qctl(
        "dlq",
        "redrive",
        f"kafka:{dlq}",
        "--where",
        "header.qctl-error-class == TimeoutError",
        "--yes",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(read_kafka(kafka, origin)) == 20
    rest = qctl_json("dlq", "inspect", f"kafka:{dlq}")
    assert rest["total"] == 20 and rest["by_failure"] == {"IllegalStateException": 20}  # type: ignore[index]
    # Simulate the consumer failing them again: redriven messages back into the DLQ.
    fill_kafka(
        kafka, dlq, 5, lambda i: [*qctl_dead_letter(origin, i), ("qctl-redrive-count", b"2")]
    )
    proc = run_qctl("dlq", "redrive", f"kafka:{dlq}", "--max-redrives", "2", "--yes", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "parked 5" in proc.stderr
    parked = read_kafka(kafka, f"{dlq}.parking")
    assert len(parked) == 5
    assert all(dict(m[2]).get("qctl-parked-by") for m in parked)
    assert len(read_kafka(kafka, origin)) == 40


def test_drain_redrive_from_file_and_purge(
    kafka: str, topics: KafkaTopics, unique: str, tmp_path: Path
) -> None:
    origin = topics.make(unique)
    dlq = topics.make(f"{unique}.dlq")
    fill_kafka(kafka, dlq, 30, lambda i: qctl_dead_letter(origin, i))
    archive = tmp_path / "dlq.jsonl"
    proc = run_qctl(
        "dlq", "drain", f"kafka:{dlq}", "--to-file", str(archive), "--limit", "12", "--yes"
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    lines = archive.read_text().splitlines()
    assert len(lines) == 12
    assert sum(cur for cur, _ in group_lag(kafka, f"qctl.dlq.{dlq}").values()) == 12
    proc = run_qctl("dlq", "redrive", f"kafka:{dlq}", "--from-file", str(archive), "--yes")
    assert proc.returncode == 0, proc.stderr
    assert len(read_kafka(kafka, origin)) == 12
    # Purge what is older than an hour: nothing; then everything, with the records.
    proc = run_qctl("dlq", "purge", f"kafka:{dlq}", "--older-than", "1h", "--yes", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["purged"] == 0
    proc = run_qctl("dlq", "purge", f"kafka:{dlq}", "--delete-records", "--yes", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["purged"] == 18
    offsets = kafka_tool("get-offsets", "--bootstrap-server", kafka, "--topic", dlq, "--time", "-2")
    low = sum(int(line.rsplit(":", 1)[1]) for line in offsets.split())
    assert low == 30  # the records are gone, not only skipped


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-process", "worker-processes"])
def test_ctrl_c_stops_cleanly_and_resume_finishes(
    kafka: str, topics: KafkaTopics, unique: str, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QCTL_KAFKA_COPY_WORKERS", workers)
    origin = topics.make(unique)
    dlq = topics.make(f"{unique}.dlq")
    fill_kafka(kafka, dlq, 3000, lambda i: qctl_dead_letter(origin, i))
    proc = qctl_process("dlq", "redrive", f"kafka:{dlq}", "--rate", "1000", "--yes")
    wait_for(lambda: kafka_end(kafka, origin) > 0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    job = only_job("redrive")
    assert JobStore().load(job).state == "interrupted"
    moved_before = len(read_kafka(kafka, origin))
    assert 0 < moved_before < 3000
    done = run_qctl("dlq", "redrive", "--resume", job, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ids(read_kafka(kafka, origin)) == dict.fromkeys(range(3000), 1)
