"""The ``--from-file`` CSV: ``topic,partition,offset`` per line, as Kafka's tool reads it.

Kafka's ``--export`` writes the same format (and ``group,topic,partition,offset`` when it
exported several groups; then only the rows of the group being reset are used), so a
plan exported by either tool can be fed back. A header line, blank lines and ``#``
comments are allowed. Every problem names the file and line, because a reset from a
hand-edited file that silently skipped a line is exactly the mistake to prevent.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from qctl.backends.capabilities.groups import TopicPartition
from qctl.errors import UsageError
from qctl.refs import parse_ref

_DIGITS_RE = re.compile(r"^[0-9]+$")
FORMAT_HINT = "each line is topic,partition,offset (or group,topic,partition,offset)"


def load_offsets_csv(path: Path, group: str) -> dict[TopicPartition, int]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file", "check the path given to --from-file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it: {exc}", FORMAT_HINT) from None
    return parse_offsets_csv(text, group, source=str(path))


def parse_offsets_csv(text: str, group: str, source: str = "<csv>") -> dict[TopicPartition, int]:
    """The offsets the file sets for ``group``; errors carry ``source:line``."""
    offsets: dict[TopicPartition, int] = {}
    first_line: dict[TopicPartition, int] = {}
    width: int | None = None
    seen_data = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        try:
            row = next(csv.reader(io.StringIO(stripped), strict=True))
        except (csv.Error, StopIteration) as exc:
            raise UsageError(f"{where}: not valid CSV ({exc})", FORMAT_HINT) from None
        cells = [c.strip() for c in row]
        if not seen_data and _is_header(cells):
            seen_data = True
            width = len(cells)
            continue
        seen_data = True
        if len(cells) not in (3, 4):
            raise UsageError(
                f"{where}: expected 3 fields (topic,partition,offset), got {len(cells)}: "
                f"{stripped!r}",
                FORMAT_HINT,
            )
        if width is not None and len(cells) != width:
            raise UsageError(
                f"{where}: {len(cells)} fields, but earlier lines have {width}",
                "use one format for the whole file",
            )
        width = len(cells)
        if len(cells) == 4:
            row_group, *cells = cells
            if row_group != group:
                continue
        topic, partition_text, offset_text = cells
        tp = TopicPartition(_topic(topic, where), _number(partition_text, "partition", where))
        offset = _number(offset_text, "offset", where)
        if tp in offsets and offsets[tp] != offset:
            raise UsageError(
                f"{where}: {tp} is set to {offset}, but line {first_line[tp]} sets it to "
                f"{offsets[tp]}",
                "keep one line per partition",
            )
        offsets[tp] = offset
        first_line.setdefault(tp, lineno)
    if not offsets:
        raise UsageError(
            f"{source}: no offsets for group {group!r} in the file",
            FORMAT_HINT,
        )
    return offsets


def format_offsets_csv(offsets: dict[TopicPartition, int]) -> str:
    """Offsets in the file format (what ``--export`` of Kafka's tool writes)."""
    return "".join(f"{tp.topic},{tp.partition},{off}\n" for tp, off in sorted(offsets.items()))


def _is_header(cells: list[str]) -> bool:
    lowered = [c.lower() for c in cells]
    return lowered in (["topic", "partition", "offset"], ["group", "topic", "partition", "offset"])


def _topic(name: str, where: str) -> str:
    if not name:
        raise UsageError(f"{where}: the topic is empty", FORMAT_HINT)
    try:
        return parse_ref(f"kafka:{name}").name
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.what}", exc.hint) from None


def _number(text: str, what: str, where: str) -> int:
    if not _DIGITS_RE.match(text):
        raise UsageError(f"{where}: the {what} {text!r} is not a non-negative number", FORMAT_HINT)
    return int(text)
