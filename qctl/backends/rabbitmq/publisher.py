"""Publishing to RabbitMQ with publisher confirms, a window of outstanding confirms, and
``mandatory`` returns detected per message.

pika's ``BlockingChannel`` in confirm mode waits for each confirm before the next
publish: one round trip per message. This publisher runs pika's asynchronous
``SelectConnection`` ioloop in the calling thread instead and keeps up to ``window``
publishes unconfirmed, pulling the next message from an iterator whenever a confirm
frees a slot. Each publish is marshalled with pika's own frame classes, and the frames
of a whole round of publishes are handed to the transport at once (pika would issue
one ``send`` per frame, three per message).

Outcomes, per message, through ``on_outcome(token, Outcome)``:

* ``basic.ack`` → ok, unless a ``basic.return`` for that message came first: RabbitMQ
  sends the return *before* the ack of an unroutable mandatory message, so a returned
  message is a failure although an ack follows.
* ``basic.nack`` → failed (the broker could not take it, e.g. a queue with
  ``x-overflow: reject-publish`` was full).
* connection or channel lost, or no confirm within the timeout → failed; the run stops.

Returns carry no delivery tag; they are matched to the oldest unconfirmed publish with
the same exchange, routing key and body. The broker returns messages in publishing
order, so this is exact unless bindings change while identical messages are in flight.
DLQ redrive acknowledges a source message from its outcome callback, i.e. only after a
positive confirm without a return.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qctl.backends.capabilities.messaging import OK, Outcome

if TYPE_CHECKING:
    import pika

log = logging.getLogger(__name__)

_FRAME_END = b"\xce"
_BODY_HEADER = struct.Struct(">BHI")
#: How long to wait before asking a source that had nothing (None) again.
_IDLE_RETRY = 0.005


class Publication:
    """One message to publish; ``token`` comes back with its outcome."""

    __slots__ = ("body", "exchange", "properties", "returned", "routing_key", "token")

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        token: Any = None,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.properties = properties
        self.token = token
        self.returned: str | None = None


@dataclass
class PublishStats:
    """Totals of one run."""

    published: int = 0
    confirmed: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: Why the run stopped early (connection lost, timeout), or None.
    aborted: str | None = None

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1


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
    ) -> None:
        self.parameters = parameters
        self.window = max(1, window)
        self.mandatory = mandatory
        self.timeout = timeout
        self.on_outcome = on_outcome
        self.stats = PublishStats()
        self._outstanding: OrderedDict[int, Publication] = OrderedDict()
        self._seq = 0
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
        self._conn.ioloop.call_later(0.5, self._watchdog)
        try:
            self._conn.ioloop.start()
        finally:
            self._fail_outstanding(self.stats.aborted or "the connection closed")
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
        elif conn is not None and conn.is_closed:
            conn.ioloop.stop()

    def _watchdog(self) -> None:
        if self._stopping:
            return
        if self._outstanding and time.monotonic() - self._last_progress > self.timeout:
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
        """Publish until the window is full, the source is empty or has nothing now."""
        if self._stopping or self._channel is None or not self._channel.is_open:
            return
        parts: list[bytes] = []
        outstanding = self._outstanding
        window = self.window
        items = self._items
        try:
            while not self._exhausted and len(outstanding) < window:
                try:
                    item = next(items)
                except StopIteration:
                    self._exhausted = True
                    break
                if item is None:
                    self._schedule_pump(_IDLE_RETRY)
                    break
                self._seq += 1
                outstanding[self._seq] = item
                self._encode(item, parts)
        except BaseException as exc:  # a source error: settle what was sent, then raise it
            self._error = exc
            self._exhausted = True
        if parts:
            self._conn._output_marshaled_frames([b"".join(parts)])
        if self._exhausted and not outstanding:
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
        ok = isinstance(method, spec.Basic.Ack)
        tag = method.delivery_tag
        outstanding = self._outstanding
        self._last_progress = time.monotonic()
        if method.multiple:
            while outstanding:
                seq = next(iter(outstanding))
                if seq > tag:
                    break
                self._settle(outstanding.pop(seq), ok)
        else:
            item = outstanding.pop(tag, None)
            if item is not None:
                self._settle(item, ok)
        if self._exhausted and not outstanding:
            self._close()
        else:
            self._pump()

    def _settle(self, item: Publication, acked: bool) -> None:
        if acked and item.returned is None:
            self.stats.confirmed += 1
            if self.on_outcome is not None:
                self.on_outcome(item.token, OK)
            return
        reason = item.returned or "nacked by the broker (a queue refused the message)"
        self.stats.fail(reason)
        if self.on_outcome is not None:
            self.on_outcome(
                item.token, Outcome(ok=False, error=reason, returned=bool(item.returned))
            )

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        reason = f"unroutable: {method.reply_code} {method.reply_text}"
        for item in self._outstanding.values():
            if (
                item.returned is None
                and item.exchange == method.exchange
                and item.routing_key == method.routing_key
                and item.body == body
            ):
                item.returned = reason
                return
        log.debug("a returned message matched no unconfirmed publish: %s", reason)

    def _fail_outstanding(self, reason: str) -> None:
        while self._outstanding:
            _, item = self._outstanding.popitem(last=False)
            item.returned = item.returned or reason
            self._settle(item, acked=False)


def _describe(reason: BaseException) -> str:
    code = getattr(reason, "reply_code", None)
    text = getattr(reason, "reply_text", None)
    if code is not None:
        return f"{code} {text}"
    return str(reason) or type(reason).__name__
