"""Running a job: claim it, show progress, keep its record, end it with the right exit.

Engines (DLQ, replay) hand ``run_job`` a function that does the work with a ``JobRun``
(stop flag, progress, checkpoint saving). Whatever happens, the job's state file and
ledger say how it ended:

* all done → ``completed``, exit 0;
* some messages failed (they stay in the source) → ``partial``, exit 4;
* Ctrl-C / SIGTERM → ``interrupted``: what was in flight was confirmed or rolled back,
  exactly the confirmed messages were acknowledged, exit 130 with the resume command;
* an error mid-way (a broker went away) → ``failed``, exit 1 with the resume command;
  nothing unconfirmed was acknowledged, so a resume loses nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qctl.errors import ExitCode, Interrupted, PartialFailure, QctlError
from qctl.jobs.interrupt import StopFlag, stop_on_signals
from qctl.jobs.model import COMPLETED, FAILED, INTERRUPTED, PARTIAL, Counters, Job
from qctl.jobs.progress import ProgressLine
from qctl.jobs.store import JobStore, Ledger

#: Seconds between saves of the job file while it runs.
_SAVE_EVERY = 1.0


@dataclass
class RunResult:
    """What one run of a job did."""

    counters: Counters = field(default_factory=Counters)
    errors: dict[str, int] = field(default_factory=dict)
    per_target: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    #: Why the run ended early, if it did.
    problem: BaseException | None = None
    warnings: list[str] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    remaining: int | None = None


class JobRun:
    """What a running job's engine works with."""

    def __init__(self, job: Job, store: JobStore, ledger: Ledger, stop: StopFlag) -> None:
        self.job = job
        self.store = store
        self.ledger = ledger
        self.stop = stop
        self.base = dataclasses.replace(job.counters)
        self.progress = ProgressLine(job.id)
        self.started = time.monotonic()
        self._last_save = 0.0
        self._last_moved = 0

    def update(
        self,
        counters: Counters,
        remaining: int | None = None,
        checkpoint: dict[str, Any] | None = None,
        force: bool = False,
    ) -> None:
        """Progress of this run (totals of this run only); saved now and then."""
        moved = counters.moved + counters.parked
        extra = []
        if counters.failed:
            extra.append(f"failed {counters.failed:,}")
        if counters.kept:
            extra.append(f"kept {counters.kept:,}")
        self.progress.update(
            self.base.moved + self.base.parked + moved, remaining, ", ".join(extra)
        )
        now = time.monotonic()
        if not force and now - self._last_save < _SAVE_EVERY:
            return
        self._last_save = now
        self._apply(counters, remaining, checkpoint)
        self.store.save(self.job)
        if moved != self._last_moved or force:
            self._last_moved = moved
            self.ledger.append(
                "progress", counters=vars(self.job.counters).copy(), checkpoint=checkpoint
            )

    def _apply(
        self, counters: Counters, remaining: int | None, checkpoint: dict[str, Any] | None
    ) -> None:
        total = dataclasses.replace(self.base)
        total.add(counters)
        total.remaining = remaining
        self.job.counters = total
        if checkpoint is not None:
            self.job.checkpoint = checkpoint

    def failure(self, source: str, reason: str) -> None:
        """One message could not be moved (it stays in the source)."""
        self.ledger.append("failed", source=source, reason=reason)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def run_job(
    store: JobStore,
    job: Job,
    work: Callable[[JobRun], RunResult],
    *,
    resume_command: str,
    info: Callable[[str], None],
    warn: Callable[[str], None],
    source_key: str | None = None,
) -> tuple[Job, QctlError | None]:
    """Run (or resume) ``job`` with ``work``; the job and the error its outcome calls for
    (None: completed). Errors before or while running are raised."""
    resumed = job.runs > 0
    with store.running(job, source_key):
        job.claim()
        store.save(job)
        ledger = store.ledger(job)
        ledger.append(
            "resumed" if resumed else "started",
            sync=True,
            pid=job.pid,
            source=job.source,
            target=job.target,
            options=job.options,
        )
        hint = f"resume with `{resume_command}`"
        info(f"job {job.id}: {'resuming' if resumed else 'started'} ({job.guarantee})")
        message = (
            f"qctl: stopping job {job.id} after the messages in flight (Ctrl-C again to abort)"
        )
        with stop_on_signals(message) as stop:
            run = JobRun(job, store, ledger, stop)
            result: RunResult | None = None
            try:
                result = work(run)
            except KeyboardInterrupt:
                run.progress.clear()
                job.state = INTERRUPTED
                job.error = "aborted by a second interrupt"
                store.save(job)
                ledger.append("interrupted", sync=True, forced=True)
                ledger.close()
                info(f"job {job.id}: aborted; unconfirmed messages stay in the source; {hint}")
                raise
            except QctlError as exc:
                run.progress.clear()
                job.state = FAILED
                job.error = str(exc)
                store.save(job)
                ledger.append("failed-run", sync=True, error=str(exc))
                ledger.close()
                if exc.exit_code == ExitCode.USAGE:
                    raise
                # Unconfirmed messages were never acknowledged: the job can go on.
                raise QctlError(f"job {job.id} stopped: {exc}", hint) from exc
            except BaseException as exc:
                run.progress.clear()
                job.state = FAILED
                job.error = f"{type(exc).__name__}: {exc}"
                store.save(job)
                ledger.append("failed-run", sync=True, error=job.error)
                ledger.close()
                raise
            run.progress.clear()
        assert result is not None
        run._apply(result.counters, result.remaining, result.checkpoint)
        job.add_errors(result.errors)
        for warning in result.warnings:
            warn(warning)
        summary = _summary(job, result, run.elapsed())
        if result.problem is not None:
            job.state = FAILED
            job.error = _describe(result.problem)
        elif result.stopped:
            job.state = INTERRUPTED
            job.error = f"stopped by {stop.signal or 'request'}"
        elif result.counters.failed:
            job.state = PARTIAL
            job.error = None
        else:
            job.state = COMPLETED
            job.error = None
        store.save(job)
        ledger.append(
            "finished" if job.state in (COMPLETED, PARTIAL) else job.state,
            sync=True,
            state=job.state,
            counters=vars(job.counters).copy(),
            run=vars(result.counters).copy(),
            errors=result.errors,
            error=job.error,
            checkpoint=job.checkpoint,
        )
        ledger.close()
    info(summary)
    for reason, count in sorted(result.errors.items(), key=lambda kv: -kv[1])[:10]:
        info(f"qctl: {count} failed: {reason}")
    if job.state == FAILED:
        assert result.problem is not None
        stopped = QctlError(f"job {job.id} stopped: {_describe(result.problem)}", hint)
        if getattr(result.problem, "exit_code", None) == ExitCode.USAGE:
            # An invalid input (a bad archive line) keeps exit 2, as when raised directly.
            stopped.exit_code = ExitCode.USAGE
        return job, stopped
    if job.state == INTERRUPTED:
        return job, Interrupted(f"job {job.id} interrupted", hint)
    if job.state == PARTIAL:
        return job, PartialFailure(
            f"job {job.id}: {result.counters.failed} message(s) could not be moved and stay "
            f"in {job.source}",
            f"see the reasons above (all of them: `qctl dlq jobs {job.id}`); fix the cause, "
            "then run again",
        )
    return job, None


def _describe(error: BaseException) -> str:
    if isinstance(error, QctlError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _summary(job: Job, result: RunResult, elapsed: float) -> str:
    c = result.counters
    moved = c.moved + c.parked
    rate = moved / elapsed if elapsed > 0 else 0.0
    parts = [f"moved {c.moved:,}"]
    for name, value in (("parked", c.parked), ("kept", c.kept), ("skipped", c.skipped)):
        if value:
            parts.append(f"{name} {value:,}")
    parts.append(f"failed {c.failed:,}")
    if result.remaining:
        parts.append(f"remaining {result.remaining:,}")
    tail = f" in {elapsed:.2f}s ({rate:,.0f} msg/s)"
    if job.runs > 1:
        t = job.counters
        tail += f"; all runs: moved {t.moved:,}, failed {t.failed:,}"
    return f"job {job.id}: " + ", ".join(parts) + tail
