"""Rendering of command results: table (tabulate), json, yaml, and jsonl streams.

Commands never print data themselves: they hand a JSON-able result to an ``Output``,
which picks the format. That keeps the JSON field names one stable contract and lets
every command honour ``-o`` and ``--no-color`` the same way. Data goes to stdout,
diagnostics to stderr.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

DATA_FORMATS = ("table", "json", "yaml")

_STATUS_COLORS = {
    "ok": "green",
    "reachable": "green",
    "loaded": "green",
    "warn": "yellow",
    "stall": "yellow",
    "rewind": "yellow",
    "stop": "red",
    "err": "red",
    "error": "red",
    "unreachable": "red",
    "failed": "red",
}


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, enums, datetimes, paths and bytes to plain JSON types."""
    kind = type(obj)
    if kind in _PLAIN:  # most values of a large plan or report: answer them first
        return obj
    if kind is dict:
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if kind is list:
        return [to_jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(obj).decode("ascii")}
    return obj


def color_enabled(no_color_flag: bool, stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if no_color_flag or os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Output:
    """Writes results in the format the user chose."""

    def __init__(
        self, fmt: str = "table", *, color: bool = False, stream: IO[str] | None = None
    ) -> None:
        self.fmt = fmt
        self.color = color
        self.stream = stream if stream is not None else sys.stdout

    # -- data -------------------------------------------------------------------------
    def emit(self, data: Any, table: Callable[[Any], str] | None = None) -> None:
        """Render one result. ``table`` turns the JSON-able data into the table view."""
        payload = to_jsonable(data)
        if self.fmt == "json":
            self._write(json.dumps(payload, indent=2, ensure_ascii=False))
        elif self.fmt == "yaml":
            import yaml

            self._write(yaml.safe_dump(payload, sort_keys=False, allow_unicode=True).rstrip("\n"))
        elif self.fmt == "jsonl":
            rows = payload if isinstance(payload, list) else [payload]
            for row in rows:
                self.jsonl(row)
        elif table is not None:
            self._write(table(payload))
        else:
            self._write(default_table(payload))

    def jsonl(self, row: Any) -> None:
        self.stream.write(json.dumps(to_jsonable(row), ensure_ascii=False) + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    # -- helpers for table renderers -----------------------------------------------------
    def style(self, text: str, fg: str | None = None, bold: bool = False) -> str:
        if not self.color:
            return text
        import click

        return click.style(text, fg=fg, bold=bold)

    def status(self, word: str) -> str:
        """Colour a status word (OK, WARN, unreachable, ...) when colour is on."""
        return self.style(word, fg=_STATUS_COLORS.get(word.lower()))


def table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    empty: str = "(none)",
) -> str:
    """A plain table from rows and ``(key, HEADER)`` column pairs."""
    from tabulate import tabulate

    body = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    if not body:
        return empty
    return tabulate(body, headers=[header for _, header in columns], tablefmt="plain")


def key_value_table(pairs: Iterable[tuple[str, Any]]) -> str:
    from tabulate import tabulate

    return tabulate([[k, _cell(v)] for k, v in pairs], tablefmt="plain")


def default_table(payload: Any) -> str:
    if isinstance(payload, list) and payload and all(isinstance(r, Mapping) for r in payload):
        keys: list[str] = []
        for row in payload:
            for key in row:
                if key not in keys:
                    keys.append(key)
        return table(payload, [(k, k.upper()) for k in keys])
    if isinstance(payload, Mapping):
        return key_value_table(flatten(payload).items())
    if isinstance(payload, list) and not payload:
        return "(none)"
    return str(payload)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` to ``{"a.b": 1}``, for key/value tables."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) if value else "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) if value else "-"
    return str(value)
