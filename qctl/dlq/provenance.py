"""Where a dead-lettered message came from and why it failed, from its headers.

Each ecosystem records this differently, and a redrive is only as good as its reading:

* Spring Kafka's ``DeadLetterPublishingRecoverer``: ``kafka_dlt-original-topic`` (text),
  ``-partition`` (4-byte big-endian int), ``-offset`` and ``-timestamp`` (8-byte longs),
  ``kafka_dlt-exception-fqcn`` / ``-message``.
* Kafka Connect's error reporter: ``__connect.errors.topic`` / ``.partition`` /
  ``.offset`` / ``.exception.class.name`` / ``.exception.message`` (text values).
* qctl's own ``qctl-*`` headers (text values), which qctl writes and documents so that
  any producer can dead-letter in a way qctl understands.
* RabbitMQ's ``x-death`` array (newest entry first, one per queue and reason) and the
  ``x-first-death-*`` headers, which never change after the first death.

Headers come from other people's code, so nothing here may raise on malformed input:
unreadable values are treated as absent, and a message whose origin cannot be read is
reported as "origin unknown" (a redrive then needs an explicit target).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SPRING = "spring-kafka"
CONNECT = "kafka-connect"
QCTL = "qctl"
X_DEATH = "rabbitmq-x-death"
UNKNOWN = "unknown"

# -- qctl's own header names (documented in docs/dlq.md) -----------------------------------
H_ORIGINAL_TOPIC = "qctl-original-topic"
H_ORIGINAL_PARTITION = "qctl-original-partition"
H_ORIGINAL_OFFSET = "qctl-original-offset"
H_ORIGINAL_TIMESTAMP = "qctl-original-timestamp"
H_ORIGINAL_EXCHANGE = "qctl-original-exchange"
H_ORIGINAL_ROUTING_KEY = "qctl-original-routing-key"
H_ORIGINAL_QUEUE = "qctl-original-queue"
H_ERROR_CLASS = "qctl-error-class"
H_ERROR_MESSAGE = "qctl-error-message"
H_FAILURE_REASON = "qctl-failure-reason"
H_FAILED_AT = "qctl-failed-at"
H_REDRIVE_COUNT = "qctl-redrive-count"
H_REDRIVE_ID = "qctl-redrive-id"

_SPRING_PREFIX = "kafka_dlt-"
_CONNECT_PREFIX = "__connect.errors."


@dataclass(frozen=True)
class KafkaOrigin:
    topic: str
    partition: int | None = None
    offset: int | None = None
    timestamp: int | None = None
    consumer_group: str | None = None


@dataclass(frozen=True)
class RabbitOrigin:
    """Where to publish the message again: the exchange and routing keys it first had."""

    exchange: str | None
    routing_keys: tuple[str, ...] = ()
    queue: str | None = None


@dataclass(frozen=True)
class Failure:
    #: rejected / expired / maxlen / delivery_limit (RabbitMQ), or a free-form reason.
    reason: str | None = None
    exception: str | None = None
    message: str | None = None

    @property
    def label(self) -> str:
        """One short string to group failures by (histograms, dry runs)."""
        return self.exception or self.reason or "unknown"


@dataclass(frozen=True)
class Death:
    """One x-death entry: the message died in ``queue`` for ``reason``, ``count`` times."""

    queue: str | None
    reason: str | None
    count: int
    exchange: str | None
    routing_keys: tuple[str, ...]
    time: dt.datetime | None = None
    original_expiration: str | None = None


@dataclass(frozen=True)
class Provenance:
    convention: str
    origin: KafkaOrigin | RabbitOrigin | None = None
    failure: Failure | None = None
    #: The x-death timeline, newest first (RabbitMQ only).
    deaths: tuple[Death, ...] = field(default_factory=tuple)
    #: How often qctl already redrove this message (the loop guard's counter).
    redrive_count: int = 0
    redrive_id: str | None = None
    #: When it failed, in epoch milliseconds, when a convention records it.
    failed_at: int | None = None

    @property
    def known(self) -> bool:
        return self.origin is not None

    @property
    def origin_label(self) -> str:
        if isinstance(self.origin, KafkaOrigin):
            return f"kafka:{self.origin.topic}"
        if isinstance(self.origin, RabbitOrigin):
            if self.origin.exchange:
                return f"rabbitmq:exchange/{self.origin.exchange}"
            if self.origin.queue:
                return f"rabbitmq:queue/{self.origin.queue}"
        return "origin unknown"


# -- value decoding -----------------------------------------------------------------------
def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _int(value: Any, binary_first: bool) -> int | None:
    """A number stored as big-endian binary (Spring) or as decimal text (everyone else)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    raw: bytes | None = None
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8", "ignore")
    if raw is None:
        return None
    as_text = None
    stripped = raw.strip()
    if stripped and (stripped.isdigit() or (stripped[:1] == b"-" and stripped[1:].isdigit())):
        as_text = int(stripped)
    as_binary = None
    if len(raw) in (4, 8):
        as_binary = struct.unpack(">i" if len(raw) == 4 else ">q", raw)[0]
    if binary_first and as_binary is not None:
        return int(as_binary)
    if as_text is not None:
        return as_text
    return int(as_binary) if as_binary is not None else None


