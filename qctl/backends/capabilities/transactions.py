"""Copying messages from a log to logs exactly once: ``SupportsTransactionalCopy``.

DLQ redrive and replay between Kafka topics must neither lose nor duplicate a message,
even when qctl is killed mid-way. A backend that has transactions can promise that: it
reads the source as a consumer group, writes each batch of mapped messages and the
group's new source position in one transaction, and commits. An interrupted copy
therefore resumes from the last committed position, and a ``read_committed`` reader of
the targets sees every message exactly once.

What happens to each message is decided by the engine, not the backend: a neutral
mapper turns each source message into a route (target topic, optional partition, the
message to write), ``SKIP`` (move past it, write nothing) or ``KEEP`` (write it back to
the end of its own source partition, so it stays after the group's position: the log
way of "leave it in the dead-letter queue"). A simple fixed mapping (one target, a
header naming the source position) can be given declaratively instead, which lets a
backend copy without building a ``Message`` per record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from qctl.backends.capabilities.messaging import Partitioner
from qctl.messages import Message
from qctl.refs import Ref

#: Mapper decision: move past the message without writing it.
SKIP = "skip"
#: Mapper decision: write the message back to the end of its source partition.
KEEP = "keep"


@dataclass(frozen=True, slots=True)
class Rejected:
    """Like ``KEEP`` (the message stays, written back to its source partition), but
    counted in ``rejected`` under ``reason``: it could not be delivered."""

    reason: str


@dataclass(slots=True)
class CopyRoute:
    """Write ``message`` to ``topic`` (``partition`` None: the producer's partitioner)."""

    topic: str
    message: Message
    partition: int | None = None


#: What a mapper returns for one source message: a route, ``SKIP``, ``KEEP`` or
#: ``Rejected``.
CopyDecision = CopyRoute | Rejected | str
CopyMapper = Callable[[Message], CopyDecision]


@dataclass(slots=True)
class RawRoute:
    """Write the record to ``topic`` with ``headers`` (its key, value and timestamp
    unchanged); ``headers`` None: the header list the mapper was given, as it left it
    (a mapper may change that list in place, and then return one route object for many
    records); ``partition`` None: the producer's partitioner."""

    topic: str
    headers: list[tuple[str, bytes | None]] | None = None
    partition: int | None = None


#: Decides from a record's raw headers (name, bytes), partition and offset alone. For
#: mappings that need nothing else, this spares the backend building a ``Message`` per
#: record (most of the Python work of a copy).
RawMapper = Callable[[list[tuple[str, bytes | None]], int, int], "RawRoute | Rejected | str"]


@dataclass(frozen=True)
class FixedRoute:
    """Every message to ``topic`` unchanged (key, value, headers, timestamp), plus,
    when ``position_header`` is set, a header whose value is the source position as
    ``Message.origin()`` writes it (``kafka:TOPIC/PARTITION@OFFSET``).

    The partition: ``partition`` when given, else the source's with ``keep_partition``,
    else the producer's partitioner (by key)."""

    topic: str
    keep_partition: bool = False
    position_header: str | None = None
    partition: int | None = None


@dataclass
class CopyRequest:
    """One exactly-once copy job."""

    source: Ref
    #: The consumer group whose committed offsets are the copy's source position.
    group: str
    #: Stable across resumes of one job: a restarted copy fences its killed predecessor.
    transactional_id: str
    #: Per-message decisions. A backend may use ``raw_mapper`` (same decisions, from raw
    #: headers) or ``fixed`` instead when given.
    mapper: CopyMapper | None = None
    fixed: FixedRoute | None = None
    raw_mapper: RawMapper | None = None
    #: Where to start in partitions the group has no committed offset for (else: the
    #: start of the log).
    start_offsets: Mapping[int, int] | None = None
    #: Exclusive end per partition; None: the end of each partition as of the start.
    #: Partitions missing from a given mapping are not read.
    end_offsets: Mapping[int, int] | None = None
    isolation: str = "read_committed"
    #: Stop after this many routed messages (skips and keeps do not count).
    limit: int | None = None
    #: Routed messages per second at most.
    rate: float | None = None
    #: A route to a topic that does not exist: "fail" stops the copy, "keep" keeps the
    #: message in the source (counted in ``rejected``).
    on_missing_topic: str = "fail"
    #: A transaction is committed after this many messages or seconds.
    txn_messages: int = 250_000
    txn_seconds: float = 2.0
    #: No earlier run of this ``transactional_id`` can exist (a job's first run): no
    #: producer of it can hold an open transaction, so none needs fencing first.
    first_run: bool = False
    #: How records written by key are partitioned; None: the context's librdkafka
    #: ``partitioner`` property, else ``Partitioner.MURMUR2``.
    partitioner: Partitioner | None = None


@dataclass
class CopyProgress:
    """Totals after a committed transaction (cumulative for this run)."""

    routed: int = 0
    skipped: int = 0
    kept: int = 0
    #: Messages kept because they could not be delivered, by reason (``Rejected``, or
    #: "kafka:TOPIC: the topic does not exist"); included in ``kept``.
    rejected: dict[str, int] = field(default_factory=dict)
    #: Routed messages by target topic.
    per_target: dict[str, int] = field(default_factory=dict)
    #: The committed source position per partition (next offset to read).
    positions: dict[int, int] = field(default_factory=dict)
    #: Messages between the positions and the end offsets.
    remaining: int = 0
    transactions: int = 0

    def add(self, other: CopyProgress) -> None:
        """Count ``other``'s messages and transactions in these totals too (positions
        and ``remaining`` stay)."""
        self.routed += other.routed
        self.skipped += other.skipped
        self.kept += other.kept
        self.transactions += other.transactions
        for reason, n in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        for topic, n in other.per_target.items():
            self.per_target[topic] = self.per_target.get(topic, 0) + n


@dataclass
class CopyReport(CopyProgress):
    """The outcome of one ``transactional_copy`` call."""

    elapsed: float = 0.0
    #: The caller asked to stop (Ctrl-C); what was read was committed first.
    stopped: bool = False
    #: The limit was reached.
    limited: bool = False
    #: The end offsets per partition the copy worked towards.
    end_offsets: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class CopyControl(Protocol):
    """How the engine follows and steers a running copy."""

    def started(self, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
        """The copy is about to read from ``positions`` up to ``ends``."""
        ...

    def stopping(self) -> bool:
        """True when the copy should commit what it has and stop."""
        ...

    def committed(self, progress: CopyProgress) -> None:
        """A transaction was committed; ``progress`` holds the running totals."""
        ...


@runtime_checkable
class SupportsTransactionalCopy(Protocol):
    """Copy from a log to logs with the source position committed in the same
    transaction as the writes (exactly once for ``read_committed`` readers)."""

    def transactional_copy(self, request: CopyRequest, control: CopyControl) -> CopyReport:
        """Run the copy until the end offsets, the limit, or ``control.stopping()``.

        Raises NotFoundError when the source does not exist, exit-3 errors when the
        cluster cannot be reached, and QctlError when a transaction cannot be committed
        (what was committed before stays; a rerun with the same transactional id
        resumes after it).
        """
        ...
