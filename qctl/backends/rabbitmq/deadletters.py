"""RabbitMQ dead-letter queues (``SupportsDeadLetters``).

Which queues are DLQs, what feeds them, and their depths and rates come from the same
management-API listings as ``qctl lag`` (``queues.py``): a queue is a DLQ when another
queue or a policy dead-letters into it (``deadletter_routes.py`` follows the dead
letters through the exchanges), when it was declared with ``dlq:`` in an applied
topology file, or when its name follows a DLQ convention. A message is in a DLQ until it
is acknowledged.

How old the waiting messages are: the management API reports the ``timestamp`` property
of a classic queue's head (oldest) message, and nothing about its newest, which is at
the tail: reading it would take every message before it off the queue (a ``basic.get``
and requeue changes their order and redelivered flags), so a listing leaves it unknown
and says why. A stream is read without taking anything away: its newest message is read
from its last chunk.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from qctl.backends.capabilities.deadletters import (
    QUEUE,
    DeadLetterQueue,
    DeadLetterSource,
    DeadLetterTraits,
    Feeds,
)
from qctl.backends.capabilities.queues import QueueStats, SupportsQueueStats
from qctl.backends.rabbitmq.behaviour import behaviour_for
from qctl.backends.rabbitmq.core import RabbitCore, channel_refusal, decode_text
from qctl.backends.rabbitmq.queues import RabbitQueueStats
from qctl.errors import NotFoundError, QctlError, UsageError
from qctl.refs import Ref

if TYPE_CHECKING:
    import pika


#: Headers RabbitMQ sets when it dead-letters a message (and ``x-delivery-count``, set on
#: deliveries from quorum queues); consumers that count retries from them would see a
#: redriven message as "failed N times" unless they go.
DEATH_HEADERS = (
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
    "x-delivery-count",
)

#: Why a classic or quorum DLQ's newest message has no age (see the module docstring).
NEWEST_AT_TAIL = (
    "a queue's newest message is at its tail: RabbitMQ does not report its time, and "
    "reading it would take every message before it off the queue"
)
#: A stream's last chunk arrives at once; this long without a delivery ends it.
STREAM_TAIL_IDLE = 0.3


class RabbitDeadLetters(RabbitCore):
    """``SupportsDeadLetters`` for RabbitMQ."""

    def dead_letter_model(self) -> str:
        return QUEUE

    def dead_letter_traits(self, dlq: Ref) -> DeadLetterTraits:
        server = self.connection()._impl.server_properties or {}
        behaviour = behaviour_for(decode_text(server.get("version")))
        return DeadLetterTraits(
            death_headers=DEATH_HEADERS,
            keeps_death_history=behaviour.client_x_death_counted,
            # For quorum queues (the consume session checks the type and warns).
            peek_costs_attempts=behaviour.peek_uses_delivery_attempts,
        )

    def dead_letter_group(self, name: str) -> None:
        return None

    def dead_letter_queues(
        self, declared: Mapping[str, str], names: list[str] | None = None
    ) -> list[DeadLetterQueue]:
        if names is not None:
            # Named queues: exact counts now over AMQP (the management API's numbers lag
            # a few seconds, and it need not be reachable for a job to run).
            exact = self._ready_counts(names)
            missing = sorted(set(names) - set(exact))
            if missing:
                raise NotFoundError(
                    f"queue {missing[0]!r} does not exist in vhost {self.settings.vhost!r}",
                    "`qctl dlq list -b rabbitmq` lists the dead-letter queues",
                )
            return [
                DeadLetterQueue(
                    ref=f"rabbitmq:queue/{name}",
                    backend="rabbitmq",
                    name=name,
                    why=f"declared with dlq: for {declared[name]!r}"
                    if name in declared
                    else "named",
                    messages=exact[name],
                    source=declared.get(name),
                )
                for name in sorted(names)
            ]
        stats, dead = cast(RabbitQueueStats, self).queue_stats_and_dead_letters()
        out = []
        for q in stats:
            if not q.dead_letter and q.name not in declared:
                continue
            if q.name in declared:
                why = f"declared with dlq: for {declared[q.name]!r}"
            else:
                why = q.dead_letter_reason or "named"
            sources = list(dead.sources.get(q.name, ()))
            head = q.head_message_timestamp
            newest, newest_unknown = self._newest(q)
            out.append(
                DeadLetterQueue(
                    ref=f"rabbitmq:queue/{q.name}",
                    backend="rabbitmq",
                    name=q.name,
                    why=why,
                    messages=q.depth,
                    oldest=int(head * 1000) if head is not None else None,
                    newest=newest,
                    newest_unknown=newest_unknown,
                    inflow_rate=q.rates.publish,
                    group=None,
                    source=declared.get(q.name, _sole_source(sources)),
                    type=q.type,
                    sources=sources,
                )
            )
        return out

    def _newest(self, q: QueueStats) -> tuple[int | None, str | None]:
        """Epoch milliseconds of the newest waiting message, or why it is not known."""
        if q.depth == 0:
            return None, None
        if q.type != "stream":
            return None, NEWEST_AT_TAIL
        try:
            props = self._stream_tail(q.name)
        except QctlError as exc:
            return None, f"the stream's last message could not be read: {exc.what}"
        if props is None:
            return None, "the stream's last message could not be read in time"
        stamp = getattr(props, "timestamp", None)
        if not isinstance(stamp, int):
            return None, "the stream's newest message has no timestamp property"
        return stamp * 1000, None

    def _stream_tail(self, name: str) -> Any:
        """The properties of the last message of stream ``name``, or None when none
        arrived within the timeout. Reading a stream takes nothing away; its last chunk
        is delivered at once, so the last delivery before a short pause is the newest.
        """
        import pika.exceptions as pe

        conn = self.connect()
        last: Any = None
        count = 0

        def on_delivery(ch: Any, method: Any, props: Any, body: bytes) -> None:
            nonlocal last, count
            last, count = props, count + 1
            ch.basic_ack(method.delivery_tag)  # on a stream only credit for the next ones

        try:
            channel = conn.channel()
            channel.basic_qos(prefetch_count=1000)
            channel.basic_consume(
                name, on_delivery, auto_ack=False, arguments={"x-stream-offset": "last"}
            )
            deadline = time.monotonic() + self.timeout
            seen, quiet_since = 0, time.monotonic()
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.05)
                if count != seen:
                    seen, quiet_since = count, time.monotonic()
                elif count and time.monotonic() - quiet_since >= STREAM_TAIL_IDLE:
                    return last
            return None  # nothing, or still arriving, when the time was up
        except pe.ChannelClosedByBroker as exc:
            raise channel_refusal(exc, f"read stream {name!r}", self.target()) from None
        except pe.AMQPError as exc:
            raise QctlError(f"reading stream {name!r} failed: {exc!r}") from None
        finally:
            if conn.is_open:
                conn.close()

    def _ready_counts(self, names: list[str]) -> dict[str, int]:
        import pika.exceptions as pe

        counts: dict[str, int] = {}
        conn = self.connect()
        try:
            for name in names:
                try:
                    ok = conn.channel().queue_declare(name, passive=True)
                    counts[name] = int(ok.method.message_count)
                except pe.ChannelClosedByBroker:
                    continue
        finally:
            if conn.is_open:
                conn.close()
        return counts

    def ensure_parking_lot(self, dlq: Ref) -> Ref:
        import pika.exceptions as pe

        name = f"{dlq.name}.parking"
        ref = Ref(backend="rabbitmq", kind="queue", name=name, vhost=dlq.vhost)
        conn = self._dlq_connect(dlq)
        try:
            channel = conn.channel()
            try:
                channel.queue_declare(name, passive=True)
                return ref
            except pe.ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise channel_refusal(exc, f"inspect {name!r}", self.target()) from None
            queue_type = self._dlq_type(dlq)
            arguments = {"x-queue-type": queue_type} if queue_type == "quorum" else None
            channel = conn.channel()
            try:
                channel.queue_declare(name, durable=True, arguments=arguments)
            except pe.ChannelClosedByBroker as exc:
                if exc.reply_code == 403:
                    raise channel_refusal(
                        exc, f"declare the parking lot {name!r}", self.target()
                    ) from None
                raise QctlError(
                    f"RabbitMQ refused to declare the parking lot {name!r}: {exc.reply_text}",
                    "declare it yourself (e.g. in the topology file) and retry",
                ) from None
            return ref
        finally:
            if conn.is_open:
                conn.close()

    def _dlq_type(self, dlq: Ref) -> str:
        try:
            stats = cast(SupportsQueueStats, self).queue_stats([dlq.name])
        except QctlError:
            return "classic"
        return stats[0].type if stats else "classic"

    def _dlq_connect(self, ref: Ref) -> pika.BlockingConnection:
        import dataclasses

        if ref.vhost is None or ref.vhost == self.settings.vhost:
            return self.connect()
        saved = self.settings
        self.settings = dataclasses.replace(saved, vhost=ref.vhost)
        try:
            return self.connect()
        finally:
            self.settings = saved

    def purge_dead_letters(self, dlq: Ref, upto: Mapping[int, int] | None = None) -> int:
        import pika.exceptions as pe

        if upto is not None:
            raise UsageError("a RabbitMQ queue is purged whole; positions apply to logs")
        conn = self._dlq_connect(dlq)
        try:
            channel = conn.channel()
            try:
                ok = channel.queue_purge(dlq.name)
            except pe.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    raise NotFoundError(f"queue {dlq.name!r} does not exist") from None
                raise QctlError(
                    f"RabbitMQ refused to purge {dlq.name!r}: {exc.reply_text}"
                ) from None
            return int(ok.method.message_count)
        finally:
            if conn.is_open:
                conn.close()


def _sole_source(sources: list[DeadLetterSource]) -> str | None:
    """The one queue that feeds a DLQ, when exactly one does and always does."""
    if len(sources) == 1 and sources[0].feeds is Feeds.ALWAYS:
        return sources[0].queue
    return None
