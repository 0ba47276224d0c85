"""``qctl offsets show``: where a group is, per partition, and who is consuming.

Committed offset, log-start, log-end (high watermark) and last-stable offset, lag, and
the timestamp of the message at the committed offset (how far behind in time the group
is), read in a fixed number of batched calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from qctl.backends.capabilities.groups import (
    GroupMember,
    Position,
    SupportsConsumerGroups,
    TopicPartition,
)
from qctl.errors import UsageError
from qctl.offsets.model import UnknownGroup, group_exists
from qctl.offsets.scope import TopicSpec, merge_specs
from qctl.timespec import from_millis


@dataclass
class PartitionStatus:
    topic: str
    partition: int
    committed: int | None
    log_start: int | None
    log_end: int | None
    last_stable: int | None
    #: log-end minus committed (what Kafka's tool calls LAG); None without a commit.
    lag: int | None
    #: Timestamp of the message at the committed offset (None: caught up, or unknown).
    committed_timestamp: dt.datetime | None
    #: Client id of the member the partition is assigned to, if any.
    consumer: str | None = None
    note: str | None = None


@dataclass
class GroupOffsets:
    group: str
    state: str
    members: list[GroupMember]
    partitions: list[PartitionStatus] = field(default_factory=list)

    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)


def show_offsets(
    groups: SupportsConsumerGroups,
    group: str,
    *,
    target: str,
    specs: Sequence[TopicSpec] = (),
    timestamps: bool = True,
) -> GroupOffsets:
    desc = groups.describe_groups([group])[group]
    raw = groups.committed_offsets([group]).get(group, {})
    if not group_exists(desc, raw):
        raise UnknownGroup(group, target)
    assigned = {tp: m.client_id for m in desc.members for tp in m.assignment}
    merged = merge_specs(specs)
    wanted: set[TopicPartition] = set(raw) | set(assigned)
    if merged:
        counts = groups.topic_partitions({s.topic for s in merged})
        committed_topics = {tp.topic for tp in raw}
        unknown = [
            s.topic for s in merged if s.topic not in counts and s.topic not in committed_topics
        ]
        if unknown:
            raise UsageError(
                f"topic {', '.join(repr(t) for t in unknown)} does not exist",
                "check the name (topic names are case-sensitive)",
            )
        for spec in merged:
            if spec.topic in counts:
                parts = range(counts[spec.topic]) if spec.partitions is None else spec.partitions
                wanted |= {TopicPartition(spec.topic, p) for p in parts}

        def chosen(tp: TopicPartition) -> bool:
            return any(
                s.topic == tp.topic and (s.partitions is None or tp.partition in s.partitions)
                for s in merged
            )

        wanted = {tp for tp in wanted if chosen(tp)}
    partitions = sorted(wanted)
    logs = groups.partition_offsets(partitions) if partitions else {}
    probes = [
        Position(tp, off)
        for tp, off in raw.items()
        if off is not None and tp in logs and off < logs[tp].log_end and tp in wanted
    ]
    found = groups.message_timestamps(probes) if timestamps and probes else {}
    result = GroupOffsets(group=group, state=desc.state, members=desc.members)
    for tp in partitions:
        log = logs.get(tp)
        committed = raw.get(tp)
        stamp = found.get(Position(tp, committed)) if committed is not None else None
        status = PartitionStatus(
            topic=tp.topic,
            partition=tp.partition,
            committed=committed,
            log_start=log.log_start if log else None,
            log_end=log.log_end if log else None,
            last_stable=log.last_stable if log else None,
            lag=max(log.log_end - committed, 0) if log and committed is not None else None,
            committed_timestamp=(
                from_millis(stamp.timestamp) if stamp and stamp.timestamp is not None else None
            ),
            consumer=assigned.get(tp),
        )
        if log is None:
            status.note = "the topic or partition no longer exists"
        elif committed is None:
            status.note = "no committed offset"
        elif committed < log.log_start:
            status.note = "committed offset is before log-start (deleted by retention)"
        elif committed > log.log_end:
            status.note = "committed offset is past log-end"
        result.partitions.append(status)
    return result
