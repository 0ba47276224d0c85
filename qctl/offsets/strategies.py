"""What a reset moves the offsets to: one small value type per strategy.

The strategies are those of Kafka's ``kafka-consumer-groups --reset-offsets`` (with the
same semantics, so its results are the oracle in the tests), plus copying another
group's offsets and restoring an undo snapshot. ``clamps`` says whether out-of-range
results are pulled back to log-start/log-end, as Kafka's tool does for offsets the user
computed (``--to-offset``, ``--shift-by``, ``--from-file``) but not for offsets read from
the log itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from qctl.backends.capabilities.groups import TopicPartition
from qctl.timespec import format_duration


@dataclass(frozen=True)
class ToEarliest:
    clamps = False

    def describe(self) -> str:
        return "to-earliest"


@dataclass(frozen=True)
class ToLatest:
    clamps = False

    def describe(self) -> str:
        return "to-latest"


@dataclass(frozen=True)
class ToCurrent:
    """Keep committed offsets; partitions without one get log-end (Kafka's --to-current)."""

    clamps = False

    def describe(self) -> str:
        return "to-current"


@dataclass(frozen=True)
class ToOffset:
    offset: int
    clamps = True

    def describe(self) -> str:
        return f"to-offset {self.offset}"


@dataclass(frozen=True)
class ShiftBy:
    delta: int
    clamps = True

    def describe(self) -> str:
        return f"shift-by {self.delta:+d}"


@dataclass(frozen=True)
class ToDatetime:
    instant: dt.datetime
    clamps = False

    def describe(self) -> str:
        return f"to-datetime {_utc(self.instant)}"


@dataclass(frozen=True)
class ByDuration:
    """``now - duration``, resolved once when the plan is made."""

    duration: dt.timedelta
    clamps = False

    def describe(self) -> str:
        return f"by-duration {format_duration(self.duration)}"


@dataclass(frozen=True)
class FromFile:
    source: str
    offsets: dict[TopicPartition, int] = field(hash=False, compare=False)
    clamps = True

    def describe(self) -> str:
        return f"from-file {self.source}"


@dataclass(frozen=True)
class ToGroup:
    """Copy another group's committed offsets (out-of-range ones are clamped)."""

    group: str
    clamps = True

    def describe(self) -> str:
        return f"to-group {self.group}"


@dataclass(frozen=True)
class Restore:
    """Put back an undo snapshot exactly: None means "had no committed offset"."""

    snapshot: str
    offsets: dict[TopicPartition, int | None] = field(hash=False, compare=False)
    clamps = False

    def describe(self) -> str:
        return f"undo to snapshot {self.snapshot}"


@dataclass(frozen=True)
class DeleteOffsets:
    """Remove the committed offsets (``qctl offsets delete``)."""

    clamps = False

    def describe(self) -> str:
        return "delete committed offsets"


Strategy = (
    ToEarliest
    | ToLatest
    | ToCurrent
    | ToOffset
    | ShiftBy
    | ToDatetime
    | ByDuration
    | FromFile
    | ToGroup
    | Restore
    | DeleteOffsets
)


def strategy_json(strategy: Strategy) -> dict[str, Any]:
    """A stable JSON description: ``{"name": "to-datetime", "value": "..."}``."""
    name = strategy.describe().split(" ", 1)[0]
    value: Any = None
    if isinstance(strategy, ToOffset):
        value = strategy.offset
    elif isinstance(strategy, ShiftBy):
        value = strategy.delta
    elif isinstance(strategy, ToDatetime):
        value = _utc(strategy.instant)
    elif isinstance(strategy, ByDuration):
        value = strategy.duration.total_seconds()
    elif isinstance(strategy, FromFile):
        value = strategy.source
    elif isinstance(strategy, ToGroup):
        value = strategy.group
    elif isinstance(strategy, Restore):
        name, value = "undo", strategy.snapshot
    elif isinstance(strategy, DeleteOffsets):
        name = "delete"
    return {"name": name, "value": value}


def _utc(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
