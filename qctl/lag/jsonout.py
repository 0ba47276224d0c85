"""JSON for lag snapshots that stays fast with thousands of partitions.

A cluster with a hundred groups has thousands of partition rows. The generic
dataclass walk and ``json``'s pretty printer (pure Python whenever ``indent`` is set)
would take longer than reading the cluster, so snapshots are converted with ``vars()``
and printed with one partition (or member) per line: still easy to read and to grep,
and each row is encoded by orjson, which takes the dataclasses as they are: with five
thousand partition rows, ``json``'s C encoder alone (about 16 microseconds a row here)
took longer than the cluster took to answer.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

#: Lists whose items are printed one per line, compactly.
ROW_LISTS = frozenset({"partitions", "members"})


_SCALARS = frozenset({str, int, float, bool, type(None)})


def plain(obj: Any) -> Any:
    """Dataclasses, enums, tuples and dicts of them as JSON-ready values."""
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [v if type(v) in _SCALARS else plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): v if type(v) in _SCALARS else plain(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: v if type(v) in _SCALARS else plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, (str, int, float)):  # subclasses of the scalars
        return obj
    return str(obj)


def dumps(payload: Any) -> str:
    """Indented JSON; items of ``partitions`` and ``members`` lists one per line.

    ``payload`` may be plain (see ``plain``) or still hold the snapshot's dataclasses.
    """
    import orjson

    def encode(value: Any) -> str:
        # Anything orjson does not know is written as its str(), as ``plain`` does.
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()

    return _write(payload, 0, encode)


def _write(obj: Any, level: int, encode: Callable[[Any], str]) -> str:
    pad = "  " * level
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = vars(obj)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = []
        for key, value in obj.items():
            if key in ROW_LISTS and isinstance(value, list) and value:
                rows = ",\n".join(f"{pad}    {encode(row)}" for row in value)
                items.append(f"{pad}  {encode(key)}: [\n{rows}\n{pad}  ]")
            else:
                items.append(f"{pad}  {encode(key)}: {_write(value, level + 1, encode)}")
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list):
        if not obj:
            return "[]"
        inner = ",\n".join(f"{pad}  {_write(v, level + 1, encode)}" for v in obj)
        return f"[\n{inner}\n{pad}]"
    return encode(obj)
