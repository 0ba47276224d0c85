"""Producing and consuming messages: ``SupportsProduce`` and ``SupportsConsume``.

Both speak ``qctl.messages.Message``, so ``qctl produce``/``consume``, DLQ redrive and
replay move messages between any two backends without knowing either.

Producing takes an iterable that may yield ``None`` for "nothing to send right now"
(a rate limit, a quiet pipe): the backend then serves its connection for a few
milliseconds (delivery reports, confirms, heartbeats) and asks again. Every message's
fate is known before ``produce`` returns, or it is counted as failed: an optional
per-message callback reports each outcome, which is how redrive acknowledges a source
message only after its copy was confirmed.

Consuming is a session that hands out batches and is told, after the caller has
written a batch out, how much of it was handled: that is where offsets are committed or
deliveries acknowledged, so "written, then committed" (at-least-once) is the default.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from qctl.messages import Message
from qctl.refs import Ref

#: Default number of publishes awaiting a broker confirm at once.
DEFAULT_WINDOW = 1000


@dataclass
class ValueBatch:
    """Many messages that are bare values (no key, headers, timestamp or properties).

    Raw line input arrives like this so a backend can send it without building one
    ``Message`` per line (at a million lines that is most of the Python work). A
    backend without a fast path sends ``messages()``. Never used with per-message
    outcome callbacks.
    """

    values: list[bytes]

    def __len__(self) -> int:
        return len(self.values)

    def messages(self) -> list[Message]:
        return [Message(v) for v in self.values]


#: What a produce source yields: a message, a batch of bare values, or None (nothing
#: right now: serve the connection for a few milliseconds and ask again).
ProduceItem = Message | ValueBatch | None


def expand(items: Iterable[ProduceItem]) -> Iterator[Message | None]:
    """Items with every ValueBatch unpacked into messages (for backends and filters
    that work per message)."""
    for item in items:
        if isinstance(item, ValueBatch):
            yield from item.messages()
        else:
            yield item


@dataclass(frozen=True)
class Outcome:
    """What happened to one produced message."""

    ok: bool
    #: One line when it failed: "unroutable (NO_ROUTE)", "Broker: Unknown topic", ...
    error: str | None = None
    #: The broker returned it as unroutable (RabbitMQ ``basic.return`` with mandatory).
    returned: bool = False


OK = Outcome(ok=True)

#: Called once per message, in no particular order, from the producing thread.
OutcomeCallback = Callable[[Message, Outcome], None]


class Partitioner(StrEnum):
    """How a record written by its key gets its partition, as one of librdkafka's
    partitioners picks it (records without a key go to a random partition)."""

    #: ``murmur2_random``: murmur2 of the key, as Kafka's Java client does.
    MURMUR2 = "murmur2"
    #: ``consistent_random``: CRC32 of the key, librdkafka's default (Python, Go, .NET,
    #: kcat producers).
    CRC32 = "crc32"
    #: ``random``: any partition, key or not.
    RANDOM = "random"

    @property
    def librdkafka(self) -> str:
        """The name of the same partitioner as librdkafka's ``partitioner`` property."""
        return _LIBRDKAFKA_PARTITIONERS[self]

    @classmethod
    def from_librdkafka(cls, name: str) -> Partitioner | None:
        """The partitioner librdkafka's ``partitioner`` property names, when it is one of
        these (None for the others: ``murmur2``, ``consistent``, ``fnv1a``, ...)."""
        for partitioner, known in _LIBRDKAFKA_PARTITIONERS.items():
            if known == name:
                return partitioner
        return None


_LIBRDKAFKA_PARTITIONERS = {
    Partitioner.MURMUR2: "murmur2_random",
    Partitioner.CRC32: "consistent_random",
    Partitioner.RANDOM: "random",
}


