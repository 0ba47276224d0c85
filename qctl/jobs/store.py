"""Where jobs live: ``<state dir>/jobs/<id>.json`` plus an append-only ``<id>.ledger.jsonl``.

The state file is replaced atomically (write, fsync, rename) so a crash never leaves a
half-written one; the ledger only ever grows, one JSON object per line, so it reads as
the job's history (starts, resumes, progress, each message that failed, the end).
Both are private to the user (mode 0600): ledgers name topics, queues and errors.

A running job holds an exclusive lock on ``<id>.lock`` (``flock``), which the kernel
releases when the process dies however it dies: that is how ``qctl dlq jobs`` tells a
job that runs from one that was killed, and why a job cannot be resumed twice at once.
A second lock per source keeps two jobs of this machine off the same DLQ.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from qctl.errors import NotFoundError, QctlError, UsageError
from qctl.jobs.model import RUNNING, Job, now_iso

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


class JobBusy(QctlError):
    """The job (or another job on the same source) is running right now."""


class JobStore:
    """Jobs of this user, in the qctl state directory."""

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from qctl.config import state_dir

            root = state_dir() / "jobs"
        self.root = root

    # -- files ------------------------------------------------------------------------------
    def _ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def ledger_path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.ledger.jsonl"

    def new_id(self, kind: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return f"{kind}-{stamp}-{secrets.token_hex(2)}"

    def create(
        self,
        kind: str,
        source: str,
        target: str | None,
        options: dict[str, Any],
        guarantee: str,
    ) -> Job:
        self._ensure()
        job = Job(
            id=self.new_id(kind),
            kind=kind,
            source=source,
            target=target,
            options=options,
            guarantee=guarantee,
        )
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        self._ensure()
        job.touch()
        final = self.path(job.id)
        tmp = final.with_suffix(".json.tmp")
        data = json.dumps(job.to_json(), indent=2, ensure_ascii=False) + "\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)

    def load(self, ref: str) -> Job:
        """A job by id or unambiguous id prefix."""
        wanted = ref.strip()
        if not wanted or not set(wanted) <= _ID_CHARS:
            raise UsageError(f"{ref!r} is not a job id", "`qctl dlq jobs --all` lists job ids")
        exact = self.path(wanted)
        if exact.exists():
            return self._read(exact)
        matches = sorted(self.root.glob(f"{wanted}*.json")) if self.root.exists() else []
        if not matches:
            raise NotFoundError(f"no job {ref!r}", "`qctl dlq jobs --all` lists job ids")
        if len(matches) > 1:
            names = ", ".join(m.stem for m in matches[:5])
            raise UsageError(f"job id {ref!r} is ambiguous ({names})", "give more of the id")
        return self._read(matches[0])

    def _read(self, path: Path) -> Job:
        try:
            return Job.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise QctlError(f"cannot read job file {path}: {exc}") from None

    def jobs(self, kinds: tuple[str, ...] | None = None) -> list[Job]:
        """All jobs, newest first."""
        if not self.root.exists():
            return []
        found = []
        for path in self.root.glob("*.json"):
            try:
                job = self._read(path)
            except QctlError:
                continue
            if kinds is None or job.kind in kinds:
                found.append(job)
        return sorted(found, key=lambda j: j.created, reverse=True)

    # -- ledger -----------------------------------------------------------------------------
    def ledger(self, job: Job) -> Ledger:
        self._ensure()
        return Ledger(self.ledger_path(job.id))

    def read_ledger(self, job: Job) -> list[dict[str, Any]]:
        path = self.ledger_path(job.id)
        if not path.exists():
            return []
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    # -- locks ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def running(self, job: Job, source_key: str | None = None) -> Iterator[None]:
        """Hold the job's lock (and the source's) while the job runs in this process."""
        self._ensure()
        with contextlib.ExitStack() as stack:
            if not _try_lock(stack, self.root / f"{job.id}.lock"):
                raise JobBusy(
                    f"job {job.id} is running in another process",
                    "wait for it, or stop it (Ctrl-C in its terminal, or kill its pid)",
                )
            if source_key is not None:
                digest = hashlib.sha1(source_key.encode()).hexdigest()[:16]
                locks = self.root / "locks"
                locks.mkdir(exist_ok=True, mode=0o700)
                if not _try_lock(stack, locks / f"{digest}.lock"):
                    other = self._holder(source_key, job.id)
                    raise JobBusy(
                        f"another job{f' ({other})' if other else ''} is moving messages of "
                        f"{source_key} right now",
                        "wait for it to finish or stop it; two jobs on one source would "
                        "move messages twice",
                    )
            yield

    def _holder(self, source_key: str, mine: str) -> str | None:
        for job in self.jobs():
            if job.id != mine and job.source == source_key and self.is_running(job):
                return job.id
        return None

    def is_running(self, job: Job) -> bool:
        """True while some process holds the job's lock."""
        if job.state != RUNNING:
            return False
        path = self.root / f"{job.id}.lock"
        if not path.exists():
            return False
        with contextlib.ExitStack() as stack:
            return not _try_lock(stack, path)

    def display_state(self, job: Job) -> str:
        if job.state == RUNNING and not self.is_running(job):
            return "killed"
        return job.state


def _try_lock(stack: contextlib.ExitStack, path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False

    def release() -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    stack.callback(release)
    return True


class Ledger:
    """The append-only history of one job (JSON lines)."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file: IO[str] = os.fdopen(fd, "a", encoding="utf-8")

    def append(self, event: str, sync: bool = False, **fields: Any) -> None:
        record = {"at": now_iso(), "event": event, **fields}
        self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()
