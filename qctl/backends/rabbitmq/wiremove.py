"""A queue-to-queue move in one thread over two AMQP connections of qctl's own.

The generic mover runs a consuming pika connection, a publishing one in a lane thread,
and builds a ``Message`` for every delivery: about 2.8k msg/s on two cores, where a
Shovel inside the broker moves 8-10k. This loop keeps every message as the bytes it
arrived in (see ``amqp.frames``) and spends a fifth of a core on 8k msg/s:

* one connection consumes the source (``basic.qos`` = window + held allowance, manual
  acks), the other publishes in confirm mode with ``mandatory`` (two connections, as
  the broker serves each with its own reader and writer processes, and flow control
  on publishing never holds up acknowledgements); at most ``window`` copies are
  unconfirmed;
* each delivery's route comes from the request's ``QueueMapper``, asked once per
  distinct combination of the headers it reads; the headers are then spliced in the
  property bytes and the copy is published;
* confirms and returns go through ``amqp.confirms.ConfirmTracker``: a copy whose
  exchange, routing key and body equal those of a copy still awaiting its confirm
  waits for that confirm (deliveries keep their order), so a ``basic.return`` names
  exactly one copy;
* a source message is acknowledged only after the broker confirmed its copy (a
  ``basic.ack`` with no ``basic.return`` before it); contiguous confirmations become
  one ``basic.ack(multiple)``. A message that cannot go (returned, nacked, origin
  unknown) is never acknowledged: it stays in the source, reported, and from then on
  acknowledgements are single so that no multiple ack can take it;
* ``connection.blocked`` (a memory or disk alarm) pauses publishing until
  ``connection.unblocked``; the confirm timeout does not run meanwhile, and the report
  says how long it lasted;
* at the end (the source's count at the start reached, or the source found empty
  after a second without a delivery), on a stop, a limit, or an error, nothing more
  is published; the connection closes after the last confirms, and the broker
  requeues whatever is unacknowledged.

A target exchange that does not exist fails its messages (checked once per exchange);
a channel the broker closes, or a frame this loop does not expect, hands the move back
to the generic mover (``QueueMoveReport.handover``). Bytes that are not AMQP (a wrong
frame-end octet, a frame larger than ``frame_max``) or confirms that contradict what
was published stop the move with an error, and nothing more is acknowledged: the
broker requeues every unacknowledged message. A crash, a stop, a handover or an error
can duplicate at most the window, never lose a message.
"""

from __future__ import annotations

import collections
import contextlib
import select
import struct
import time
from typing import TYPE_CHECKING, Any

from qctl.backends.capabilities.messaging import Outcome
from qctl.backends.capabilities.queuemove import (
    QueueMapper,
    QueueMoveControl,
    QueueMoveReport,
    QueueMoveRequest,
    QueueRoute,
)
from qctl.backends.rabbitmq.amqp import frames as af
from qctl.backends.rabbitmq.amqp.confirms import ConfirmError, ConfirmTracker
from qctl.backends.rabbitmq.amqp.connection import Closed, Connection
from qctl.errors import NotFoundError, QctlError, UnreachableError
from qctl.refs import Ref

if TYPE_CHECKING:
    from qctl.backends.rabbitmq.messaging import RabbitMessaging

_CONSUME = 1
_PUBLISH = 2
#: Deliveries a run may leave unacknowledged (failed) before it stops reading.
HOLD = 1000
#: After this long without a delivery, the loop asks whether the source is empty.
_IDLE_END = 1.0
_TICK = 0.05
_PROGRESS_EVERY = 0.5
_CONFIRM = struct.Struct(">QB")
_DEATH_NOISE = frozenset((b"time", b"count"))
_X_DEATH = b"x-death"


class Handover(Exception):
    """The loop cannot go on; the generic mover continues from the source."""


class _Copy:
    """A published copy awaiting its confirm: the delivery it came from, its route."""

    __slots__ = ("route", "tag")

    def __init__(self, tag: int, route: QueueRoute) -> None:
        self.tag = tag
        self.route = route


