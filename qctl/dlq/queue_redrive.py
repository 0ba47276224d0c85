"""A queue DLQ's redrive in the backend's own loop (``SupportsQueueMove``).

A redrive without ``--where`` routes each message by its provenance headers alone, so
the backend can move the queue itself, asking the mapper built here once per distinct
origin instead of building a ``Message`` per delivery. The answers are the generic
mover's (same targets, same headers: both translate ``RedriveRules.verdict``). When
the backend hands the move back, the generic mover continues from the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qctl.backends.capabilities.queuemove import (
    QueueDecision,
    QueueMapper,
    QueueMoveReport,
    QueueMoveRequest,
    QueueRoute,
    SupportsQueueMove,
)
from qctl.dlq.access import Dlq
from qctl.dlq.provenance import AMQP_PROVENANCE_HEADERS, from_amqp_headers
from qctl.dlq.routing import ORIGIN_NAMES, UNKNOWN, Action, RedriveRules, Verdict
from qctl.dlq.selection import Selection
from qctl.jobs.model import Counters
from qctl.jobs.runner import JobRun, RunResult

#: The headers a redrive's route and header changes depend on: the provenance, and
#: whether qctl's origin headers are already there.
READS = AMQP_PROVENANCE_HEADERS | frozenset(ORIGIN_NAMES)


def applies(dlq: Dlq, rules: RedriveRules, select: Selection, from_file: bool) -> bool:
    """Whether this redrive can run in the backend's loop: a queue DLQ, every message
    selected, and every target a queue or exchange of the DLQ's own vhost."""
    if dlq.log or from_file or not select.everything:
        return False
    if not isinstance(dlq.backend, SupportsQueueMove):
        return False
    to = rules.to
    if to is None:
        return True
    return (
        to.backend == dlq.ref.backend
        and to.kind in ("queue", "exchange")
        and (to.vhost is None or to.vhost == dlq.ref.vhost)
    )


def mapper(rules: RedriveRules) -> QueueMapper:
    """``RedriveRules.verdict`` as a ``QueueMapper``."""

    def decide(headers: Mapping[str, Any], exchange: str, routing_key: str) -> QueueDecision:
        recorded = any(name in headers for name in ORIGIN_NAMES)
        verdict = rules.verdict(
            from_amqp_headers(headers), routing_key=routing_key, has_origin_headers=recorded
        )
        return queue_route(verdict)

    timeless = not (rules.copy_provenance or rules.strip_headers)
    return QueueMapper(reads=READS, decide=decide, timeless=timeless)


def queue_route(verdict: Verdict) -> QueueDecision:
    """A verdict in the backend's terms: a queue target through the default exchange,
    an exchange with the target's routing key; the headers a verdict replaces are added
    (a header table holds one value per name)."""
    target = verdict.target
    if target is None:
        return UNKNOWN
    if target.ref.kind == "queue":
        exchange, key = "", target.ref.name
    else:
        exchange, key = target.ref.name, target.routing_key or ""
    return QueueRoute(
        exchange,
        key,
        target.label,
        add=(*verdict.add, *verdict.replace),
        drop=verdict.drop,
        parked=verdict.action is Action.PARK,
    )


class _Control:
    def __init__(self, run: JobRun, initial: int | None) -> None:
        self.run = run
        self.initial = initial

    def stopping(self) -> bool:
        return self.run.stop.is_set()

    def progress(self, report: QueueMoveReport) -> None:
        counters = counters_of(report)
        left = None
        if self.initial is not None:
            left = max(self.initial - counters.moved - counters.parked - counters.failed, 0)
        self.run.update(counters, left, {})

    def failure(self, source: str, reason: str) -> None:
        self.run.failure(source, reason)


def counters_of(report: QueueMoveReport) -> Counters:
    return Counters(moved=report.moved, parked=report.parked, failed=report.failed)


def run(
    dlq: Dlq,
    rules: RedriveRules,
    run: JobRun,
    *,
    window: int,
    limit: int | None,
    rate: float | None,
    timeout: float,
    initial: int | None,
) -> QueueMoveReport:
    mover = dlq.backend
    assert isinstance(mover, SupportsQueueMove)
    request = QueueMoveRequest(
        source=dlq.ref,
        mapper=mapper(rules),
        window=window,
        limit=limit,
        rate=rate,
        timeout=timeout,
    )
    return mover.queue_move(request, _Control(run, initial))


def merged(first: QueueMoveReport, rest: RunResult | None) -> RunResult:
    """One run's result from the backend's loop and, after a handover, the mover's."""
    result = RunResult(
        counters=counters_of(first),
        errors=dict(first.errors),
        per_target=dict(first.per_target),
        stopped=first.stopped,
        problem=first.problem,
        warnings=list(first.warnings),
        checkpoint={},
    )
    if rest is None:
        return result
    result.counters.add(rest.counters)
    for reason, n in rest.errors.items():
        result.errors[reason] = result.errors.get(reason, 0) + n
    for target, n in rest.per_target.items():
        result.per_target[target] = result.per_target.get(target, 0) + n
    result.warnings.extend(w for w in rest.warnings if w not in result.warnings)
    result.stopped, result.problem = rest.stopped, rest.problem
    result.checkpoint, result.remaining = rest.checkpoint, rest.remaining
    return result
