"""A connection of qctl's own Kafka client to one broker.

qctl speaks Kafka's protocol itself where librdkafka cannot do a job or does it slowly:
exactly-once copies (``kafka.copy.wire_engine``), group listings and committed offsets
during failovers (``coordinators``), offsets and timestamps of thousands of partitions
(``end_offsets``, ``timestamps``), and the few requests confluent-kafka does not expose
(``admin``). All of them go through this class: it connects the way the context says
(``config``: TLS, SASL, socket settings), bounds every wait by a deadline, and sends
requests one by one, pipelined, or in flight while the caller does other work.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

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
from qctl.backends.kafka.wire.codec import INT32, WireAuthError, WireError
from qctl.backends.kafka.wire.config import PLAINTEXT, WireConfig

if TYPE_CHECKING:
    from qctl.backends.kafka.wire.auth import SaslCredentials

#: Requests in flight at once on a pipelined connection (see ``Connection.pipeline``).
PIPELINE_WINDOW = 64


class Connection:
    """One connection to one broker: connected (TLS, SASL login) as the context says,
    every wait bounded by the deadline ``timeout`` (and ``renew``) sets."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        config: WireConfig = PLAINTEXT,
    ) -> None:
        self.deadline = time.monotonic() + timeout
        try:
            # An ASCII name as bytes (getaddrinfo takes both): a str is encoded with the
            # "idna" codec, whose import alone costs about 10 ms.
            name = host.encode("ascii") if host.isascii() else host
            sock = socket.create_connection((name, port), timeout=timeout)  # type: ignore[arg-type]
            if config.ssl_context is not None:
                sock = config.ssl_context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            raise WireError(f"cannot connect to {host}:{port}: {exc}") from exc
        self.sock = sock
        self.correlation = 0
        if config.sasl is not None:
            self._login(config.sasl, host, port)

    def _login(self, sasl: SaslCredentials, host: str, port: int) -> None:
        from qctl.backends.kafka.wire.auth import SaslError, authenticate

        try:
            authenticate(self.request, sasl)
        except SaslError as exc:
            self.sock.close()
            raise WireAuthError(
                f"{host}:{port} refused the {sasl.mechanism} login of {sasl.username!r}: {exc}"
            ) from None
        self.correlation = 100  # past the login's correlation ids

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def request(self, frame: bytes) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WireError("timed out")
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(struct.pack(">i", len(frame)) + frame)
            size = struct.unpack(">i", self._recv(4))[0]
            return self._recv(size)
        except (OSError, struct.error) as exc:
            raise WireError(str(exc)) from exc

    def pipeline(self, requests: Sequence[Callable[[int], bytes]]) -> list[bytes]:
        """Send requests without waiting for each answer; the answers, in order.

        Each item makes its request frame from the correlation id it is given. A broker
        answers the requests of one connection in the order they came, so many small
        requests cost about one round trip instead of one each. They go out in windows,
        so neither side's socket buffer fills while the other waits. An answer with
        another correlation id than its request's is an error.
        """
        numbered = []
        for make in requests:
            self.correlation += 1
            numbered.append((self.correlation, make(self.correlation)))
        answers: list[bytes] = []
        for start in range(0, len(numbered), PIPELINE_WINDOW):
            window = numbered[start : start + PIPELINE_WINDOW]
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise WireError("timed out")
            self.sock.settimeout(remaining)
            try:
                self.sock.sendall(b"".join(INT32.pack(len(f)) + f for _, f in window))
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
        self.correlation += 1
        frame = make(self.correlation)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WireError("timed out")
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(INT32.pack(len(frame)) + frame)
        except OSError as exc:
            raise WireError(str(exc)) from exc
        return self.correlation

    def receive(self, correlation: int) -> bytes:
        """The answer to the oldest request ``send`` sent and nobody received yet, which
        must be ``correlation``."""
        return bytes(self.receive_view(correlation))

    def receive_view(self, correlation: int) -> memoryview:
        """``receive``, without copying the answer into a bytes object: for Fetch
        answers of megabytes, whose record batches are read in place."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WireError("timed out")
        self.sock.settimeout(remaining)
        try:
            (size,) = INT32.unpack(self._recv(4))
            answer = self._recv_view(size)
        except (OSError, struct.error) as exc:
            raise WireError(str(exc)) from exc
        if answer[:4] != INT32.pack(correlation):
            raise WireError("answers out of order")
        return answer

    def api_versions(self) -> ApiVersionsInfo:
        self.correlation += 1
        return decode_api_versions_response(
            self.request(encode_api_versions_request(self.correlation))
        )

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
