"""Renderers: stable JSON, YAML, tables, jsonl, and colour rules."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import yaml

from qctl.output import Output, color_enabled, flatten, table, to_jsonable


@dataclass
class Row:
    name: str
    count: int
    data: bytes


def test_json_yaml_and_jsonl_carry_the_same_data() -> None:
    rows = [Row("a", 1, b"\xff\x00"), Row("b", 2, b"text")]
    expected = [
        {"name": "a", "count": 1, "data": {"b64": "/wA="}},
        {"name": "b", "count": 2, "data": "text"},
    ]
    for fmt, parse in (("json", json.loads), ("yaml", yaml.safe_load)):
        buf = io.StringIO()
        Output(fmt, stream=buf).emit(rows)
        assert parse(buf.getvalue()) == expected
    buf = io.StringIO()
    Output("jsonl", stream=buf).emit(rows)
    assert [json.loads(line) for line in buf.getvalue().splitlines()] == expected


def test_default_table_lists_all_columns() -> None:
    buf = io.StringIO()
    Output("table", stream=buf).emit([{"a": 1, "b": None}, {"a": 2, "c": [1, 2]}])
    lines = buf.getvalue().splitlines()
    assert lines[0].split() == ["A", "B", "C"]
    assert lines[1].split() == ["1", "-", "-"]
    assert lines[2].split() == ["2", "-", "1,", "2"]


def test_table_empty_and_flatten() -> None:
    assert table([], [("a", "A")]) == "(none)"
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": {}}) == {"a.b": 1, "a.c.d": 2, "e": {}}
    assert to_jsonable({"k": (1, 2)}) == {"k": [1, 2]}


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert color_enabled(False, TTY())
    assert not color_enabled(True, TTY())
    assert not color_enabled(False, io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not color_enabled(False, TTY())
    out = Output("table", color=True)
    assert "\x1b[" in out.status("OK")
    assert Output("table", color=False).status("OK") == "OK"
