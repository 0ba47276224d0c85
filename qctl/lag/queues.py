"""RabbitMQ queues in the lag view: depth as lag, rates, drain ETA, DLQ inflow.

A queue's lag is its depth (ready + unacknowledged). The same window rules as for Kafka
partitions judge whether its consumers keep up (docs/lag.md), with two differences: a
queue cannot rewind, and a dead-letter queue is not expected to be consumed, so what
matters about it is its inflow: dead letters arriving is a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qctl.backends.capabilities.queues import QueueStats, SupportsQueueStats
from qctl.errors import NotFoundError
from qctl.lag.history import HistoryStore, QueueSample
from qctl.lag.model import QueueLag, TimeLagSource
from qctl.lag.status import DEFAULT_RULES, Rules, evaluate_queue


def consume_rate(q: QueueStats) -> float | None:
    """Messages leaving the queue per second: acknowledgements, or deliveries when
    consumers use automatic acknowledgement (no acks at all)."""
    if q.rates.ack:
        return q.rates.ack
    if q.rates.deliver is not None:
        return q.rates.deliver
    return q.rates.ack


def inflow_rate(q: QueueStats, depth_slope: float | None) -> float | None:
    """Messages arriving per second.

    Dead-lettered messages do not count as publishes in RabbitMQ's statistics, so for
    a DLQ the inflow is the growth of its depth plus what consumers took out.
    """
    published = q.rates.publish or 0.0
    growth = depth_slope if depth_slope is not None else q.rates.depth_change
    if growth is None:
        return q.rates.publish
    derived = growth + (consume_rate(q) or 0.0)
    return max(published, derived, 0.0)


def build_queue_lag(
    backend_name: str,
    q: QueueStats,
    *,
    now: float,
    history: HistoryStore | None,
    rules: Rules = DEFAULT_RULES,
) -> QueueLag:
    key = f"{backend_name}:{q.vhost}/{q.name}"
    sample = QueueSample(
        at=now,
        depth=q.depth,
        consumers=q.consumers,
        consume_rate=consume_rate(q),
        publish_rate=q.rates.publish,
    )
    samples = history.add_queue(key, sample) if history is not None else [sample]
    window = samples[-rules.window :]
    slope = None
    if len(window) >= 2 and window[-1].at > window[0].at:
        slope = (window[-1].depth - window[0].depth) / (window[-1].at - window[0].at)
    inflow = inflow_rate(q, slope) if q.dead_letter else None
    time_lag = None
    source = None
    if q.depth == 0:
        time_lag, source = 0.0, TimeLagSource.CAUGHT_UP
    elif q.head_message_timestamp is not None:
        time_lag = max(now - q.head_message_timestamp, 0.0)
        source = TimeLagSource.HEAD_MESSAGE
    evaluation = evaluate_queue(
        samples,
        state=q.state,
        dead_letter=q.dead_letter,
        inflow_rate=inflow,
        depth_rate=q.rates.depth_change,
        rules=rules,
    )
    return QueueLag(
        backend=backend_name,
        vhost=q.vhost,
        queue=q.name,
        type=q.type,
        state=q.state,
        ready=q.ready,
        unacked=q.unacked,
        depth=q.depth,
        consumers=q.consumers,
        consumer_utilisation=q.consumer_utilisation,
        publish_rate=q.rates.publish,
        deliver_rate=q.rates.deliver,
        ack_rate=q.rates.ack,
        redeliver_rate=q.rates.redeliver,
        depth_rate=q.rates.depth_change,
        time_lag_seconds=time_lag,
        time_lag_source=source,
        dead_letter=q.dead_letter,
        dead_letter_reason=q.dead_letter_reason,
        inflow_rate=inflow,
        evaluation=evaluation,
    )


def read_queues(
    backend: SupportsQueueStats,
    backend_name: str,
    names: Sequence[str] | None,
    *,
    history: HistoryStore | None = None,
    rules: Rules = DEFAULT_RULES,
    clock: Callable[[], float],
) -> list[QueueLag]:
    """Lag of the named queues (all queues when ``names`` is None), evaluated.

    Raises ``NotFoundError`` when a named queue does not exist.
    """
    stats = backend.queue_stats(names)
    now = clock()
    if names is not None:
        found = {q.name for q in stats}
        missing = [n for n in names if n not in found]
        if missing:
            raise NotFoundError(
                f"no queue named {missing[0]!r} on {backend_name}",
                "list the queues with `qctl lag --all --backend rabbitmq`",
            )
    return [build_queue_lag(backend_name, q, now=now, history=history, rules=rules) for q in stats]
