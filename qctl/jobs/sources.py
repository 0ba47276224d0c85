"""Where the mover reads from: a consume session (topic, queue, stream) or an archive file.

Two kinds of source, because "done with this message" means different things:

* a **log** (Kafka topic, RabbitMQ stream, archive file) keeps a position: the mover
  advances it only over a prefix of messages that are all done, so a message that is
  not done is never skipped over (``advance``);
* a **queue** acknowledges message by message, in whatever order confirms arrive, and
  whatever is not acknowledged returns to the queue when the session closes
  (``settle``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from qctl.backends.capabilities.messaging import ConsumeSession, SettlingSession
from qctl.errors import UsageError
from qctl.messages import Message, read_archive


@dataclass
class SourceBatch:
    """Messages read together, and the source's handle for acknowledging them."""

    messages: list[Message]
    handle: Any = None


class MoveSource(Protocol):
    """A source of the mover (see the module docstring)."""

    #: True: position by prefix (``advance``); False: per message (``settle``).
    log: bool
    #: Logs: seconds between ``advance`` calls (a commit can be a network round trip).
    commit_every: float
    warnings: list[str]

    def next_batch(self, limit: int) -> SourceBatch | None:
        """Up to ``limit`` messages; empty when none came within a short wait; None at
        the end."""
        ...

    def settle(self, handle: Any, indices: list[int]) -> None:
        """Queues: acknowledge these messages of the batch."""
        ...

    def advance(self, handle: Any, count: int) -> None:
        """Logs: the first ``count`` messages of the batch (and all before) are done."""
        ...

    def checkpoint(self) -> dict[str, Any]:
        """Where a resume would continue (recorded in the job)."""
        ...

    def close(self) -> None: ...


class SessionSource:
    """A ``ConsumeSession`` as a mover source."""

    def __init__(self, session: ConsumeSession, log: bool, commit_every: float = 0.0) -> None:
        self.session = session
        self.log = log
        self.commit_every = commit_every
        self.warnings = session.warnings
        self._checkpoint: dict[str, Any] = {}
        if not log and not isinstance(session, SettlingSession):
            raise UsageError("this source cannot acknowledge single messages")

    def next_batch(self, limit: int) -> SourceBatch | None:
        batch = self.session.next_batch(limit)
        if batch is None:
            return None
        return SourceBatch(batch.messages(), batch)

    def settle(self, handle: Any, indices: list[int]) -> None:
        session = self.session
        assert isinstance(session, SettlingSession)
        session.settle(handle, indices)

    def advance(self, handle: Any, count: int) -> None:
        if count <= 0:
            return
        self.session.commit(handle, count)
        last = handle.messages()[count - 1]
        if last.offset is not None:
            if last.partition is not None:
                positions = self._checkpoint.setdefault("positions", {})
                positions[str(last.partition)] = last.offset + 1
            else:
                self._checkpoint["offset"] = last.offset + 1

    def checkpoint(self) -> dict[str, Any]:
        return dict(self._checkpoint)

    def close(self) -> None:
        self.session.close()


@dataclass
class FileSource:
    """An archive file, from message ``skip`` on (a resume skips what was done)."""

    path: Path
    skip: int = 0
    log: bool = True
    commit_every: float = 0.0
    warnings: list[str] = field(default_factory=list)
    _iter: Iterator[Message] | None = None
    _read: int = 0
    _done: int = 0

    def __post_init__(self) -> None:
        self._done = self.skip

    def next_batch(self, limit: int) -> SourceBatch | None:
        if self._iter is None:
            self._iter = read_archive(self.path)
            for _ in range(self.skip):
                if next(self._iter, None) is None:
                    break
            self._read = self.skip
        out: list[Message] = []
        for message in self._iter:
            out.append(message)
            if len(out) >= limit:
                break
        if not out:
            return None
        start = self._read
        self._read += len(out)
        return SourceBatch(out, start)

    def settle(self, handle: Any, indices: list[int]) -> None:
        return

    def advance(self, handle: Any, count: int) -> None:
        self._done = max(self._done, int(handle) + count)

    def checkpoint(self) -> dict[str, Any]:
        return {"messages_done": self._done}

    def close(self) -> None:
        if self._iter is not None and hasattr(self._iter, "close"):
            self._iter.close()
        self._iter = None
