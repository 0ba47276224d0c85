"""Which dead letters a command acts on: ``--where``, ``--older-than``, and their ages.

A dead letter's age is counted from when it was dead-lettered: the failure time a
convention records (qctl's ``qctl-failed-at``, the newest ``x-death`` time), else the
message's own timestamp (on Kafka the DLQ record's timestamp, which frameworks set when
they publish to the DLQ — or copy from the original).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from qctl.dlq.provenance import Provenance, provenance_of
from qctl.filters import Predicate, compile_where
from qctl.messages import Message

#: Age buckets of ``dlq inspect``: (upper bound in seconds, label), oldest last.
AGE_BUCKETS: tuple[tuple[float, str], ...] = (
    (60, "< 1m"),
    (3600, "1m-1h"),
    (86400, "1h-1d"),
    (7 * 86400, "1d-7d"),
    (float("inf"), "> 7d"),
)
UNKNOWN_AGE = "unknown"


def dead_lettered_at(message: Message, provenance: Provenance) -> int | None:
    """Epoch milliseconds of when the message was dead-lettered, best known."""
    if provenance.failed_at is not None:
        return provenance.failed_at
    return message.timestamp


def age_bucket(age_seconds: float | None) -> str:
    if age_seconds is None:
        return UNKNOWN_AGE
    for bound, label in AGE_BUCKETS:
        if age_seconds < bound:
            return label
    return AGE_BUCKETS[-1][1]


@dataclass
class Selection:
    """``--where`` and ``--older-than`` together (both must hold)."""

    where: Predicate | None = None
    older_than: dt.timedelta | None = None
    backend: str | None = None

    @classmethod
    def of(
        cls, where: list[str] | tuple[str, ...] | None, older_than: str | None, backend: str
    ) -> Selection:
        from qctl.timespec import parse_duration

        return cls(
            where=compile_where(list(where or [])),
            older_than=parse_duration(older_than) if older_than else None,
            backend=backend,
        )

    @property
    def everything(self) -> bool:
        return self.where is None and self.older_than is None

    def __call__(self, message: Message, provenance: Provenance | None = None) -> bool:
        if self.where is not None and not self.where(message):
            return False
        if self.older_than is not None:
            prov = provenance or provenance_of(message.headers, self.backend)
            at = dead_lettered_at(message, prov)
            if at is None:
                return False  # unknown age: never purge by age
            age_ms = time.time() * 1000 - at
            if age_ms < self.older_than.total_seconds() * 1000:
                return False
        return True
