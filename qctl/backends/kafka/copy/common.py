"""What the two copy engines share: where a copy starts and ends, what one transaction
did, and how a handed-over copy keeps counting.

A transaction's counts (``BatchTally``) join the report only once it committed, so a
redone or aborted transaction is never counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from qctl.backends.capabilities.messaging import Partitioner
from qctl.backends.capabilities.transactions import (
    CopyControl,
    CopyProgress,
    CopyReport,
    CopyRequest,
)
from qctl.backends.kafka.client import translate
from qctl.backends.kafka.core import KafkaCore
from qctl.errors import ConfigError, NotFoundError, QctlError

if TYPE_CHECKING:
    from confluent_kafka import Consumer

P = TypeVar("P", bound=CopyProgress)

#: How long the coordinator lets a transaction stay open unless the context sets
#: librdkafka's ``transaction.timeout.ms``: a killed job's open transaction blocks the
#: partitions' last stable offset at most this long.
TRANSACTION_TIMEOUT_MS = 60_000


def transaction_timeout_ms(settings: Mapping[str, Any]) -> int:
    """The context's ``transaction.timeout.ms`` (as librdkafka reads it), else ours."""
    value = settings.get("transaction.timeout.ms")
    try:
        return int(value) if value is not None else TRANSACTION_TIMEOUT_MS
    except (TypeError, ValueError):
        raise ConfigError(
            f"transaction.timeout.ms must be a number of milliseconds, not {value!r}",
            "fix the context's kafka section",
        ) from None


def partitioner_of(request: CopyRequest, settings: Mapping[str, Any]) -> Partitioner | None:
    """How the copy partitions records written by key: the request's partitioner, else
    the context's librdkafka ``partitioner`` property, else murmur2 (Kafka's Java
    client). None when the context names a librdkafka partitioner without a
    ``Partitioner`` (the copy then goes through librdkafka, which has it)."""
    if request.partitioner is not None:
        return request.partitioner
    named = settings.get("partitioner")
    if named is None:
        return Partitioner.MURMUR2
    return Partitioner.from_librdkafka(str(named))


@dataclass
class InDoubt:
    """A transaction whose commit was sent but never answered: it committed exactly
    when the group's committed offsets are ``positions`` (its end). The engine that
    continues the copy reads them, and counts ``tally`` if so."""

    positions: dict[int, int]
    tally: BatchTally

    def committed(self, start: Mapping[int, int]) -> bool:
        """Whether the copy's new start ``start`` (the group's committed offsets) is
        this transaction's end."""
        return all(start.get(p, off) == off for p, off in self.positions.items())


def committed_offsets(
    backend: KafkaCore, consumer: Consumer, req: CopyRequest, partitions: list[int]
) -> dict[int, int]:
    """The job group's committed offsets (``read_committed``: stable ones only, so a
    fenced predecessor's aborted offsets are never read)."""
    from confluent_kafka import KafkaException, TopicPartition

    tps = [TopicPartition(req.source.name, p) for p in partitions]
    deadline = time.monotonic() + backend.timeout
    while True:
        try:
            found = consumer.committed(tps, timeout=backend.timeout)
            break
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            retriable = err is not None and err.retriable()
            if not retriable or time.monotonic() >= deadline:
                if err is not None and err.name() == "UNSTABLE_OFFSET_COMMIT":
                    raise QctlError(
                        f"group {req.group!r} has offsets in an open "
                        "transaction (another qctl job on the same source?)",
                        "wait for that job to finish, or retry in a minute (open "
                        "transactions of killed jobs time out)",
                    ) from exc
                raise translate(exc, backend.bootstrap, "read the offsets of") from exc
            time.sleep(0.2)
    return {tp.partition: tp.offset for tp in found if tp.error is None and tp.offset >= 0}


def watermarks(backend: KafkaCore, consumer: Consumer, p: int, req: CopyRequest) -> tuple[int, int]:
    from confluent_kafka import KafkaException, TopicPartition

    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(req.source.name, p), timeout=backend.timeout, cached=False
        )
    except KafkaException as exc:
        raise translate(exc, backend.bootstrap, "read the offsets of") from exc
    return int(low), int(high)


def plan_positions(
    req: CopyRequest,
    partitions: list[int],
    committed: Mapping[int, int],
    bounds: Callable[[int], tuple[int, int]],
    warnings: list[str],
) -> tuple[dict[int, int], dict[int, int]]:
    """Where each partition's copy starts and ends: the committed offset (else the
    request's start, else the log start), up to the request's end (else the high
    watermark). A start removed by retention moves to the log start, with a warning."""
    positions: dict[int, int] = {}
    ends: dict[int, int] = {}
    for p in partitions:
        if req.end_offsets is not None and p not in req.end_offsets:
            continue
        low, high = bounds(p)
        end = high if req.end_offsets is None else req.end_offsets[p]
        start = committed.get(p)
        if start is None:
            start = (req.start_offsets or {}).get(p, low)
        if start < low:
            warnings.append(
                f"partition {p}: position {start} was removed by retention; "
                f"continuing at {low} (the {low - start} messages between are gone)"
            )
            start = low
        positions[p] = start
        ends[p] = end
    return positions, ends


class Continued:
    """The control of a copy the wire engine began: progress counts what it committed
    too, and the start was already reported. A transaction the wire engine left in
    doubt is counted in ``before`` when the new start shows that it committed."""

    def __init__(
        self, control: CopyControl, before: CopyProgress, in_doubt: Sequence[InDoubt] = ()
    ) -> None:
        self.control = control
        self.before = before
        self.in_doubt = list(in_doubt)

    def started(self, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
        for doubt in self.in_doubt:
            if doubt.committed(positions):
                doubt.tally.add_to(self.before)
        self.in_doubt.clear()

    def stopping(self) -> bool:
        return self.control.stopping()

    def committed(self, progress: CopyProgress) -> None:
        self.control.committed(merged(self.before, progress))


def merged(before: CopyProgress, after: P) -> P:
    """``after`` with the counts of ``before`` added (positions are ``after``'s)."""
    out = replace(after, rejected=dict(after.rejected), per_target=dict(after.per_target))
    out.add(before)
    if isinstance(before, CopyReport) and isinstance(out, CopyReport):
        out.elapsed += before.elapsed
        out.warnings = list(dict.fromkeys([*before.warnings, *out.warnings]))
    return out


def no_target(topic: str, bootstrap: str) -> NotFoundError:
    """The error of a route to a topic that does not exist (``on_missing_topic="fail"``)."""
    return NotFoundError(
        f"target topic {topic!r} does not exist on kafka at {bootstrap}",
        "create it, or give another target with --to",
    )


def missing_topic(topic: str) -> str:
    return f"kafka:{topic}: the topic does not exist"


class BatchTally:
    """What one transaction did (merged into the report only once it committed)."""

    __slots__ = ("kept", "per_target", "positions", "rejected", "routed", "skipped")

    def __init__(self, positions: dict[int, int]) -> None:
        self.positions = positions
        self.routed = 0
        self.skipped = 0
        self.kept = 0
        self.per_target: dict[str, int] = {}
        self.rejected: dict[str, int] = {}

    def add_to(self, report: CopyProgress) -> None:
        """Count this committed transaction in ``report``."""
        report.add(
            CopyProgress(
                routed=self.routed,
                skipped=self.skipped,
                kept=self.kept,
                rejected=self.rejected,
                per_target=self.per_target,
            )
        )