class WireMove:
    """One run of a queue move (see the module docstring)."""

    def __init__(
        self,
        backend: RabbitMessaging,
        request: QueueMoveRequest,
        control: QueueMoveControl,
    ) -> None:
        self.backend = backend
        self.request = request
        self.control = control
        self.report = QueueMoveReport()
        self.mapper: QueueMapper = request.mapper
        self.reads = frozenset(n.encode() for n in request.mapper.reads)
        self.origin = f"rabbitmq:queue/{request.source.name}"
        self.cache: dict[Any, tuple[Any, bytes, frozenset[bytes], bytes]] = {}
        self.exchanges: dict[str, str | None] = {"": None}
        #: x-death values (bytes) and their keys without times and counts: the messages
        #: of one incident died in the same few seconds.
        self.deaths: dict[bytes, bytes] = {}
        self.tracker: ConfirmTracker[_Copy] = ConfirmTracker()
        self.order: collections.deque[int] = collections.deque()
        self.confirmed: set[int] = set()
        self.single = False
        #: False once the broker sent what cannot be trusted: nothing is acknowledged then.
        self.trusted = True
        self.held = 0
        self.taken = 0
        self.received = 0
        self.ready = 0
        self.quorum = False
        #: Frames to send this round: publishes, and acknowledgements of the source.
        self.out: list[bytes] = []
        self.acks: list[bytes] = []
        self.backlog: collections.deque[tuple[int, bytes, bytes, bytes, bytes]] = (
            collections.deque()
        )
        self.reading = True
        self.bucket: Any = None
        if request.rate:
            from qctl.ratelimit import TokenBucket

            self.bucket = TokenBucket(request.rate)

    # -- setup -----------------------------------------------------------------------------
    def run(self) -> QueueMoveReport:
        backend = self.backend
        source = self.request.source
        vhost = backend._msg_vhost(source)
        self.ready = self._check(source)
        info = backend._msg_queue_info(vhost, source.name)
        self.quorum = info.get("type") == "quorum"
        if info.get("type") == "stream":
            self.report.handover = "a stream queue is read by offset"
            return self.report
        if self.ready == 0:
            self.report.exhausted = True
            return self.report
        params = backend._msg_params(vhost)
        # Two connections, as the broker serves each with its own reader and writer
        # processes: consuming and publishing then run in parallel on its side too.
        self.consumer = Connection(params, self.request.timeout)
        self.publisher = Connection(params, self.request.timeout)
        try:
            try:
                self._open(source.name)
            except Closed as exc:
                raise _refused(exc, source.name, backend.target()) from None
            self._loop()
        except Handover as exc:
            self.report.handover = str(exc)
        except (af.FrameError, ConfirmError, struct.error) as exc:
            self.trusted = False
            self.report.problem = QctlError(
                f"RabbitMQ at {backend.target()} sent what the move cannot trust ({exc}); "
                "it stopped and acknowledged nothing more",
                "run again: every message not acknowledged is back in the source",
            )
        except (OSError, ConnectionError, TimeoutError) as exc:
            self.report.problem = UnreachableError(
                f"lost the connection to RabbitMQ at {backend.target()}: "
                f"{exc or type(exc).__name__}"
            )
        except QctlError as exc:
            self.report.problem = exc
        finally:
            self._close()
            warning = self.publisher.blocked.warning()
            if warning is not None:
                self.report.warnings.append(warning)
        return self.report

    def _open(self, queue: str) -> None:
        from pika import spec

        pub = self.publisher
        pub.open()
        pub.method(_PUBLISH, spec.Channel.Open())
        pub.expect(_PUBLISH, spec.Channel.OpenOk)
        pub.method(_PUBLISH, spec.Confirm.Select())
        pub.expect(_PUBLISH, spec.Confirm.SelectOk)
        con = self.consumer
        con.open()
        con.method(_CONSUME, spec.Channel.Open())
        con.expect(_CONSUME, spec.Channel.OpenOk)
        con.method(_CONSUME, spec.Basic.Qos(prefetch_count=self.request.window + HOLD))
        con.expect(_CONSUME, spec.Basic.QosOk)
        con.method(_CONSUME, spec.Basic.Consume(queue=queue))
        con.expect(_CONSUME, spec.Basic.ConsumeOk)
        for conn in (pub, con):  # reads wait in select(); this bounds a stuck send
            conn.sock.settimeout(self.request.timeout)

    def _close(self) -> None:
        """The publisher first (its confirms are in), then the consumer: the broker
        requeues what the consumer did not acknowledge. After bytes that cannot be
        trusted both are dropped without a word: nothing more is acknowledged."""
        con = self.consumer
        if not self.trusted:
            self.publisher.drop()
            con.drop()
            return
        self.publisher.close()
        if con.sock is not None and self.confirmed:
            # Confirmed before a handover or an error: their copies are safe.
            self._ack()
            with contextlib.suppress(OSError):
                con.send(self.acks, time.monotonic())
        if con.sock is not None and self.quorum:
            # Give back what is unacknowledged without counting a failed delivery
            # where the broker tells the two apart (4.3+: nack, not reject).
            with contextlib.suppress(OSError):
                con.sock.sendall(af.nack_all(_CONSUME))
        con.close()

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        con, pub = self.consumer, self.publisher
        report = self.report
        control = self.control
        tracker = self.tracker
        timeout = self.request.timeout
        last_progress = last_confirm = last_delivery = time.monotonic()
        # What came in with the setup's last answers.
        self._frames(con)
        self._frames(pub)
        while True:
            ready = self._wait(con, pub)
            now = time.monotonic()
            if pub in ready:
                before = len(tracker)
                self._frames(pub)
                if len(tracker) < before:
                    last_confirm = now
            if not tracker or pub.blocked.active:
                # The confirm clock runs only while copies wait and the broker reads them.
                last_confirm = now
            if con in ready:
                before = self.received
                self._frames(con)
                if self.received > before:
                    last_delivery = now
            if self.reading and control.stopping():
                report.stopped = True
                self.reading = False
            if not pub.blocked.active:
                self._take()
            pub.send(self.out, now)  # heartbeats go on while blocked
            self._ack()
            con.send(self.acks, now)
            if now - last_progress >= _PROGRESS_EVERY:
                last_progress = now
                control.progress(report)
            if self.reading and not self.backlog:
                if self.received >= self.ready:
                    report.exhausted = True
                    self.reading = False
                elif now - last_delivery >= _IDLE_END and not tracker:
                    # Fewer messages than counted at the start (another consumer took
                    # some), or the broker is slow: only an empty queue ends the move.
                    if self._check(self.request.source) == 0:
                        report.exhausted = True
                        self.reading = False
                    last_delivery = time.monotonic()
            if not self.reading and not tracker:
                control.progress(report)
                return
            if tracker and now - last_confirm > timeout * 3:
                raise QctlError(
                    f"no confirms for {timeout * 3:g}s; {len(tracker)} messages are still "
                    "in the source"
                )

    def _check(self, ref: Ref) -> int:
        """Passively declare a queue or exchange of the source's vhost on a short pika
        connection: its ready messages (queues), ``NotFoundError`` when it is missing."""
        backend = self.backend
        vhost = backend._msg_vhost(self.request.source)
        conn = backend._msg_connect(vhost)
        try:
            return backend._msg_check(conn, ref, vhost)
        finally:
            if conn.is_open:
                conn.close()

    def _wait(self, con: Connection, pub: Connection) -> list[Connection]:
        """The connections that received something (waiting up to ``_TICK``). The
        publisher is always watched: confirms, returns, and flow-control notices."""
        want = [pub, con] if self.reading else [pub]
        # TLS may hold decrypted bytes that select() cannot see.
        ready = [c for c in want if c.buffered()]
        if not ready:
            readable, _, _ = select.select([c.sock for c in want], [], [], _TICK)
            ready = [c for c in want if c.sock in readable]
        return [c for c in ready if c.read()]

    def _frames(self, conn: Connection) -> None:
        """Every complete frame received: deliveries to the backlog, confirms applied.
        Each frame is checked (``frame_max``, the frame-end octet) before it is used:
        ``frames.frame_at``'s checks, written out here as this loop runs per frame."""
        buf = conn.buffer
        end = len(buf)
        pos = 0
        limit = conn.frame_max - 8
        unpack_head = af.FRAME_HEAD.unpack_from
        unpack_id = af.METHOD_ID.unpack_from
        frame_end = af.FRAME_END
        backlog = self.backlog
        tracker = self.tracker
        with memoryview(buf) as data:
            while end - pos >= 8:
                kind, channel, size = unpack_head(data, pos)
                if size > limit:
                    raise af.FrameError(f"a frame of {size} bytes (more than frame_max)")
                stop = pos + 7 + size
                if stop >= end:
                    break
                if data[stop] != frame_end:
                    raise af.FrameError(f"frame end octet {data[stop]:#04x} instead of 0xce")
                if kind == af.FRAME_METHOD:
                    method = unpack_id(data, pos + 7)[0]
                    if method == af.BASIC_DELIVER and channel == _CONSUME:
                        # consumer tag, delivery tag, redelivered, exchange, routing key;
                        # then the content header and the body frames.
                        p = pos + 11
                        p += 1 + data[p]
                        tag = af.U64.unpack_from(data, p)[0]
                        p += 9
                        n = data[p]
                        exchange = bytes(data[p + 1 : p + 1 + n])
                        p += 1 + n
                        n = data[p]
                        routing_key = bytes(data[p + 1 : p + 1 + n])
                        got = _content(data, stop + 1, end, conn.frame_max)
                        if got is None:
                            break  # the rest has not arrived yet
                        properties, body, stop = got
                        backlog.append((tag, exchange, routing_key, properties, body))
                        self.received += 1
                        pos = stop
                        continue
                    if method == af.BASIC_ACK and channel == _PUBLISH:
                        tag, bits = _CONFIRM.unpack_from(data, pos + 11)
                        self._settled(tracker.acked(tag, bool(bits & 1)))
                    elif method == af.BASIC_NACK and channel == _PUBLISH:
                        tag, bits = _CONFIRM.unpack_from(data, pos + 11)
                        self._settled(tracker.nacked(tag, bool(bits & 1)))
                    elif method == af.BASIC_RETURN and channel == _PUBLISH:
                        got = _content(data, stop + 1, end, conn.frame_max)
                        if got is None:
                            break
                        self._returned(bytes(data[pos : stop + 1]), got[1])
                        pos = got[2]
                        continue
                    else:
                        self._control(conn, bytes(data[pos : stop + 1]))
                elif kind != af.FRAME_HEARTBEAT:
                    raise Handover(f"an unexpected frame (type {kind}) arrived")
                pos = stop + 1
        del buf[:pos]

    def _control(self, conn: Connection, raw: bytes) -> None:
        """A method other than deliveries and confirms (pika decodes it)."""
        from pika import frame, spec

        _, decoded = frame.decode_frame(raw)
        method = getattr(decoded, "method", None)
        channel = getattr(decoded, "channel_number", None)
        if isinstance(method, spec.Connection.Blocked):
            conn.blocked.start(method.reason)
            return
        if isinstance(method, spec.Connection.Unblocked):
            conn.blocked.end()
            return
        if isinstance(method, spec.Connection.Close):
            raise QctlError(
                f"RabbitMQ closed the connection: {method.reply_code} {method.reply_text}"
            )
        if isinstance(method, spec.Basic.Cancel):
            raise NotFoundError(f"queue {self.request.source.name!r} was deleted while reading")
        if isinstance(method, spec.Channel.Close) and channel == _CONSUME:
            raise _refused(
                Closed(method.reply_code, method.reply_text),
                self.request.source.name,
                self.backend.target(),
            )
        if isinstance(method, spec.Channel.Close):
            raise Handover(
                f"RabbitMQ closed the publishing channel: {method.reply_code} {method.reply_text}"
            )
        raise Handover(f"RabbitMQ sent {method or decoded!r}")

    # -- publishing ------------------------------------------------------------------------
    def _take(self) -> None:
        """Publish the backlog's deliveries, in order, as far as the window, the limit,
        the rate and the copies awaiting confirms allow."""
        backlog = self.backlog
        if not backlog:
            return
        if not self.reading:
            backlog.clear()  # not taken: requeued when the connection closes
            return
        out = self.out
        cache = self.cache
        frame_max = self.publisher.frame_max
        limit = self.request.limit
        bucket = self.bucket
        window = self.request.window
        tracker = self.tracker
        while backlog:
            if len(tracker) >= window:
                return  # at most the window unconfirmed: the duplicates a crash can make
            tag, exchange, routing_key, raw, body = backlog[0]
            try:
                props = af.Properties(raw)
                entries = props.entries()
            except af.FrameError as exc:  # pika's decoder may know better
                raise Handover(f"a message's properties could not be read: {exc}") from None
            key = self._key(raw, entries, exchange, routing_key)
            hit = cache.get(key)
            if hit is None:
                hit = self._decide(raw, entries, exchange, routing_key)
                if len(cache) > 10_000:
                    cache.clear()
                cache[key] = hit
            if isinstance(hit[0], str):
                backlog.popleft()
                self._hold(tag, hit[0])
                continue
            route, method, drop, add = hit
            publish_key = (route.exchange, route.routing_key, body)
            if not tracker.admit(publish_key):
                return  # an identical copy awaits its confirm: this one waits for it
            if bucket is not None and not bucket.try_acquire():
                return
            backlog.popleft()
            if drop or add:
                raw = props.rewritten(entries, drop, (add,) if add else ())
            tracker.sent(publish_key, _Copy(tag, route))
            self.order.append(tag)
            out.append(method)
            out.extend(af.content(_PUBLISH, raw, body, frame_max))
            if not route.parked:
                self.taken += 1
                if limit is not None and self.taken >= limit:
                    self.report.limited = True
                    self.reading = False
                    backlog.clear()
                    return

    def _key(self, raw: bytes, entries: list[Any], exchange: bytes, routing_key: bytes) -> Any:
        reads = self.reads
        parts: list[Any] = [exchange, routing_key]
        for name, start, value, stop in entries:
            if name in reads:
                if name == _X_DEATH and self.mapper.timeless:
                    death = raw[value:stop]
                    known = self.deaths.get(death)
                    if known is None:
                        if len(self.deaths) > 10_000:
                            self.deaths.clear()
                        known = self.deaths[death] = _death_key(death)
                    parts.append(known)
                else:
                    parts.append(raw[start:stop])
        return tuple(parts)

    def _decide(
        self, raw: bytes, entries: list[Any], exchange: bytes, routing_key: bytes
    ) -> tuple[Any, bytes, frozenset[bytes], bytes]:
        """The mapper's answer for one combination, with its publish frame and header
        changes encoded: (route, method frame, names to drop, entries to add); a
        failure's reason in place of the route when the message cannot go."""
        headers: dict[str, Any] = {}
        for name, _start, value, stop in entries:
            if name in self.reads:
                try:
                    headers[name.decode("utf-8", "replace")] = af.decode_value(raw[value:stop])
                except Exception:  # a malformed header reads as absent
                    continue
        decision = self.mapper.decide(
            headers, exchange.decode("utf-8", "replace"), routing_key.decode("utf-8", "replace")
        )
        if not isinstance(decision, QueueRoute):
            return (decision.reason, b"", frozenset(), b"")
        missing = self._missing(decision.exchange)
        if missing is not None:
            return (missing, b"", frozenset(), b"")
        method = af.publish_method(
            _PUBLISH, decision.exchange.encode(), decision.routing_key.encode(), True
        )
        drop = frozenset(n.encode() for n in decision.drop) | frozenset(
            n.encode() for n, _ in decision.add
        )
        add = b"".join(af.longstr_entry(n, v) for n, v in decision.add)
        return (decision, method, drop, add)

    def _missing(self, exchange: str) -> str | None:
        """Why ``exchange`` cannot be published to (it does not exist), checked once."""
        if exchange in self.exchanges:
            return self.exchanges[exchange]
        vhost = self.backend._msg_vhost(self.request.source)
        try:
            self._check(Ref("rabbitmq", "exchange", exchange, vhost=vhost))
            reason = None
        except NotFoundError as exc:
            reason = str(exc)
        self.exchanges[exchange] = reason
        return reason

    def _hold(self, tag: int, reason: str) -> None:
        """Leave a delivery in the source (never acknowledged), reported."""
        self.report.fail(reason)
        self.control.failure(self.origin, reason)
        self.held += 1
        self.single = True  # no multiple ack may take it from now on
        if self.held >= HOLD and self.reading:
            self.reading = False
            self.report.warnings.append(
                f"stopped reading after {self.held} messages that stay in the source "
                "(they fill the read window); fix the cause and run again for the rest"
            )

    # -- confirms and acknowledgements -----------------------------------------------------
    def _settled(self, outcomes: list[tuple[_Copy, Outcome]]) -> None:
        """Copies the broker settled: confirmed ones become acknowledgements to send,
        failed ones stay in the source."""
        report = self.report
        for copy, outcome in outcomes:
            route = copy.route
            if not outcome.ok:
                self._hold(copy.tag, f"{route.label}: {outcome.error}")
                continue
            if route.parked:
                report.parked += 1
            else:
                report.moved += 1
                report.per_target[route.label] = report.per_target.get(route.label, 0) + 1
            self.confirmed.add(copy.tag)

    def _returned(self, raw: bytes, body: bytes) -> None:
        """``basic.return`` comes before the confirm of an unroutable copy; the tracker
        finds the one copy awaiting its confirm with that exchange, routing key and
        body (``ConfirmError`` when there is none)."""
        from pika import frame

        _, decoded = frame.decode_frame(raw)
        method = decoded.method
        reason = f"unroutable: {method.reply_code} {method.reply_text}"
        self.tracker.returned((method.exchange, method.routing_key, body), reason)

    def _ack(self) -> None:
        confirmed = self.confirmed
        if not confirmed:
            return
        out = self.acks
        if self.single:
            for tag in sorted(confirmed):
                out.append(af.ack(_CONSUME, tag, False))
            confirmed.clear()
            self.order.clear()
            return
        order = self.order
        last = None
        while order and order[0] in confirmed:
            last = order.popleft()
            confirmed.discard(last)
        if last is not None:
            out.append(af.ack(_CONSUME, last, True))


