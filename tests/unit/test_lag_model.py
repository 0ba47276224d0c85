"""Partition lag from raw offsets: isolation, states, lag in time and its fallbacks."""

from __future__ import annotations

import pytest

from qctl.backends.capabilities.groups import (
    MessageTimestamp,
    PartitionOffsets,
    Position,
    TopicPartition,
)
from qctl.lag.kafka import (
    apply_time_lag,
    decide_isolation,
    interpolate_append_time,
    measure_partition,
    probe_position,
)
from qctl.lag.model import PartitionState, TimeLagSource

TP = TopicPartition("orders", 0)
NOW = 1_700_000_100.0


def measure(
    committed: int | None,
    start: int,
    end: int,
    stable: int | None = None,
    isolation: str = "read_committed",
) -> object:
    offsets = PartitionOffsets(start, end, end if stable is None else stable)
    return measure_partition(TP, committed, offsets, topic_exists=True, isolation=isolation)


def test_read_committed_lag_is_measured_against_the_last_stable_offset() -> None:
    # 12 committed offsets (10 messages + 2 markers), then an open transaction of 3.
    row = measure(12, 0, 15, stable=12)
    assert row.state is PartitionState.OK
    assert row.lag == 0 and row.end == 12
    assert measure(12, 0, 15, stable=12, isolation="read_uncommitted").lag == 3


def test_auto_isolation_is_decided_from_the_commits() -> None:
    offsets = {TP: PartitionOffsets(0, 15, 12)}
    assert decide_isolation("auto", {TP: 12}, offsets) == "read_committed"
    assert decide_isolation("auto", {TP: 14}, offsets) == "read_uncommitted"
    assert decide_isolation("auto", {TP: None}, offsets) == "read_committed"
    assert decide_isolation("read_uncommitted", {TP: 0}, offsets) == "read_uncommitted"


def test_never_committed_counts_the_backlog_from_log_start() -> None:
    row = measure(None, 400, 1000)
    assert row.state is PartitionState.NEVER_COMMITTED
    assert row.lag is None and row.backlog == 600
    assert probe_position(row) is None


def test_committed_below_log_start_is_data_lost() -> None:
    row = measure(100, 250, 300)
    assert row.state is PartitionState.DATA_LOST
    assert row.data_lost == 150 and row.lag == 50
    assert probe_position(row) == Position(TP, 250)


def test_committed_beyond_the_end_is_ahead_and_a_deleted_topic_is_stale() -> None:
    assert measure(500, 0, 300).state is PartitionState.AHEAD
    gone = measure_partition(TP, 5, None, topic_exists=False, isolation="read_committed")
    assert gone.state is PartitionState.TOPIC_DELETED and gone.lag is None
    missing = measure_partition(TP, 5, None, topic_exists=True, isolation="read_committed")
    assert missing.state is PartitionState.UNAVAILABLE


def test_time_lag_from_the_message_at_the_committed_offset() -> None:
    row = measure(40, 0, 50)
    assert probe_position(row) == Position(TP, 40)
    apply_time_lag(row, MessageTimestamp(int((NOW - 42.5) * 1000), 40, True), NOW)
    assert row.time_lag_seconds == pytest.approx(42.5)
    assert row.time_lag_source is TimeLagSource.MESSAGE and row.time_lag_exact


def test_time_lag_from_the_next_message_is_flagged() -> None:
    row = measure(40, 0, 50)
    apply_time_lag(row, MessageTimestamp(int((NOW - 10) * 1000), 44, False), NOW)
    assert row.time_lag_source is TimeLagSource.NEXT_MESSAGE
    assert not row.time_lag_exact


def test_nothing_readable_before_the_end_means_caught_up() -> None:
    # Committed at a transaction marker: the only offset left holds no message.
    row = measure(11, 0, 12)
    assert row.lag == 1
    apply_time_lag(row, MessageTimestamp(None, None, False), NOW)
    assert row.lag == 0 and row.end == 11
    assert row.time_lag_seconds == 0 and row.time_lag_source is TimeLagSource.CAUGHT_UP


def test_interpolation_only_when_no_message_was_read() -> None:
    row = measure(150, 0, 300)
    history = [(NOW - 100, 100), (NOW - 50, 200), (NOW - 10, 300)]
    apply_time_lag(row, None, NOW, history)
    assert row.time_lag_seconds == pytest.approx(75.0)
    assert row.time_lag_source is TimeLagSource.INTERPOLATED and not row.time_lag_exact


def test_interpolation_never_extrapolates() -> None:
    assert interpolate_append_time([(10.0, 100), (20.0, 200)], 50) is None
    assert interpolate_append_time([(10.0, 100), (20.0, 200)], 250) is None
    assert interpolate_append_time([(10.0, 100), (20.0, 200)], 150) == pytest.approx(15.0)
    assert interpolate_append_time([], 1) is None
    row = measure(150, 0, 300)
    apply_time_lag(row, None, NOW, [(NOW - 10, 300)])
    assert row.time_lag_seconds is None and row.time_lag_source is None


def test_caught_up_partitions_have_zero_time_lag() -> None:
    row = measure(50, 0, 50)
    apply_time_lag(row, None, NOW)
    assert row.time_lag_seconds == 0 and row.time_lag_source is TimeLagSource.CAUGHT_UP


def test_an_end_reached_before_new_messages_arrived_is_not_caught_up() -> None:
    # The read hit the end at 10, but the listed end is 12: two messages arrived since.
    row = measure(10, 0, 12)
    apply_time_lag(row, MessageTimestamp(None, None, False, 10), NOW)
    assert row.lag == 2 and row.time_lag_source is None
    caught_up = measure(11, 0, 12)
    apply_time_lag(caught_up, MessageTimestamp(None, None, False, 12), NOW)
    assert caught_up.lag == 0
