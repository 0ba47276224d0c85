"""Where a redriven message goes, and what it carries with it.

The default target is the message's own origin, read from its provenance:

* Kafka: the original topic, in the original partition when the provenance names it
  (the one partition that is right whatever partitioner the original producer used: its
  key's other records are there); by key (``--partitioner``) when it does not, or with
  ``--by-key``. The copy engines fall back to the key when the partition no longer
  exists;
* RabbitMQ: the exchange of its first death with its original routing key, or — when
  it died in a queue reached through the default exchange, or with
  ``--to-origin-queue`` — the queue it died in, through the default exchange (which
  reaches that queue only, not every queue bound to the exchange for that key).

``--to`` overrides the target for every message. A message whose origin cannot be read
has no default target: it stays in the DLQ and is reported ("origin unknown").

The loop guard: every redriven message gets ``qctl-redrive-count`` (one more than it
had) and ``qctl-redrive-id`` (the job id); its provenance headers stay. With
``--max-redrives N`` a message already redriven N times goes to the parking lot
``<dlq>.parking`` instead. ``--strip-death-headers`` removes the broker's death headers
(``x-death``, ``x-delivery-count``, ...) for consumers that count retries from them,
after copying the provenance into qctl's ``qctl-original-*`` headers; the same copy is
made when the broker would not keep the history of a republished ``x-death`` (RabbitMQ
3.13.0-3.13.2 and 4.0+).

``RedriveRules.verdict`` makes this decision for one message, from its provenance (and
the few facts of the delivery it also depends on): a ``Verdict`` with an ``Action``, the
target and the header changes. Every way of moving messages translates that one verdict
into its own representation: the generic mover and the Kafka exactly-once copy apply it
to a ``Message`` (``Verdict.applied``), the raw Kafka copy and RabbitMQ's own loop into
header edits they cache per distinct combination of the headers it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from qctl.backends.capabilities.transactions import Rejected
from qctl.dlq.provenance import (
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_ORIGINAL_TOPIC,
    H_REDRIVE_COUNT,
    H_REDRIVE_ID,
    X_DEATH,
    KafkaOrigin,
    Provenance,
    RabbitOrigin,
    origin_headers,
)
from qctl.messages import Message
from qctl.refs import Ref

#: Set on messages moved to the parking lot: the job that parked them.
H_PARKED_BY = "qctl-parked-by"
ORIGIN_UNKNOWN = "origin unknown (give --to)"
#: A message whose origin is unknown stays in the DLQ and counts as failed.
UNKNOWN = Rejected(ORIGIN_UNKNOWN)


@dataclass(frozen=True)
class Target:
    """Where one message goes: a topic/queue/exchange, and a routing key (exchanges)."""

    ref: Ref
    routing_key: str | None = None

    @property
    def label(self) -> str:
        if self.ref.kind == "exchange":
            return f"{self.ref} ({self.routing_key or ''})"
        return str(self.ref)


class Action(Enum):
    """What a redrive does with one message."""

    #: Publish a copy to the target.
    ROUTE = "route"
    #: Redriven ``--max-redrives`` times already: publish it to the parking lot.
    PARK = "park"
    #: No target (origin unknown, no ``--to``): it stays in the DLQ, counted as failed.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One message's redrive: what happens to it, where its copy goes, and how the
    copy's headers differ from the message's.

    The header changes apply in this order: every header named in ``drop`` is removed,
    ``add`` is appended, then each header of ``replace`` replaces every header of its
    name (or is appended). The names of the three never overlap."""

    action: Action
    #: ROUTE: the target; PARK: the parking lot, with its name as routing key; UNKNOWN:
    #: None.
    target: Target | None = None
    #: The provenance copy (``qctl-original-*``), text values.
    add: tuple[tuple[str, str], ...] = ()
    #: The loop guard's headers (ROUTE) or ``qctl-parked-by`` (PARK), text values.
    replace: tuple[tuple[str, str], ...] = ()
    #: The broker's death headers (``--strip-death-headers``).
    drop: frozenset[str] = frozenset()

    def applied(self, message: Message) -> Message:
        """The copy of ``message`` to publish (the original is left unchanged): headers
        changed, the target's routing key as its own, and AMQP properties kept only for
        a RabbitMQ target."""
        target = self.target
        if target is None:
            raise ValueError("a message whose origin is unknown has no copy to publish")
        out = message.copy()
        if self.drop:
            out.remove_header(*self.drop)
        for name, value in self.add:
            out.add_header(name, value)
        for name, value in self.replace:
            out.set_header(name, value)
        source = dict(out.source or {})
        source["routing_key"] = target.routing_key if target.routing_key is not None else ""
        out.source = source
        if out.properties is not None and target.ref.backend != "rabbitmq":
            out.properties = None
        return out


#: The verdict on a message whose origin is unknown and no ``--to`` is given.
NO_TARGET = Verdict(Action.UNKNOWN)


