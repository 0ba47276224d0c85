"""User-given limits for cron and CI checks: ``--threshold N`` and ``--max-time-lag D``.

A group exceeds ``N`` when its lag (the sum over partitions the group has committed)
is above it; a queue when its depth (ready + unacknowledged) is. ``D`` is compared with
a group's largest partition time lag and with the age of a queue's oldest message
(when publishers set the timestamp property).
"""

from __future__ import annotations

from dataclasses import dataclass

from qctl.lag.model import LagSnapshot
from qctl.timespec import format_duration


@dataclass(frozen=True)
class Thresholds:
    messages: int | None = None
    time_lag_seconds: float | None = None

    @property
    def active(self) -> bool:
        return self.messages is not None or self.time_lag_seconds is not None


@dataclass(frozen=True)
class Breach:
    #: "group" or "queue"
    kind: str
    backend: str
    name: str
    #: "lag" (messages) or "time_lag_seconds"
    metric: str
    value: float
    limit: float

    def describe(self) -> str:
        if self.metric == "lag":
            return (
                f"{self.kind} {self.name} ({self.backend}): lag "
                f"{int(self.value)} > {int(self.limit)}"
            )
        return (
            f"{self.kind} {self.name} ({self.backend}): time lag "
            f"{format_duration(self.value)} > {format_duration(self.limit)}"
        )


def find_breaches(snapshot: LagSnapshot, limits: Thresholds) -> list[Breach]:
    out: list[Breach] = []
    for g in snapshot.groups:
        out.extend(_check("group", g.backend, g.group, g.lag, g.time_lag_seconds, limits))
    for q in snapshot.queues:
        name = q.queue if q.vhost == "/" else f"{q.vhost}/{q.queue}"
        out.extend(_check("queue", q.backend, name, q.depth, q.time_lag_seconds, limits))
    return out


def _check(
    kind: str, backend: str, name: str, lag: int, time_lag: float | None, limits: Thresholds
) -> list[Breach]:
    found = []
    if limits.messages is not None and lag > limits.messages:
        found.append(Breach(kind, backend, name, "lag", lag, limits.messages))
    if (
        limits.time_lag_seconds is not None
        and time_lag is not None
        and time_lag > limits.time_lag_seconds
    ):
        found.append(
            Breach(kind, backend, name, "time_lag_seconds", time_lag, limits.time_lag_seconds)
        )
    return found