@dataclass
class ProduceOptions:
    """How to send; fields a backend does not use are ignored."""

    #: RabbitMQ exchange targets: the routing key for every message. None: each
    #: message's ``source.routing_key``, else its key as text, else "".
    routing_key: str | None = None
    #: RabbitMQ: an unroutable message is a failure (``basic.return``), never dropped.
    mandatory: bool = True
    #: Publishes awaiting a confirm at once (RabbitMQ), so throughput is not one round
    #: trip per message.
    window: int = DEFAULT_WINDOW
    #: Kafka: send each message's own timestamp (else the producer stamps "now").
    keep_timestamps: bool = True
    #: Called with True when the broker stops taking publishes for a while (RabbitMQ's
    #: ``connection.blocked``: a memory or disk alarm) and with False when it takes
    #: them again, from the producing thread; a caller that times out waiting for
    #: outcomes does not count the time in between.
    on_blocked: Callable[[bool], None] | None = None
    #: Kafka: how messages without a partition are partitioned by key; None: the
    #: context's librdkafka ``partitioner``, else murmur2.
    partitioner: Partitioner | None = None


@dataclass(frozen=True)
class ProduceFailure:
    """One message that could not be sent: its number in the input (the first item
    the source yielded is 1, a ``ValueBatch`` counts each value) and why."""

    number: int
    reason: str


@dataclass
class ProduceReport:
    """Totals of one ``produce`` call."""

    sent: int = 0
    failed: int = 0
    #: Failure reasons and how often each happened.
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    #: Notes for the user (e.g. repeated header names collapsed into an AMQP table).
    warnings: list[str] = field(default_factory=list)
    #: Why sending stopped before the source was exhausted (connection lost, no
    #: confirms within the timeout), or None.
    aborted: str | None = None
    #: The first failed messages (at most 1000), named by number, from backends that
    #: know which message failed (RabbitMQ: each publish is confirmed or returned on
    #: its own); the others leave it empty and only count them.
    failures: list[ProduceFailure] = field(default_factory=list)

    def fail(self, reason: str, count: int = 1) -> None:
        self.failed += count
        self.errors[reason] = self.errors.get(reason, 0) + count

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


@runtime_checkable
class SupportsProduce(Protocol):
    """Send messages to a topic, queue or exchange, awaiting every delivery report."""

    def produce(
        self,
        target: Ref,
        messages: Iterable[ProduceItem],
        options: ProduceOptions,
        on_outcome: OutcomeCallback | None = None,
    ) -> ProduceReport:
        """Send ``messages`` (None items: nothing right now) and wait for their fate.

        Raises before sending anything when the target does not exist (NotFoundError)
        or the cluster is unreachable (exit 3). Failures of single messages are counted
        in the report (and passed to ``on_outcome``), not raised.
        """
        ...


# -- consuming -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Position:
    """A start or end point in a log.

    kind: ``earliest``/``first``, ``latest``/``last``, ``next`` (streams), ``stored``
    (a group's committed offset), ``offset`` (absolute, ``value``), ``relative``
    (``value`` messages before the end, kcat's ``-o -N``), ``timestamp`` (``instant``).
    """

    kind: str
    value: int | None = None
    instant: dt.datetime | None = None

    def __str__(self) -> str:
        if self.kind in ("offset", "relative"):
            return f"{self.kind} {self.value}"
        if self.kind == "timestamp" and self.instant is not None:
            return self.instant.isoformat()
        return self.kind


