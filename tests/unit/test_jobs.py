"""The job store (state file, ledger, locks), the progress line and the runner's exits."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from qctl.errors import ExitCode, Interrupted, NotFoundError, PartialFailure, QctlError, UsageError
from qctl.jobs.model import COMPLETED, FAILED, INTERRUPTED, PARTIAL, Counters
from qctl.jobs.progress import ProgressLine
from qctl.jobs.runner import JobRun, RunResult, run_job
from qctl.jobs.store import JobBusy, JobStore


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs")


def test_create_save_load_and_prefix(store: JobStore) -> None:
    job = store.create("redrive", "kafka:a.dlq", "(origin)", {"where": ["x"]}, "exactly-once")
    assert job.id.startswith("redrive-")
    job.counters.moved = 5
    store.save(job)
    again = store.load(job.id[: len("redrive-20261127-1")])
    assert again.counters.moved == 5
    assert again.options == {"where": ["x"]}
    assert stat.S_IMODE(store.path(job.id).stat().st_mode) == 0o600
    with pytest.raises(NotFoundError):
        store.load("redrive-19990101")
    with pytest.raises(UsageError):
        store.load("../etc/passwd")


def test_ambiguous_prefix(store: JobStore) -> None:
    store.create("drain", "kafka:a", "f", {}, "at-least-once")
    store.create("drain", "kafka:b", "f", {}, "at-least-once")
    with pytest.raises(UsageError, match="ambiguous"):
        store.load("drain-")


def test_ledger_appends_and_reads(store: JobStore) -> None:
    job = store.create("drain", "kafka:a", "f", {}, "at-least-once")
    ledger = store.ledger(job)
    ledger.append("started", pid=1)
    ledger.append("failed", source="kafka:a/0@3", reason="nope")
    ledger.close()
    ledger = store.ledger(job)
    ledger.append("finished")
    ledger.close()
    events = [e["event"] for e in store.read_ledger(job)]
    assert events == ["started", "failed", "finished"]
    mode = stat.S_IMODE(store.ledger_path(job.id).stat().st_mode)
    assert mode == 0o600


def test_lock_refuses_a_second_runner_and_tells_killed_from_running(store: JobStore) -> None:
    job = store.create("redrive", "kafka:a.dlq", None, {}, "exactly-once")
    other = store.create("redrive", "kafka:a.dlq", None, {}, "exactly-once")
    with store.running(job, source_key="kafka:a.dlq"):
        job.claim()
        store.save(job)
        assert store.display_state(job) == "running"
        with pytest.raises(JobBusy), store.running(job):
            pass
        with pytest.raises(JobBusy, match="another job"), store.running(other, "kafka:a.dlq"):
            pass
    # The lock is gone but the file still says running: the process was killed.
    assert store.display_state(store.load(job.id)) == "killed"


def test_progress_line_text_and_eta() -> None:
    out = io.StringIO()
    line = ProgressLine("job-1", stream=out, enabled=True)
    assert "ETA 10s" in line.text(100, 1000, 100.0)
    line.update(0, 100, force=True)
    line.update(50, 50, force=True)
    assert "moved 50" in out.getvalue()
    line.clear()
    assert out.getvalue().endswith("\r\x1b[K")
    quiet = io.StringIO()
    ProgressLine("x", stream=quiet).update(1, 1, force=True)  # not a terminal: nothing
    assert quiet.getvalue() == ""


def _run(store: JobStore, result: RunResult) -> tuple[str, QctlError | None, list[str]]:
    job = store.create("redrive", "kafka:a.dlq", None, {}, "exactly-once")
    said: list[str] = []

    def work(run: JobRun) -> RunResult:
        run.update(result.counters, 0, {"x": 1}, force=True)
        return result

    done, error = run_job(
        store,
        job,
        work,
        resume_command=f"qctl dlq redrive --resume {job.id}",
        info=said.append,
        warn=said.append,
        source_key="kafka:a.dlq",
    )
    return store.load(done.id).state, error, said


def test_runner_states_and_exit_codes(store: JobStore) -> None:
    state, error, said = _run(store, RunResult(counters=Counters(moved=3)))
    assert (state, error) == (COMPLETED, None)
    assert any("moved 3" in s for s in said)
    state, error, _ = _run(store, RunResult(counters=Counters(moved=1, failed=2), errors={"x": 2}))
    assert state == PARTIAL and isinstance(error, PartialFailure)
    assert error.exit_code == ExitCode.PARTIAL
    state, error, _ = _run(store, RunResult(stopped=True))
    assert state == INTERRUPTED and isinstance(error, Interrupted)
    assert "--resume" in str(error)
    state, error, _ = _run(store, RunResult(problem=QctlError("broker gone")))
    assert state == FAILED and error is not None and error.exit_code == ExitCode.FAILED
    assert "resume with" in str(error)


def test_runner_records_a_crash_of_the_engine(store: JobStore) -> None:
    job = store.create("drain", "rabbitmq:queue/q", "f", {}, "at-least-once")

    def work(run: JobRun) -> RunResult:
        from qctl.errors import UnreachableError

        raise UnreachableError("lost the connection")

    with pytest.raises(QctlError) as caught:
        run_job(store, job, work, resume_command="r", info=print, warn=print)
    assert caught.value.exit_code == ExitCode.FAILED  # resumable, not "unreachable"
    assert store.load(job.id).state == FAILED
    events = [
        json.loads(line)["event"] for line in store.ledger_path(job.id).read_text().splitlines()
    ]
    assert events[0] == "started" and events[-1] == "failed-run"


def test_resume_counts_add_up(store: JobStore) -> None:
    job = store.create("drain", "kafka:a", "f", {}, "at-least-once")
    for _ in range(2):
        job, error = run_job(
            store,
            store.load(job.id),
            lambda run: RunResult(counters=Counters(moved=2), stopped=True),
            resume_command="r",
            info=lambda s: None,
            warn=lambda s: None,
        )
        assert isinstance(error, Interrupted)
    final = store.load(job.id)
    assert final.counters.moved == 4
    assert final.runs == 2
    assert final.pid == os.getpid()
