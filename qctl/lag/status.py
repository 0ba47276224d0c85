"""Burrow-style evaluation: is a consumer keeping up, judged from recorded samples.

No lag threshold is involved (a lag of a million is fine for a consumer that is
catching up; a lag of five is not for one that stopped). Every function here is pure:
it takes the window of samples and returns an ``Evaluation``, so each rule is
unit-tested from recorded histories. The rules are documented in docs/lag.md.

Partition rules, first match wins:

1. ERR      the partition's state makes lag untrustworthy: data lost (committed below
            log-start), committed beyond the log end, offsets unavailable.
2. REWIND   the committed offset moved backwards between two samples of the window.
3. OK       the lag was 0 in some sample of the window (the consumer caught up).
4. OK       fewer than ``min_samples`` samples: not enough history to judge.
5. STALL    the offset did not move across a window of at least ``min_window_seconds``
            while lag > 0, and a live member owns the partition.
   STOP     the same without a live owner: nobody is committing.
6. WARN     the offset advanced but the lag grew at every step of the window.
7. OK       otherwise.

Burrow tells STALL from STOP by watching commits arrive with an unchanged offset; the
broker keeps only the latest commit, so a live member that owns the partition stands in
for "still committing". Burrow also warns when lag stays constant while offsets move;
we call that OK (a consumer committing in batches at a steady distance is keeping up).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from qctl.lag.history import GroupSample, PartitionPoint, QueueSample
from qctl.lag.model import Evaluation, PartitionState, Status, Trend
from qctl.timespec import format_duration as _format_duration

#: Every partition of a group spans the same window: the same few durations, formatted
#: thousands of times per snapshot.
format_duration = functools.lru_cache(maxsize=1024)(_format_duration)

#: Partition states whose lag cannot be trusted.
ERROR_STATES = {
    PartitionState.DATA_LOST: "retention removed messages the group never read",
    PartitionState.AHEAD: "committed offset is beyond the log end",
    PartitionState.UNAVAILABLE: "partition offsets are unavailable",
}
#: RabbitMQ queue states in which consumers can work.
HEALTHY_QUEUE_STATES = {"running", "idle", "flow", "minority", ""}


@dataclass(frozen=True)
class Rules:
    """Parameters of the evaluation (the defaults are documented in docs/lag.md)."""

    #: Samples in the evaluation window (Burrow's default is 10).
    window: int = 10
    #: Fewer samples than this: no STALL/STOP/WARN verdict yet.
    min_samples: int = 3
    #: An unchanged offset must span at least this long to be STALL/STOP, so a consumer
    #: that commits every few seconds is not flagged between two quick samples.
    min_window_seconds: float = 30.0
    #: A change of the lag by less than this fraction of its largest value (or by less
    #: than one message) over the window is a stable trend.
    stable_tolerance: float = 0.05
    #: The broker's statistics interval, for trends from a single RabbitMQ sample.
    broker_interval_seconds: float = 5.0


DEFAULT_RULES = Rules()


# -- building blocks -----------------------------------------------------------------------
def trend_of(points: Sequence[tuple[float, float]], rules: Rules = DEFAULT_RULES) -> Trend:
    """Increasing, stable or decreasing, from the least-squares slope over the window."""
    if len(points) < 2:
        return Trend.UNKNOWN
    span = points[-1][0] - points[0][0]
    if span <= 0:
        return Trend.UNKNOWN
    change = slope(points) * span
    return _trend_from_change(change, max(abs(v) for _, v in points), rules)


def _trend_from_change(change: float, scale_value: float, rules: Rules) -> Trend:
    tolerance = max(1.0, rules.stable_tolerance * scale_value)
    if abs(change) <= tolerance:
        return Trend.STABLE
    return Trend.INCREASING if change > 0 else Trend.DECREASING


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of value over time (per second)."""
    # Plain loops: a lag overview evaluates thousands of partitions per snapshot.
    n = len(points)
    sum_t = sum_v = 0.0
    for t, v in points:
        sum_t += t
        sum_v += v
    mean_t, mean_v = sum_t / n, sum_v / n
    var = cov = 0.0
    for t, v in points:
        dt_ = t - mean_t
        var += dt_ * dt_
        cov += dt_ * (v - mean_v)
    if var == 0:
        return 0.0
    return cov / var


