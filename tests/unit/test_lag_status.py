"""The Burrow-style evaluation, one recorded history per rule."""

from __future__ import annotations

import pytest

from qctl.lag.history import GroupSample, PartitionPoint, QueueSample
from qctl.lag.model import Evaluation, PartitionState, Status, Trend
from qctl.lag.status import (
    Rules,
    eta_seconds,
    evaluate_group,
    evaluate_partition,
    evaluate_queue,
    trend_of,
)

T0 = 1_700_000_000.0


def series(
    *points: tuple[float, int | None, int], owned: bool = False
) -> list[tuple[float, PartitionPoint]]:
    """(seconds after T0, committed, end) -> recorded points."""
    out = []
    for t, committed, end in points:
        lag = None if committed is None else max(end - committed, 0)
        out.append((T0 + t, PartitionPoint(committed, end, lag, owned)))
    return out


def evaluate(points: list[tuple[float, PartitionPoint]], **kwargs: object) -> Evaluation:
    state = kwargs.pop("state", PartitionState.OK)
    assert isinstance(state, PartitionState)
    return evaluate_partition(points, state, Rules(**kwargs))  # type: ignore[arg-type]


# -- partition rules -------------------------------------------------------------------------
def test_lag_zero_anywhere_in_the_window_is_ok() -> None:
    ev = evaluate(series((0, 100, 100), (10, 100, 150), (20, 100, 200), (40, 100, 260)))
    assert ev.status is Status.OK
    assert ev.reason == "caught up in window"


def test_too_few_samples_is_ok_with_the_reason() -> None:
    ev = evaluate(series((0, 10, 50), (10, 10, 60)))
    assert ev.status is Status.OK
    assert ev.reason == "not enough history (2 of 3 samples)"


def test_offset_stuck_with_a_live_owner_is_stall() -> None:
    points = series((0, 10, 50), (20, 10, 55), (40, 10, 60), owned=True)
    ev = evaluate(points)
    assert ev.status is Status.STALL
    assert "stuck at 10" in ev.reason and "lag 50" in ev.reason


def test_offset_stuck_without_an_owner_is_stop() -> None:
    ev = evaluate(series((0, 10, 50), (20, 10, 50), (40, 10, 50)))
    assert ev.status is Status.STOP
    assert ev.reason == "no commits for 40s while lag is 40"


def test_stuck_offset_is_judged_only_after_the_minimum_window() -> None:
    ev = evaluate(series((0, 10, 50), (5, 10, 50), (10, 10, 50)))
    assert ev.status is Status.OK
    assert "judged after 30s" in ev.reason
    assert (
        evaluate(series((0, 10, 50), (5, 10, 50), (10, 10, 50)), min_window_seconds=10).status
        is Status.STOP
    )


def test_lag_rising_at_every_step_while_consuming_is_warn() -> None:
    ev = evaluate(series((0, 100, 150), (10, 110, 170), (20, 120, 200), (30, 125, 240)))
    assert ev.status is Status.WARN
    assert ev.reason == "lag rose from 50 to 115 over 30s"
    assert ev.trend is Trend.INCREASING


def test_constant_lag_with_progress_is_ok_not_warn() -> None:
    # Burrow warns here; a consumer committing in batches at a steady distance keeps up.
    ev = evaluate(series((0, 100, 150), (10, 150, 200), (20, 200, 250), (30, 250, 300)))
    assert ev.status is Status.OK
    assert ev.trend is Trend.STABLE


def test_a_dip_in_lag_is_not_warn() -> None:
    ev = evaluate(series((0, 100, 150), (10, 110, 170), (20, 140, 175), (30, 150, 240)))
    assert ev.status is Status.OK


def test_offset_moving_backwards_is_rewind() -> None:
    ev = evaluate(series((0, 500, 600), (10, 510, 610), (20, 0, 620)))
    assert ev.status is Status.REWIND
    assert ev.reason == "offset moved backwards from 510 to 0"


def test_rewind_outside_the_window_is_forgotten() -> None:
    points = series((0, 500, 600), (10, 0, 600), *[(20 + i * 10, 10 * i, 600) for i in range(10)])
    assert evaluate(points, window=10).status is not Status.REWIND


@pytest.mark.parametrize(
    ("state", "word"),
    [
        (PartitionState.DATA_LOST, "retention removed"),
        (PartitionState.AHEAD, "beyond the log end"),
        (PartitionState.UNAVAILABLE, "unavailable"),
    ],
)
def test_untrustworthy_states_are_err(state: PartitionState, word: str) -> None:
    ev = evaluate(series((0, 10, 50), (10, 20, 50), (20, 30, 50)), state=state)
    assert ev.status is Status.ERR
    assert word in ev.reason


def test_never_committed_and_deleted_topics_are_not_alarms() -> None:
    points = series((0, None, 50), (20, None, 50), (40, None, 50))
    assert evaluate(points, state=PartitionState.NEVER_COMMITTED).status is Status.OK
    assert evaluate(points, state=PartitionState.TOPIC_DELETED).status is Status.OK


def test_rates_and_eta() -> None:
    ev = evaluate(series((0, 0, 1000), (10, 100, 1050), (20, 200, 1100)))
    assert ev.consume_rate == pytest.approx(10.0)
    assert ev.produce_rate == pytest.approx(5.0)
    assert ev.eta_seconds == pytest.approx(900 / 5)
    assert ev.trend is Trend.DECREASING
    assert ev.samples == 3 and ev.window_seconds == 20


def test_eta_rules() -> None:
    assert eta_seconds(0, None, None) == 0.0
    assert eta_seconds(100, 10.0, 10.0) is None  # not catching up
    assert eta_seconds(100, None, 1.0) is None
    assert eta_seconds(None, 10.0, 0.0) is None
    assert eta_seconds(100, 20.0, 10.0) == 10.0


