"""Producing and consuming RabbitMQ messages (``SupportsProduce``, ``SupportsConsume``).

Producing goes through ``amqp.publisher.ConfirmingPublisher`` (confirms with a window,
mandatory returns correlated exactly, publishing paused while the broker blocks it);
each failed message is named by its number in the input. Consuming has three modes:

* peek (the default): ``basic.get`` each message and hold it unacknowledged, so each is
  seen once; at the end every held delivery goes back to its original position: on
  quorum queues with one ``basic.nack(multiple, requeue)``, on classic queues by closing
  the channel (the broker requeues those in one step; a bulk nack is quadratic there).
  On quorum queues before RabbitMQ 4.3 this uses up one delivery attempt of every
  message peeked (see ``behaviour.py``), so qctl warns when a delivery-limit applies.
* ``--ack``: destructive. ``basic.consume`` with a prefetch window; deliveries are
  acknowledged (``multiple``) only after the caller has written them out. With a
  filter, ``basic.get`` is used instead and only the selected messages are
  acknowledged; the others go back to the queue at the end.
* stream queues: ``basic.consume`` with ``x-stream-offset``; acknowledgements only
  grant credit (a stream is never consumed destructively). The end of a stream is
  "no delivery for a moment" unless ``--follow``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from qctl.backends.capabilities.messaging import (
    ConsumeRequest,
    ListBatch,
    MessageBatch,
    Outcome,
    OutcomeCallback,
    Position,
    ProduceItem,
    ProduceOptions,
    ProduceReport,
    ValueBatch,
    expand,
)
from qctl.backends.capabilities.queuemove import (
    QueueMoveControl,
    QueueMoveReport,
    QueueMoveRequest,
)
from qctl.backends.rabbitmq.amqp.publisher import ConfirmingPublisher, Publication
from qctl.backends.rabbitmq.behaviour import Behaviour, behaviour_for
from qctl.backends.rabbitmq.core import (
    RabbitCore,
    channel_refusal,
    close_within,
    decode_text,
)
from qctl.backends.rabbitmq.management import quote_segment
from qctl.errors import NotFoundError, QctlError, UnreachableError, UsageError
from qctl.messages import AMQP_PROPERTIES, Message, amqp_headers, rabbitmq_source
from qctl.refs import Ref

if TYPE_CHECKING:
    import pika

log = logging.getLogger(__name__)

_SHORTSTR_PROPERTIES = set(AMQP_PROPERTIES) - {"delivery_mode", "priority", "timestamp"}
_POLL = 0.2


class RabbitMessaging(RabbitCore):
    """``SupportsProduce`` and ``SupportsConsume`` for RabbitMQ."""

    # -- connections -------------------------------------------------------------------------
    def _msg_vhost(self, ref: Ref) -> str:
        return ref.vhost if ref.vhost is not None else self.settings.vhost

    def _msg_params(self, vhost: str) -> pika.ConnectionParameters:
        params = self.connection_parameters()
        params.virtual_host = vhost
        return params

    def _msg_connect(self, vhost: str) -> pika.BlockingConnection:
        """A new connection to ``vhost`` with the core's error mapping (exit 3 etc.)."""
        if vhost == self.settings.vhost:
            return self.connect()
        saved = self.settings
        self.settings = dataclasses.replace(saved, vhost=vhost)
        try:
            return self.connect()
        finally:
            self.settings = saved

    def _msg_check(self, conn: pika.BlockingConnection, ref: Ref, vhost: str) -> int:
        """Passively declare the queue/exchange; its ready-message count (queues)."""
        import pika.exceptions as pe

        channel = conn.channel()
        try:
            if ref.kind == "queue":
                ok = channel.queue_declare(ref.name, passive=True)
                return int(ok.method.message_count)
            if ref.name:  # the default exchange ("") always exists
                channel.exchange_declare(ref.name, passive=True)
            return 0
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise NotFoundError(
                    f"{ref.kind} {ref.name!r} does not exist in vhost {vhost!r} on RabbitMQ "
                    f"at {self.target()}",
                    "check the name and vhost (`qctl topology export -b rabbitmq` lists them)",
                ) from None
            raise channel_refusal(exc, f"inspect {ref.kind} {ref.name!r}", self.target()) from None
        finally:
            if channel.is_open:
                channel.close()

    def _msg_behaviour(self, conn: pika.BlockingConnection) -> Behaviour:
        server = conn._impl.server_properties or {}
        return behaviour_for(decode_text(server.get("version")))

    # -- produce -----------------------------------------------------------------------------
    def produce(
        self,
        target: Ref,
        messages: Iterable[ProduceItem],
        options: ProduceOptions,
        on_outcome: OutcomeCallback | None = None,
    ) -> ProduceReport:
        if target.kind not in ("queue", "exchange"):
            raise UsageError(
                f"cannot produce to {target}", "use rabbitmq:queue/NAME or rabbitmq:exchange/NAME"
            )
        vhost = self._msg_vhost(target)
        conn = self._msg_connect(vhost)
        try:
            self._msg_check(conn, target, vhost)
        finally:
            if conn.is_open:
                conn.close()
        report = ProduceReport()

        def outcome(token: Any, result: Outcome) -> None:
            assert on_outcome is not None
            on_outcome(token, result)

        publisher = ConfirmingPublisher(
            self._msg_params(vhost),
            window=options.window,
            mandatory=options.mandatory,
            timeout=self.timeout,
            on_outcome=outcome if on_outcome is not None else None,
            on_blocked=options.on_blocked,
        )
        start = time.monotonic()
        try:
            source = messages if on_outcome is None else expand(messages)
            stats = publisher.run(self._msg_publications(target, source, options, report))
        except ConnectionError as exc:
            raise UnreachableError(
                f"RabbitMQ at {self.target()} could not be reached for publishing: {exc}",
                "check the rabbitmq url (`qctl context show`) and that the node is running",
            ) from exc
        finally:
            report.elapsed = time.monotonic() - start
        report.sent = stats.confirmed
        report.failed += stats.failed
        for reason, count in stats.errors.items():
            report.errors[reason] = report.errors.get(reason, 0) + count
        report.failures = stats.failures
        report.aborted = stats.aborted
        blocked = stats.blocked.warning()
        if blocked is not None:
            report.warnings.append(blocked)
        return report

    def _msg_publications(
        self,
        target: Ref,
        messages: Iterable[ProduceItem],
        options: ProduceOptions,
        report: ProduceReport,
    ) -> Iterator[Publication | None]:
        import pika

        plain = pika.BasicProperties()
        exchange = "" if target.kind == "queue" else target.name
        fixed_key = target.name if target.kind == "queue" else options.routing_key
        warned_repeats = False
        number = 0  # each message's position in the input, for the failures it names
        for m in messages:
            if m is None:
                yield None
                continue
            if isinstance(m, ValueBatch):
                key = fixed_key if fixed_key is not None else ""
                for value in m.values:
                    number += 1
                    yield Publication(exchange, key, value, plain, None, number)
                continue
            number += 1
            if fixed_key is not None:
                routing_key = fixed_key
            elif m.routing_key is not None:
                routing_key = str(m.routing_key)
            elif m.key is not None:
                routing_key = m.key.decode("utf-8", "replace")
            else:
                routing_key = ""
            if not m.headers and m.properties is None and m.timestamp is None:
                props = plain
            else:
                props, repeated = amqp_properties(m)
                if repeated and not warned_repeats:
                    warned_repeats = True
                    report.warnings.append(
                        f"header {repeated[0]!r} repeats; an AMQP header table keeps only "
                        "the last value of a name"
                    )
            yield Publication(exchange, routing_key, m.value or b"", props, m, number)

    # -- consume -----------------------------------------------------------------------------
    def open_consumer(self, source: Ref, request: ConsumeRequest) -> RabbitSession:
        if source.kind != "queue":
            raise UsageError(
                f"cannot consume from {source}: only queues can be read",
                "bind a queue to the exchange and consume rabbitmq:queue/NAME",
            )
        if request.group or request.commit_before:
            raise UsageError(
                "--group and --commit-before apply to kafka",
                "RabbitMQ acknowledges per message: use --ack to consume destructively",
            )
        vhost = self._msg_vhost(source)
        conn = self._msg_connect(vhost)
        try:
            ready = self._msg_check(conn, source, vhost)
            behaviour = self._msg_behaviour(conn)
            info = self._msg_queue_info(vhost, source.name)
            session = RabbitSession(self, conn, source.name, vhost, request, ready, behaviour, info)
        except BaseException:
            if conn.is_open:
                conn.close()
            raise
        return session

    def queue_move(self, request: QueueMoveRequest, control: QueueMoveControl) -> QueueMoveReport:
        """``SupportsQueueMove``: a one-thread move over qctl's own AMQP connections
        (``QCTL_RABBITMQ_WIRE_MOVE=0``: handed back at once, to the generic mover)."""
        if os.environ.get("QCTL_RABBITMQ_WIRE_MOVE", "1") == "0":
            return QueueMoveReport(handover="QCTL_RABBITMQ_WIRE_MOVE=0")
        from qctl.backends.rabbitmq.wiremove import WireMove

        return WireMove(self, request, control).run()

    def _msg_queue_info(self, vhost: str, name: str) -> dict[str, Any]:
        """Type, arguments and effective policy of a queue (empty when the API is off)."""
        try:
            info = self.management().get(
                f"/queues/{quote_segment(vhost)}/{quote_segment(name)}",
                params={"columns": "name,type,arguments,effective_policy_definition"},
            )
        except QctlError as exc:
            log.debug("management API unavailable for queue %s: %s", name, exc)
            return {}
        return info if isinstance(info, dict) else {}


