"""Where a redriven message goes, and what it carries with it.

The default target is the message's own origin, read from its provenance:

* Kafka: the original topic (and, with ``--keep-partition``, the original partition);
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
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class RedriveRules:
    """The redrive options that decide targets and headers."""

    dlq: Ref
    job_id: str
    to: Ref | None = None
    routing_key: str | None = None
    keep_partition: bool = False
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

    def target(self, message: Message, prov: Provenance) -> Target | None:
        """The message's target, or None when its origin is unknown and no --to is given."""
        if self.to is not None:
            key = self.routing_key
            if key is None and self.to.kind == "exchange":
                key = _origin_key(prov) or message.routing_key or ""
            partition = self.to.partition
            if partition is None and self.keep_partition and isinstance(prov.origin, KafkaOrigin):
                ref = Ref(self.to.backend, self.to.kind, self.to.name, prov.origin.partition)
                return Target(ref, key)
            return Target(self.to, key)
        origin = prov.origin
        if isinstance(origin, KafkaOrigin):
            partition = origin.partition if self.keep_partition else None
            return Target(Ref("kafka", "topic", origin.topic, partition))
        if isinstance(origin, RabbitOrigin):
            vhost = self.dlq.vhost
            if origin.queue and (self.to_origin_queue or not origin.exchange):
                return Target(Ref("rabbitmq", "queue", origin.queue, vhost=vhost))
            if origin.exchange:
                key = origin.routing_keys[0] if origin.routing_keys else ""
                return Target(Ref("rabbitmq", "exchange", origin.exchange, vhost=vhost), key)
        return None

    def parked(self, prov: Provenance) -> bool:
        return self.max_redrives is not None and prov.redrive_count >= self.max_redrives

    def redriven(self, message: Message, prov: Provenance, target: Target) -> Message:
        """The copy to publish: loop-guard headers, optional stripping, routing key."""
        out = message.copy()
        for name, value in self.origin_copy(prov, _has_origin_headers(out)):
            out.add_header(name, value)
        if self.strip_headers:
            out.remove_header(*self.strip_headers)
        for name, value in self.guard(prov):
            out.set_header(name, value)
        source = dict(out.source or {})
        source["routing_key"] = target.routing_key if target.routing_key is not None else ""
        out.source = source
        if out.properties is not None and target.ref.backend != "rabbitmq":
            out.properties = None
        return out

    def origin_copy(self, prov: Provenance, has_origin_headers: bool) -> list[tuple[str, str]]:
        """The ``qctl-original-*`` headers a redriven copy gains: the broker's death
        headers are stripped or would not be kept, and the message has none yet."""
        wants_copy = self.copy_provenance or bool(self.strip_headers)
        if wants_copy and prov.convention == X_DEATH and not has_origin_headers:
            return origin_headers(prov)
        return []

    def guard(self, prov: Provenance) -> list[tuple[str, str]]:
        """The loop guard's headers of a redriven copy (they replace earlier ones)."""
        return [(H_REDRIVE_COUNT, str(prov.redrive_count + 1)), (H_REDRIVE_ID, self.job_id)]

    def to_parking(self, message: Message) -> Message:
        out = message.copy()
        out.set_header(H_PARKED_BY, self.job_id)
        source = dict(out.source or {})
        source["routing_key"] = self.parking.name if self.parking else ""
        out.source = source
        return out


#: Headers that record an origin in qctl's convention.
ORIGIN_NAMES = (H_ORIGINAL_EXCHANGE, H_ORIGINAL_QUEUE, H_ORIGINAL_TOPIC)


def _has_origin_headers(message: Message) -> bool:
    return any(message.has_header(h) for h in ORIGIN_NAMES)


def _origin_key(prov: Provenance) -> str | None:
    if isinstance(prov.origin, RabbitOrigin) and prov.origin.routing_keys:
        return prov.origin.routing_keys[0]
    return None
