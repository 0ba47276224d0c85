"""Snapshots across backends: what one-shot runs, the plain watch and the TUI share.

Each backend is read in its own thread with a hard bound, so a dead RabbitMQ does not
delay the Kafka numbers. A backend that fails is reported in the snapshot's ``errors``
(it never raises) and rebuilt for the next snapshot, which is how the live view
recovers by itself when the broker comes back.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from qctl.backends.base import Backend
from qctl.backends.capabilities.groups import SupportsConsumerGroups
from qctl.backends.capabilities.queues import SupportsQueueStats
from qctl.concurrency import run_bounded
from qctl.errors import ExitCode, OperationTimeout, QctlError
from qctl.lag.history import HistoryStore
from qctl.lag.kafka import read_groups
from qctl.lag.model import BackendError, GroupLag, LagSnapshot, QueueLag
from qctl.lag.queues import read_queues
from qctl.lag.status import DEFAULT_RULES, Rules

log = logging.getLogger(__name__)

#: How many times the per-call timeout one backend's whole collection may take: a
#: snapshot makes a handful of sequential calls, each bounded by the timeout.
COLLECTION_BOUND = 4


@dataclass(frozen=True)
class Selection:
    """What to report: named groups and queues, or everything."""

    groups: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    everything: bool = False

    @property
    def all(self) -> bool:
        return self.everything or not (self.groups or self.queues)

    @property
    def wants_groups(self) -> bool:
        return self.all or bool(self.groups)

    @property
    def wants_queues(self) -> bool:
        return self.all or bool(self.queues)

    def group_ids(self) -> list[str] | None:
        return None if self.all else list(self.groups)

    def queue_names(self) -> list[str] | None:
        return None if self.all else list(self.queues)


class SnapshotSource(Protocol):
    """Anything the live view can refresh from (a collector, or recorded snapshots)."""

    context: str
    history: HistoryStore

    def snapshot(self) -> LagSnapshot: ...

    def close(self) -> None: ...


class LagCollector:
    """Takes snapshots of the selected groups and queues on the given backends."""

    def __init__(
        self,
        *,
        context: str,
        backends: Mapping[str, Callable[[], Backend]],
        targets: Mapping[str, str],
        selection: Selection,
        isolation: str = "auto",
        history: HistoryStore | None = None,
        rules: Rules = DEFAULT_RULES,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.context = context
        self.factories = dict(backends)
        self.targets = dict(targets)
        self.selection = selection
        self.isolation = isolation
        self.history = history if history is not None else HistoryStore()
        self.rules = rules
        self.timeout = timeout
        self.clock = clock
        self._live: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> LagSnapshot:
        started = self.clock()
        names = list(self.factories)
        calls = {name: functools.partial(self._collect, name) for name in names}
        results = run_bounded(calls, timeout=self.timeout * COLLECTION_BOUND + 2)
        snap = LagSnapshot(
            context=self.context,
            sampled_at=dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
            targets=dict(self.targets),
        )
        for name in names:
            outcome = results[name]
            if isinstance(outcome, tuple):
                groups, queues = outcome
                snap.groups.extend(groups)
                snap.queues.extend(queues)
                continue
            # A call that returned (with an error) is done with its backend: close it.
            # One that overran the bound may still be using it: just forget it.
            self._discard(name, close=outcome is not None)
            snap.errors.append(self._error(name, outcome))
        snap.groups.sort(key=lambda g: (g.backend, g.group))
        snap.queues.sort(key=lambda q: (q.backend, q.vhost, q.queue))
        return snap

    def close(self) -> None:
        with self._lock:
            live, self._live = self._live, {}
        for backend in live.values():
            try:
                backend.close()
            except Exception:  # closing must not mask the result
                log.debug("closing %s failed", backend.name, exc_info=True)

    # -- internals ----------------------------------------------------------------------
    def _backend(self, name: str) -> Backend:
        with self._lock:
            backend = self._live.get(name)
        if backend is None:
            backend = self.factories[name]()
            with self._lock:
                self._live[name] = backend
        return backend

    def _discard(self, name: str, close: bool) -> None:
        """Forget a failed backend so the next snapshot starts from a fresh connection."""
        with self._lock:
            backend = self._live.pop(name, None)
        if backend is not None and close:
            try:
                backend.close()
            except Exception:  # a broken connection may not close cleanly
                log.debug("closing %s failed", name, exc_info=True)

    def _collect(self, name: str) -> tuple[list[GroupLag], list[QueueLag]]:
        backend = self._backend(name)
        groups: list[GroupLag] = []
        queues: list[QueueLag] = []
        sel = self.selection
        if sel.wants_groups and isinstance(backend, SupportsConsumerGroups):
            groups = read_groups(
                backend,
                name,
                sel.group_ids(),
                isolation=self.isolation,
                history=self.history,
                rules=self.rules,
                clock=self.clock,
            )
        if sel.wants_queues and isinstance(backend, SupportsQueueStats):
            queues = read_queues(
                backend,
                name,
                sel.queue_names(),
                history=self.history,
                rules=self.rules,
                clock=self.clock,
            )
        return groups, queues

    def _error(self, name: str, outcome: object) -> BackendError:
        address = self.targets.get(name, "?")
        if isinstance(outcome, QctlError):
            return BackendError(name, address, str(outcome), int(outcome.exit_code))
        if outcome is None:
            err = OperationTimeout(
                f"{name} at {address} did not answer within "
                f"{self.timeout * COLLECTION_BOUND + 2:g}s",
                "raise --timeout or check the cluster's health",
            )
            return BackendError(name, address, str(err), int(err.exit_code))
        return BackendError(
            name,
            address,
            f"unexpected {type(outcome).__name__}: {outcome}",
            int(ExitCode.FAILED),
        )


def exit_code_for(errors: Sequence[BackendError]) -> int:
    """3 when every failure is an unreachable/auth/timeout one, else the first's code."""
    if not errors:
        return int(ExitCode.OK)
    codes = {e.exit_code for e in errors}
    if codes == {int(ExitCode.UNREACHABLE)}:
        return int(ExitCode.UNREACHABLE)
    return errors[0].exit_code
