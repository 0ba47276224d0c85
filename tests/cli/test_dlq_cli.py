"""`qctl dlq` arguments, exit codes and one-line errors (no broker needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_root import run_qctl

#: A port nothing listens on: commands that get past argument checks fail fast there.
NOWHERE = {
    "QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "QCTL_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/",
    "QCTL_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:1",
}


def one_line_error(proc: object, code: int, *fragments: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert lines and lines[-1].startswith("qctl: error: "), proc.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in proc.stderr  # type: ignore[attr-defined]
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["dlq", "redrive"], "missing DLQ"),
        (["dlq", "redrive", "kafka:x.dlq", "--routing-key", "k"], "--routing-key needs --to"),
        (["dlq", "redrive", "kafka:x.dlq", "--to", "kafka:x", "--routing-key", "k"], "applies to"),
        (["dlq", "redrive", "kafka:x.dlq", "--where", "value ==", "--yes"], "--where"),
        (["dlq", "redrive", "rabbitmq:exchange/x", "--yes"], "is not a queue"),
        (["dlq", "redrive", "nope", "--yes"], "not a resource reference"),
        (["dlq", "drain", "kafka:x.dlq"], "--to-file"),
        (["dlq", "purge", "rabbitmq:queue/x.dlq"], "--yes"),
        (["dlq", "purge", "rabbitmq:queue/x.dlq", "--older-than", "soon", "--yes"], "duration"),
        (["dlq", "redrive", "--resume", "redrive-19990101-000000-0000"], "no job"),
        (["dlq", "peek", "kafka:x", "--max", "0"], "0"),
    ],
)
def test_usage_errors(args: list[str], fragment: str) -> None:
    proc = run_qctl(*args, env=NOWHERE)
    assert proc.returncode in (1, 2), proc.stderr
    one_line_error(proc, proc.returncode, fragment)


def test_moving_needs_yes_when_not_on_a_terminal() -> None:
    proc = run_qctl("dlq", "redrive", "kafka:x.dlq", env=NOWHERE)
    one_line_error(proc, 2, "--yes")


def test_purge_suggests_archiving_first() -> None:
    proc = run_qctl("dlq", "purge", "kafka:x.dlq", env=NOWHERE)
    one_line_error(proc, 2, "--archive")


def test_drain_refuses_to_overwrite_an_archive(tmp_path: Path) -> None:
    existing = tmp_path / "a.jsonl"
    existing.write_text("")
    proc = run_qctl("dlq", "drain", "kafka:x.dlq", "--to-file", str(existing), "--yes", env=NOWHERE)
    one_line_error(proc, 2, "already exists", "--append")


def test_unreachable_is_exit_3() -> None:
    proc = run_qctl("dlq", "peek", "kafka:x.dlq", "--timeout", "2", env=NOWHERE)
    one_line_error(proc, 3, "unreachable")


def test_jobs_empty_and_json() -> None:
    proc = run_qctl("dlq", "jobs")
    assert proc.returncode == 0, proc.stderr
    assert "(no jobs)" in proc.stdout
    proc = run_qctl("dlq", "jobs", "--all", "-o", "json")
    assert json.loads(proc.stdout) == []


def test_resume_needs_the_right_kind(tmp_path: Path) -> None:
    import os

    from qctl.jobs.store import JobStore

    store = JobStore(Path(os.environ["QCTL_STATE_DIR"]) / "jobs")
    job = store.create("drain", "kafka:x.dlq", "f.jsonl", {"dlq": "kafka:x.dlq"}, "at-least-once")
    proc = run_qctl("dlq", "redrive", "--resume", job.id, env=NOWHERE)
    one_line_error(proc, 2, "is a drain job", f"qctl dlq drain --resume {job.id}")
    job.state = "completed"
    store.save(job)
    proc = run_qctl("dlq", "drain", "--resume", job.id, env=NOWHERE)
    one_line_error(proc, 2, "already completed")
    shown = run_qctl("dlq", "jobs", job.id, "-o", "json")
    assert json.loads(shown.stdout)["state"] == "completed"
