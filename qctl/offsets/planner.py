"""Plans: per partition, the committed offset now, the offset a strategy gives, and what
that means (messages replayed or skipped, and the time span they cover).

Every fact is read in a fixed number of batched calls, whatever the number of
partitions: describe the group(s), fetch committed offsets, partition counts, the
log-start/log-end offsets, offsets for a time, and message timestamps, each once. That
is what keeps planning a group on hundreds of partitions within a couple of seconds.

The arithmetic follows Kafka's ``GroupOffsetsResetter`` so the results equal
``kafka-consumer-groups --reset-offsets`` for the same state: log-end is the high
watermark; a time past the last message maps to log-end (never -1); offsets a user
computed are clamped to [log-start, log-end]; shifting a partition without a committed
offset is an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from qctl.backends.capabilities.groups import (
    PartitionOffsets,
    Position,
    SupportsConsumerGroups,
    TopicPartition,
)
from qctl.errors import UsageError
from qctl.offsets.model import (
    FAILED,
    OffsetPlan,
    PartitionChange,
    UnknownGroup,
    group_exists,
)
from qctl.offsets.scope import TopicSpec, expand, merge_specs
from qctl.offsets.strategies import (
    ByDuration,
    DeleteOffsets,
    FromFile,
    Restore,
    ShiftBy,
    Strategy,
    ToCurrent,
    ToDatetime,
    ToEarliest,
    ToGroup,
    ToLatest,
    ToOffset,
    strategy_json,
)
from qctl.timespec import UTC, from_millis, to_millis

NO_COMMIT_NOTE = "no committed offset: the consumer would start at its auto.offset.reset"


def plan_reset(
    groups: SupportsConsumerGroups,
    group: str,
    strategy: Strategy,
    *,
    target: str,
    specs: Sequence[TopicSpec] = (),
    all_topics: bool = False,
    allow_new_group: bool = False,
    timestamps: bool = True,
    now: dt.datetime | None = None,
) -> OffsetPlan:
    """The plan for moving ``group`` with ``strategy`` over the chosen partitions."""
    now = now or dt.datetime.now(UTC)
    if not group:
        raise UsageError("the group id is empty", "pass --group NAME")
    _check_scope(strategy, specs, all_topics)
    other = strategy.group if isinstance(strategy, ToGroup) else None
    ids = [group] + ([other] if other and other != group else [])
    descs = groups.describe_groups(ids)
    committed_all = groups.committed_offsets(ids)
    desc = descs[group]
    raw = committed_all.get(group, {})
    committed = {tp: off for tp, off in raw.items() if off is not None}
    new_group = not group_exists(desc, raw)
    if new_group and isinstance(strategy, DeleteOffsets):
        raise UnknownGroup(group, target)
    if new_group and not allow_new_group and not isinstance(strategy, Restore):
        raise UnknownGroup(
            group,
            target,
            "check the group id (case matters); to create a new group with these offsets, "
            "pass --new-group",
        )
    other_offsets: dict[TopicPartition, int] = {}
    if other is not None:
        other_raw = committed_all.get(other, {})
        if not group_exists(descs[other], other_raw):
            raise UnknownGroup(other, target, "check the group given to --to-group")
        other_offsets = {tp: off for tp, off in other_raw.items() if off is not None}

    description = strategy.describe()
    if isinstance(strategy, ByDuration):
        instant = now - strategy.duration
        description += f" (since {_iso(instant)})"
    plan = OffsetPlan(
        group=group,
        state=desc.state,
        members=desc.members,
        strategy=strategy_json(strategy),
        description=description,
        created=now,
        new_group=new_group,
    )

    partitions = _partitions(groups, strategy, specs, all_topics, committed, other_offsets, plan)
    logs = groups.partition_offsets(partitions) if partitions else {}
    missing = [tp for tp in partitions if tp not in logs]
    if missing and isinstance(strategy, FromFile):
        raise UsageError(
            f"{strategy.source}: partition {', '.join(map(str, missing))} does not exist",
            "fix the file's topic and partition columns",
        )
    if missing and all_topics:
        for tp in missing:
            plan.warnings.append(f"{tp}: the topic or partition no longer exists; skipped")
        partitions = [tp for tp in partitions if tp in logs]
    elif missing and not isinstance(strategy, (Restore, DeleteOffsets)):
        raise UsageError(
            f"partition {', '.join(map(str, missing))} does not exist",
            "check the topic names and partition numbers",
        )

    if not partitions and not isinstance(strategy, DeleteOffsets):
        raise UsageError(
            f"no partitions left to change for group {group!r}",
            "name existing topics with --topic",
        )
    requested = _requested(groups, strategy, partitions, logs, committed, other_offsets, plan)
    for tp in partitions:
        if tp not in requested:
            continue
        log = logs.get(tp)
        change = PartitionChange(
            topic=tp.topic,
            partition=tp.partition,
            current=committed.get(tp),
            new=requested[tp],
            log_start=log.log_start if log else None,
            log_end=log.log_end if log else None,
        )
        if log is None:
            change.status = FAILED
            change.error = "the topic or partition no longer exists"
        elif strategy.clamps and change.new is not None:
            _clamp(change, log, plan)
        elif (
            isinstance(strategy, Restore)
            and change.new is not None
            and not log.log_start <= change.new <= log.log_end
        ):
            plan.warnings.append(
                f"{tp}: restoring offset {change.new}, now outside the log "
                f"[{log.log_start}, {log.log_end}]; the consumer's auto.offset.reset "
                "will decide where it starts"
            )
        plan.partitions.append(change)
    _count(plan, strategy)
    if timestamps:
        _spans(groups, plan)
    return plan


def _check_scope(strategy: Strategy, specs: Sequence[TopicSpec], all_topics: bool) -> None:
    if isinstance(strategy, (FromFile, Restore)):
        if specs or all_topics:
            raise UsageError(
                "--topic and --all-topics cannot be combined with --from-file",
                "the file names the partitions; drop --topic/--all-topics",
            )
        return
    if specs and all_topics:
        raise UsageError("give either --topic or --all-topics, not both")
    if not specs and not all_topics:
        raise UsageError(
            "no partitions chosen", "name topics with --topic T[:P,P] or pass --all-topics"
        )


def _partitions(
    groups: SupportsConsumerGroups,
    strategy: Strategy,
    specs: Sequence[TopicSpec],
    all_topics: bool,
    committed: dict[TopicPartition, int],
    other_offsets: dict[TopicPartition, int],
    plan: OffsetPlan,
) -> list[TopicPartition]:
    if isinstance(strategy, (FromFile, Restore)):
        return sorted(strategy.offsets)
    if all_topics:
        source = other_offsets if isinstance(strategy, ToGroup) else committed
        if not source:
            whose = strategy.group if isinstance(strategy, ToGroup) else plan.group
            raise UsageError(
                f"group {whose!r} has no committed offsets, so --all-topics selects nothing",
                "name the topics with --topic",
            )
        return sorted(source)
    merged = merge_specs(specs)
    if isinstance(strategy, DeleteOffsets):
        # Commits can outlive their topic; deleting them must not require it to exist.
        chosen = [
            tp
            for tp in committed
            if any(
                s.topic == tp.topic and (s.partitions is None or tp.partition in s.partitions)
                for s in merged
            )
        ]
        return sorted(chosen)
    counts = groups.topic_partitions({s.topic for s in merged})
    return expand(merged, counts)


def _requested(
    groups: SupportsConsumerGroups,
    strategy: Strategy,
    partitions: list[TopicPartition],
    logs: dict[TopicPartition, PartitionOffsets],
    committed: dict[TopicPartition, int],
    other_offsets: dict[TopicPartition, int],
    plan: OffsetPlan,
) -> dict[TopicPartition, int | None]:
    out: dict[TopicPartition, int | None] = {}
    if isinstance(strategy, Restore):
        return {tp: strategy.offsets[tp] for tp in partitions}
    if isinstance(strategy, DeleteOffsets):
        return dict.fromkeys(partitions)
    if isinstance(strategy, FromFile):
        return {tp: strategy.offsets[tp] for tp in partitions}
    if isinstance(strategy, ToGroup):
        for tp in partitions:
            if tp in other_offsets:
                out[tp] = other_offsets[tp]
            else:
                plan.warnings.append(
                    f"{tp}: group {strategy.group!r} has no committed offset here; left unchanged"
                )
        if not out:
            raise UsageError(
                f"group {strategy.group!r} has no committed offsets for the chosen partitions",
                "choose other topics, or another group to copy from",
            )
        return out
    if isinstance(strategy, ShiftBy):
        without = [tp for tp in partitions if tp not in committed]
        if without:
            raise UsageError(
                f"cannot shift {', '.join(map(str, without))}: the group has no committed "
                "offset there",
                "leave those partitions out (--topic T:P,P) or use another strategy for them",
            )
        return {tp: committed[tp] + strategy.delta for tp in partitions}
    if isinstance(strategy, ToOffset):
        return dict.fromkeys(partitions, strategy.offset)
    if isinstance(strategy, ToEarliest):
        return {tp: logs[tp].log_start for tp in partitions}
    if isinstance(strategy, ToLatest):
        return {tp: logs[tp].log_end for tp in partitions}
    if isinstance(strategy, ToCurrent):
        return {tp: committed.get(tp, logs[tp].log_end) for tp in partitions}
    instant = (
        strategy.instant if isinstance(strategy, ToDatetime) else plan.created - strategy.duration
    )
    millis = to_millis(instant)
    found = groups.offsets_for_times(dict.fromkeys(partitions, millis)) if partitions else {}
    for tp in partitions:
        offset = found.get(tp)
        if offset is None:
            # Kafka answers -1 when no message is that recent: that means log-end.
            out[tp] = logs[tp].log_end
            plan.warnings.append(
                f"{tp}: no message at or after {_iso(instant)}; using log-end {logs[tp].log_end}"
            )
        else:
            out[tp] = offset
    return out


def _clamp(change: PartitionChange, log: PartitionOffsets, plan: OffsetPlan) -> None:
    assert change.new is not None
    if change.new > log.log_end:
        change.requested, change.new, change.clamped = change.new, log.log_end, "log-end"
        plan.warnings.append(
            f"{change.tp}: offset {change.requested} is past log-end {log.log_end}; "
            f"using {log.log_end}"
        )
    elif change.new < log.log_start:
        change.requested, change.new, change.clamped = change.new, log.log_start, "log-start"
        plan.warnings.append(
            f"{change.tp}: offset {change.requested} is before log-start {log.log_start}; "
            f"using {log.log_start}"
        )


def _count(plan: OffsetPlan, strategy: Strategy) -> None:
    """Messages replayed or skipped: the offsets between current and new that still exist."""
    for change in plan.partitions:
        if isinstance(strategy, DeleteOffsets):
            change.note = "commit removed: the consumer would start at its auto.offset.reset"
            continue
        if change.new is None:
            change.note = "restores: no committed offset"
            continue
        if change.current is None:
            change.note = NO_COMMIT_NOTE
            continue
        if change.log_start is None or change.log_end is None:
            continue
        lower, upper = _window(change)
        count = max(upper - lower, 0)
        if change.new < change.current:
            change.replay, change.skip = count, 0
        elif change.new > change.current:
            change.replay, change.skip = 0, count
        else:
            change.replay = change.skip = 0


def _window(change: PartitionChange) -> tuple[int, int]:
    assert change.current is not None and change.new is not None
    assert change.log_start is not None and change.log_end is not None
    lower, upper = sorted((change.current, change.new))
    return max(lower, change.log_start), min(upper, change.log_end)


def _spans(groups: SupportsConsumerGroups, plan: OffsetPlan) -> None:
    """Timestamps of the first and last message of each replayed or skipped range."""
    wanted: dict[TopicPartition, tuple[Position, Position]] = {}
    for change in plan.partitions:
        if not (change.replay or change.skip):
            continue
        lower, upper = _window(change)
        wanted[change.tp] = (Position(change.tp, lower), Position(change.tp, upper - 1))
    if not wanted:
        return
    found = groups.message_timestamps([p for pair in wanted.values() for p in pair])
    for change in plan.partitions:
        if change.tp not in wanted:
            continue
        first, last = (found.get(p) for p in wanted[change.tp])
        if first is not None and first.timestamp is not None:
            change.span_start = from_millis(first.timestamp)
        if last is not None and last.timestamp is not None:
            change.span_end = from_millis(last.timestamp)


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