def eta_seconds(lag: int | None, consume: float | None, produce: float | None) -> float | None:
    """Time to reach lag 0 when consuming faster than producing; None if not catching up."""
    if lag is None:
        return None
    if lag == 0:
        return 0.0
    if consume is None:
        return None
    net = consume - (produce or 0.0)
    if net <= 0:
        return None
    return lag / net


def _span(times: Sequence[float]) -> float:
    return times[-1] - times[0] if len(times) >= 2 else 0.0


# -- Kafka partitions and groups -----------------------------------------------------------
def partition_series(
    samples: Iterable[GroupSample], key: str
) -> list[tuple[float, PartitionPoint]]:
    """One partition's points across group samples (samples without it are skipped)."""
    return [(s.at, s.partitions[key]) for s in samples if key in s.partitions]


def evaluate_partition(
    series: Sequence[tuple[float, PartitionPoint]],
    state: PartitionState,
    rules: Rules = DEFAULT_RULES,
) -> Evaluation:
    """Evaluate one partition from its recorded points, oldest first, current last."""
    win = list(series[-rules.window :])
    times = [t for t, _ in win]
    span = _span(times)
    ev = Evaluation(samples=len(win), window_seconds=span)
    lags = [(t, float(p.lag)) for t, p in win if p.lag is not None]
    ev.trend = trend_of(lags, rules)
    if len(win) >= 2 and span > 0:
        first, last = win[0][1], win[-1][1]
        if first.committed is not None and last.committed is not None:
            ev.consume_rate = max(last.committed - first.committed, 0) / span
        if first.end is not None and last.end is not None:
            ev.produce_rate = max(last.end - first.end, 0) / span
    current = win[-1][1] if win else None
    ev.eta_seconds = eta_seconds(current.lag if current else None, ev.consume_rate, ev.produce_rate)

    if state in ERROR_STATES:
        ev.status, ev.reason = Status.ERR, ERROR_STATES[state]
        return ev
    if state is PartitionState.NEVER_COMMITTED:
        ev.reason = "no offset committed yet"
        return ev
    if state is PartitionState.TOPIC_DELETED:
        ev.reason = "the topic no longer exists; the commit is stale"
        return ev
    committed = [p.committed for _, p in win if p.committed is not None]
    for before, after in pairwise(committed):
        if after < before:
            ev.status = Status.REWIND
            ev.reason = f"offset moved backwards from {before} to {after}"
            return ev
    if current is None or any(p.lag == 0 for _, p in win):
        ev.reason = (
            "caught up" if current is not None and current.lag == 0 else "caught up in window"
        )
        return ev
    if len(win) < rules.min_samples:
        ev.reason = f"not enough history ({len(win)} of {rules.min_samples} samples)"
        return ev
    lag_now = current.lag
    if len(set(committed)) <= 1:
        if span < rules.min_window_seconds:
            ev.reason = (
                f"offset unchanged for {format_duration(span)}; judged after "
                f"{format_duration(rules.min_window_seconds)}"
            )
            return ev
        if current.owned:
            ev.status = Status.STALL
            ev.reason = (
                f"offset stuck at {current.committed} for {format_duration(span)} with lag "
                f"{lag_now} while a consumer owns the partition"
            )
        else:
            ev.status = Status.STOP
            ev.reason = f"no commits for {format_duration(span)} while lag is {lag_now}"
        return ev
    lag_values = [p.lag for _, p in win if p.lag is not None]
    if _rising_every_step(lag_values):
        ev.status = Status.WARN
        ev.reason = (
            f"lag rose from {lag_values[0]} to {lag_values[-1]} over {format_duration(span)}"
        )
        return ev
    ev.reason = "consuming"
    return ev


def _rising_every_step(values: Sequence[int | float]) -> bool:
    return len(values) >= 2 and all(b >= a for a, b in pairwise(values)) and values[-1] > values[0]


