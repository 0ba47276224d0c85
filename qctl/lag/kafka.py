"""Kafka consumer-group lag that can be trusted, from the consumer-groups capability.

What other tools get wrong, and what is done here instead:

* Transactions: a read_committed consumer can only read up to the last-stable offset
  (LSO), so its lag is measured against the LSO, not the high watermark. Which end
  applies is decided per group (``decide_isolation``). When nothing readable is left
  between the committed offset and the end (only transaction markers, aborted or
  compacted-away records), the lag is 0, not a stuck 1.
* Partitions the group never committed show their backlog from log-start and state
  "never-committed", not a lag counted from offset 0.
* A committed offset below log-start is "data-lost": retention removed that many unread
  messages. The lag counts only what is still there to read.
* Lag in time is the age of the message at the committed offset, read from the log.
  Only when it cannot be read is it approximated (the next message's timestamp, or
  interpolation over recorded log-end offsets), and then it is flagged as such.

Requests are batched: one listing, one describe for all groups, all OffsetFetches in
flight together, one ListOffsets per broker and end (log-start, high watermark, LSO),
and one consumer reading every probed position in about one fetch round.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from qctl.backends.capabilities.groups import (
    GroupDescription,
    MessageTimestamp,
    PartitionOffsets,
    Position,
    SupportsConsumerGroups,
    TopicPartition,
)
from qctl.errors import NotFoundError
from qctl.lag.history import GroupSample, HistoryStore, PartitionPoint
from qctl.lag.model import (
    Evaluation,
    GroupLag,
    MemberView,
    Owner,
    PartitionLag,
    PartitionState,
    TimeLagSource,
)
from qctl.lag.status import DEFAULT_RULES, Rules, evaluate_group, evaluate_partition

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"
ISOLATIONS = ("auto", READ_COMMITTED, READ_UNCOMMITTED)


def decide_isolation(
    requested: str,
    committed: Mapping[TopicPartition, int | None],
    offsets: Mapping[TopicPartition, PartitionOffsets],
) -> str:
    """The isolation level a group's lag is measured for.

    The broker does not say how a group reads, but its commits can: a group that has
    committed past the LSO of any partition has read uncommitted data, so it is
    read_uncommitted and measured against the high watermark. Otherwise it is measured
    against the LSO, which equals the high watermark unless a transaction is open, so
    non-transactional topics are unaffected and an open transaction is not counted as
    lag of a consumer that cannot read it yet.
    """
    if requested != "auto":
        return requested
    for tp, offset in committed.items():
        ends = offsets.get(tp)
        if offset is not None and ends is not None and offset > ends.last_stable:
            return READ_UNCOMMITTED
    return READ_COMMITTED


def measure_partition(
    tp: TopicPartition,
    committed: int | None,
    offsets: PartitionOffsets | None,
    *,
    topic_exists: bool,
    isolation: str,
) -> PartitionLag:
    """Lag in messages and the partition's state (time lag is added later)."""
    row = PartitionLag(
        topic=tp.topic,
        partition=tp.partition,
        state=PartitionState.OK,
        committed=committed,
        log_start=None,
        log_end=None,
        last_stable=None,
        end=None,
        lag=None,
    )
    if not topic_exists:
        row.state = PartitionState.TOPIC_DELETED
        return row
    if offsets is None:
        row.state = PartitionState.UNAVAILABLE
        return row
    end = offsets.last_stable if isolation == READ_COMMITTED else offsets.log_end
    row.log_start, row.log_end, row.last_stable = (
        offsets.log_start,
        offsets.log_end,
        offsets.last_stable,
    )
    row.end = end
    if committed is None:
        row.state = PartitionState.NEVER_COMMITTED
        row.backlog = max(end - offsets.log_start, 0)
    elif committed < offsets.log_start:
        row.state = PartitionState.DATA_LOST
        row.lag = max(end - offsets.log_start, 0)
        row.data_lost = offsets.log_start - committed
    elif committed > offsets.log_end:
        row.state = PartitionState.AHEAD
        row.lag = 0
    else:
        row.lag = max(end - committed, 0)
    return row


def probe_position(p: PartitionLag) -> Position | None:
    """Where to read the message whose age is the partition's lag in time."""
    if not p.lag or p.committed is None:
        return None
    tp = TopicPartition(p.topic, p.partition)
    if p.state is PartitionState.DATA_LOST and p.log_start is not None:
        return Position(tp, p.log_start)
    if p.state is PartitionState.OK:
        return Position(tp, p.committed)
    return None


