"""Resource references: one syntax for topics, queues and exchanges on every backend.

The scheme is the backend's name, so a plugin backend extends the syntax for free:

* ``kafka:orders`` — a topic; ``kafka:orders/2`` — one partition of it
* ``rabbitmq:queue/payments`` — a queue in the context's vhost
* ``rabbitmq:exchange/orders`` — an exchange (routing key given separately)
* ``rabbitmq://VHOST/queue/payments`` — the same in another vhost (``%2F`` for ``/``)
* ``SCHEME:KIND/NAME`` — whatever a plugin backend defines
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from qctl.errors import UsageError

EXAMPLES = "e.g. kafka:orders, kafka:orders/2, rabbitmq:queue/payments, rabbitmq:exchange/orders"

_SCHEME_RE = re.compile(r"^([a-z][a-z0-9_-]*):(.*)$", re.S)
_KAFKA_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
RABBITMQ_KINDS = ("queue", "exchange")


@dataclass(frozen=True)
class Ref:
    """A parsed reference. ``kind`` is "topic" for Kafka, "queue"/"exchange" for RabbitMQ."""

    backend: str
    kind: str | None
    name: str
    partition: int | None = None
    vhost: str | None = None

    def __str__(self) -> str:
        if self.backend == "kafka":
            suffix = f"/{self.partition}" if self.partition is not None else ""
            return f"kafka:{self.name}{suffix}"
        body = f"{self.kind}/{self.name}" if self.kind else self.name
        if self.vhost is not None:
            vhost = self.vhost.replace("%", "%25").replace("/", "%2F")
            return f"{self.backend}://{vhost}/{body}"
        return f"{self.backend}:{body}"


def parse_ref(text: str, kinds: tuple[str, ...] | None = None) -> Ref:
    """Parse ``text``; ``kinds`` restricts what the command accepts (e.g. only queues)."""
    match = _SCHEME_RE.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a resource reference", EXAMPLES)
    scheme, rest = match.groups()
    if scheme == "kafka":
        ref = _kafka(text, rest)
    elif scheme == "rabbitmq":
        ref = _rabbitmq(text, rest)
    else:
        kind, _, name = rest.partition("/") if "/" in rest else ("", "", rest)
        if not name:
            raise UsageError(f"{text!r} names no resource", f"write it as {scheme}:KIND/NAME")
        ref = Ref(backend=scheme, kind=kind or None, name=name)
    if kinds is not None and ref.kind not in kinds:
        wanted = " or ".join(kinds)
        raise UsageError(
            f"{text!r} is a {ref.kind or 'resource'}, but a {wanted} is needed", EXAMPLES
        )
    return ref


def _kafka(text: str, rest: str) -> Ref:
    name, sep, part = rest.partition("/")
    if not name:
        raise UsageError(f"{text!r} names no topic", "write it as kafka:TOPIC or kafka:TOPIC/P")
    if not _KAFKA_TOPIC_RE.match(name) or name in (".", ".."):
        raise UsageError(
            f"{name!r} is not a valid Kafka topic name",
            "topic names use letters, digits, '.', '_' and '-' (at most 249)",
        )
    partition = None
    if sep:
        # ASCII only: str.isdigit() is also true for "²", which int() refuses.
        if not (part.isascii() and part.isdigit()) or len(part) > 10 or int(part) >= 2**31:
            raise UsageError(
                f"partition {part!r} in {text!r} is not a partition number",
                "write it as kafka:TOPIC/PARTITION with 0 <= PARTITION < 2147483648, "
                "e.g. kafka:orders/2",
            )
        partition = int(part)
    return Ref(backend="kafka", kind="topic", name=name, partition=partition)


def _rabbitmq(text: str, rest: str) -> Ref:
    vhost = None
    if rest.startswith("//"):
        vhost_part, sep, rest = rest[2:].partition("/")
        if not sep:
            raise UsageError(
                f"{text!r} names no resource", "write it as rabbitmq://VHOST/queue/NAME"
            )
        vhost = unquote(vhost_part) or "/"
    kind, sep, name = rest.partition("/")
    if not sep or kind not in RABBITMQ_KINDS:
        raise UsageError(
            f"{text!r} is not a RabbitMQ reference",
            "write rabbitmq:queue/NAME or rabbitmq:exchange/NAME (rabbitmq://VHOST/... "
            "for another vhost)",
        )
    if not name:
        raise UsageError(f"{text!r} names no {kind}", f"write it as rabbitmq:{kind}/NAME")
    if len(name.encode()) > 255:
        raise UsageError(f"the {kind} name in {text!r} is longer than 255 bytes")
    return Ref(backend="rabbitmq", kind=kind, name=name, vhost=vhost)
