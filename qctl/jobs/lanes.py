"""Lanes: where the mover sends messages, each confirming them one by one.

A lane is one destination: a produce target (run by the backend's ``produce`` in its own
thread, so several targets — a redrive by provenance reaches many exchanges or topics —
are written side by side while the main thread reads the source and acknowledges), an
archive file (written and fsynced in the main thread), or nothing at all (a purge).
Every message handed to a lane gets exactly one outcome, reported back with the token
it was submitted with; a lane that dies fails what it still holds.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from qctl.backends.capabilities.messaging import (
    OK,
    Outcome,
    ProduceOptions,
    ProduceReport,
    SupportsProduce,
)
from qctl.errors import QctlError, UsageError
from qctl.messages import ArchiveWriter, Message
from qctl.refs import Ref

#: Called with the token a message was submitted with, and its outcome.
Report = Callable[[Any, Outcome], None]


class Lane(Protocol):
    """One destination of a move."""

    label: str
    #: Set when the lane stopped for good (its remaining messages were failed).
    error: BaseException | None
    warnings: list[str]
    #: The destination takes nothing for now (a broker's resource alarm): outcomes
    #: are late, not lost.
    blocked: bool

    def submit(self, items: list[tuple[Message, Any]]) -> None:
        """Send these messages; each (message, token) gets one outcome later."""
        ...

    def poll(self) -> None:
        """Called by the mover's loop every round (synchronous lanes settle here)."""
        ...

    def close(self, timeout: float) -> None:
        """No more messages: finish what was submitted (at most ``timeout``) and stop."""
        ...


class ProduceLane:
    """Messages to one produce target, through the backend's ``produce`` in a thread."""

    def __init__(
        self,
        producer: SupportsProduce,
        target: Ref,
        options: ProduceOptions,
        report: Report,
        label: str | None = None,
    ) -> None:
        self.producer = producer
        self.target = target
        self.options = options
        self.label = label or str(target)
        self.error: BaseException | None = None
        self.warnings: list[str] = []
        self.blocked = False
        self.result: ProduceReport | None = None
        self._report = report
        self._queue: collections.deque[list[Message]] = collections.deque()
        self._tokens: dict[int, tuple[Message, Any]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"qctl-lane-{self.label}", daemon=True
        )
        self._thread.start()

    def submit(self, items: list[tuple[Message, Any]]) -> None:
        if self.error is not None:
            for _message, token in items:
                self._report(token, Outcome(ok=False, error=_describe(self.error)))
            return
        with self._lock:
            for message, token in items:
                self._tokens[id(message)] = (message, token)
        self._queue.append([m for m, _ in items])

    def poll(self) -> None:
        if not self._thread.is_alive():
            self._fail_rest(self.error)

    def close(self, timeout: float) -> None:
        self._closed.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._fail_rest(self.error)

    def _items(self) -> Iterator[Message | None]:
        queue = self._queue
        while True:
            try:
                chunk = queue.popleft()
            except IndexError:
                if self._closed.is_set() and not queue:
                    return
                yield None  # nothing now: the producer serves its connection meanwhile
                continue
            yield from chunk

    def _outcome(self, message: Any, outcome: Outcome) -> None:
        with self._lock:
            entry = self._tokens.pop(id(message), None)
        if entry is not None:
            self._report(entry[1], outcome)

    def _set_blocked(self, blocked: bool) -> None:
        self.blocked = blocked

    def _run(self) -> None:
        options = replace(self.options, on_blocked=self._set_blocked)
        try:
            self.result = self.producer.produce(self.target, self._items(), options, self._outcome)
            self.warnings.extend(self.result.warnings)
            if self.result.aborted:
                self.error = QctlError(f"writing to {self.label} stopped: {self.result.aborted}")
        except BaseException as exc:  # handed to the mover, which decides
            self.error = exc
        finally:
            self.blocked = False
            self._fail_rest(self.error)

    def _fail_rest(self, error: BaseException | None) -> None:
        """Everything still without an outcome failed (the lane is gone)."""
        with self._lock:
            rest = list(self._tokens.values())
            self._tokens.clear()
        while self._queue:
            self._queue.popleft()
        if not rest:
            return
        reason = _describe(error) if error is not None else "not confirmed before the end"
        for _message, token in rest:
            self._report(token, Outcome(ok=False, error=reason))


class ArchiveLane:
    """Messages into a JSONL archive file; confirmed once flushed and fsynced.

    The file is created with mode 0600 (dead letters often hold personal data) and
    opened for appending, so a resumed drain continues the same file.
    """

    def __init__(self, path: Path, report: Report, append: bool = False) -> None:
        self.label = str(path)
        self.error: BaseException | None = None
        self.warnings: list[str] = []
        self.blocked = False
        self._report = report
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if not append:
            flags |= os.O_EXCL
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise UsageError(
                f"{path} already exists", "choose another file, or add --append to extend it"
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        self.writer = ArchiveWriter(os.fdopen(fd, "a", encoding="utf-8"))
        self._written: list[Any] = []

    def submit(self, items: list[tuple[Message, Any]]) -> None:
        self.writer.write_all([m for m, _ in items])
        self._written.extend(token for _, token in items)

    def poll(self) -> None:
        if not self._written:
            return
        try:
            self.writer.sync()
        except OSError as exc:
            self.error = exc
            tokens, self._written = self._written, []
            for token in tokens:
                self._report(token, Outcome(ok=False, error=f"cannot write the archive: {exc}"))
            return
        tokens, self._written = self._written, []
        for token in tokens:
            self._report(token, OK)

    def close(self, timeout: float) -> None:
        self.poll()
        self.writer.close()


class RejectLane:
    """Fails every message with one reason (e.g. "origin unknown"): they stay in the
    source and are reported like any other message that could not be written."""

    def __init__(self, reason: str, report: Report) -> None:
        self.label = reason
        self.error: BaseException | None = None
        self.warnings: list[str] = []
        self.blocked = False
        self._reason = reason
        self._report = report

    def submit(self, items: list[tuple[Message, Any]]) -> None:
        for _message, token in items:
            self._report(token, Outcome(ok=False, error=self._reason))

    def poll(self) -> None:
        return

    def close(self, timeout: float) -> None:
        return


class DiscardLane:
    """Takes messages and confirms them at once: what a purge "writes"."""

    label = "(deleted)"

    def __init__(self, report: Report) -> None:
        self.error: BaseException | None = None
        self.warnings: list[str] = []
        self.blocked = False
        self._report = report

    def submit(self, items: list[tuple[Message, Any]]) -> None:
        for _message, token in items:
            self._report(token, OK)

    def poll(self) -> None:
        return

    def close(self, timeout: float) -> None:
        return


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "the lane stopped"
    if isinstance(error, QctlError):
        return error.what
    return f"{type(error).__name__}: {error}"
