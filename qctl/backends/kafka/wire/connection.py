"""A connection of qctl's own Kafka client to one broker.

qctl speaks Kafka's protocol itself where librdkafka cannot do a job or does it slowly:
exactly-once copies (``kafka.copy.wire_engine``), group listings and committed offsets
during failovers (``coordinators``), offsets and timestamps of thousands of partitions
(``end_offsets``, ``timestamps``), and the few requests confluent-kafka does not expose
(``admin``). All of them go through this class. It connects as librdkafka does with the
context's properties (``config``): every resolved address in random order, the socket
options, TLS, then ApiVersions (``versions``, and ``version`` to pick a request's
version from it), then the SASL login. Every request carries the context's client id.
It bounds every wait by a deadline, and sends requests one by one, pipelined, or in
flight while the caller does other work.

A SASL session the broker limits (KIP-368: SaslAuthenticate v1 answers its lifetime) is
renewed on the same connection once 90% of it is gone, as librdkafka does, before the
next request goes out with no other request in flight (the broker closes a connection
whose session ended at its next request other than a re-authentication). A connection
left idle past the end of its session connects again instead.
"""

from __future__ import annotations

import math
import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from qctl.backends.kafka.wire.admin import (
    ApiVersionsInfo,
    Coordinator,
    OffsetDeleteResult,
    OffsetFetchResult,
    QuorumInfo,
    decode_api_versions_response,
    decode_describe_quorum_response,
    decode_find_coordinator_response,
    decode_list_offsets_response,
    decode_offset_delete_response,
    decode_offset_fetch_response,
    encode_api_versions_request,
    encode_describe_quorum_request,
    encode_find_coordinator_request,
    encode_list_offsets_request,
    encode_offset_delete_request,
    encode_offset_fetch_request,
)
from qctl.backends.kafka.wire.codec import (
    CLIENT_ID,
    INT16,
    INT32,
    WireAuthError,
    WireError,
    WireUnsupported,
)
from qctl.backends.kafka.wire.config import PLAINTEXT, WireConfig, shuffled_addresses

#: Requests in flight at once on a pipelined connection (see ``Connection.pipeline``).
PIPELINE_WINDOW = 64
#: librdkafka authenticates again when this share of a session's lifetime is gone.
REAUTH_AT = 0.9
#: Frames up to this size go out in one piece when the client id is replaced; larger
#: ones (Produce) are sent around the new header without copying them.
_JOIN_BELOW = 64 * 1024


