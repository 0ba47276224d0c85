"""`qctl offsets` argument handling: bad input is one line and exit 2, before any I/O.

Every case here fails before a connection is opened, so the context points at a closed
port: a test that accidentally reached the network would fail with exit 3 instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_root import run_qctl

NO_CLUSTER = {"QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1"}


def qctl(*args: str) -> tuple[int, str, str]:
    proc = run_qctl(*args, env=NO_CLUSTER)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("qctl: error: ")
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--topic", "t"], ["no reset strategy given", "--to-earliest"]),
        (["--topic", "t", "--to-earliest", "--shift-by", "-3"], ["--to-earliest and --shift-by"]),
        (["--topic", "t", "--to-datetime", "yesterday"], ["'yesterday' is not a date and time"]),
        (["--topic", "t", "--to-datetime", "2026-11-27 10:00 Mars/Olympus"], ["unknown time zone"]),
        (
            ["--topic", "t", "--to-datetime", "2026-11-27T10:00+01:00 Europe/Berlin"],
            ["both an offset and a zone name"],
        ),
        (["--topic", "t", "--by-duration", "two hours"], ["is not a duration"]),
        (["--topic", "t:x", "--to-earliest"], ["partitions 'x'", "not numbers"]),
        (["--topic", "bad topic", "--to-earliest"], ["not a valid Kafka topic name"]),
        (["--topic", "t", "--from-file", "/nonexistent/plan.csv"], ["no such file"]),
        (["--topic", "t", "--to-offset", "many"], ["'many' is not a valid integer"]),
    ],
)
def test_bad_reset_input_is_exit_2_on_one_line(args: list[str], words: list[str]) -> None:
    code, out, err = qctl("offsets", "reset", "--group", "g", *args)
    assert code == 2, err
    assert out == ""
    assert_one_line_error(err, *words)


def test_malformed_csv_names_its_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.csv"
    plan.write_text("topic,partition,offset\norders,0,5\n\norders,1,five\n")
    code, _, err = qctl("offsets", "reset", "--group", "g", "--from-file", str(plan))
    assert code == 2
    assert_one_line_error(err, f"{plan}:4:", "offset 'five'")


def test_group_is_required() -> None:
    code, _, err = qctl("offsets", "show")
    assert code == 2
    assert_one_line_error(err, "Missing option '--group'")


def test_delete_needs_a_topic() -> None:
    code, _, err = qctl("offsets", "delete", "--group", "g", "--execute")
    assert code == 2
    assert_one_line_error(err, "Missing option '--topic'")


def test_history_and_undo_without_snapshots(tmp_path: Path) -> None:
    code, out, _ = qctl("offsets", "history", "--group", "g")
    assert code == 0 and "(no snapshots for group g)" in out
    code, out, _ = qctl("offsets", "history", "--group", "g", "-o", "json")
    assert code == 0 and json.loads(out) == []
    code, _, err = qctl("offsets", "undo", "--group", "g")
    assert code == 2
    assert_one_line_error(err, "no undo snapshots for group 'g'")
    code, _, err = qctl("offsets", "undo", "--group", "g", "g--20260101T000000000000Z")
    assert code == 2
    assert_one_line_error(err, "no snapshot 'g--20260101T000000000000Z'", "offsets history")


def test_undo_refuses_a_snapshot_of_another_context(tmp_path: Path) -> None:
    from qctl.backends.capabilities.groups import TopicPartition
    from qctl.offsets.snapshots import SnapshotStore

    snap = SnapshotStore().save(
        "g",
        {TopicPartition("t", 0): 1},
        context="prod",
        backend="kafka",
        target="kafka.prod:9093",
        action="reset to-earliest",
    )
    code, _, err = qctl("offsets", "undo", "--group", "g", snap.id)
    assert code == 2
    assert_one_line_error(err, "taken on context 'prod'", "not on 'local'", "-C prod")


def test_unreachable_cluster_is_exit_3() -> None:
    code, _, err = qctl("offsets", "show", "--group", "g", "--timeout", "2")
    assert code == 3
    assert_one_line_error(err, "127.0.0.1:1")
