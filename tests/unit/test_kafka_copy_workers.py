"""How a wire copy is split over worker processes: whole partitions, balanced by the
records left, and only when it pays."""

from __future__ import annotations

import pytest

from qctl.backends.kafka.copy import workers as copyworkers
from qctl.backends.kafka.copy.workers import ENV_WORKERS, WORKERS_FROM, plan_shares


@pytest.fixture(autouse=True)
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_WORKERS, raising=False)
    monkeypatch.setattr(copyworkers.os, "cpu_count", lambda: 2)


def test_small_or_limited_copies_stay_in_one_process() -> None:
    small = {0: 10, 1: 10, 2: 10}
    assert plan_shares(small, limited=False) == [{0, 1, 2}]
    large = dict.fromkeys(range(3), WORKERS_FROM)
    assert plan_shares(large, limited=True) == [{0, 1, 2}]
    assert plan_shares({0: 10 * WORKERS_FROM}, limited=False) == [{0}]


def test_three_even_partitions_on_two_cores_get_a_worker_each() -> None:
    """Two workers would split them 2:1 and end when the larger share ends."""
    shares = plan_shares(dict.fromkeys(range(3), WORKERS_FROM), limited=False)
    assert sorted(map(sorted, shares)) == [[0], [1], [2]]


def test_shares_are_balanced_by_the_records_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_WORKERS, "2")
    shares = plan_shares({0: 900, 1: 500, 2: 400, 3: 0}, limited=False)
    assert sorted(map(sorted, shares)) == [[0], [1, 2]]  # 900 against 900; 3 is done


def test_one_core_has_no_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copyworkers.os, "cpu_count", lambda: 1)
    assert len(plan_shares(dict.fromkeys(range(4), WORKERS_FROM), limited=False)) == 1


def test_the_environment_forces_a_count_up_to_the_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_WORKERS, "8")
    assert len(plan_shares({0: 1, 1: 1}, limited=False)) == 2
    monkeypatch.setenv(ENV_WORKERS, "1")
    assert plan_shares(dict.fromkeys(range(3), WORKERS_FROM), limited=False) == [{0, 1, 2}]