class Connection:
    """One connection to one broker: connected (TLS, ApiVersions, SASL login) as the
    context says, every wait bounded by the deadline ``timeout`` (and ``renew``) sets."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        config: WireConfig | None = PLAINTEXT,
    ) -> None:
        self.host = host
        self.port = port
        self.config = config or PLAINTEXT
        self.deadline = time.monotonic() + timeout
        self.correlation = 0
        #: What the broker answered to ApiVersions when the connection was made.
        self.versions = ApiVersionsInfo()
        #: Requests sent with ``send`` and not received yet.
        self.inflight = 0
        self._reauth_at = math.inf
        #: When the broker ends the SASL session (time.monotonic()), if it limits it.
        self.session_ends = math.inf
        client = self.config.client_id.encode()
        self._client_header = None if client == CLIENT_ID else INT16.pack(len(client)) + client
        self.sock = self._open()

    # -- connecting ------------------------------------------------------------------------
    def _open(self) -> socket.socket:
        """Connect, TLS, ApiVersions and SASL, within socket.connection.setup.timeout.ms."""
        opts = self.config.sockets
        setup = self.deadline
        if opts.setup_timeout is not None:
            setup = min(setup, time.monotonic() + opts.setup_timeout)
        where = f"{self.host}:{self.port}"
        try:
            sock = self._connect(setup)
            context = self.config.ssl_context
            if context is not None:
                sock.settimeout(max(setup - time.monotonic(), 0.001))
                # librdkafka strips a trailing dot for SNI and the certificate check.
                sock = context.wrap_socket(sock, server_hostname=self.host.rstrip("."))
        except (OSError, ssl.SSLError) as exc:
            raise WireError(f"cannot connect to {where}: {exc}") from exc
        self.sock = sock
        try:
            limit = min(setup, time.monotonic() + opts.api_versions_timeout)
            self.versions = decode_api_versions_response(
                self._roundtrip(
                    encode_api_versions_request(
                        self._next_id(), self.config.software_name, self.config.software_version
                    ),
                    limit,
                )
            )
            if self.config.sasl is not None:
                self._login(setup)
        except BaseException:
            sock.close()
            raise
        return sock

    def _connect(self, setup: float) -> socket.socket:
        """A TCP connection to the first of the broker's addresses (shuffled, as
        librdkafka does) that accepts, with the context's socket options."""
        opts = self.config.sockets
        last: OSError = OSError(f"{self.host} has no address")
        for family, address in shuffled_addresses(self.host, self.port, opts.family):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                if opts.send_buffer:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, opts.send_buffer)
                if opts.receive_buffer:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts.receive_buffer)
                if opts.keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if opts.nodelay:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                left = setup - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(left)
                sock.connect(address)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            return sock
        raise last

    def _login(self, limit: float) -> None:
        from qctl.backends.kafka.wire.auth import (
            SASL_AUTHENTICATE,
            SASL_HANDSHAKE,
            SaslError,
            authenticate,
        )

        sasl = self.config.sasl
        assert sasl is not None
        self.version(SASL_HANDSHAKE, 1, 1)
        version = self.version(SASL_AUTHENTICATE, 0, 1)
        started = time.monotonic()
        try:
            lifetime = authenticate(
                partial(self._roundtrip, limit=limit), sasl, self._next_id, version
            )
        except SaslError as exc:
            self.sock.close()
            raise WireAuthError(
                f"{self.host}:{self.port} refused the {sasl.mechanism} login of "
                f"{sasl.username!r}: {exc}"
            ) from None
        if lifetime > 0:
            self._reauth_at = time.monotonic() + lifetime / 1000 * REAUTH_AT
            self.session_ends = started + lifetime / 1000
        else:
            self._reauth_at = self.session_ends = math.inf

    def _keep_session(self) -> None:
        """Before a request goes out: renew a SASL session 90% through its lifetime when
        no request is in flight (or connect again when it already ended)."""
        if self.inflight or time.monotonic() < self._reauth_at:
            return
        if time.monotonic() >= self.session_ends:
            self.sock.close()
            self.sock = self._open()
            return
        self._login(self.deadline)

    def version(self, api_key: int, low: int, high: int) -> int:
        """The highest version of ``api_key`` in ``low..high`` the broker speaks (from its
        ApiVersions answer); ``WireUnsupported`` when it speaks none of them."""
        broker_low, broker_high = self.versions.api_keys.get(api_key, (0, -1))
        version = min(high, broker_high)
        if version < max(low, broker_low):
            spoken = f"v{broker_low}-v{broker_high}" if broker_high >= 0 else "none"
            raise WireUnsupported(
                f"{self.host}:{self.port} does not speak API {api_key} v{low}-v{high} "
                f"(it speaks {spoken})"
            )
        return version

    def supports(self, api_key: int, low: int, high: int) -> bool:
        try:
            self.version(api_key, low, high)
        except WireUnsupported:
            return False
        return True

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    # -- sending and receiving ---------------------------------------------------------------
    def _next_id(self) -> int:
        self.correlation += 1
        return self.correlation

    def _wait(self, limit: float | None = None) -> None:
        """Bound the next socket calls by the deadline (or ``limit``) and by
        socket.timeout.ms."""
        left = (self.deadline if limit is None else limit) - time.monotonic()
        per_request = self.config.sockets.request_timeout
        if per_request is not None:
            left = min(left, per_request)
        if left <= 0:
            raise WireError("timed out")
        self.sock.settimeout(left)

    def _write(self, frames: Sequence[bytes]) -> None:
        """Send frames, each with its size, and the context's client id in its header."""
        header = self._client_header
        if header is None:
            if len(frames) == 1:
                self.sock.sendall(INT32.pack(len(frames[0])) + frames[0])
            else:
                self.sock.sendall(b"".join(INT32.pack(len(f)) + f for f in frames))
            return
        parts: list[bytes | memoryview] = []
        total = 0
        for frame in frames:
            # Request headers v1 and v2 both hold the client id (int16 size, bytes) at 8.
            (size,) = INT16.unpack_from(frame, 8)
            tail = 10 + max(size, 0)
            parts.append(INT32.pack(8 + len(header) + len(frame) - tail) + frame[:8] + header)
            parts.append(memoryview(frame)[tail:])
            total += len(frame)
        if total < _JOIN_BELOW:
            self.sock.sendall(b"".join(parts))
        else:
            for part in parts:
                self.sock.sendall(part)

    def _roundtrip(self, frame: bytes, limit: float | None = None) -> bytes:
        """One request and its answer, with nothing else in flight."""
        self._wait(limit)
        try:
            self._write([frame])
            (size,) = INT32.unpack(self._recv(4))
            return self._recv(size)
        except (OSError, struct.error) as exc:
            raise WireError(str(exc)) from exc

    def request(self, frame: bytes) -> bytes:
        """Send one request frame and return its answer."""
        self._keep_session()
        return self._roundtrip(frame)

    def pipeline(self, requests: Sequence[Callable[[int], bytes]]) -> list[bytes]:
        """Send requests without waiting for each answer; the answers, in order.

        Each item makes its request frame from the correlation id it is given. A broker
        answers the requests of one connection in the order they came, so many small
        requests cost about one round trip instead of one each. They go out in windows,
        so neither side's socket buffer fills while the other waits. An answer with
        another correlation id than its request's is an error.
        """
        self._keep_session()
        numbered = []
        for make in requests:
            self.correlation += 1
            numbered.append((self.correlation, make(self.correlation)))
        answers: list[bytes] = []
        for start in range(0, len(numbered), PIPELINE_WINDOW):
            window = numbered[start : start + PIPELINE_WINDOW]
            self._wait()
            try:
                self._write([f for _, f in window])
                for correlation, _ in window:
                    (size,) = INT32.unpack(self._recv(4))
                    answer = self._recv(size)
                    if answer[:4] != INT32.pack(correlation):
                        raise WireError("answers out of order")
                    answers.append(answer)
            except (OSError, struct.error) as exc:
                raise WireError(str(exc)) from exc
        return answers

    def find_coordinators(
        self, group_ids: Sequence[str], version: int, key_type: int = 0
    ) -> list[Coordinator]:
        answers = self.pipeline(
            [
                partial(
                    encode_find_coordinator_request, group_id=g, version=version, key_type=key_type
                )
                for g in group_ids
            ]
        )
        return [decode_find_coordinator_response(a, version) for a in answers]

    def offset_fetches(self, group_ids: Sequence[str]) -> list[OffsetFetchResult]:
        answers = self.pipeline(
            [partial(encode_offset_fetch_request, group_id=g) for g in group_ids]
        )
        return [decode_offset_fetch_response(a) for a in answers]

    def _recv(self, n: int) -> bytes:
        return bytes(self._recv_view(n))

    def _recv_view(self, n: int) -> memoryview:
        buffer = bytearray(n)
        view = memoryview(buffer)
        got = 0
        while got < n:
            chunk = self.sock.recv_into(view[got:])
            if not chunk:
                raise WireError("connection closed by the broker")
            got += chunk
        return view

    def renew(self, timeout: float) -> None:
        """Give the connection ``timeout`` more seconds from now (for one that lives for
        many requests, each bounded on its own)."""
        self.deadline = time.monotonic() + timeout

    def send(self, make: Callable[[int], bytes]) -> int:
        """Send one request without waiting for its answer; its correlation id, for
        ``receive``."""
        self._keep_session()
        self.correlation += 1
        frame = make(self.correlation)
        self._wait()
        try:
            self._write([frame])
        except OSError as exc:
            raise WireError(str(exc)) from exc
        self.inflight += 1
        return self.correlation

    def receive(self, correlation: int) -> bytes:
        """The answer to the oldest request ``send`` sent and nobody received yet, which
        must be ``correlation``."""
        return bytes(self.receive_view(correlation))

    def receive_view(self, correlation: int) -> memoryview:
        """``receive``, without copying the answer into a bytes object: for Fetch
        answers of megabytes, whose record batches are read in place."""
        self._wait()
        try:
            (size,) = INT32.unpack(self._recv(4))
            answer = self._recv_view(size)
        except (OSError, struct.error) as exc:
            raise WireError(str(exc)) from exc
        self.inflight -= 1
        if answer[:4] != INT32.pack(correlation):
            raise WireError("answers out of order")
        return answer

    def api_versions(self) -> ApiVersionsInfo:
        """The broker's ApiVersions answer, asked when the connection was made."""
        return self.versions

    def describe_quorum(self) -> QuorumInfo:
        self.correlation += 1
        return decode_describe_quorum_response(
            self.request(encode_describe_quorum_request(self.correlation))
        )

    def find_coordinator(self, group_id: str, version: int) -> Coordinator:
        return self.find_coordinators([group_id], version)[0]

    def offset_fetch(self, group_id: str) -> OffsetFetchResult:
        return self.offset_fetches([group_id])[0]

    def list_offsets(
        self, topics: Mapping[str, Sequence[int]], timestamp: int, committed: bool
    ) -> dict[tuple[str, int], tuple[int, int]]:
        """ListOffsets of every partition of ``topics`` at ``timestamp`` (EARLIEST or
        LATEST; the end read_committed or not)."""
        [answer] = self.pipeline(
            [
                partial(
                    encode_list_offsets_request,
                    topics=topics,
                    timestamp=timestamp,
                    committed=committed,
                )
            ]
        )
        return decode_list_offsets_response(answer)

    def offset_delete(self, group_id: str, partitions: dict[str, list[int]]) -> OffsetDeleteResult:
        self.correlation += 1
        return decode_offset_delete_response(
            self.request(encode_offset_delete_request(self.correlation, group_id, partitions))
        )
