"""The rows of the live table: groups and queues in one list, filtered and sorted.

Kept free of textual so the ordering and filtering rules are unit-testable and the
widgets only draw what this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qctl.lag import format as fmt
from qctl.lag.history import HistoryStore
from qctl.lag.model import GroupLag, LagSnapshot, QueueLag, Status, Trend

#: Sort modes in the order ``s`` cycles through them.
SORTS = ("lag", "time lag", "status", "name")

TREND_ARROWS = {
    Trend.INCREASING: "↑ rising",
    Trend.STABLE: "→ stable",
    Trend.DECREASING: "↓ falling",
    Trend.UNKNOWN: "· -",
}

SPARK_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 16) -> str:
    """The last ``width`` values as block characters, scaled from 0 to their maximum."""
    tail = list(values)[-width:]
    if not tail:
        return " " * width
    top = max(tail)
    if top <= 0:
        bars = SPARK_BARS[0] * len(tail)
    else:
        last = len(SPARK_BARS) - 1
        bars = "".join(SPARK_BARS[min(round(v / top * last), last)] for v in tail)
    return bars.rjust(width)


@dataclass(frozen=True)
class Row:
    """One line of the table, with the raw values sorting needs."""

    key: str
    kind: str
    backend: str
    name: str
    status: Status
    lag: int
    lag_text: str
    time_lag: float | None
    time_lag_text: str
    trend: str
    consume: str
    produce: str
    eta: str
    history: str
    detail: str
    stale: bool = False


def group_row(g: GroupLag, history: HistoryStore, stale: bool = False) -> Row:
    ev = g.evaluation
    members = len(g.members)
    detail = f"{g.state}, {members} member{'s' if members != 1 else ''}"
    if g.data_lost:
        detail += f", data lost: {fmt.count(g.data_lost)}"
    if g.never_committed:
        detail += f", {g.never_committed} never committed"
    return Row(
        key=g.key,
        kind="group",
        backend=g.backend,
        name=g.group,
        status=ev.status,
        lag=g.lag,
        lag_text=fmt.count(g.lag),
        time_lag=g.time_lag_seconds,
        time_lag_text=fmt.duration(g.time_lag_seconds, g.time_lag_exact),
        trend=TREND_ARROWS[ev.trend],
        consume=fmt.rate(ev.consume_rate),
        produce=fmt.rate(ev.produce_rate),
        eta=fmt.eta(ev.eta_seconds, g.lag),
        history=sparkline(history.group_lag_series(g.key)),
        detail=detail,
        stale=stale,
    )


def queue_row(q: QueueLag, history: HistoryStore, stale: bool = False) -> Row:
    ev = q.evaluation
    detail = f"{q.consumers} consumer{'s' if q.consumers != 1 else ''}"
    if q.consumer_utilisation is not None and q.consumers:
        detail += f", {fmt.utilisation(q.consumer_utilisation)} busy"
    if q.dead_letter and q.inflow_rate:
        detail += f", +{fmt.rate(q.inflow_rate)}/s dead letters"
    name = q.queue if q.vhost == "/" else f"{q.vhost}/{q.queue}"
    return Row(
        key=q.key,
        kind="dlq" if q.dead_letter else "queue",
        backend=q.backend,
        name=name,
        status=ev.status,
        lag=q.depth,
        lag_text=fmt.count(q.depth),
        time_lag=q.time_lag_seconds,
        time_lag_text=fmt.duration(q.time_lag_seconds),
        trend=TREND_ARROWS[ev.trend],
        consume=fmt.rate(ev.consume_rate),
        produce=fmt.rate(ev.produce_rate),
        eta=fmt.eta(ev.eta_seconds, q.depth),
        history=sparkline(history.queue_depth_series(q.key)),
        detail=detail,
        stale=stale,
    )


def build_rows(
    snapshot: LagSnapshot,
    history: HistoryStore,
    *,
    stale_backends: Iterable[str] = (),
    sort: str = "lag",
    text_filter: str = "",
    backend: str | None = None,
) -> list[Row]:
    stale = set(stale_backends)
    rows = [group_row(g, history, g.backend in stale) for g in snapshot.groups]
    rows += [queue_row(q, history, q.backend in stale) for q in snapshot.queues]
    if backend is not None:
        rows = [r for r in rows if r.backend == backend]
    needle = text_filter.strip().lower()
    if needle:
        rows = [r for r in rows if needle in r.name.lower() or needle in r.kind]
    return sort_rows(rows, sort)


def sort_rows(rows: list[Row], sort: str) -> list[Row]:
    if sort == "lag":
        return sorted(rows, key=lambda r: (-r.lag, r.name))
    if sort == "time lag":
        return sorted(
            rows, key=lambda r: (r.time_lag is None, -(r.time_lag or 0.0), -r.lag, r.name)
        )
    if sort == "status":
        return sorted(rows, key=lambda r: (-r.status.severity, -r.lag, r.name))
    return sorted(rows, key=lambda r: (r.name, r.kind))