def evaluate_group(
    samples: Sequence[GroupSample],
    partitions: Mapping[str, Evaluation],
    rules: Rules = DEFAULT_RULES,
) -> Evaluation:
    """The group's status is its worst partition's; trend and rates use the total lag."""
    win = list(samples[-rules.window :])
    times = [s.at for s in win]
    span = _span(times)
    ev = Evaluation(samples=len(win), window_seconds=span)
    ev.trend = trend_of([(s.at, float(s.total_lag())) for s in win], rules)
    if len(win) >= 2 and span > 0:
        consumed = produced = 0
        first, last = win[0].partitions, win[-1].partitions
        for key in first.keys() & last.keys():
            a, b = first[key], last[key]
            if a.committed is not None and b.committed is not None:
                consumed += max(b.committed - a.committed, 0)
            if a.end is not None and b.end is not None:
                produced += max(b.end - a.end, 0)
        ev.consume_rate = consumed / span
        ev.produce_rate = produced / span
    lag = win[-1].total_lag() if win else None
    lags = {k: p.lag for k, p in win[-1].partitions.items()} if win else {}
    ev.eta_seconds = eta_seconds(lag, ev.consume_rate, ev.produce_rate)
    worst_key, worst = None, None
    for key in sorted(partitions):
        candidate = partitions[key]
        if worst is None or candidate.status.severity > worst.status.severity:
            worst_key, worst = key, candidate
    if worst is None:
        ev.reason = "no partitions"
        return ev
    ev.status = worst.status
    if worst.status is Status.OK:
        # Say what holds for the partition furthest behind.
        behind = max(
            (k for k in partitions if (lags.get(k) or 0) > 0),
            key=lambda k: lags.get(k) or 0,
            default=None,
        )
        ev.reason = partitions[behind].reason if behind else "caught up"
    else:
        others = sum(1 for e in partitions.values() if e.status is worst.status) - 1
        more = f" (+{others} more)" if others > 0 else ""
        ev.reason = f"{worst_key}: {worst.reason}{more}"
    return ev


# -- RabbitMQ queues -------------------------------------------------------------------------
def evaluate_queue(
    samples: Sequence[QueueSample],
    *,
    state: str,
    dead_letter: bool,
    inflow_rate: float | None,
    depth_rate: float | None,
    rules: Rules = DEFAULT_RULES,
) -> Evaluation:
    """The partition rules applied to a queue's depth, consumers and ack rate.

    A dead-letter queue is not expected to have consumers: it is WARN while dead letters
    arrive (its inflow rate), else OK. Queues never REWIND.
    """
    win = list(samples[-rules.window :])
    times = [s.at for s in win]
    span = _span(times)
    ev = Evaluation(samples=len(win), window_seconds=span)
    current = win[-1] if win else None
    depth_points = [(s.at, float(s.depth)) for s in win]
    if len(win) >= 2 and span > 0:
        ev.trend = trend_of(depth_points, rules)
        drain = -slope(depth_points)
    elif depth_rate is not None and current is not None:
        ev.trend = _trend_from_change(
            depth_rate * rules.broker_interval_seconds, float(current.depth), rules
        )
        drain = -depth_rate
    else:
        drain = None
    if current is not None:
        ev.consume_rate = current.consume_rate
        ev.produce_rate = current.publish_rate
        depth = current.depth
        if depth == 0:
            ev.eta_seconds = 0.0
        elif drain is not None:
            ev.eta_seconds = depth / drain if drain > 0 else None
        else:
            ev.eta_seconds = eta_seconds(depth, current.consume_rate, current.publish_rate)

    if state.lower() not in HEALTHY_QUEUE_STATES:
        ev.status, ev.reason = Status.ERR, f"queue is {state}"
        return ev
    if current is None:
        return ev
    if dead_letter:
        if inflow_rate is not None and inflow_rate > 0:
            ev.status = Status.WARN
            ev.reason = f"dead letters arriving at {inflow_rate:.3g}/s"
        else:
            ev.reason = "dead-letter queue, no inflow"
        return ev
    if any(s.depth == 0 for s in win):
        ev.reason = "empty" if current.depth == 0 else "emptied in window"
        return ev
    if len(win) < rules.min_samples:
        ev.reason = f"not enough history ({len(win)} of {rules.min_samples} samples)"
        return ev
    if span >= rules.min_window_seconds:
        if all(s.consumers == 0 for s in win):
            ev.status = Status.STOP
            ev.reason = (
                f"no consumers for {format_duration(span)} while {current.depth} messages wait"
            )
            return ev
        if all(s.consumers > 0 and not s.consume_rate for s in win):
            ev.status = Status.STALL
            ev.reason = (
                f"{current.consumers} consumer(s) attached but nothing acknowledged for "
                f"{format_duration(span)}"
            )
            return ev
    depths = [s.depth for s in win]
    if _rising_every_step(depths):
        ev.status = Status.WARN
        ev.reason = f"depth rose from {depths[0]} to {depths[-1]} over {format_duration(span)}"
        return ev
    ev.reason = "consuming" if current.consumers else "no consumers"
    return ev