def _last(headers: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Kafka headers repeat; like Kafka's ``lastHeader``, the last value of a name wins."""
    out: dict[str, Any] = {}
    for item in headers:
        try:
            raw_name, value = item
        except (TypeError, ValueError):
            continue
        name = _text(raw_name) if not isinstance(raw_name, str) else raw_name
        if name is not None:
            out[name] = value
    return out


def _common(h: Mapping[str, Any]) -> tuple[int, str | None]:
    count = _int(h.get(H_REDRIVE_COUNT), binary_first=False) or 0
    return max(count, 0), _text(h.get(H_REDRIVE_ID))


# -- Kafka --------------------------------------------------------------------------------
def from_kafka_headers(headers: Sequence[tuple[str, Any]] | None) -> Provenance:
    """Read provenance from Kafka record headers (an ordered list of name/value pairs)."""
    h = _last(headers or [])
    redrives, redrive_id = _common(h)
    topic = _text(h.get(H_ORIGINAL_TOPIC))
    if topic:
        return Provenance(
            convention=QCTL,
            origin=KafkaOrigin(
                topic=topic,
                partition=_int(h.get(H_ORIGINAL_PARTITION), binary_first=False),
                offset=_int(h.get(H_ORIGINAL_OFFSET), binary_first=False),
                timestamp=_int(h.get(H_ORIGINAL_TIMESTAMP), binary_first=False),
            ),
            failure=_failure(h, H_FAILURE_REASON, H_ERROR_CLASS, H_ERROR_MESSAGE),
            redrive_count=redrives,
            redrive_id=redrive_id,
            failed_at=_int(h.get(H_FAILED_AT), binary_first=False),
        )
    topic = _text(h.get(_SPRING_PREFIX + "original-topic"))
    if topic:
        return Provenance(
            convention=SPRING,
            origin=KafkaOrigin(
                topic=topic,
                partition=_int(h.get(_SPRING_PREFIX + "original-partition"), True),
                offset=_int(h.get(_SPRING_PREFIX + "original-offset"), True),
                timestamp=_int(h.get(_SPRING_PREFIX + "original-timestamp"), True),
                consumer_group=_text(h.get(_SPRING_PREFIX + "original-consumer-group")),
            ),
            failure=_failure(
                h, None, _SPRING_PREFIX + "exception-fqcn", _SPRING_PREFIX + "exception-message"
            ),
            redrive_count=redrives,
            redrive_id=redrive_id,
        )
    topic = _text(h.get(_CONNECT_PREFIX + "topic"))
    if topic:
        return Provenance(
            convention=CONNECT,
            origin=KafkaOrigin(
                topic=topic,
                partition=_int(h.get(_CONNECT_PREFIX + "partition"), binary_first=False),
                offset=_int(h.get(_CONNECT_PREFIX + "offset"), binary_first=False),
            ),
            failure=_failure(
                h,
                _CONNECT_PREFIX + "stage",
                _CONNECT_PREFIX + "exception.class.name",
                _CONNECT_PREFIX + "exception.message",
            ),
            redrive_count=redrives,
            redrive_id=redrive_id,
        )
    failure = _failure(h, H_FAILURE_REASON, H_ERROR_CLASS, H_ERROR_MESSAGE) or _failure(
        h, None, _SPRING_PREFIX + "exception-fqcn", _SPRING_PREFIX + "exception-message"
    )
    return Provenance(
        convention=UNKNOWN,
        failure=failure,
        redrive_count=redrives,
        redrive_id=redrive_id,
        failed_at=_int(h.get(H_FAILED_AT), binary_first=False),
    )


def _failure(
    h: Mapping[str, Any], reason: str | None, exception: str, message: str
) -> Failure | None:
    found = Failure(
        reason=_text(h.get(reason)) if reason else None,
        exception=_text(h.get(exception)),
        message=_text(h.get(message)),
    )
    return found if (found.reason or found.exception or found.message) else None


# -- RabbitMQ -----------------------------------------------------------------------------
def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(t for t in (_text(v) for v in value) if t is not None)
    single = _text(value)
    return (single,) if single is not None else ()


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def parse_x_death(value: Any) -> tuple[Death, ...]:
    """The x-death array; entries that are not tables, or lack a queue, are skipped."""
    if not isinstance(value, (list, tuple)):
        return ()
    deaths = []
    for raw in value:
        if not isinstance(raw, Mapping):
            continue
        entry = {(_text(k) or ""): v for k, v in raw.items()}
        queue = _text(entry.get("queue"))
        reason = _text(entry.get("reason"))
        if queue is None and reason is None:
            continue
        count = _int(entry.get("count"), binary_first=False)
        deaths.append(
            Death(
                queue=queue,
                reason=reason,
                count=count if count is not None and count > 0 else 1,
                exchange=_text(entry.get("exchange")),
                routing_keys=_strings(entry.get("routing-keys")),
                time=_time(entry.get("time")),
                original_expiration=_text(entry.get("original-expiration")),
            )
        )
    return tuple(deaths)


#: Every header ``from_amqp_headers`` reads: messages that agree on these have the same
#: provenance, apart from the death times and counts inside ``x-death``.
AMQP_PROVENANCE_HEADERS = frozenset(
    (
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        H_ORIGINAL_EXCHANGE,
        H_ORIGINAL_QUEUE,
        H_ORIGINAL_ROUTING_KEY,
        H_ERROR_CLASS,
        H_ERROR_MESSAGE,
        H_FAILED_AT,
        H_FAILURE_REASON,
        H_REDRIVE_COUNT,
        H_REDRIVE_ID,
    )
)


def from_amqp_headers(headers: Mapping[str, Any] | None) -> Provenance:
    """Read provenance from AMQP message headers (x-death, x-first-death-*, qctl-*)."""
    h: dict[str, Any] = {}
    if isinstance(headers, Mapping):
        h = {(_text(k) or ""): v for k, v in headers.items()}
    redrives, redrive_id = _common(h)
    deaths = parse_x_death(h.get("x-death"))
    first_queue = _text(h.get("x-first-death-queue"))
    first_reason = _text(h.get("x-first-death-reason"))
    first_exchange = _text(h.get("x-first-death-exchange"))
    if H_ORIGINAL_EXCHANGE in h or H_ORIGINAL_QUEUE in h:
        declared = RabbitOrigin(
            exchange=_text(h.get(H_ORIGINAL_EXCHANGE)),
            routing_keys=_strings(h.get(H_ORIGINAL_ROUTING_KEY)),
            queue=_text(h.get(H_ORIGINAL_QUEUE)),
        )
        return Provenance(
            convention=QCTL,
            origin=declared if (declared.exchange or declared.queue) else None,
            failure=_failure(h, H_FAILURE_REASON, H_ERROR_CLASS, H_ERROR_MESSAGE),
            deaths=deaths,
            redrive_count=redrives,
            redrive_id=redrive_id,
            failed_at=_int(h.get(H_FAILED_AT), binary_first=False),
        )
    if not deaths and first_queue is None:
        return Provenance(
            convention=UNKNOWN,
            redrive_count=redrives,
            redrive_id=redrive_id,
            failure=_failure(h, H_FAILURE_REASON, H_ERROR_CLASS, H_ERROR_MESSAGE),
            failed_at=_int(h.get(H_FAILED_AT), binary_first=False),
        )
    first = _first_death(deaths, first_queue, first_reason)
    exchange = first_exchange if first_exchange is not None else (first.exchange if first else None)
    queue = first_queue or (first.queue if first else None)
    routing_keys = first.routing_keys if first else ()
    origin: RabbitOrigin | None = RabbitOrigin(
        exchange=exchange, routing_keys=routing_keys, queue=queue
    )
    if not exchange and not queue:
        origin = None
    reason = first_reason or (first.reason if first else None)
    failure = Failure(
        reason=reason, exception=_text(h.get(H_ERROR_CLASS)), message=_text(h.get(H_ERROR_MESSAGE))
    )
    newest = deaths[0].time if deaths else None
    return Provenance(
        convention=X_DEATH,
        origin=origin,
        failure=failure,
        deaths=deaths,
        redrive_count=redrives,
        redrive_id=redrive_id,
        failed_at=int(newest.timestamp() * 1000) if newest else None,
    )


def _first_death(deaths: Iterable[Death], queue: str | None, reason: str | None) -> Death | None:
    """The entry of the first death: named by x-first-death-*, else the oldest (last)."""
    entries = list(deaths)
    for death in entries:
        if (
            queue is not None
            and death.queue == queue
            and (reason is None or death.reason == reason)
        ):
            return death
    return entries[-1] if entries else None


# -- writing qctl's headers -----------------------------------------------------------------
def qctl_failure_headers(
    origin: KafkaOrigin | RabbitOrigin,
    failure: Failure | None = None,
    failed_at: int | None = None,
) -> list[tuple[str, bytes]]:
    """Headers that record a message's origin and failure in qctl's convention."""
    out: list[tuple[str, bytes]] = []

    def put(name: str, value: object | None) -> None:
        if value is not None:
            out.append((name, str(value).encode("utf-8")))

    if isinstance(origin, KafkaOrigin):
        put(H_ORIGINAL_TOPIC, origin.topic)
        put(H_ORIGINAL_PARTITION, origin.partition)
        put(H_ORIGINAL_OFFSET, origin.offset)
        put(H_ORIGINAL_TIMESTAMP, origin.timestamp)
    else:
        put(H_ORIGINAL_EXCHANGE, origin.exchange if origin.exchange is not None else "")
        for key in origin.routing_keys[:1]:
            put(H_ORIGINAL_ROUTING_KEY, key)
        put(H_ORIGINAL_QUEUE, origin.queue)
    if failure is not None:
        put(H_FAILURE_REASON, failure.reason)
        put(H_ERROR_CLASS, failure.exception)
        put(H_ERROR_MESSAGE, failure.message)
    put(H_FAILED_AT, failed_at)
    return out


# -- messages ---------------------------------------------------------------------------------
def provenance_of(headers: Sequence[tuple[str, Any]] | None, backend: str | None) -> Provenance:
    """Provenance of a message's headers, read the way its broker writes them."""
    if backend == "rabbitmq":
        table: dict[str, Any] = {}
        for item in headers or []:
            try:
                name, value = item
            except (TypeError, ValueError):
                continue
            if isinstance(name, str):
                table[name] = value
        return from_amqp_headers(table)
    return from_kafka_headers(headers)


def loop_guard_of(headers: Sequence[tuple[str, Any]] | None) -> Provenance:
    """Only the loop guard's counters (``qctl-redrive-*``): all a redrive with a fixed
    target needs, at a fraction of the cost of decoding x-death."""
    found: dict[str, Any] = {}
    for item in headers or []:
        try:
            name, value = item
        except (TypeError, ValueError):
            continue
        if name in (H_REDRIVE_COUNT, H_REDRIVE_ID):
            found[name] = value
    redrives, redrive_id = _common(found)
    return Provenance(convention=UNKNOWN, redrive_count=redrives, redrive_id=redrive_id)


def origin_headers(provenance: Provenance) -> list[tuple[str, str]]:
    """qctl's ``qctl-original-*`` headers for a message's provenance (text values), so it
    survives when the broker's own headers are stripped or replaced."""
    if provenance.origin is None:
        return []
    failed_at = provenance.failed_at
    return [
        (name, value.decode("utf-8"))
        for name, value in qctl_failure_headers(provenance.origin, provenance.failure, failed_at)
    ]
