"""RabbitMQ dead-letter queues (``SupportsDeadLetters``).

Which queues are DLQs, and their depths and rates, come from the same management-API
listing as ``qctl lag`` (``queues.py``): a queue is a DLQ when another queue or a policy
dead-letters into it, when it was declared with ``dlq:`` in an applied topology file, or
when its name follows a DLQ convention. A message is in a DLQ until it is acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from qctl.backends.capabilities.deadletters import QUEUE, DeadLetterQueue, DeadLetterTraits
from qctl.backends.capabilities.queues import SupportsQueueStats
from qctl.backends.rabbitmq.behaviour import behaviour_for
from qctl.backends.rabbitmq.core import RabbitCore, channel_refusal, decode_text
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
        stats = cast(SupportsQueueStats, self).queue_stats()
        out = []
        for q in stats:
            if not q.dead_letter and q.name not in declared:
                continue
            if q.name in declared:
                why = f"declared with dlq: for {declared[q.name]!r}"
            else:
                why = q.dead_letter_reason or "named"
            head = q.head_message_timestamp
            out.append(
                DeadLetterQueue(
                    ref=f"rabbitmq:queue/{q.name}",
                    backend="rabbitmq",
                    name=q.name,
                    why=why,
                    messages=q.depth,
                    oldest=int(head * 1000) if head is not None else None,
                    newest=None,
                    inflow_rate=q.rates.publish,
                    group=None,
                    source=declared.get(q.name),
                    type=q.type,
                )
            )
        return out

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
