"""Publishing many messages to RabbitMQ with publisher confirms, a window of
outstanding confirms, and ``mandatory`` returns correlated exactly.

pika's ``BlockingChannel`` in confirm mode waits for each confirm before the next
publish: one round trip per message. This publisher runs pika's asynchronous
``SelectConnection`` ioloop in the calling thread instead and keeps up to ``window``
publishes unconfirmed, pulling the next message from an iterator whenever a confirm
frees a slot. Each publish is marshalled with pika's own frame classes, and the frames
of a whole round of publishes are handed to the transport at once (pika would issue
one ``send`` per frame, three per message).

Confirms and returns are settled by ``confirms.ConfirmTracker`` (see there why a
message identical in exchange, routing key and body to one awaiting its confirm waits
for that confirm: only then does a ``basic.return`` name one message). The order of
the messages is kept. Outcomes, per message, through ``on_outcome(token, Outcome)``:

* ``basic.ack`` → ok, unless a ``basic.return`` for that message came first (RabbitMQ
  sends the return before the ack of an unroutable mandatory message);
* ``basic.nack`` → failed (the broker could not take it, e.g. a queue with
  ``x-overflow: reject-publish`` was full);
* connection or channel lost, no confirm within the timeout, or confirms that
  contradict what was published → failed; the run stops (``PublishStats.aborted``).

``connection.blocked`` (a memory or disk alarm) pauses publishing until
``connection.unblocked``; the confirm timeout does not run meanwhile
(``PublishStats.blocked`` has the time). DLQ redrive acknowledges a source message
from its outcome callback, i.e. only after a positive confirm without a return.
"""

from __future__ import annotations

import copy
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qctl.backends.capabilities.messaging import Outcome, ProduceFailure
from qctl.backends.rabbitmq.amqp.confirms import ConfirmError, ConfirmTracker
from qctl.backends.rabbitmq.amqp.connection import Blocked

if TYPE_CHECKING:
    import pika

_FRAME_END = b"\xce"
_BODY_HEADER = struct.Struct(">BHI")
#: How long to wait before asking a source that had nothing (None) again.
_IDLE_RETRY = 0.005
#: Failed messages a run names (``PublishStats.failures``); the rest are only counted.
FAILURES_NAMED = 1000


class Publication:
    """One message to publish; ``token`` comes back with its outcome, ``number`` (its
    position in the caller's input, 1-based; 0: none) names it among the failures."""

    __slots__ = ("body", "exchange", "number", "properties", "routing_key", "token")

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        token: Any = None,
        number: int = 0,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.properties = properties
        self.token = token
        self.number = number


@dataclass
class PublishStats:
    """Totals of one run."""

    published: int = 0
    confirmed: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: The first failed messages that have a number, in the order they were settled.
    failures: list[ProduceFailure] = field(default_factory=list)
    #: Why the run stopped early (connection lost, timeout), or None.
    aborted: str | None = None
    #: When and why the broker blocked publishing (``connection.blocked``).
    blocked: Blocked = field(default_factory=Blocked)

    def fail(self, reason: str, number: int = 0) -> None:
        self.failed += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1
        if number and len(self.failures) < FAILURES_NAMED:
            self.failures.append(ProduceFailure(number, reason))