def _content(
    data: memoryview, pos: int, end: int, frame_max: int
) -> tuple[bytes, bytes, int] | None:
    """The content header and body frames from ``pos``: (properties, body, where the
    next frame starts), or None when they have not all arrived."""
    stop = af.frame_at(data, pos, end, frame_max)
    if stop < 0:
        return None
    if data[pos] != af.FRAME_HEADER:
        raise af.FrameError(f"expected a content header frame, got type {data[pos]}")
    start = pos + 7
    body_size = af.U64.unpack_from(data, start + 4)[0]
    properties = bytes(data[start + 12 : stop])
    pos = stop + 1
    parts = []
    got = 0
    while got < body_size:
        stop = af.frame_at(data, pos, end, frame_max)
        if stop < 0:
            return None
        if data[pos] != af.FRAME_BODY:
            raise af.FrameError(f"expected a content body frame, got type {data[pos]}")
        parts.append(data[pos + 7 : stop])
        got += stop - pos - 7
        pos = stop + 1
    if got != body_size:
        raise af.FrameError(f"a body of {got} bytes where {body_size} were announced")
    body = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
    return properties, body, pos


def _death_key(raw: bytes) -> bytes:
    """An ``x-death`` value (type octet first) without the times and counts of its
    entries."""
    if raw[:1] != b"A":
        return raw
    parts = []
    pos = 5
    stop = len(raw)
    try:
        while pos < stop:
            end = af.value_end(raw, pos)
            if raw[pos] == ord("F"):
                for name, start, _v, e in af.table_entries(raw, pos + 5, end):
                    if name not in _DEATH_NOISE:
                        parts.append(raw[start:e])
                parts.append(b"\x00")
            else:
                parts.append(raw[pos:end])
            pos = end
    except (af.FrameError, IndexError, struct.error):
        return raw
    return b"".join(parts)


def _refused(exc: Closed, queue: str, target: str) -> QctlError:
    if exc.code == 404:
        return NotFoundError(f"queue {queue!r} does not exist (RabbitMQ at {target})")
    if exc.code == 403:
        return QctlError(
            f"RabbitMQ at {target} refused access to queue {queue!r}: {exc.text}",
            "check the user's permissions on the vhost",
        )
    return QctlError(f"RabbitMQ at {target} closed the channel on {queue!r}: {exc}")