@dataclass
class RedriveRules:
    """The redrive options that decide targets and headers."""

    dlq: Ref
    job_id: str
    to: Ref | None = None
    routing_key: str | None = None
    keep_partition: bool = False
    #: Kafka origins: partition by key even where the original partition is known.
    by_key: bool = False
    to_origin_queue: bool = False
    max_redrives: int | None = None
    parking: Ref | None = None
    strip_headers: tuple[str, ...] = ()
    #: Copy provenance into qctl-original-* headers (the broker will not keep x-death).
    copy_provenance: bool = False

    @property
    def needs_origin(self) -> bool:
        """Whether targets or headers depend on the message's origin (else only the
        loop guard's counters are read)."""
        return (
            self.to is None
            or self.keep_partition
            or self.copy_provenance
            or bool(self.strip_headers)
            or (self.to.kind == "exchange" and self.routing_key is None)
        )

    def verdict(
        self,
        prov: Provenance,
        *,
        routing_key: str | None = None,
        has_origin_headers: bool = False,
    ) -> Verdict:
        """What the redrive does with a message of provenance ``prov``.

        Besides the provenance, the verdict depends on two facts of the message:
        ``routing_key``, the key it was delivered with (the key of a ``--to`` exchange
        when neither ``--routing-key`` nor its origin gives one), and
        ``has_origin_headers``, whether it carries qctl's origin headers already (then
        they are not copied again).

        The rules, in order: a message redriven ``max_redrives`` times already goes to
        the parking lot, marked ``qctl-parked-by``; else one without a target stays
        (UNKNOWN); else it goes to its target with the loop guard's headers, its
        provenance copied when the broker's death headers are stripped or would not be
        kept, and those headers stripped."""
        if self.parked(prov):
            return self.parking_verdict
        target = self._target(prov, routing_key)
        if target is None:
            return NO_TARGET
        return self._route(prov, target, has_origin_headers)

    def message_verdict(self, message: Message, prov: Provenance) -> Verdict:
        """``verdict`` for a whole message of provenance ``prov``."""
        recorded = self._recorded(message, prov)
        return self.verdict(prov, routing_key=message.routing_key, has_origin_headers=recorded)

    @cached_property
    def parking_verdict(self) -> Verdict:
        """The verdict on a message redriven ``max_redrives`` times already."""
        if self.parking is None:
            raise ValueError("--max-redrives needs a parking lot")
        target = Target(self.parking, self.parking.name)
        return Verdict(Action.PARK, target, replace=((H_PARKED_BY, self.job_id),))

    def target(self, message: Message, prov: Provenance) -> Target | None:
        """The message's target, or None when its origin is unknown and no --to is given."""
        return self._target(prov, message.routing_key)

    def parked(self, prov: Provenance) -> bool:
        return self.max_redrives is not None and prov.redrive_count >= self.max_redrives

    def redriven(self, message: Message, prov: Provenance, target: Target) -> Message:
        """The copy to publish to ``target``: ``verdict``'s header changes applied."""
        return self._route(prov, target, self._recorded(message, prov)).applied(message)

    def to_parking(self, message: Message) -> Message:
        """The copy to publish to the parking lot."""
        return self.parking_verdict.applied(message)

    def _target(self, prov: Provenance, delivered_key: str | None) -> Target | None:
        if self.to is not None:
            key = self.routing_key
            if key is None and self.to.kind == "exchange":
                key = _origin_key(prov) or delivered_key or ""
            partition = self.to.partition
            if partition is None and self.keep_partition and isinstance(prov.origin, KafkaOrigin):
                ref = Ref(self.to.backend, self.to.kind, self.to.name, prov.origin.partition)
                return Target(ref, key)
            return Target(self.to, key)
        origin = prov.origin
        if isinstance(origin, KafkaOrigin):
            partition = None if self.by_key else origin.partition
            return Target(Ref("kafka", "topic", origin.topic, partition))
        if isinstance(origin, RabbitOrigin):
            vhost = self.dlq.vhost
            if origin.queue and (self.to_origin_queue or not origin.exchange):
                return Target(Ref("rabbitmq", "queue", origin.queue, vhost=vhost))
            if origin.exchange:
                key = origin.routing_keys[0] if origin.routing_keys else ""
                return Target(Ref("rabbitmq", "exchange", origin.exchange, vhost=vhost), key)
        return None

    def _copies(self, prov: Provenance) -> bool:
        """Whether a copy of a message of provenance ``prov`` gains ``qctl-original-*``
        headers (unless it has some already): the broker's death headers are stripped
        or would not be kept."""
        wants_copy = self.copy_provenance or bool(self.strip_headers)
        return wants_copy and prov.convention == X_DEATH

    def _recorded(self, message: Message, prov: Provenance) -> bool:
        """Whether ``message`` has qctl's origin headers, asked only when it matters."""
        return self._copies(prov) and _has_origin_headers(message)

    def _route(self, prov: Provenance, target: Target, has_origin_headers: bool) -> Verdict:
        copied: tuple[tuple[str, str], ...] = ()
        if self._copies(prov) and not has_origin_headers:
            copied = tuple(origin_headers(prov))
        guard = ((H_REDRIVE_COUNT, str(prov.redrive_count + 1)), (H_REDRIVE_ID, self.job_id))
        return Verdict(Action.ROUTE, target, add=copied, replace=guard, drop=self._dropped)

    @cached_property
    def _dropped(self) -> frozenset[str]:
        return frozenset(self.strip_headers)


#: Headers that record an origin in qctl's convention.
ORIGIN_NAMES = (H_ORIGINAL_EXCHANGE, H_ORIGINAL_QUEUE, H_ORIGINAL_TOPIC)


def _has_origin_headers(message: Message) -> bool:
    return any(message.has_header(h) for h in ORIGIN_NAMES)


def _origin_key(prov: Provenance) -> str | None:
    if isinstance(prov.origin, RabbitOrigin) and prov.origin.routing_keys:
        return prov.origin.routing_keys[0]
    return None
