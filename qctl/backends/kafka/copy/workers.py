"""A wire copy split over worker processes, one core each.

A wire copy is bound by one Python thread re-encoding records (a few µs each) while the
broker has CPU to spare. Large copies of several partitions therefore fork workers:
each takes every W-th source partition and runs the wire copier's transactions on them
with its own transactional producer (``<transactional.id>-w<i>``). All of them commit
their partitions' offsets to the job's group, as Kafka Streams' tasks do; each
transaction is still atomic, so the target holds every record exactly once for
``read_committed`` readers whatever is killed when.

The parent planned the copy (positions, ends, leaders) and fenced every producer id a
run of the job may have used, so a resume never waits for a killed worker's open
transaction. Workers share nothing with it but the plan (inherited by ``fork``) and a
pipe: after each commit a worker sends its running report, the parent merges them for
the job's progress, and asks the workers to stop (Ctrl-C) through an event. A worker
dies with the parent (``PR_SET_PDEATHSIG``, and a check of its parent between
transactions) and never touches the parent's librdkafka clients: it leaves with
``os._exit``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from qctl.backends.capabilities.transactions import CopyProgress, CopyReport
from qctl.backends.kafka.copy.common import InDoubt
from qctl.errors import QctlError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Event

    from qctl.backends.kafka.copy.wire_engine import WireCopier

log = logging.getLogger(__name__)

#: Workers at most (and the producer ids a run fences: ``<id>-w0`` ..).
MAX_WORKERS = 4
#: Records a copy must have left before workers are worth their start.
WORKERS_FROM = 100_000
#: ``QCTL_KAFKA_COPY_WORKERS``: a number of workers to use whatever the size (1: none).
ENV_WORKERS = "QCTL_KAFKA_COPY_WORKERS"


def worker_id(transactional_id: str, index: int) -> str:
    return f"{transactional_id}-w{index}"


def plan_shares(remaining: Mapping[int, int], limited: bool) -> list[set[int]]:
    """The partitions of each worker: one share (no workers) unless the copy is large
    and splits well. A partition is never split (its committed offset is one number),
    so the shares are balanced by the records left, and the count of workers is the
    one that should end first on this machine's cores (the broker needs some too)."""
    active = {p: n for p, n in remaining.items() if n > 0}
    total = sum(active.values())
    one = [set(active)]
    if limited or len(active) < 2 or not hasattr(os, "fork"):
        return one
    forced = os.environ.get(ENV_WORKERS)
    if forced is not None and forced.isdigit():
        return _balanced(active, max(1, min(int(forced), MAX_WORKERS, len(active))))
    cores = os.cpu_count() or 1
    if total < WORKERS_FROM or cores < 2:
        return one
    best, best_cost = one, 1.0
    for count in range(2, min(MAX_WORKERS, len(active)) + 1):
        shares = _balanced(active, count)
        largest = max(sum(active[p] for p in share) for share in shares) / total
        speed = min(1.0, (cores - 0.25) / count)
        cost = largest / speed
        if cost < best_cost * 0.95:
            best, best_cost = shares, cost
    return best


def _balanced(remaining: Mapping[int, int], count: int) -> list[set[int]]:
    """``count`` shares of the partitions, the largest first into the lightest share."""
    shares: list[set[int]] = [set() for _ in range(count)]
    loads = [0] * count
    for p in sorted(remaining, key=lambda q: (-remaining[q], q)):
        lightest = loads.index(min(loads))
        shares[lightest].add(p)
        loads[lightest] += remaining[p]
    return [share for share in shares if share]


@dataclass
class Outcome:
    """What the workers did together."""

    report: CopyReport
    handover: str | None = None
    error: QctlError | None = None
    reports: dict[int, CopyReport] = field(default_factory=dict)
    #: The workers' transactions whose commit went unanswered (``InDoubt``).
    in_doubt: list[InDoubt] = field(default_factory=list)