def test_trends() -> None:
    assert trend_of([]) is Trend.UNKNOWN
    assert trend_of([(0, 5)]) is Trend.UNKNOWN
    assert trend_of([(0, 1000), (10, 1010), (20, 995)]) is Trend.STABLE  # within 5 %
    assert trend_of([(0, 0), (10, 0), (20, 0)]) is Trend.STABLE
    assert trend_of([(0, 10), (10, 100), (20, 400)]) is Trend.INCREASING
    assert trend_of([(0, 400), (10, 100), (20, 10)]) is Trend.DECREASING


# -- groups -----------------------------------------------------------------------------------
def group_samples(*rows: tuple[float, dict[str, tuple[int | None, int]]]) -> list[GroupSample]:
    out = []
    for t, parts in rows:
        out.append(
            GroupSample(
                T0 + t,
                {
                    k: PartitionPoint(c, e, None if c is None else max(e - c, 0), False)
                    for k, (c, e) in parts.items()
                },
            )
        )
    return out


def test_group_takes_its_worst_partition() -> None:
    samples = group_samples(
        (0, {"t/0": (0, 0), "t/1": (10, 50)}),
        (20, {"t/0": (5, 5), "t/1": (10, 50)}),
        (40, {"t/0": (9, 9), "t/1": (10, 50)}),
    )
    parts = {
        key: evaluate_partition(
            [(s.at, s.partitions[key]) for s in samples], PartitionState.OK, Rules()
        )
        for key in ("t/0", "t/1")
    }
    assert parts["t/0"].status is Status.OK
    assert parts["t/1"].status is Status.STOP
    ev = evaluate_group(samples, parts)
    assert ev.status is Status.STOP
    assert ev.reason.startswith("t/1: no commits for 40s")
    assert ev.consume_rate == pytest.approx(9 / 40)
    assert ev.produce_rate == pytest.approx(9 / 40)
    assert ev.eta_seconds is None  # consuming only as fast as producing


def test_group_reason_when_all_ok() -> None:
    samples = group_samples((0, {"t/0": (5, 5)}))
    ev = evaluate_group(samples, {"t/0": Evaluation()})
    assert ev.status is Status.OK and ev.reason == "caught up"
    assert evaluate_group([], {}).reason == "no partitions"


# -- queues -----------------------------------------------------------------------------------
def queue_samples(*rows: tuple[float, int, int, float | None]) -> list[QueueSample]:
    """(t, depth, consumers, consume rate)."""
    return [QueueSample(T0 + t, d, c, r, 1.0) for t, d, c, r in rows]


def evaluate_q(samples: list[QueueSample], **kwargs: object) -> Evaluation:
    return evaluate_queue(
        samples,
        state=str(kwargs.get("state", "running")),
        dead_letter=bool(kwargs.get("dead_letter", False)),
        inflow_rate=kwargs.get("inflow_rate"),  # type: ignore[arg-type]
        depth_rate=kwargs.get("depth_rate"),  # type: ignore[arg-type]
    )


def test_queue_without_consumers_for_the_window_is_stop() -> None:
    ev = evaluate_q(queue_samples((0, 10, 0, None), (20, 12, 0, None), (40, 15, 0, None)))
    assert ev.status is Status.STOP
    assert ev.reason == "no consumers for 40s while 15 messages wait"


def test_queue_with_consumers_that_ack_nothing_is_stall() -> None:
    ev = evaluate_q(queue_samples((0, 10, 2, 0.0), (20, 10, 2, 0.0), (40, 10, 2, None)))
    assert ev.status is Status.STALL


def test_queue_depth_rising_while_consuming_is_warn() -> None:
    ev = evaluate_q(queue_samples((0, 10, 1, 5.0), (20, 30, 1, 5.0), (40, 90, 1, 5.0)))
    assert ev.status is Status.WARN
    assert ev.trend is Trend.INCREASING
    assert ev.eta_seconds is None


def test_queue_draining_has_an_eta_from_the_depth_slope() -> None:
    ev = evaluate_q(queue_samples((0, 300, 1, 20.0), (10, 200, 1, 20.0), (20, 100, 1, 20.0)))
    assert ev.status is Status.OK
    assert ev.trend is Trend.DECREASING
    assert ev.eta_seconds == pytest.approx(10.0)


def test_queue_emptied_in_window_is_ok() -> None:
    ev = evaluate_q(queue_samples((0, 0, 0, None), (20, 5, 0, None), (40, 10, 0, None)))
    assert ev.status is Status.OK


def test_single_queue_sample_uses_the_brokers_depth_rate() -> None:
    rising = evaluate_q(queue_samples((0, 100, 1, 1.0)), depth_rate=4.0)
    assert rising.trend is Trend.INCREASING and rising.eta_seconds is None
    draining = evaluate_q(queue_samples((0, 100, 1, 10.0)), depth_rate=-5.0)
    assert draining.trend is Trend.DECREASING
    assert draining.eta_seconds == pytest.approx(20.0)


def test_dead_letter_queue_warns_on_inflow_only() -> None:
    samples = queue_samples((0, 10, 0, None), (20, 10, 0, None), (40, 10, 0, None))
    quiet = evaluate_q(samples, dead_letter=True, inflow_rate=0.0)
    assert quiet.status is Status.OK and quiet.reason == "dead-letter queue, no inflow"
    busy = evaluate_q(samples, dead_letter=True, inflow_rate=2.5)
    assert busy.status is Status.WARN and busy.reason == "dead letters arriving at 2.5/s"


def test_queue_not_running_is_err() -> None:
    ev = evaluate_q(queue_samples((0, 1, 1, 1.0)), state="down")
    assert ev.status is Status.ERR and ev.reason == "queue is down"