def apply_time_lag(
    p: PartitionLag,
    probe: MessageTimestamp | None,
    now: float,
    end_history: Sequence[tuple[float, int]] = (),
) -> None:
    """Set the partition's lag in time from the probe, or mark it approximate."""
    if p.lag == 0:
        p.time_lag_seconds, p.time_lag_source = 0.0, TimeLagSource.CAUGHT_UP
        return
    if p.lag is None or p.committed is None:
        return
    if (
        probe is not None
        and probe.offset is None
        and probe.end_offset is not None
        and p.end is not None
        and probe.end_offset < p.end
    ):
        probe = None  # messages arrived after the read: unknown, not caught up
    if probe is not None and probe.offset is None:
        # Nothing readable between the position and the end: only transaction markers,
        # aborted or compacted-away records. A consumer there has nothing to do.
        p.lag = 0
        if p.end is not None and p.state is PartitionState.OK:
            p.end = p.committed
        p.time_lag_seconds, p.time_lag_source = 0.0, TimeLagSource.CAUGHT_UP
        return
    if probe is not None and probe.timestamp is not None:
        exact = probe.exact and p.state is PartitionState.OK
        p.time_lag_seconds = max(now - probe.timestamp / 1000.0, 0.0)
        p.time_lag_source = TimeLagSource.MESSAGE if exact else TimeLagSource.NEXT_MESSAGE
        p.time_lag_exact = exact
        return
    appended = interpolate_append_time(end_history, p.committed)
    if appended is not None:
        p.time_lag_seconds = max(now - appended, 0.0)
        p.time_lag_source = TimeLagSource.INTERPOLATED
        p.time_lag_exact = False


def interpolate_append_time(points: Sequence[tuple[float, int]], offset: int) -> float | None:
    """When ``offset`` was appended, from recorded (time, log-end offset) points.

    Only inside the recorded range: before the first point the time is unknown, and
    extrapolating is how other tools report time lags that never happened.
    """
    previous: tuple[float, int] | None = None
    for at, end in points:
        if end > offset:
            if previous is None:
                return None
            t0, e0 = previous
            if end == e0:
                return at
            return t0 + (offset - e0) * (at - t0) / (end - e0)
        previous = (at, end)
    return None


def _owners(desc: GroupDescription | None) -> dict[TopicPartition, Owner]:
    owners: dict[TopicPartition, Owner] = {}
    if desc is None:
        return owners
    for m in desc.members:
        for tp in m.assignment:
            owners[tp] = Owner(m.member_id, m.client_id, m.host)
    return owners