class _WorkerControl:
    """A worker's ``CopyControl``: stops when the parent asks or is gone, and sends its
    running report to the parent after each commit."""

    def __init__(self, stop: Event, pipe: Connection, parent: int) -> None:
        self.stop = stop
        self.pipe = pipe
        self.parent = parent

    def started(self, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
        pass

    def stopping(self) -> bool:
        return self.stop.is_set() or os.getppid() != self.parent

    def committed(self, progress: CopyProgress) -> None:
        assert isinstance(progress, CopyReport)
        self.pipe.send(("committed", progress))


def run_workers(copier: WireCopier, shares: list[set[int]], parent_control: Any) -> Outcome:
    """Fork a worker for each share of ``copier``'s active partitions; wait for them."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    stop = context.Event()
    count = len(shares)
    workers = []
    copier.close()  # sockets and the setup consumer stay with the parent
    for index, share in enumerate(shares):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_work,
            args=(copier, index, count, share, stop, send, os.getpid()),
            name=f"qctl-copy-{index}",
            daemon=True,
        )
        process.start()
        send.close()
        workers.append((index, process, receive))
    return _gather(copier, workers, stop, parent_control)


def _gather(copier: WireCopier, workers: list[Any], stop: Event, control: Any) -> Outcome:
    """Merge the workers' reports as they commit; pass Ctrl-C on; collect the ends."""
    from multiprocessing.connection import wait

    reports: dict[int, CopyReport] = {}
    base = copier.report
    outcome = Outcome(base)
    open_pipes: dict[Connection, int] = {receive: i for i, _process, receive in workers}
    heard = {index: time.monotonic() for index, _process, _receive in workers}
    # A worker reports after each transaction (every few seconds); starting may wait
    # for a killed run's transaction to time out.
    silence = copier.timeout + copier.txn_timeout_ms / 1000 + 30
    while open_pipes:
        if control.stopping() and not stop.is_set():
            stop.set()
        quiet = [i for i in open_pipes.values() if time.monotonic() - heard[i] > silence]
        if quiet:
            for _index, process, _receive in workers:
                process.kill()
            outcome.error = outcome.error or QctlError(
                f"a copy worker did not report for {silence:g}s and was stopped",
                "resume the job: it continues after the last committed transaction",
            )
            break
        for ready in wait(list(open_pipes), timeout=0.2):
            pipe = cast("Connection", ready)
            index = open_pipes[pipe]
            heard[index] = time.monotonic()
            try:
                message: tuple[Any, ...] = pipe.recv()
            except EOFError:
                del open_pipes[pipe]
                if index not in outcome.reports and outcome.error is None:
                    outcome.error = QctlError(
                        f"a copy worker ended without a word (exit code "
                        f"{workers[index][1].exitcode})",
                        "resume the job: it continues after the last committed transaction",
                    )
                    stop.set()
                continue
            kind, rest = message[0], message[1:]
            if kind == "committed":
                reports[index] = rest[0]
                control.committed(_merged(copier, base, reports))
            elif kind == "done":
                report, handover, in_doubt = rest
                reports[index] = report
                outcome.reports[index] = report
                outcome.in_doubt.extend(in_doubt)
                if handover is not None:
                    outcome.handover = outcome.handover or handover
            elif kind == "error":
                error_type, what, hint = rest
                outcome.error = outcome.error or _rebuilt(error_type, what, hint)
                outcome.reports[index] = reports.get(index, CopyReport())
                stop.set()
    for _index, process, _receive in workers:
        process.join(10)
    outcome.report = _merged(copier, base, reports)
    outcome.report.stopped = any(r.stopped for r in reports.values())
    outcome.report.warnings = list(
        dict.fromkeys([*base.warnings, *(w for r in reports.values() for w in r.warnings)])
    )
    return outcome


def _merged(copier: WireCopier, base: CopyReport, reports: Mapping[int, CopyReport]) -> CopyReport:
    out = CopyReport(
        positions=dict(base.positions),
        end_offsets=dict(base.end_offsets),
        warnings=list(base.warnings),
    )
    for report in reports.values():
        out.add(report)
        out.positions.update(report.positions)
        out.elapsed = max(out.elapsed, report.elapsed)
    ends = out.end_offsets
    out.remaining = sum(max(ends[p] - out.positions.get(p, ends[p]), 0) for p in ends)
    return out


def _rebuilt(error_type: type[QctlError], what: str, hint: str | None) -> QctlError:
    try:
        return error_type(what, hint)
    except TypeError:
        return QctlError(what, hint)


def _work(
    copier: WireCopier,
    index: int,
    workers: int,
    share: set[int],
    stop: Event,
    pipe: Connection,
    parent: int,
) -> None:
    """A worker process: the copier's transactions over ``share``; never returns."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
        logging.disable(logging.CRITICAL)  # a parent's thread may have held a stream's lock
        _close_inherited(pipe.fileno())
        _die_with(parent)
        copier.become_worker(
            worker_id(copier.request.transactional_id, index),
            share,
            _WorkerControl(stop, pipe, parent),
            workers,
        )
        report, handover = copier.run_transactions()
        pipe.send(("done", report, handover, copier.in_doubt))
    except QctlError as exc:
        pipe.send(("error", type(exc), exc.what, exc.hint))
        code = 1
    except BaseException as exc:  # reported, never raised into the forked interpreter
        pipe.send(("error", QctlError, f"a copy worker failed: {exc!r}", None))
        code = 1
    finally:
        pipe.close()
        os._exit(code)


def _close_inherited(keep: int) -> None:
    """Close what the worker inherited but for stdio and its pipe: above all the job's
    lock, so that the job reads as killed the moment its process is, and the parent's
    client sockets, which are not the worker's to use."""
    limit = 65536
    with contextlib.suppress(ValueError, OSError):
        limit = min(os.sysconf("SC_OPEN_MAX"), 1 << 20)
    os.closerange(3, keep)
    os.closerange(keep + 1, limit)


def _die_with(parent: int) -> None:
    """Be killed when the parent dies (Linux); else the workers notice between
    transactions that their parent changed."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)
