"""What the connected RabbitMQ version does differently, as flags qctl acts on.

Users run anything from 3.12 to 4.x and the semantics that matter for peeking,
requeueing and re-publishing dead-lettered messages changed several times. Rather than
scatter version comparisons through the code, ``behaviour_for(version)`` answers the
questions once; each flag says why, with the release that changed it. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Version = tuple[int, int, int]

_VERSION_RE = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_version(text: str | bytes | None) -> Version | None:
    """``"3.13.7"``, ``"4.0.0-rc.1"``, ``b"4.1.2+alpha"`` -> ``(major, minor, patch)``."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    match = _VERSION_RE.search(text)
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor or 0), int(patch or 0)


@dataclass(frozen=True)
class Behaviour:
    """Version-dependent broker behaviour (see ``behaviour_for``)."""

    version: Version | None

    #: The broker updates ``x-death`` (increments ``count``) when a client re-publishes
    #: a message that carries it and the message is dead-lettered again.
    #: 3.13.0 made "x-headers belong to the broker" (message containers) and stopped
    #: interpreting a client's x-death; 3.13.3 restored it for AMQP 0-9-1 as a
    #: compatibility fix (rabbitmq-server#11339); 4.0 dropped it for good, so from 4.0
    #: a redriven message starts a fresh x-death and retry counting must use another
    #: header (qctl uses ``qctl-redrive-count``).
    client_x_death_counted: bool

    #: Since 3.13 a client cannot set or change broker-owned ``x-`` headers meaningfully:
    #: they may be ignored or replaced on dead-lettering.
    broker_owns_x_headers: bool

    #: Quorum queues get a delivery-limit of 20 even when none is configured (4.0):
    #: a message requeued 20 times is dead-lettered or dropped. Before 4.0 there is no
    #: limit unless the queue argument or a policy sets one.
    quorum_default_delivery_limit: int | None

    #: Returning a quorum-queue message with ``basic.nack(requeue=true)`` counts as a
    #: delivery attempt. Before 4.3 every return (nack, reject, channel close) counted;
    #: 4.3 (rabbitmq-server#15387) counts only ``basic.reject`` — nack means "not
    #: processed", reject means "failed".
    nack_counts_delivery: bool

    #: ``basic.reject(requeue=true)`` counts as a delivery attempt (all versions).
    reject_counts_delivery: bool

    #: basic.get + requeue (qctl's peek) uses up one delivery attempt of each quorum-
    #: queue message, and can push a message over its delivery-limit.
    peek_uses_delivery_attempts: bool

    #: Non-durable, non-exclusive (transient) queues are refused (4.3 disabled the
    #: deprecated feature by default).
    transient_queues_allowed: bool

    #: ``basic.qos`` with ``global=true`` is accepted (refused from 4.3).
    global_qos_allowed: bool

    #: Dead letters delivered "at most once" (by classic queues, and by quorum queues
    #: unless at-least-once dead-lettering is in effect) reach a stream queue. Before
    #: 3.12.0 a stream dropped such uncorrelated deliveries without a trace
    #: (rabbitmq-server#7846); at-least-once dead letters reached it.
    streams_take_at_most_once_dead_letters: bool

    @property
    def requeue_method(self) -> Literal["nack"]:
        """How to give a message back without counting a failure: always ``basic.nack``
        (on 4.3+ it does not count; before, nothing avoided counting)."""
        return "nack"

    def effective_delivery_limit(
        self, queue_type: str | None, configured: int | None
    ) -> int | None:
        """The delivery-limit that applies to a queue of ``queue_type``, or None.

        A configured limit (argument or policy) wins; a negative one means unlimited
        (4.0 accepts -1 to switch the default off).
        """
        if queue_type != "quorum":
            return None
        if configured is not None:
            return None if configured < 0 else configured
        return self.quorum_default_delivery_limit


def behaviour_for(version: str | bytes | Version | None) -> Behaviour:
    """The behaviour of the given server version; unknown versions get the newest rules."""
    parsed = version if isinstance(version, tuple) else parse_version(version)
    v = parsed or (99, 0, 0)
    counted = v < (3, 13, 0) or ((3, 13, 3) <= v < (4, 0, 0))
    nack_counts = v < (4, 3, 0)
    return Behaviour(
        version=parsed,
        client_x_death_counted=counted,
        broker_owns_x_headers=v >= (3, 13, 0),
        quorum_default_delivery_limit=20 if v >= (4, 0, 0) else None,
        nack_counts_delivery=nack_counts,
        reject_counts_delivery=True,
        peek_uses_delivery_attempts=nack_counts,
        transient_queues_allowed=v < (4, 3, 0),
        global_qos_allowed=v < (4, 3, 0),
        streams_take_at_most_once_dead_letters=v >= (3, 12, 0),
    )
