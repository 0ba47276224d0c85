"""The inputs of `qctl offsets`: the --from-file CSV and the --topic syntax."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.backends.capabilities.groups import TopicPartition
from qctl.errors import ExitCode, UsageError
from qctl.offsets.csvfile import format_offsets_csv, load_offsets_csv, parse_offsets_csv
from qctl.offsets.scope import TopicSpec, expand, merge_specs, parse_topic_spec

TP = TopicPartition


def test_csv_with_header_comments_and_blank_lines() -> None:
    text = "# exported\ntopic,partition,offset\n\norders,0,5\norders,1,17\n payments , 2 , 0 \n"
    assert parse_offsets_csv(text, "g") == {
        TP("orders", 0): 5,
        TP("orders", 1): 17,
        TP("payments", 2): 0,
    }


def test_csv_with_groups_keeps_only_the_group_being_reset() -> None:
    text = "g1,orders,0,5\ng2,orders,0,9\ng1,orders,1,3\n"
    assert parse_offsets_csv(text, "g1") == {TP("orders", 0): 5, TP("orders", 1): 3}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("orders,0,5\norders,x,5\n", 2, "partition 'x' is not a non-negative number"),
        ("orders,0,5\n\norders,1,-3\n", 3, "offset '-3' is not a non-negative number"),
        ("orders,0\n", 1, "expected 3 fields"),
        ("orders,0,1,2,3\n", 1, "expected 3 fields"),
        ("orders,0,5\ng,orders,1,5\n", 2, "4 fields, but earlier lines have 3"),
        ("bad topic!,0,5\n", 1, "not a valid Kafka topic name"),
        (",0,5\n", 1, "the topic is empty"),
        ("orders,0,5\norders,0,6\n", 2, "line 1 sets it to 5"),
        ('orders,0,"5\n', 1, "not valid CSV"),
    ],
)
def test_csv_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_offsets_csv(text, "g", source="plan.csv")
    message = str(caught.value)
    assert message.startswith(f"plan.csv:{line}: ")
    assert words in message
    assert "\n" not in message
    assert caught.value.exit_code == ExitCode.USAGE


def test_csv_without_rows_for_the_group_is_an_error() -> None:
    with pytest.raises(UsageError, match="no offsets for group 'g'"):
        parse_offsets_csv("other,orders,0,5\n", "g", source="plan.csv")
    with pytest.raises(UsageError, match="no offsets"):
        parse_offsets_csv("# nothing\n", "g")


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load_offsets_csv(tmp_path / "nope.csv", "g")


topic_names = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(
    lambda t: t not in (".", "..")
)


@given(
    st.dictionaries(
        st.tuples(topic_names, st.integers(0, 10_000)), st.integers(0, 2**62), min_size=1
    )
)
def test_csv_round_trips(offsets: dict[tuple[str, int], int]) -> None:
    typed = {TP(t, p): o for (t, p), o in offsets.items()}
    assert parse_offsets_csv(format_offsets_csv(typed), "g") == typed


@given(st.text(max_size=200))
def test_csv_parser_never_fails_with_anything_but_a_usage_error(text: str) -> None:
    try:
        parse_offsets_csv(text, "g", source="f.csv")
    except UsageError as exc:
        assert str(exc).startswith("f.csv")


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("orders", TopicSpec("orders")),
        ("orders:2,0,2", TopicSpec("orders", (0, 2))),
        ("kafka:orders", TopicSpec("orders")),
        ("kafka:orders/3", TopicSpec("orders", (3,))),
        ("kafka:orders:1,2", TopicSpec("orders", (1, 2))),
        ("kafka:0", TopicSpec("kafka", (0,))),
    ],
)
def test_topic_specs(text: str, spec: TopicSpec) -> None:
    assert parse_topic_spec(text) == spec


@pytest.mark.parametrize("text", ["", "orders:a", ":1", "bad topic", "orders:1,,2"])
def test_bad_topic_specs_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_topic_spec(text)


def test_merge_and_expand() -> None:
    specs = merge_specs(
        [TopicSpec("a", (1,)), TopicSpec("a", (0,)), TopicSpec("b", (2,)), TopicSpec("b")]
    )
    assert specs == [TopicSpec("a", (0, 1)), TopicSpec("b")]
    assert expand(specs, {"a": 2, "b": 3}) == [
        TP("a", 0),
        TP("a", 1),
        TP("b", 0),
        TP("b", 1),
        TP("b", 2),
    ]
    with pytest.raises(UsageError, match="partition a/5 does not exist"):
        expand([TopicSpec("a", (5,))], {"a": 2})
    with pytest.raises(UsageError, match="topic 'c' does not exist"):
        expand([TopicSpec("c")], {"a": 2})
