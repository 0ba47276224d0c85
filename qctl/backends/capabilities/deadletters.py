"""Dead-letter queues: finding them, counting them, parking lots and purging.

The two brokers keep dead letters in different shapes, and the DLQ engine needs to know
which one it is talking to:

* a **log** (Kafka): a dead-letter topic is never consumed away. What is "in" the DLQ
  is what comes after the committed offsets of a consumer group that qctl uses for that
  topic (``qctl.dlq.<topic>`` unless configured otherwise); redrive, drain and purge
  advance that group. A message that must stay is written back to the end of the topic.
* a **queue** (RabbitMQ): a message is in the DLQ until it is acknowledged; one that
  must stay is simply not acknowledged.

Everything else (reading, writing, offsets) goes through the messaging, groups and
offsets capabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from qctl.refs import Ref

LOG = "log"
QUEUE = "queue"


class Feeds(StrEnum):
    """How surely a source's dead letters reach a DLQ, judged from the topology."""

    #: Every message the source dead-letters reaches the DLQ (as long as the topology
    #: stays as it is).
    ALWAYS = "always"
    #: Some may: it depends on something the topology does not say (the messages'
    #: headers or own routing keys, an exchange type qctl does not model).
    MAYBE = "maybe"


@dataclass(frozen=True)
class DeadLetterSource:
    """A queue whose dead letters reach a DLQ (RabbitMQ; Kafka has no broker-side
    dead-lettering, its DLQs have none). Stable JSON field names."""

    #: The queue that dead-letters.
    queue: str
    #: Its dead-letter exchange ("" is the default exchange).
    dead_letter_exchange: str
    #: Its dead-letter routing key; None: the messages keep their own routing keys.
    dead_letter_routing_key: str | None
    feeds: Feeds
    #: Why the topology cannot tell (``feeds`` is ``maybe``); None otherwise.
    reason: str | None = None


@dataclass
class DeadLetterQueue:
    """One DLQ as ``qctl dlq list`` shows it; stable JSON field names."""

    #: The reference to give other commands, e.g. ``kafka:orders.dlq``.
    ref: str
    backend: str
    name: str
    #: Why qctl considers it a DLQ ("declared in topology owner 'shop'", "name matches
    #: '*.dlq'", "bound to dead-letter exchange 'orders.dlx' of queue 'payment.work'").
    why: str
    #: Messages waiting (Kafka: after the qctl group's position).
    messages: int | None = None
    #: Epoch milliseconds of the oldest and newest waiting message, when known.
    oldest: int | None = None
    newest: int | None = None
    #: Why ``newest`` is None although messages wait (a queue's newest message is at its
    #: tail, which RabbitMQ does not report on); None when it is known or nothing waits.
    newest_unknown: str | None = None
    #: Messages arriving per second (Kafka: over the last five minutes).
    inflow_rate: float | None = None
    #: Kafka: the consumer group whose position marks what was handled.
    group: str | None = None
    #: What dead-letters into it, when known (a topic or queue name): the source declared
    #: with ``dlq:``, else the one queue whose dead letters always reach it when no other
    #: queue feeds it.
    source: str | None = None
    #: Queue type (RabbitMQ: classic, quorum); partitions (Kafka).
    type: str | None = None
    partitions: int | None = None
    #: Every queue whose dead letters reach it or may reach it, by queue name.
    sources: list[DeadLetterSource] = field(default_factory=list)


@dataclass(frozen=True)
class DeadLetterTraits:
    """What the broker (at its version) does with dead-letter headers on a republish."""

    #: Headers the broker writes when it dead-letters (or delivers) a message; a redrive
    #: with ``--strip-death-headers`` removes them.
    death_headers: tuple[str, ...] = ()
    #: The broker keeps counting in the death headers of a republished message. When it
    #: does not (RabbitMQ 3.13.0-3.13.2 and 4.0+ own their ``x-`` headers), a redrive
    #: copies the provenance into qctl's own headers so it survives.
    keeps_death_history: bool = True
    #: Reading without acknowledging uses up delivery attempts (quorum queues before
    #: RabbitMQ 4.3); then a warning says so.
    peek_costs_attempts: bool = False


@runtime_checkable
class SupportsDeadLetters(Protocol):
    """Find and count dead-letter queues; parking lots; remove dead letters in bulk."""

    def dead_letter_model(self) -> str:
        """``"log"`` or ``"queue"`` (see the module docstring)."""
        ...

    def dead_letter_queues(
        self, declared: Mapping[str, str], names: list[str] | None = None
    ) -> list[DeadLetterQueue]:
        """The DLQs of the context with counts and ages, sorted by name.

        ``declared`` maps DLQ names declared with ``dlq:`` in applied topology files to
        their source. ``names`` restricts the answer to these (which then need not
        look like DLQs at all).
        """
        ...

    def dead_letter_traits(self, dlq: Ref) -> DeadLetterTraits:
        """How this broker treats dead-letter headers (see ``DeadLetterTraits``)."""
        ...

    def dead_letter_group(self, name: str) -> str | None:
        """The consumer group qctl keeps for DLQ ``name`` (logs), or None (queues)."""
        ...

    def ensure_parking_lot(self, dlq: Ref) -> Ref:
        """The parking lot of ``dlq`` (``<dlq>.parking``), created like the DLQ when
        missing."""
        ...

    def purge_dead_letters(self, dlq: Ref, upto: Mapping[int, int] | None = None) -> int:
        """Remove dead letters in bulk; how many were removed.

        A log deletes its records before ``upto`` (partition -> offset, exclusive); a
        queue drops every ready message (``upto`` must be None).
        """
        ...
