"""A blocking AMQP 0-9-1 connection on a socket of qctl's own.

What ``wiremove`` runs its loop over: the handshake (pika's codec encodes and decodes
its methods), sending whole rounds of frames with one ``sendall``, and a receive
buffer the caller parses in place. The buffer is a ``bytearray``: what arrives is
appended and what was parsed is deleted from the front, so a 1 MiB message costs a
few copies of itself, not one per received chunk.

Flow control: RabbitMQ announces with ``connection.blocked`` that it stopped reading
from publishing connections (a memory or disk alarm) and with
``connection.unblocked`` that it reads again. ``Blocked`` keeps that state and how
long it lasted; a publisher pauses while it is set, and does not count the time
against its confirm timeout.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qctl.backends.rabbitmq.amqp import frames
from qctl.errors import QctlError

if TYPE_CHECKING:
    import pika

log = logging.getLogger(__name__)

#: A frame_max qctl asks for (the broker's default; 128 KiB).
FRAME_MAX = 131072
_RECV = 1 << 18


class Closed(Exception):
    """The broker closed the connection or a channel (``connection.close`` or
    ``channel.close``) in answer to a setup method."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


@dataclass
class Blocked:
    """Whether the broker blocks publishing on a connection, and for how long it did."""

    #: When the current block began (monotonic), or None.
    since: float | None = None
    #: Seconds blocked in earlier, ended blocks.
    total: float = 0.0
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.since is not None

    def start(self, reason: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
        self.reason = reason or self.reason

    def end(self) -> None:
        if self.since is not None:
            self.total += time.monotonic() - self.since
            self.since = None

    def seconds(self) -> float:
        """Seconds blocked so far, the current block included."""
        current = time.monotonic() - self.since if self.since is not None else 0.0
        return self.total + current

    def warning(self) -> str | None:
        """A line for the report when publishing was blocked at all."""
        seconds = self.seconds()
        if not seconds and self.since is None:
            return None
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"RabbitMQ blocked publishing for {seconds:.1f}s{why}; qctl paused publishing "
            "until it was unblocked"
        )


class Connection:
    """One AMQP connection: ``open`` (handshake), ``method``/``send``, ``read`` into
    ``buffer``, ``expect`` (the next method on a channel, for setup), ``close``."""

    def __init__(self, params: pika.ConnectionParameters, timeout: float) -> None:
        self.params = params
        self.timeout = timeout
        self.sock: Any = None
        #: Received bytes not yet parsed (the parser deletes what it used).
        self.buffer = bytearray()
        self.frame_max = FRAME_MAX
        self.heartbeat = 0
        self.last_sent = 0.0
        self.blocked = Blocked()

    def open(self, channel_max: int = 2) -> None:
        from pika import spec

        p = self.params
        sock = socket.create_connection((p.host, p.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if p.ssl_options is not None:
            sock = p.ssl_options.context.wrap_socket(
                sock, server_hostname=p.ssl_options.server_hostname
            )
        self.sock = sock
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        start = self.expect(0, spec.Connection.Start)
        mechanism, response = p.credentials.response_for(start)
        if mechanism is None:
            raise QctlError("RabbitMQ offers no login mechanism qctl's credentials can use")
        self.method(
            0,
            spec.Connection.StartOk(
                client_properties={
                    "product": "qctl",
                    "capabilities": {
                        "publisher_confirms": True,
                        "basic.nack": True,
                        "consumer_cancel_notify": True,
                        "connection.blocked": True,
                        "authentication_failure_close": True,
                    },
                    **(p.client_properties or {}),
                },
                mechanism=mechanism,
                response=response,
            ),
        )
        tune = self.expect(0, spec.Connection.Tune)
        self.frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        wanted = p.heartbeat if isinstance(p.heartbeat, int) else 60
        self.heartbeat = min(tune.heartbeat, wanted) if tune.heartbeat and wanted else 0
        self.method(
            0,
            spec.Connection.TuneOk(
                channel_max=channel_max, frame_max=self.frame_max, heartbeat=self.heartbeat
            ),
        )
        self.method(0, spec.Connection.Open(virtual_host=p.virtual_host))
        self.expect(0, spec.Connection.OpenOk)

    def method(self, channel: int, method: Any) -> None:
        from pika import frame

        self.sock.sendall(frame.Method(channel, method).marshal())

    def buffered(self) -> bool:
        """Whether the socket holds decrypted bytes select() cannot see (TLS)."""
        pending = getattr(self.sock, "pending", None)
        return bool(pending and pending())

    def send(self, out: list[bytes], now: float) -> None:
        """Send (and clear) the frames ``out``; a heartbeat instead when idle for long."""
        if out:
            self.sock.sendall(b"".join(out))
            out.clear()
            self.last_sent = now
        elif self.heartbeat and now - self.last_sent > self.heartbeat / 2:
            self.sock.sendall(frames.HEARTBEAT)
            self.last_sent = now

    def read(self) -> bool:
        """Append what arrived to ``buffer``; False when nothing had."""
        try:
            data = self.sock.recv(_RECV)
        except (TimeoutError, BlockingIOError):
            return False
        if not data:
            raise ConnectionError("the broker closed the connection")
        self.buffer += data
        return True

    def expect(self, channel: int, kind: type) -> Any:
        """The next method on ``channel``, which must be a ``kind`` (handshake, setup).
        Heartbeats and flow-control notices in between are taken in passing."""
        from pika import frame, spec

        deadline = time.monotonic() + self.timeout
        buf = self.buffer
        while True:
            stop = frames.frame_at(buf, 0, len(buf), self.frame_max)
            if stop < 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {kind.__name__} from the broker")
                self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                self.read()
                continue
            _, got = frame.decode_frame(bytes(buf[: stop + 1]))
            del buf[: stop + 1]
            if isinstance(got, frame.Heartbeat):
                continue
            method = getattr(got, "method", None)
            if isinstance(method, kind):
                return method
            if isinstance(method, spec.Connection.Blocked):
                self.blocked.start(method.reason)
                continue
            if isinstance(method, spec.Connection.Unblocked):
                self.blocked.end()
                continue
            if isinstance(method, spec.Connection.Close | spec.Channel.Close):
                raise Closed(method.reply_code, method.reply_text)
            raise frames.FrameError(f"expected {kind.__name__}, got {got!r}")

    def close(self) -> None:
        """``connection.close`` and its answer, then the socket; a broken connection is
        dropped (the broker requeues everything unacknowledged regardless)."""
        from pika import spec

        if self.sock is None:
            return
        try:
            self.sock.settimeout(min(self.timeout, 5.0))
            self.method(0, spec.Connection.Close(200, "bye"))
            self.expect(0, spec.Connection.CloseOk)
        except Exception:
            log.debug("closing the connection failed", exc_info=True)
        try:
            self.sock.close()
        finally:
            self.sock = None

    def drop(self) -> None:
        """Close the socket without a word (after bytes that cannot be trusted)."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
