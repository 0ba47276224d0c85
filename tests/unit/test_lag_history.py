"""The sample history: bounded, persisted between runs, tolerant of damaged files."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from qctl.lag.history import (
    GroupSample,
    HistoryStore,
    PartitionPoint,
    QueueSample,
    history_path,
)

T0 = 1_700_000_000.0


def test_bounded_by_count_and_age() -> None:
    store = HistoryStore(max_samples=3, max_age=100)
    for i in range(5):
        store.add_queue("q", QueueSample(T0 + i * 10, i, 1))
    assert [s.depth for s in store.queue("q")] == [2, 3, 4]
    store.add_queue("q", QueueSample(T0 + 500, 9, 1))
    assert [s.depth for s in store.queue("q")] == [9]


def test_samples_closer_than_a_second_replace_each_other() -> None:
    store = HistoryStore()
    store.add_queue("q", QueueSample(T0, 1, 1))
    store.add_queue("q", QueueSample(T0 + 0.5, 2, 1))
    assert [s.depth for s in store.queue("q")] == [2]


def test_lag_series_for_sparklines() -> None:
    store = HistoryStore()
    for i, (c, e) in enumerate([(0, 10), (5, 20), (20, 20)]):
        store.add_group(
            "kafka:g", GroupSample(T0 + i * 5, {"t/0": PartitionPoint(c, e, e - c, True)})
        )
    assert store.group_lag_series("kafka:g") == [10, 15, 0]
    assert store.group_lag_series("kafka:g", "t/0") == [10, 15, 0]
    assert store.group_lag_series("kafka:g", "t/9") == [0, 0, 0]
    assert store.group_lag_series("kafka:nope") == []


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = history_path(tmp_path, "prod")
    store = HistoryStore()
    store.add_group(
        "kafka:g",
        GroupSample(
            T0, {"t/0": PartitionPoint(1, 5, 4, True), "t/1": PartitionPoint(None, 3, None)}
        ),
    )
    store.add_queue("rabbitmq:/q", QueueSample(T0, 7, 2, 1.5, None))
    store.add_queue("rabbitmq:/old", QueueSample(T0 - 7200, 7, 2))
    store.save(path, now=T0)
    assert path.name == "history-prod.json"
    loaded = HistoryStore.load(path)
    assert loaded.group("kafka:g") == store.group("kafka:g")
    assert loaded.queue("rabbitmq:/q") == store.queue("rabbitmq:/q")
    assert loaded.queue("rabbitmq:/old") == []  # older than max_age: not kept


def test_missing_or_damaged_files_give_an_empty_history(tmp_path: Path) -> None:
    assert HistoryStore.load(tmp_path / "none.json").group("x") == []
    bad = tmp_path / "bad.json"
    for text in ("{not json", '{"version": 1, "groups": {"g": [{"t": "x"}]}}', "[1, 2]"):
        bad.write_text(text)
        assert HistoryStore.load(bad).group("g") == []
    bad.write_text('{"version": 99, "groups": {"g": []}}')
    assert HistoryStore.load(bad).group("g") == []


points = st.builds(
    PartitionPoint,
    st.one_of(st.none(), st.integers(0, 2**62)),
    st.one_of(st.none(), st.integers(0, 2**62)),
    st.one_of(st.none(), st.integers(0, 2**62)),
    st.booleans(),
)


@given(
    st.lists(
        st.dictionaries(
            st.from_regex(r"[a-z.\-_]{1,10}/[0-9]{1,3}", fullmatch=True), points, max_size=4
        ),
        min_size=1,
        max_size=5,
    )
)
def test_any_group_history_survives_the_file_format(
    partitions: list[dict[str, PartitionPoint]],
) -> None:
    store = HistoryStore()
    for i, parts in enumerate(partitions):
        store.add_group("kafka:g", GroupSample(T0 + i * 2, parts))
    again = HistoryStore.from_dict(store.to_dict())
    assert again.group("kafka:g") == store.group("kafka:g")
