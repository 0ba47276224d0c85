"""Planning, clamping, execution and undo against an in-memory cluster model.

The real broker, with Kafka's own tool as the oracle, is in
tests/integration/test_offsets_kafka.py; here the arithmetic, the messages and the
number of calls per plan are pinned down without a network.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from qctl.backends.capabilities.groups import (
    GroupDescription,
    GroupListing,
    GroupMember,
    MessageTimestamp,
    PartitionOffsets,
    Position,
    SupportsConsumerGroups,
    TopicPartition,
)
from qctl.backends.capabilities.offsets import PartitionError, SupportsOffsetAdmin
from qctl.errors import ExitCode, PartialFailure, QctlError, UsageError
from qctl.offsets import strategies as s
from qctl.offsets.executor import Where, execute_plan, raise_for_failures
from qctl.offsets.model import GroupActive, UnknownGroup
from qctl.offsets.planner import plan_reset
from qctl.offsets.scope import TopicSpec
from qctl.offsets.show import show_offsets
from qctl.offsets.snapshots import SnapshotStore
from qctl.timespec import UTC, to_millis

TP = TopicPartition
BASE = dt.datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = 60_000


class Cluster:
    """Topics whose message i has timestamp BASE + i minutes; groups with commits."""

    def __init__(self) -> None:
        self.log_start: dict[TopicPartition, int] = {}
        self.log_end: dict[TopicPartition, int] = {}
        self.groups: dict[str, dict[TopicPartition, int]] = {}
        self.members: dict[str, list[GroupMember]] = {}
        self.calls: Counter[str] = Counter()
        self.refuse: set[TopicPartition] = set()
        self.ignore: set[TopicPartition] = set()

    def topic(self, name: str, partitions: int, end: int, start: int = 0) -> None:
        for p in range(partitions):
            self.log_start[TP(name, p)] = start
            self.log_end[TP(name, p)] = end

    # -- SupportsConsumerGroups --------------------------------------------------------
    def list_groups(self) -> list[GroupListing]:
        return [GroupListing(g, "Empty") for g in self.groups]

    def describe_groups(self, group_ids: Iterable[str]) -> dict[str, GroupDescription]:
        self.calls["describe_groups"] += 1
        out = {}
        for g in group_ids:
            members = self.members.get(g, [])
            state = "Stable" if members else ("Empty" if g in self.groups else "Dead")
            out[g] = GroupDescription(g, state, members)
        return out

    def committed_offsets(
        self, group_ids: Iterable[str]
    ) -> dict[str, dict[TopicPartition, int | None]]:
        self.calls["committed_offsets"] += 1
        return {g: dict(self.groups.get(g, {})) for g in group_ids}

    def topic_partitions(self, topics: Iterable[str]) -> dict[str, int]:
        self.calls["topic_partitions"] += 1
        counts: Counter[str] = Counter(tp.topic for tp in self.log_end)
        return {t: counts[t] for t in topics if t in counts}

    def partition_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, PartitionOffsets]:
        self.calls["partition_offsets"] += 1
        return {
            tp: PartitionOffsets(self.log_start[tp], self.log_end[tp], self.log_end[tp])
            for tp in partitions
            if tp in self.log_end
        }

    def offsets_for_times(
        self, requests: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        self.calls["offsets_for_times"] += 1
        out: dict[TopicPartition, int | None] = {}
        for tp, ms in requests.items():
            first = max(-(-(ms - to_millis(BASE)) // MINUTE), self.log_start[tp])
            out[tp] = first if first < self.log_end[tp] else None
        return out

    def message_timestamps(
        self, positions: Iterable[Position], isolation: str = "read_uncommitted"
    ) -> dict[Position, MessageTimestamp]:
        self.calls["message_timestamps"] += 1
        return {
            pos: MessageTimestamp(to_millis(BASE) + pos.offset * MINUTE, pos.offset, True)
            for pos in positions
            if self.log_start[pos.tp] <= pos.offset < self.log_end[pos.tp]
        }

    # -- SupportsOffsetAdmin -----------------------------------------------------------
    def alter_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, int]
    ) -> list[PartitionError]:
        self.calls["alter_offsets"] += 1
        errors = []
        for tp, off in offsets.items():
            if tp in self.refuse:
                errors.append(PartitionError(tp, "UNKNOWN_TOPIC_OR_PART", "does not exist"))
            elif tp not in self.ignore:
                self.groups.setdefault(group_id, {})[tp] = off
        return errors

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> list[PartitionError]:
        self.calls["delete_offsets"] += 1
        for tp in partitions:
            self.groups.get(group_id, {}).pop(tp, None)
        return []


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster()
    c.topic("orders", 3, end=100)
    c.log_start[TP("orders", 2)] = 40  # retention removed 0..39
    c.groups["g"] = {TP("orders", 0): 10, TP("orders", 1): 90}
    return c


def plan(cluster: Cluster, strategy: s.Strategy, **kw: object) -> dict[TopicPartition, int | None]:
    kw.setdefault("specs", [TopicSpec("orders")])
    result = plan_reset(cluster, "g", strategy, target="test", **kw)  # type: ignore[arg-type]
    return {c.tp: c.new for c in result.partitions}


def test_the_fake_implements_both_capabilities(cluster: Cluster) -> None:
    assert isinstance(cluster, SupportsConsumerGroups)
    assert isinstance(cluster, SupportsOffsetAdmin)


def test_strategies_as_kafkas_tool_computes_them(cluster: Cluster) -> None:
    o0, o1, o2 = TP("orders", 0), TP("orders", 1), TP("orders", 2)
    assert plan(cluster, s.ToEarliest()) == {o0: 0, o1: 0, o2: 40}
    assert plan(cluster, s.ToLatest()) == {o0: 100, o1: 100, o2: 100}
    assert plan(cluster, s.ToCurrent()) == {o0: 10, o1: 90, o2: 100}
    assert plan(cluster, s.ToOffset(20)) == {o0: 20, o1: 20, o2: 40}
    assert plan(cluster, s.ToOffset(500)) == {o0: 100, o1: 100, o2: 100}
    at = BASE + dt.timedelta(minutes=55, seconds=30)
    assert plan(cluster, s.ToDatetime(at)) == {o0: 56, o1: 56, o2: 56}
    assert plan(cluster, s.ToDatetime(BASE)) == {o0: 0, o1: 0, o2: 40}
    specs = [TopicSpec("orders", (0, 1))]
    assert plan(cluster, s.ShiftBy(-15), specs=specs) == {o0: 0, o1: 75}
    assert plan(cluster, s.ShiftBy(15), specs=specs) == {o0: 25, o1: 100}
    now = BASE + dt.timedelta(minutes=80)
    assert plan(cluster, s.ByDuration(dt.timedelta(minutes=30)), now=now) == {
        o0: 50,
        o1: 50,
        o2: 50,
    }
    from_file = s.FromFile("f.csv", {o0: 7, o2: 3})
    assert plan(cluster, from_file, specs=[]) == {o0: 7, o2: 40}


def test_all_topics_means_the_committed_partitions(cluster: Cluster) -> None:
    assert plan(cluster, s.ToLatest(), specs=[], all_topics=True) == {
        TP("orders", 0): 100,
        TP("orders", 1): 100,
    }


def test_a_time_past_the_end_is_log_end_never_minus_one(cluster: Cluster) -> None:
    result = plan_reset(
        cluster,
        "g",
        s.ToDatetime(BASE + dt.timedelta(days=30)),
        target="t",
        specs=[TopicSpec("orders")],
    )
    assert [c.new for c in result.partitions] == [100, 100, 100]
    assert len(result.warnings) == 3
    assert all("no message at or after 2026-01-31T00:00:00.000Z" in w for w in result.warnings)


def test_clamping_warns_per_partition_and_records_the_request(cluster: Cluster) -> None:
    result = plan_reset(cluster, "g", s.ToOffset(5), target="t", specs=[TopicSpec("orders")])
    clamped = [c for c in result.partitions if c.clamped]
    assert [(c.tp, c.requested, c.new, c.clamped) for c in clamped] == [
        (TP("orders", 2), 5, 40, "log-start")
    ]
    assert result.warnings == ["orders/2: offset 5 is before log-start 40; using 40"]


def test_replay_skip_counts_and_time_spans(cluster: Cluster) -> None:
    result = plan_reset(cluster, "g", s.ToOffset(30), target="t", specs=[TopicSpec("orders")])
    by_tp = {c.tp: c for c in result.partitions}
    forward, back, fresh = by_tp[TP("orders", 0)], by_tp[TP("orders", 1)], by_tp[TP("orders", 2)]
    assert (forward.skip, forward.replay) == (20, 0)
    assert forward.span_start == BASE + dt.timedelta(minutes=10)
    assert forward.span_end == BASE + dt.timedelta(minutes=29)
    assert (back.replay, back.skip) == (60, 0)
    assert back.span_seconds == 59 * 60
    assert fresh.current is None and fresh.replay is None and fresh.note
    assert result.totals() == {
        "partitions": 3,
        "changing": 3,
        "replay": 60,
        "skip": 20,
        "clamped": 1,
        "failed": 0,
    }


def test_shift_without_committed_offset_is_refused(cluster: Cluster) -> None:
    with pytest.raises(UsageError, match="cannot shift orders/2"):
        plan(cluster, s.ShiftBy(1))


def test_unknown_group_is_bad_input_unless_new_group(cluster: Cluster) -> None:
    with pytest.raises(UnknownGroup) as caught:
        plan_reset(cluster, "nope", s.ToEarliest(), target="t", specs=[TopicSpec("orders")])
    assert caught.value.exit_code == ExitCode.USAGE
    assert "--new-group" in str(caught.value)
    created = plan_reset(
        cluster,
        "nope",
        s.ToEarliest(),
        target="t",
        specs=[TopicSpec("orders")],
        allow_new_group=True,
    )
    assert created.new_group
    with pytest.raises(UnknownGroup):
        show_offsets(cluster, "nope", target="t")


def test_to_group_copies_and_skips_what_the_other_lacks(cluster: Cluster) -> None:
    cluster.groups["other"] = {TP("orders", 1): 33, TP("orders", 2): 1}
    result = plan_reset(cluster, "g", s.ToGroup("other"), target="t", all_topics=True)
    assert {c.tp: c.new for c in result.partitions} == {TP("orders", 1): 33, TP("orders", 2): 40}
    result = plan_reset(cluster, "g", s.ToGroup("other"), target="t", specs=[TopicSpec("orders")])
    assert TP("orders", 0) not in {c.tp for c in result.partitions}
    assert any("has no committed offset here" in w for w in result.warnings)
    with pytest.raises(UnknownGroup, match="'ghost'"):
        plan_reset(cluster, "g", s.ToGroup("ghost"), target="t", all_topics=True)


def test_scope_errors(cluster: Cluster) -> None:
    with pytest.raises(UsageError, match="no partitions chosen"):
        plan_reset(cluster, "g", s.ToEarliest(), target="t")
    with pytest.raises(UsageError, match="not both"):
        plan_reset(
            cluster, "g", s.ToEarliest(), target="t", specs=[TopicSpec("orders")], all_topics=True
        )
    with pytest.raises(UsageError, match="cannot be combined with --from-file"):
        plan_reset(cluster, "g", s.FromFile("f", {TP("orders", 0): 1}), target="t", all_topics=True)
    with pytest.raises(UsageError, match="f: partition orders/9 does not exist"):
        plan_reset(cluster, "g", s.FromFile("f", {TP("orders", 9): 1}), target="t")


def test_planning_250_partitions_takes_a_fixed_number_of_calls() -> None:
    c = Cluster()
    topics = [f"t{i}" for i in range(5)]
    for t in topics:
        c.topic(t, 50, end=1000)
    c.groups["g"] = {TP(t, p): 500 for t in topics for p in range(50)}
    start = time.perf_counter()
    result = plan_reset(
        c, "g", s.ToDatetime(BASE + dt.timedelta(minutes=100)), target="t", all_topics=True
    )
    elapsed = time.perf_counter() - start
    assert len(result.partitions) == 250
    assert all(ch.new == 100 and ch.replay == 400 for ch in result.partitions)
    assert dict(c.calls) == {
        "describe_groups": 1,
        "committed_offsets": 1,
        "partition_offsets": 1,
        "offsets_for_times": 1,
        "message_timestamps": 1,
    }
    assert elapsed < 2.0  # the engine's own work; the cluster's is in benchmarks/


def test_execute_snapshots_writes_verifies_and_undo_restores(
    cluster: Cluster, tmp_path: Path
) -> None:
    store = SnapshotStore(tmp_path)
    where = Where("local", "kafka", "k:9092")
    before = dict(cluster.groups["g"])
    p = plan_reset(cluster, "g", s.ToEarliest(), target="t", specs=[TopicSpec("orders")])
    execute_plan(cluster, cluster, p, store, where, "reset to-earliest")
    raise_for_failures(p)
    assert cluster.groups["g"] == {TP("orders", 0): 0, TP("orders", 1): 0, TP("orders", 2): 40}
    assert all(c.status == "ok" and c.verified == c.new for c in p.partitions)
    [snap] = store.history("g")
    assert snap.id == p.snapshot and snap.action == "reset to-earliest"
    assert snap.offsets == {TP("orders", 0): 10, TP("orders", 1): 90, TP("orders", 2): None}

    loaded = store.load("g", None)
    undo = plan_reset(cluster, "g", s.Restore(loaded.id, loaded.offsets), target="t")
    execute_plan(cluster, cluster, undo, store, where, "undo")
    raise_for_failures(undo)
    assert cluster.groups["g"] == before
    assert len(store.history("g")) == 2


def test_execute_refuses_an_active_group_naming_members(cluster: Cluster, tmp_path: Path) -> None:
    p = plan_reset(cluster, "g", s.ToEarliest(), target="t", specs=[TopicSpec("orders")])
    cluster.members["g"] = [GroupMember("m-1", "billing-svc", "/10.0.0.7")]
    with pytest.raises(GroupActive) as caught:
        execute_plan(cluster, cluster, p, SnapshotStore(tmp_path), Where("l", "k", "t"), "x")
    message = str(caught.value)
    assert "billing-svc" in message and "/10.0.0.7" in message and "m-1" in message
    assert caught.value.exit_code == ExitCode.FAILED
    assert not list(tmp_path.iterdir())  # refused before any snapshot or write


def test_partitions_that_do_not_take_are_exit_4_and_listed(
    cluster: Cluster, tmp_path: Path
) -> None:
    p = plan_reset(cluster, "g", s.ToLatest(), target="t", specs=[TopicSpec("orders")])
    cluster.refuse = {TP("orders", 1)}
    cluster.ignore = {TP("orders", 2)}
    execute_plan(cluster, cluster, p, SnapshotStore(tmp_path), Where("l", "k", "t"), "x")
    with pytest.raises(PartialFailure) as caught:
        raise_for_failures(p)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.PARTIAL
    assert "2 of 3 partitions did not take" in message
    assert "orders/1 (does not exist)" in message
    assert "orders/2 (read back no commit, expected 100" in message
    assert p.snapshot and p.snapshot in message


def test_nothing_taking_is_exit_1_and_leaves_no_snapshot(cluster: Cluster, tmp_path: Path) -> None:
    p = plan_reset(cluster, "g", s.ToLatest(), target="t", specs=[TopicSpec("orders")])
    cluster.refuse = {TP("orders", p) for p in range(3)}
    store = SnapshotStore(tmp_path)
    execute_plan(cluster, cluster, p, store, Where("l", "k", "t"), "x")
    with pytest.raises(QctlError) as caught:
        raise_for_failures(p)
    assert caught.value.exit_code == ExitCode.FAILED
    assert store.history("g") == [] and p.snapshot is None


def test_snapshot_names_and_lookup(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    when = dt.datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    odd = "team/a b:ü"
    first = store.save(
        odd, {TP("t", 0): 1}, context="c", backend="kafka", target="x", action="a", now=when
    )
    second = store.save(
        odd, {TP("t", 0): 2}, context="c", backend="kafka", target="x", action="b", now=when
    )
    assert first.id == "team%2Fa%20b%3A%C3%BC--20261127T100000123456Z"
    assert second.id == first.id + "-1"
    assert [s.id for s in store.history(odd)] == [second.id, first.id]
    assert store.history("team") == []
    assert store.load(odd, first.id).offsets == {TP("t", 0): 1}
    assert store.load(odd, str(first.path)).id == first.id
    with pytest.raises(UsageError, match="belongs to group"):
        store.load("other", str(first.path))
    with pytest.raises(UsageError, match="no snapshot 'nope'"):
        store.load(odd, "nope")
    with pytest.raises(UsageError, match="no undo snapshots for group 'x'"):
        store.load("x", None)
    (tmp_path / "junk--1.json").write_text("{not json")
    assert store.history("junk") == []
    with pytest.raises(UsageError, match="not a qctl offsets snapshot"):
        store.load("junk", "junk--1")
