"""What is in a DLQ and why: the histogram of ``dlq inspect`` and the rows of ``dlq peek``.

Both read without changing anything (see ``access.Dlq.peek_session``) and decode each
message's provenance; neither ever raises on odd headers (provenance parsing cannot).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from qctl.dlq.provenance import Death, KafkaOrigin, Provenance, RabbitOrigin, provenance_of
from qctl.dlq.selection import AGE_BUCKETS, UNKNOWN_AGE, age_bucket, dead_lettered_at
from qctl.messages import Message, readable
from qctl.timespec import from_millis


@dataclass
class Histogram:
    """``dlq inspect``'s answer; stable JSON field names."""

    dlq: str
    total: int = 0
    by_origin: dict[str, int] = field(default_factory=dict)
    by_failure: dict[str, int] = field(default_factory=dict)
    by_age: dict[str, int] = field(default_factory=dict)
    by_convention: dict[str, int] = field(default_factory=dict)
    #: How often qctl already redrove them: "0", "1", "2", "3+".
    by_redrives: dict[str, int] = field(default_factory=dict)
    oldest: str | None = None
    newest: str | None = None
    #: True when --max stopped the scan before the end.
    truncated: bool = False


def histogram(
    dlq: str,
    messages: Iterable[Message],
    backend: str,
    max_messages: int | None = None,
    now_ms: float | None = None,
) -> Histogram:
    now = time.time() * 1000 if now_ms is None else now_ms
    origins: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    ages: Counter[str] = Counter()
    conventions: Counter[str] = Counter()
    redrives: Counter[str] = Counter()
    oldest: int | None = None
    newest: int | None = None
    total = 0
    for message in messages:
        prov = provenance_of(message.headers, backend)
        total += 1
        origins[prov.origin_label] += 1
        failures[prov.failure.label if prov.failure else "unknown"] += 1
        conventions[prov.convention] += 1
        redrives[str(prov.redrive_count) if prov.redrive_count < 3 else "3+"] += 1
        at = dead_lettered_at(message, prov)
        ages[age_bucket((now - at) / 1000 if at is not None else None)] += 1
        if at is not None:
            oldest = at if oldest is None else min(oldest, at)
            newest = at if newest is None else max(newest, at)
    order = [label for _, label in AGE_BUCKETS] + [UNKNOWN_AGE]
    return Histogram(
        dlq=dlq,
        total=total,
        by_origin=dict(origins.most_common()),
        by_failure=dict(failures.most_common()),
        by_age={label: ages[label] for label in order if ages[label]},
        by_convention=dict(conventions.most_common()),
        by_redrives=dict(sorted(redrives.items())),
        oldest=_iso(oldest),
        newest=_iso(newest),
        truncated=max_messages is not None and total >= max_messages,
    )


def _iso(millis: int | None) -> str | None:
    if millis is None:
        return None
    try:
        return from_millis(millis).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


# -- peek -------------------------------------------------------------------------------------
def provenance_json(prov: Provenance) -> dict[str, Any]:
    """A provenance as plain JSON (peek's jsonl/json output)."""
    origin: dict[str, Any] | None = None
    if isinstance(prov.origin, KafkaOrigin):
        origin = {
            "topic": prov.origin.topic,
            "partition": prov.origin.partition,
            "offset": prov.origin.offset,
            "timestamp": prov.origin.timestamp,
            "consumer_group": prov.origin.consumer_group,
        }
    elif isinstance(prov.origin, RabbitOrigin):
        origin = {
            "exchange": prov.origin.exchange,
            "routing_keys": list(prov.origin.routing_keys),
            "queue": prov.origin.queue,
        }
    failure = None
    if prov.failure is not None:
        failure = {
            "reason": prov.failure.reason,
            "exception": prov.failure.exception,
            "message": prov.failure.message,
        }
    return {
        "convention": prov.convention,
        "origin": origin,
        "origin_label": prov.origin_label,
        "failure": failure,
        "deaths": [death_json(d) for d in prov.deaths],
        "redrive_count": prov.redrive_count,
        "redrive_id": prov.redrive_id,
        "failed_at": _iso(prov.failed_at),
    }


def death_json(d: Death) -> dict[str, Any]:
    return {
        "queue": d.queue,
        "reason": d.reason,
        "count": d.count,
        "exchange": d.exchange,
        "routing_keys": list(d.routing_keys),
        "time": d.time.isoformat().replace("+00:00", "Z") if d.time else None,
    }


def death_timeline(deaths: Iterable[Death]) -> str:
    """``rejected in payment.work ×3 → expired in payment.retry ×2`` (oldest first)."""
    steps = []
    for d in reversed(tuple(deaths)):
        text = f"{d.reason or '?'} in {d.queue or '?'}"
        if d.count > 1:
            text += f" ×{d.count}"
        steps.append(text)
    return " → ".join(steps)


def peek_row(
    index: int, message: Message, backend: str, now_ms: float | None = None
) -> dict[str, Any]:
    """One message as a peek row (json/yaml/table) with its decoded provenance."""
    now = time.time() * 1000 if now_ms is None else now_ms
    prov = provenance_of(message.headers, backend)
    at = dead_lettered_at(message, prov)
    row = message.to_json()
    row["n"] = index
    row["position"] = message.origin()
    row["age_seconds"] = round((now - at) / 1000, 3) if at is not None else None
    row["provenance"] = provenance_json(prov)
    return row


def table_row(row: dict[str, Any], width: int = 48) -> dict[str, Any]:
    """A peek row shortened for the table view."""
    from qctl.timespec import format_duration

    prov = row["provenance"]
    value = row.get("value")
    text = value if isinstance(value, str) else readable(value) if value is not None else None
    text = None if text is None else str(text).replace("\n", " ")
    if text is not None and len(text) > width:
        text = text[: width - 1] + "…"
    age = row.get("age_seconds")
    failure = prov.get("failure") or {}
    deaths = [
        Death(
            queue=d["queue"],
            reason=d["reason"],
            count=d["count"],
            exchange=d["exchange"],
            routing_keys=tuple(d["routing_keys"]),
        )
        for d in prov.get("deaths") or []
    ]
    return {
        "n": row["n"],
        "position": row["position"],
        "age": format_duration(age) if age is not None else None,
        "origin": prov["origin_label"],
        "failure": failure.get("exception") or failure.get("reason"),
        "message": _short(failure.get("message"), 40),
        "redrives": prov["redrive_count"],
        "deaths": death_timeline(deaths) or None,
        "key": _short(row.get("key") if isinstance(row.get("key"), str) else None, 24),
        "value": text,
    }


def _short(text: str | None, width: int) -> str | None:
    if text is None:
        return None
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