def amqp_properties(m: Message) -> tuple[pika.BasicProperties, list[str]]:
    """The BasicProperties of a message, and header names that repeated."""
    import pika

    kwargs: dict[str, Any] = {}
    for name, given in (m.properties or {}).items():
        value = given
        if name not in AMQP_PROPERTIES or value is None:
            continue
        if (
            name in _SHORTSTR_PROPERTIES
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            value = str(value)
        if name == "timestamp" and isinstance(value, dt.datetime):
            value = int(value.timestamp())
        kwargs[name] = value
    if m.properties is None and m.timestamp is not None and "timestamp" not in kwargs:
        kwargs["timestamp"] = m.timestamp // 1000
    repeated: list[str] = []
    if m.headers:
        table, repeated = amqp_headers(m.headers)
        kwargs["headers"] = table
    return pika.BasicProperties(**kwargs), repeated


def to_message(method: Any, props: Any, body: bytes, vhost: str, queue: str) -> Message:
    """A delivery (or basic.get reply) in the neutral model."""
    raw_headers = props.headers or {}
    properties = {}
    for name in AMQP_PROPERTIES:
        value = getattr(props, name, None)
        if value is not None:
            properties[name] = value
    stamp = properties.get("timestamp")
    offset = raw_headers.get("x-stream-offset")
    return Message(
        value=body,
        key=None,
        headers=list(raw_headers.items()),
        timestamp=int(stamp) * 1000 if isinstance(stamp, int) else None,
        properties=properties,
        source=rabbitmq_source(
            vhost=vhost,
            queue=queue,
            exchange=method.exchange,
            routing_key=method.routing_key,
            redelivered=bool(method.redelivered),
            offset=offset if isinstance(offset, int) else None,
            x_death=raw_headers.get("x-death"),
        ),
    )


class _Delivery:
    __slots__ = ("message", "tag")

    def __init__(self, tag: int, message: Message) -> None:
        self.tag = tag
        self.message = message


class RabbitBatch(ListBatch):
    """Messages plus their delivery tags."""

    def __init__(self, deliveries: list[_Delivery]) -> None:
        super().__init__([d.message for d in deliveries])
        self.tags = [d.tag for d in deliveries]


class RabbitSession:
    """An open RabbitMQ consumer (see ``ConsumeSession`` and the module docstring)."""

    def __init__(
        self,
        backend: RabbitMessaging,
        conn: pika.BlockingConnection,
        queue: str,
        vhost: str,
        request: ConsumeRequest,
        ready: int,
        behaviour: Behaviour,
        info: dict[str, Any],
    ) -> None:
        self.backend = backend
        self.conn = conn
        self.queue = queue
        self.vhost = vhost
        self.request = request
        self.ready = ready
        self.behaviour = behaviour
        self.queue_type: str | None = info.get("type")
        self.warnings: list[str] = []
        self.channel = conn.channel()
        self._buffer: list[_Delivery] = []
        self._received = 0
        self._last_delivery = time.monotonic()
        self._done = False
        self._consumer_tag: str | None = None
        self._closed = False
        #: With ``request.settle``: delivery tags handed out and not yet known to be
        #: acknowledged, in order, and those acknowledged out of order.
        self._handed_out: collections.deque[int] = collections.deque()
        self._acked: set[int] = set()
        self._acked_upto = 0
        #: Delivery tags rejected (``reject``): never acknowledged afterwards.
        self._rejected: set[int] = set()
        if self.queue_type == "stream":
            self.mode = "stream"
            self._start_stream()
        elif request.ack and not request.selective:
            self.mode = "consume"
            self._check_positions()
            self.channel.basic_qos(prefetch_count=max(1, request.prefetch))
            self._consumer_tag = self.channel.basic_consume(
                queue, self._on_delivery, auto_ack=False
            )
        else:
            self.mode = "get"
            self._check_positions()
            if not request.ack or request.settle:
                # With settle, messages a mover leaves in the queue are requeued too.
                self._warn_peek(info)

    # -- setup -------------------------------------------------------------------------------
    def _check_positions(self) -> None:
        if self.request.start is not None or self.request.end is not None:
            raise UsageError(
                f"--from/--until apply to kafka topics and RabbitMQ stream queues; "
                f"{self.queue!r} is a {self.queue_type or 'classic'} queue",
                "drop --from/--until; a queue is read from its head",
            )

    def _warn_peek(self, info: dict[str, Any]) -> None:
        if self.queue_type != "quorum" or not self.behaviour.peek_uses_delivery_attempts:
            return
        args = info.get("arguments") or {}
        policy = info.get("effective_policy_definition") or {}
        if not isinstance(policy, dict):
            policy = {}
        configured = args.get("x-delivery-limit", policy.get("delivery-limit"))
        limit = self.behaviour.effective_delivery_limit(
            "quorum", int(configured) if configured is not None else None
        )
        version = ".".join(map(str, self.behaviour.version or ())) or "this version"
        if limit is not None:
            self.warnings.append(
                f"peeking quorum queue {self.queue!r} uses up one of its {limit} delivery "
                f"attempts per message on RabbitMQ {version} (before 4.3 every requeue "
                "counts); a message at its limit is dead-lettered or dropped — consume with "
                "--ack instead, or upgrade to 4.3+ where a nack does not count"
            )
        else:
            self.warnings.append(
                f"peeking quorum queue {self.queue!r} increments each message's "
                f"x-delivery-count on RabbitMQ {version} (before 4.3 every requeue counts)"
            )

    def _start_stream(self) -> None:
        req = self.request
        offset = _stream_offset(req.start)
        self._stream_end = _stream_end(req.end)
        self.channel.basic_qos(prefetch_count=max(1, req.prefetch))
        self._consumer_tag = self.channel.basic_consume(
            self.queue,
            self._on_delivery,
            auto_ack=False,
            arguments={"x-stream-offset": offset},
        )

    def _on_delivery(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        self._buffer.append(
            _Delivery(method.delivery_tag, to_message(method, props, body, self.vhost, self.queue))
        )
        self._last_delivery = time.monotonic()

    # -- reading -----------------------------------------------------------------------------
    def next_batch(self, limit: int) -> MessageBatch | None:
        import pika.exceptions as pe

        if self._done:
            return None
        try:
            batch = self._get_batch(limit) if self.mode == "get" else self._consume_batch(limit)
            if self.request.settle and self.mode != "stream" and isinstance(batch, RabbitBatch):
                self._handed_out.extend(batch.tags)
            return batch
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise NotFoundError(f"queue {self.queue!r} was deleted while reading") from None
            raise channel_refusal(
                exc, f"let us read queue {self.queue!r}", self.backend.target()
            ) from None
        except pe.AMQPConnectionError as exc:
            raise UnreachableError(
                f"lost the connection to RabbitMQ at {self.backend.target()}: {exc}"
            ) from None

    def _get_batch(self, limit: int) -> MessageBatch | None:
        got: list[_Delivery] = []
        deadline = time.monotonic() + _POLL
        while len(got) < limit:
            method, props, body = self.channel.basic_get(self.queue, auto_ack=False)
            if method is None:
                if not self.request.follow:
                    self._done = True
                    break
                if time.monotonic() >= deadline:
                    break
                self.conn.sleep(0.05)
                continue
            got.append(
                _Delivery(
                    method.delivery_tag, to_message(method, props, body, self.vhost, self.queue)
                )
            )
        if not got and self._done:
            return None
        return RabbitBatch(got)

    def _consume_batch(self, limit: int) -> MessageBatch | None:
        req = self.request
        # At most half the prefetch window per batch: the broker sends no more than the
        # window unacknowledged, and acknowledging each half keeps the other half (and
        # the network) busy instead of waiting for a batch that cannot fill up.
        cap = min(limit, max(1, req.prefetch // 2))
        if self.mode == "consume" and not req.follow:
            cap = min(cap, self.ready - self._received)
            if cap <= 0:
                self._done = True
                return None
        deadline = time.monotonic() + _POLL
        while len(self._buffer) < cap:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.conn.process_data_events(time_limit=min(remaining, 0.05))
        taken = self._buffer[:cap]
        del self._buffer[:cap]
        if self.mode == "stream" and self._stream_end is not None:
            kept = []
            for d in taken:
                off = d.message.offset
                if off is not None and off >= self._stream_end:
                    self._done = True
                    break
                kept.append(d)
            taken = kept
        self._received += len(taken)
        if not taken and not req.follow:
            idle = time.monotonic() - self._last_delivery
            if idle >= (req.idle_end if self.mode == "stream" else max(req.idle_end, 1.0)):
                if self.mode == "consume" and self._still_has_messages():
                    self._last_delivery = time.monotonic()  # the broker is slow, not done
                    return RabbitBatch([])
                self._done = True
                return None
        if self._done and not taken:
            return None
        return RabbitBatch(taken)

    def _still_has_messages(self) -> bool:
        """Whether the queue still holds ready messages: a pause in deliveries ends a
        read only when it does not (fewer than counted at the start: another consumer
        took them)."""
        ok = self.channel.queue_declare(self.queue, passive=True)
        return int(ok.method.message_count) > 0

    # -- acknowledging -----------------------------------------------------------------------
    def commit(self, batch: MessageBatch, count: int, skipped: Sequence[int] = ()) -> None:
        """Acknowledge the first ``count`` deliveries, except the ``skipped`` indices
        (filtered out with --ack: they go back to the queue at close)."""
        if count <= 0 or not isinstance(batch, RabbitBatch):
            return
        if self.mode == "get" and not self.request.ack:
            return  # peek: everything is given back at close
        tags = batch.tags[:count]
        if self.mode == "get":
            skip = set(skipped)
            for i, tag in enumerate(tags):
                if i not in skip:
                    self.channel.basic_ack(tag)
            return
        rejected = self._rejected
        if rejected:
            tags = [t for t in tags if t not in rejected]
            if not tags:
                return
        self.channel.basic_ack(tags[-1], multiple=True)

    def settle(self, batch: MessageBatch, handled: Sequence[int]) -> None:
        """Acknowledge exactly the ``handled`` messages of ``batch`` (``request.settle``).

        One ``basic.ack(multiple)`` covers every handled message up to the first one
        still outstanding (a multiple ack must never take a message the caller leaves in
        the queue); the ones after it are acknowledged singly.
        """
        import pika.exceptions as pe

        if not handled or not isinstance(batch, RabbitBatch):
            return
        if self.mode == "stream":
            # A stream is never consumed away: an ack only grants credit, so one
            # multiple ack of the newest tag is enough (and never repeats a tag).
            top = max(batch.tags[i] for i in handled)
            if top > self._acked_upto:
                self._acked_upto = top
                self.channel.basic_ack(top, multiple=True)
            return
        if not self.request.settle:
            raise UsageError("settle() needs ConsumeRequest(settle=True)")
        new = {batch.tags[i] for i in handled}
        order = self._handed_out
        acked = self._acked
        last = None
        try:
            while order and (order[0] in new or order[0] in acked):
                tag = order.popleft()
                if tag in new:
                    last = tag
                    new.discard(tag)
                else:
                    acked.discard(tag)
            if last is not None:
                self.channel.basic_ack(last, multiple=True)
            for tag in sorted(new):
                self.channel.basic_ack(tag)
                acked.add(tag)
        except (pe.AMQPConnectionError, pe.AMQPChannelError) as exc:
            raise UnreachableError(
                f"lost the connection to RabbitMQ at {self.backend.target()}: "
                f"{exc or type(exc).__name__}"
            ) from None

    def reject(self, batch: MessageBatch, indices: Sequence[int], requeue: bool = False) -> None:
        """``RejectingSession``: ``basic.reject`` each message at ``indices``; without
        ``requeue`` the queue dead-letters it (its dead-letter exchange, ``x-death``)."""
        import pika.exceptions as pe

        if not indices or not isinstance(batch, RabbitBatch):
            return
        if self.mode == "stream" or (self.mode == "get" and not self.request.ack):
            raise UsageError(
                f"cannot reject messages of {self.queue!r}: they are only being read",
                "consume with ack to reject (streams are never consumed away)",
            )
        tags = sorted({batch.tags[i] for i in indices})
        try:
            for tag in tags:
                self.channel.basic_reject(tag, requeue=requeue)
        except pe.AMQPConnectionError as exc:
            raise UnreachableError(
                f"lost the connection to RabbitMQ at {self.backend.target()}: {exc}"
            ) from None
        # Settled: a later multiple ack of a newer tag steps over them.
        self._rejected.update(tags)
        if self.request.settle:
            self._acked.update(tags)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close_within(self._close, self.backend.timeout, "the consumer connection")

    def _close(self) -> None:
        try:
            if self.channel.is_open:
                if self._consumer_tag is not None:
                    self.channel.basic_cancel(self._consumer_tag)
                if self.queue_type == "quorum":
                    # Give back everything not acknowledged without counting a failure
                    # where the broker distinguishes (4.3+: nack, not reject).
                    self.channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
                # Classic queues: closing the channel requeues every unacknowledged
                # delivery at once, in its original position; a bulk basic.nack of the
                # same deliveries takes the queue time quadratic in their number (10,000
                # peeked messages: most of a minute).
                self.channel.close()
        except Exception:  # the connection may already be gone; the broker requeues then
            log.debug("closing the consumer channel failed", exc_info=True)
        if self.conn.is_open:
            self.conn.close()

    def __enter__(self) -> RabbitSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stream_offset(pos: Position | None) -> Any:
    if pos is None or pos.kind in ("earliest", "first"):
        return "first"
    if pos.kind in ("latest", "last"):
        return "last"
    if pos.kind == "next":
        return "next"
    if pos.kind == "offset":
        return int(pos.value or 0)
    if pos.kind == "timestamp" and pos.instant is not None:
        return pos.instant.astimezone(dt.UTC)
    raise UsageError(
        f"--from {pos} is not supported for stream queues",
        "use first, last, next, an offset, a timestamp or -DURATION",
    )


def _stream_end(pos: Position | None) -> int | None:
    if pos is None:
        return None
    if pos.kind == "offset":
        return int(pos.value or 0)
    raise UsageError(
        f"--until {pos} is not supported for stream queues", "give an offset (exclusive)"
    )
