"""The plan of an offset change, and the errors that stop one.

A plan is also the result: executing it fills in ``status`` and the offset read back
for every partition, so the table or JSON a user sees after ``--execute`` is the plan
they reviewed plus what actually happened. JSON field names are stable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from qctl.backends.capabilities.groups import GroupDescription, GroupMember, TopicPartition
from qctl.errors import QctlError, UsageError

#: ``status`` values of a partition.
PLANNED = "planned"
OK = "ok"
FAILED = "failed"


@dataclass
class PartitionChange:
    """One partition: where the group is, where it will be, and what that means."""

    topic: str
    partition: int
    #: Committed offset now (None: the group has no commit for this partition).
    current: int | None
    #: Offset to commit (None: remove the commit, as ``offsets delete`` or an undo does).
    new: int | None
    log_start: int | None
    log_end: int | None
    #: The offset the strategy asked for, when it was out of range and got clamped.
    requested: int | None = None
    #: "log-start" or "log-end" when clamped.
    clamped: str | None = None
    #: Messages the group will read again (rewind) or skip (forward); None when unknown.
    replay: int | None = None
    skip: int | None = None
    #: Timestamps of the first and last message replayed or skipped.
    span_start: dt.datetime | None = None
    span_end: dt.datetime | None = None
    note: str | None = None
    status: str = PLANNED
    #: The committed offset read back after writing.
    verified: int | None = None
    error: str | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def changes(self) -> bool:
        return self.new != self.current

    @property
    def span_seconds(self) -> float | None:
        if self.span_start is None or self.span_end is None:
            return None
        return (self.span_end - self.span_start).total_seconds()


@dataclass
class OffsetPlan:
    group: str
    state: str
    members: list[GroupMember]
    strategy: dict[str, Any]
    description: str
    created: dt.datetime
    partitions: list[PartitionChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: True when the group does not exist yet and executing creates it.
    new_group: bool = False
    executed: bool = False
    #: Id of the undo snapshot saved before writing.
    snapshot: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.members) or self.state not in ("Empty", "Dead", "Unknown")

    def totals(self) -> dict[str, int]:
        return {
            "partitions": len(self.partitions),
            "changing": sum(1 for c in self.partitions if c.changes),
            "replay": sum(c.replay or 0 for c in self.partitions),
            "skip": sum(c.skip or 0 for c in self.partitions),
            "clamped": sum(1 for c in self.partitions if c.clamped),
            "failed": sum(1 for c in self.partitions if c.status == FAILED),
        }

    def to_json(self) -> dict[str, Any]:
        from qctl.output import to_jsonable

        data: dict[str, Any] = {
            "group": self.group,
            "state": self.state,
            "members": members_json(self.members),
            "strategy": self.strategy,
            "description": self.description,
            "created": self.created,
            "new_group": self.new_group,
            "executed": self.executed,
            "snapshot": self.snapshot,
            "totals": self.totals(),
            "warnings": self.warnings,
            "partitions": [
                dict(to_jsonable(c), span_seconds=c.span_seconds) for c in self.partitions
            ],
        }
        return data


def members_json(members: list[GroupMember]) -> list[dict[str, Any]]:
    """Members with their assignment as ``topic/partition`` strings (stable JSON)."""
    return [
        {
            "member_id": m.member_id,
            "client_id": m.client_id,
            "host": m.host,
            "group_instance_id": m.group_instance_id,
            "assignment": [str(tp) for tp in m.assignment],
        }
        for m in members
    ]


def member_summary(members: list[GroupMember], limit: int = 3) -> str:
    """``client id 'billing' on /10.0.0.5 (member billing-1-ab12), ...`` for messages."""
    parts = []
    for m in members[:limit]:
        ident = f"client id {m.client_id!r} on {m.host}"
        if m.group_instance_id:
            ident += f", instance {m.group_instance_id!r}"
        parts.append(f"{ident} (member {m.member_id})")
    if len(members) > limit:
        parts.append(f"and {len(members) - limit} more")
    return "; ".join(parts)


class GroupActive(QctlError):
    """The group has live members: a reset would be refused or silently overwritten."""

    def __init__(self, desc: GroupDescription, action: str = "reset its offsets") -> None:
        count = len(desc.members)
        if count:
            who = (
                f"{count} active member{'s' if count != 1 else ''}: {member_summary(desc.members)}"
            )
        else:
            who = f"state {desc.state}"
        super().__init__(
            f"refusing to {action}: group {desc.group_id!r} is active ({who})",
            "stop its consumers and wait until `qctl offsets show --group "
            f"{desc.group_id}` says Empty, then retry (there is no --force)",
        )
        self.group = desc.group_id


class UnknownGroup(UsageError):
    """The group does not exist: most likely a typo, so it is bad input (exit 2)."""

    def __init__(self, group: str, target: str, hint: str | None = None) -> None:
        super().__init__(
            f"consumer group {group!r} does not exist on {target}",
            hint or "check the group id (case matters)",
        )
        self.group = group


def group_exists(desc: GroupDescription, committed: dict[TopicPartition, int | None]) -> bool:
    """Kafka describes an unknown group as Dead with no members and no offsets."""
    return bool(desc.members or committed) or desc.state not in ("Dead", "Unknown")