class ConfirmingPublisher:
    """Publish an iterable of ``Publication`` (None: nothing right now) with confirms."""

    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        *,
        window: int = 1000,
        mandatory: bool = True,
        timeout: float = 10.0,
        on_outcome: Callable[[Any, Outcome], None] | None = None,
        on_blocked: Callable[[bool], None] | None = None,
    ) -> None:
        # The publisher pauses while the broker blocks it; pika's own blocked-connection
        # timeout would close the connection instead.
        self.parameters = copy.copy(parameters)
        self.parameters.blocked_connection_timeout = None
        self.window = max(1, window)
        self.mandatory = mandatory
        self.timeout = timeout
        self.on_outcome = on_outcome
        self.on_blocked = on_blocked
        self.stats = PublishStats()
        self._tracker: ConfirmTracker[Publication] = ConfirmTracker(mandatory)
        #: The next message, taken from the source but waiting for an identical one's
        #: confirm.
        self._waiting: Publication | None = None
        self._items: Iterator[Publication | None] = iter(())
        self._exhausted = False
        self._stopping = False
        self._conn: Any = None
        self._channel: Any = None
        self._last_progress = 0.0
        self._open_error: BaseException | None = None
        self._error: BaseException | None = None
        self._pump_scheduled = False
        self._method_frames: dict[tuple[str, str], bytes] = {}
        self._header_cache: tuple[Any, int, bytes] | None = None

    # -- public ----------------------------------------------------------------------------
    def run(self, items: Iterable[Publication | None]) -> PublishStats:
        """Publish everything and wait for every confirm; returns the totals.

        Raises what the source iterator raised (after settling what was sent), and
        ``ConnectionError`` when the connection could not be opened.
        """
        import pika

        self._items = iter(items)
        self._last_progress = time.monotonic()
        self._conn = pika.SelectConnection(
            self.parameters,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
        )
        self._conn.add_on_connection_blocked_callback(self._on_blocked)
        self._conn.add_on_connection_unblocked_callback(self._on_unblocked)
        self._conn.ioloop.call_later(0.5, self._watchdog)
        try:
            self._conn.ioloop.start()
        finally:
            self._fail_outstanding(self.stats.aborted or "the connection closed")
            self.stats.blocked.end()
        if self._open_error is not None:
            raise ConnectionError(str(self._open_error)) from self._open_error
        if self._error is not None:
            raise self._error
        return self.stats

    # -- connection lifecycle ----------------------------------------------------------------
    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn: Any, error: BaseException) -> None:
        self._open_error = error
        conn.ioloop.stop()

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._pump())

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if not self._stopping:
            self._abort(f"the channel was closed: {_describe(reason)}")

    def _on_close(self, conn: Any, reason: BaseException) -> None:
        if not self._stopping and self.stats.aborted is None:
            self.stats.aborted = f"the connection was closed: {_describe(reason)}"
        conn.ioloop.stop()

    def _on_blocked(self, conn: Any, frame: Any) -> None:
        self.stats.blocked.start(getattr(frame.method, "reason", "") or "")
        if self.on_blocked is not None:
            self.on_blocked(True)

    def _on_unblocked(self, conn: Any, frame: Any) -> None:
        self.stats.blocked.end()
        self._last_progress = time.monotonic()
        if self.on_blocked is not None:
            self.on_blocked(False)
        self._pump()

    def _abort(self, reason: str) -> None:
        if self.stats.aborted is None:
            self.stats.aborted = reason
        self._fail_outstanding(reason)
        self._close()

    def _close(self) -> None:
        self._stopping = True
        conn = self._conn
        if conn is not None and not (conn.is_closing or conn.is_closed):
            conn.close()
            # The close handshake waits for the broker's answer; one that stopped
            # answering must not hold the run (the socket goes when the process ends).
            conn.ioloop.call_later(min(self.timeout, 5.0), conn.ioloop.stop)
        elif conn is not None and conn.is_closed:
            conn.ioloop.stop()

    def _watchdog(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        if self.stats.blocked.active or not self._tracker:
            self._last_progress = now  # nothing to wait for, or the broker is not reading
        elif now - self._last_progress > self.timeout:
            self._abort(f"no confirm from the broker within {self.timeout:g}s")
            return
        self._conn.ioloop.call_later(0.5, self._watchdog)

    # -- publishing --------------------------------------------------------------------------
    def _schedule_pump(self, delay: float) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._conn.ioloop.call_later(delay, self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self._pump()

    def _pump(self) -> None:
        """Publish until the window is full, the source is empty or has nothing now, the
        next message waits for an identical one's confirm, or the broker blocks us."""
        if self._stopping or self._channel is None or not self._channel.is_open:
            return
        if self.stats.blocked.active:
            return
        parts: list[bytes] = []
        tracker = self._tracker
        window = self.window
        items = self._items
        try:
            while len(tracker) < window:
                item = self._waiting
                if item is None:
                    if self._exhausted:
                        break
                    try:
                        item = next(items)
                    except StopIteration:
                        self._exhausted = True
                        break
                    if item is None:
                        self._schedule_pump(_IDLE_RETRY)
                        break
                key = (item.exchange, item.routing_key, item.body)
                if not tracker.admit(key):
                    self._waiting = item  # the confirm that frees it calls _pump again
                    break
                self._waiting = None
                tracker.sent(key, item)
                self._encode(item, parts)
        except BaseException as exc:  # a source error: settle what was sent, then raise it
            self._error = exc
            self._exhausted = True
        if parts:
            self._conn._output_marshaled_frames([b"".join(parts)])
        self._close_when_done()

    def _close_when_done(self) -> None:
        if self._exhausted and self._waiting is None and not self._tracker:
            self._close()

    def _encode(self, item: Publication, parts: list[bytes]) -> None:
        from pika import frame, spec

        channel_number = self._channel.channel_number
        key = (item.exchange, item.routing_key)
        method = self._method_frames.get(key)
        if method is None:
            method = frame.Method(
                channel_number,
                spec.Basic.Publish(
                    exchange=item.exchange, routing_key=item.routing_key, mandatory=self.mandatory
                ),
            ).marshal()
            if len(self._method_frames) > 1000:
                self._method_frames.clear()
            self._method_frames[key] = method
        body = item.body
        size = len(body)
        cached = self._header_cache
        if cached is not None and cached[0] is item.properties and cached[1] == size:
            header = cached[2]
        else:
            header = frame.Header(channel_number, size, item.properties).marshal()
            self._header_cache = (item.properties, size, header)
        parts.append(method)
        parts.append(header)
        limit = self._conn._body_max_length
        if size <= limit:
            if size:
                parts.append(_BODY_HEADER.pack(3, channel_number, size))
                parts.append(body)
                parts.append(_FRAME_END)
        else:
            for start in range(0, size, limit):
                chunk = body[start : start + limit]
                parts.append(_BODY_HEADER.pack(3, channel_number, len(chunk)))
                parts.append(chunk)
                parts.append(_FRAME_END)
        self.stats.published += 1

    # -- confirms and returns ----------------------------------------------------------------
    def _on_confirm(self, method_frame: Any) -> None:
        from pika import spec

        method = method_frame.method
        self._last_progress = time.monotonic()
        try:
            if isinstance(method, spec.Basic.Ack):
                settled = self._tracker.acked(method.delivery_tag, method.multiple)
            else:
                settled = self._tracker.nacked(method.delivery_tag, method.multiple)
        except ConfirmError as exc:
            self._abort(f"a protocol error: {exc}")
            return
        for item, outcome in settled:
            self._settle(item, outcome)
        self._pump()

    def _settle(self, item: Publication, outcome: Outcome) -> None:
        if outcome.ok:
            self.stats.confirmed += 1
        else:
            self.stats.fail(outcome.error or "failed", item.number)
        if self.on_outcome is not None:
            self.on_outcome(item.token, outcome)

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        reason = f"unroutable: {method.reply_code} {method.reply_text}"
        try:
            self._tracker.returned((method.exchange, method.routing_key, body), reason)
        except ConfirmError as exc:
            self._abort(f"a protocol error: {exc}")

    def _fail_outstanding(self, reason: str) -> None:
        """Every message awaiting its confirm failed, and the one taken from the source
        but not sent yet (each message taken gets an outcome)."""
        for item, outcome in self._tracker.fail_all(reason):
            self._settle(item, outcome)
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self._settle(waiting, Outcome(ok=False, error=f"not sent: {reason}"))


def _describe(reason: BaseException) -> str:
    code = getattr(reason, "reply_code", None)
    text = getattr(reason, "reply_text", None)
    if code is not None:
        return f"{code} {text}"
    return str(reason) or type(reason).__name__
