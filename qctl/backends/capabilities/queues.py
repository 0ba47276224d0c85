"""Reading queue depths and message rates: RabbitMQ's side of ``qctl lag``.

A queue's "lag" is its depth (ready plus unacknowledged messages); whether consumers are
keeping up shows in the rates at which messages are published, delivered and
acknowledged. A backend reads all queues in one listing so a node with thousands of
queues costs one round trip, and marks dead-letter queues, whose inflow is a warning
sign rather than work waiting for a consumer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class QueueRates:
    """Messages per second, averaged by the broker over its last statistics interval.

    None when the broker has no statistics for the queue (no traffic since it was
    declared, or statistics are disabled).
    """

    publish: float | None = None
    #: Deliveries to consumers plus basic.get, acknowledged or not.
    deliver: float | None = None
    ack: float | None = None
    redeliver: float | None = None
    #: Change of the queue's total depth per second (negative while draining).
    depth_change: float | None = None


@dataclass(frozen=True)
class QueueStats:
    """One queue as the broker reports it."""

    vhost: str
    name: str
    #: classic, quorum, stream, ...
    type: str
    #: The broker's state word (running, idle, down, crashed, ...).
    state: str
    ready: int
    unacked: int
    consumers: int
    #: Fraction of time consumers could take new messages (0..1); None when unknown.
    consumer_utilisation: float | None
    rates: QueueRates = field(default_factory=QueueRates)
    #: Seconds since the epoch of the oldest message's ``timestamp`` property, when the
    #: publisher set one (classic queues only).
    head_message_timestamp: float | None = None
    #: Whether this queue receives dead-lettered messages, and why qctl thinks so.
    dead_letter: bool = False
    dead_letter_reason: str | None = None
    #: Where this queue itself dead-letters to (exchange name; "" is the default exchange).
    dead_letter_exchange: str | None = None

    @property
    def depth(self) -> int:
        return self.ready + self.unacked


@runtime_checkable
class SupportsQueueStats(Protocol):
    """List queues with their depths, consumers and message rates."""

    def queue_stats(self, names: Iterable[str] | None = None) -> list[QueueStats]:
        """All queues of the context's vhost (or only ``names``), sorted by name.

        Names that do not exist are left out; the caller decides whether that is an error.
        """
        ...
