"""Times and durations as users type them: ISO-8601 instants, ``-15m``, ``PT2H``.

Offset resets, consume windows, purges and lag thresholds all take times; one parser
keeps them consistent. Time zones are always explicit: an instant without one is UTC
(never the machine's local zone, the source of KAFKA-5644-style surprises), and an IANA
zone name may follow the time (``2026-11-27T10:00 Europe/Berlin``).
"""

from __future__ import annotations

import datetime as dt
import re

from qctl.errors import UsageError

UTC = dt.UTC

_UNITS = {
    "ms": dt.timedelta(milliseconds=1),
    "s": dt.timedelta(seconds=1),
    "m": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "w": dt.timedelta(weeks=1),
}
_SIMPLE_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO_RE = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.I,
)

DURATION_HINT = "use e.g. 90s, 15m, 2h30m, 1d, 500ms or ISO-8601 like PT15M, P1DT2H"
INSTANT_HINT = (
    "use ISO-8601 like 2026-11-27T10:00:00Z (UTC when no zone is given), "
    "2026-11-27T10:00:00+01:00, '2026-11-27 10:00 Europe/Berlin', or a relative -15m"
)


def parse_duration(text: str) -> dt.timedelta:
    """``15m``, ``2h30m``, ``1.5h``, ``500ms``, ``PT15M``, ``P1DT2H``; never negative."""
    raw = text.strip()
    if not raw:
        raise UsageError("empty duration", DURATION_HINT)
    iso = _ISO_RE.match(raw)
    if iso and raw.upper() not in ("P", "PT") and not raw.upper().endswith("T"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        if parts:
            return dt.timedelta(
                weeks=parts.get("w", 0),
                days=parts.get("d", 0),
                hours=parts.get("h", 0),
                minutes=parts.get("m", 0),
                seconds=parts.get("s", 0),
            )
    pos = 0
    total = dt.timedelta()
    for match in _SIMPLE_RE.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise UsageError(f"{text!r} is not a duration", DURATION_HINT)
    return total


def parse_instant(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """An absolute, timezone-aware instant from ISO-8601, ``-DURATION`` or ``now``."""
    raw = text.strip()
    current = now or dt.datetime.now(UTC)
    if raw.lower() == "now":
        return current
    if raw.startswith("-"):
        return current - parse_duration(raw[1:])
    zone = None
    head, _, tail = raw.rpartition(" ")
    if head and ("/" in tail or tail in ("UTC", "GMT")):
        zone = _zone(tail)
        raw = head
    try:
        value = dt.datetime.fromisoformat(raw.replace(" ", "T", 1) if " " in raw else raw)
    except ValueError:
        raise UsageError(f"{text!r} is not a date and time", INSTANT_HINT) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone or UTC)
    elif zone is not None:
        raise UsageError(f"{text!r} gives both an offset and a zone name", INSTANT_HINT)
    return value


def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r}",
            "use an IANA name like Europe/Berlin, or an offset like +01:00",
        ) from None


def to_millis(instant: dt.datetime) -> int:
    """Milliseconds since the epoch, the unit of Kafka timestamps."""
    return int(instant.timestamp() * 1000)


def from_millis(millis: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(millis / 1000, tz=UTC)


def format_duration(delta: dt.timedelta | float) -> str:
    """Short human form: ``2h 5m``, ``45s``, ``3d 4h``."""
    seconds = delta.total_seconds() if isinstance(delta, dt.timedelta) else float(delta)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{int(seconds * 1000)}ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count = int(seconds // size)
            seconds -= count * size
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return sign + " ".join(parts)