@dataclass
class ConsumeRequest:
    """What to read and how to acknowledge it."""

    #: Where to start; None: the group's committed offsets (else earliest) with
    #: ``group``, else the beginning (RabbitMQ streams: ``first``).
    start: Position | None = None
    #: Where to stop (exclusive); None: the end as of the start, unless ``follow``.
    end: Position | None = None
    #: Keep waiting for new messages instead of stopping at the end.
    follow: bool = False
    #: Kafka: consume as this group and commit what was handled.
    group: str | None = None
    #: Kafka with a group: commit each batch before handing it out (at-most-once).
    commit_before: bool = False
    #: Kafka: ``read_committed`` or ``read_uncommitted``.
    isolation: str = "read_committed"
    #: RabbitMQ queues: consume destructively (ack after handling) instead of peeking.
    ack: bool = False
    #: The caller filters: some handled messages will be skipped rather than taken.
    #: With ``ack`` they must stay in the queue, so RabbitMQ reads with basic.get.
    selective: bool = False
    #: RabbitMQ: deliveries in flight (basic.qos prefetch).
    prefetch: int = 1000
    #: How long to wait for more data before deciding a stream (RabbitMQ) has ended.
    idle_end: float = 2.0
    #: Kafka: exclusive end per partition (a job's window, fixed when it was created);
    #: overrides ``end``. Partitions not in it are not read.
    end_offsets: dict[int, int] | None = None
    #: Kafka: where to start per partition (others start as ``start`` says). The
    #: partitions are then assigned directly, even with ``group``: a job commits its
    #: progress to its group without joining it (no rebalances).
    start_offsets: dict[int, int] | None = None
    #: The caller acknowledges message by message with ``SettlingSession.settle``
    #: (queues), instead of ``commit``.
    settle: bool = False


class MessageBatch(Protocol):
    """Messages read together. ``values()`` is the fast path for raw output."""

    def __len__(self) -> int: ...

    def messages(self) -> list[Message]: ...

    def values(self) -> list[bytes | None]: ...


@dataclass
class ListBatch:
    """A batch that already holds Message objects."""

    items: list[Message]

    def __len__(self) -> int:
        return len(self.items)

    def messages(self) -> list[Message]:
        return self.items

    def values(self) -> list[bytes | None]:
        return [m.value for m in self.items]


class ConsumeSession(Protocol):
    """An open consumer. Close it (or use ``with``) to release and un-acknowledge."""

    #: Things the user should know (e.g. a peek that uses up quorum delivery attempts).
    warnings: list[str]

    def next_batch(self, limit: int) -> MessageBatch | None:
        """Up to ``limit`` messages; an empty batch when none came within a short poll;
        None when the end has been reached (never, with ``follow``)."""
        ...

    def commit(self, batch: MessageBatch, count: int, skipped: Sequence[int] = ()) -> None:
        """The first ``count`` messages of ``batch`` were handled: commit their offsets /
        acknowledge them, as the request says. ``skipped`` are indices among them that
        were filtered out rather than taken: a log (Kafka) commits past them anyway, a
        queue consumed with ``ack`` leaves them in the queue."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> ConsumeSession: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class SettlingSession(Protocol):
    """A session that can acknowledge exactly chosen messages (queues).

    Movers that acknowledge a source message only after its copy was confirmed settle
    messages one by one, in whatever order confirms arrive; the messages they do not
    settle stay in the source (unacknowledged, returned at close).
    """

    def settle(self, batch: MessageBatch, handled: Sequence[int]) -> None:
        """Acknowledge the messages at ``handled`` (indices into ``batch``); each
        message is settled at most once."""
        ...


@runtime_checkable
class RejectingSession(Protocol):
    """A session that can hand messages back to the broker as failed (queues).

    A queue's own dead-lettering (RabbitMQ: the queue's dead-letter exchange, with the
    broker's ``x-death`` provenance) happens only when the consumer rejects the
    delivery; a copy published to the DLQ by the consumer would lose that record.
    Logs (Kafka) have no broker-side dead-lettering: a consumer writes the message to
    its DLQ topic itself (with qctl's ``qctl-*`` provenance headers), so their sessions
    do not implement this.
    """

    def reject(self, batch: MessageBatch, indices: Sequence[int], requeue: bool = False) -> None:
        """Reject the messages at ``indices`` of ``batch``: with ``requeue`` False the
        broker dead-letters them (or drops them when the queue has no dead-letter
        exchange); with True they go back to the queue. Each message is settled at most
        once: a rejected message must not also be committed or settled."""
        ...


@runtime_checkable
class SupportsConsume(Protocol):
    """Read messages from a topic (partition) or queue."""

    def open_consumer(self, source: Ref, request: ConsumeRequest) -> ConsumeSession:
        """Open a session; raises NotFoundError for a missing topic/queue, exit-3 errors
        when the cluster cannot be reached, UsageError for an impossible request."""
        ...