def read_groups(
    backend: SupportsConsumerGroups,
    backend_name: str,
    group_ids: Sequence[str] | None,
    *,
    isolation: str = "auto",
    history: HistoryStore | None = None,
    rules: Rules = DEFAULT_RULES,
    clock: Callable[[], float],
) -> list[GroupLag]:
    """Lag of the named groups (all groups when ``group_ids`` is None), evaluated.

    Raises ``NotFoundError`` when a named group does not exist.
    """
    explicit = group_ids is not None
    ids = (
        sorted(set(group_ids))
        if group_ids is not None
        else [g.group_id for g in backend.list_groups()]
    )
    if not ids:
        return []
    # Independent requests (the describe goes to librdkafka, the offsets to the group
    # coordinators): side by side.
    with ThreadPoolExecutor(1, thread_name_prefix="qctl-lag") as pool:
        describing = pool.submit(backend.describe_groups, ids)
        committed = backend.committed_offsets(ids)
        descriptions = describing.result()
    if explicit:
        missing = [
            g
            for g in ids
            if not committed.get(g)
            and (g not in descriptions or descriptions[g].state in ("Dead", "Unknown"))
        ]
        if missing:
            raise NotFoundError(
                f"no consumer group named {missing[0]!r} on {backend_name}",
                "list the groups with `qctl lag --all`",
            )
    topics: set[str] = set()
    for offsets in committed.values():
        topics.update(tp.topic for tp in offsets)
    for desc in descriptions.values():
        for member in desc.members:
            topics.update(tp.topic for tp in member.assignment)
    counts = backend.topic_partitions(topics) if topics else {}
    by_topic = {t: [TopicPartition(t, p) for p in range(n)] for t, n in counts.items()}
    partitions = {tp for tps in by_topic.values() for tp in tps}
    # Most groups read committed (or the topic has no transactions, where both ends are
    # the same): read the messages at the committed offsets while the ends are fetched.
    speculate = isolation in ("auto", READ_COMMITTED)
    guesses = {
        Position(tp, offset)
        for offsets in committed.values()
        for tp, offset in offsets.items()
        if offset is not None and tp.topic in counts
    }
    with ThreadPoolExecutor(2, thread_name_prefix="qctl-lag") as pool:
        ends_call = pool.submit(backend.partition_offsets, partitions) if partitions else None
        guess_call = (
            pool.submit(backend.message_timestamps, guesses, isolation=READ_COMMITTED)
            if speculate and guesses
            else None
        )
        ends = ends_call.result() if ends_call is not None else {}
        guessed = guess_call.result() if guess_call is not None else {}
    now = clock()

    measured: dict[str, list[PartitionLag]] = {}
    isolations: dict[str, str] = {}
    probes_wanted: dict[str, set[Position]] = defaultdict(set)
    for group in ids:
        group_commits = committed.get(group, {})
        owners = _owners(descriptions.get(group))
        group_topics = {tp.topic for tp in group_commits} | {tp.topic for tp in owners}
        tps = {tp for t in group_topics for tp in by_topic.get(t, ())} | set(group_commits)
        level = decide_isolation(isolation, group_commits, ends)
        isolations[group] = level
        rows = []
        for tp in sorted(tps):
            row = measure_partition(
                tp,
                group_commits.get(tp),
                ends.get(tp),
                topic_exists=tp.topic in counts,
                isolation=level,
            )
            row.owner = owners.get(tp)
            position = probe_position(row)
            if position is not None:
                probes_wanted[level].add(position)
            rows.append(row)
        measured[group] = rows

    probes: dict[str, dict[Position, MessageTimestamp]] = {READ_COMMITTED: dict(guessed)}
    for level, positions in probes_wanted.items():
        unprobed = positions - probes.get(level, {}).keys()
        if unprobed:
            probes.setdefault(level, {}).update(
                backend.message_timestamps(unprobed, isolation=level)
            )

    results = []
    for group in ids:
        level = isolations[group]
        key = f"{backend_name}:{group}"
        past = history.group(key) if history is not None else []
        for row in measured[group]:
            position = probe_position(row)
            probe = probes.get(level, {}).get(position) if position is not None else None
            apply_time_lag(row, probe, now)
            if row.time_lag_seconds is None and row.lag and past:
                # No usable message: interpolate over the recorded log-end offsets. (Only
                # then: collecting them for every partition costs more than the reads.)
                end_points = [
                    (s.at, pt.end)
                    for s in past
                    if (pt := s.partitions.get(row.key)) is not None and pt.end is not None
                ]
                apply_time_lag(row, probe, now, end_points)
        results.append(
            _assemble(
                backend_name,
                group,
                descriptions.get(group),
                level,
                measured[group],
                now,
                history,
                rules,
            )
        )
    return results


def _assemble(
    backend_name: str,
    group: str,
    desc: GroupDescription | None,
    isolation: str,
    rows: list[PartitionLag],
    now: float,
    history: HistoryStore | None,
    rules: Rules,
) -> GroupLag:
    sample = GroupSample(
        at=now,
        partitions={
            row.key: PartitionPoint(row.committed, row.end, row.lag, row.owner is not None)
            for row in rows
            if row.state is not PartitionState.TOPIC_DELETED
        },
    )
    group_key = f"{backend_name}:{group}"
    samples = history.add_group(group_key, sample) if history is not None else [sample]
    evaluations: dict[str, Evaluation] = {}
    tables = [(s.at, s.partitions) for s in samples]
    for row in rows:
        key = row.key
        series = [(at, points[key]) for at, points in tables if key in points]
        row.evaluation = evaluate_partition(series, row.state, rules)
        evaluations[key] = row.evaluation
    time_lags = [r.time_lag_seconds for r in rows if r.time_lag_seconds is not None]
    members = [
        MemberView(
            member_id=m.member_id,
            client_id=m.client_id,
            host=m.host,
            group_instance_id=m.group_instance_id,
            partitions=[str(tp) for tp in m.assignment],
        )
        for m in (desc.members if desc else [])
    ]
    return GroupLag(
        backend=backend_name,
        group=group,
        state=desc.state if desc else "Unknown",
        isolation=isolation,
        members=members,
        topics=sorted({r.topic for r in rows}),
        lag=sum(r.lag or 0 for r in rows),
        time_lag_seconds=max(time_lags) if time_lags else None,
        time_lag_exact=all(r.time_lag_exact for r in rows),
        backlog=sum(r.backlog or 0 for r in rows),
        never_committed=sum(1 for r in rows if r.state is PartitionState.NEVER_COMMITTED),
        data_lost=sum(r.data_lost or 0 for r in rows),
        partitions=rows,
        evaluation=evaluate_group(samples, evaluations, rules),
    )
