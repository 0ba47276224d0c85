"""A minimal Kafka wire-protocol probe for what librdkafka does not expose.

confluent-kafka cannot tell which software version a broker runs, nor which node is the
active KRaft controller (in KRaft, the ``controller`` field of Metadata is a random
broker). Two small requests answer both:

* ApiVersions v3: its ``SupportedFeatures`` and ``FinalizedFeatures`` carry the
  ``metadata.version`` levels the broker supports and the cluster has finalized.
  ApiVersions is allowed before authentication, so this works on SASL listeners too.
* DescribeQuorum v0 for ``__cluster_metadata``: the active controller and the voters.
  It needs no SASL only on PLAINTEXT/SSL listeners, so it is skipped on SASL ones.
* FindCoordinator and OffsetDelete: confluent-kafka cannot delete a group's committed
  offsets (librdkafka can, but the Python binding does not expose it), so
  ``qctl offsets delete`` sends OffsetDelete to the group coordinator itself. On SASL
  listeners the probe logs in first (PLAIN or SCRAM, ``sasl.py``).

Only the fields qctl reads are decoded; everything else is skipped by its length.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qctl.backends.kafka.sasl import SaslCredentials

API_VERSIONS = 18
DESCRIBE_QUORUM = 55
FIND_COORDINATOR = 10
FETCH = 1
LIST_OFFSETS = 2
OFFSET_FETCH = 9
OFFSET_DELETE = 47

#: Names of the Kafka error codes the requests above can return (Kafka's ``Errors``).
ERROR_NAMES: dict[int, str] = {
    -1: "UNKNOWN_SERVER_ERROR",
    0: "NONE",
    1: "OFFSET_OUT_OF_RANGE",
    3: "UNKNOWN_TOPIC_OR_PARTITION",
    6: "NOT_LEADER_OR_FOLLOWER",
    7: "REQUEST_TIMED_OUT",
    10: "MESSAGE_TOO_LARGE",
    14: "COORDINATOR_LOAD_IN_PROGRESS",
    15: "COORDINATOR_NOT_AVAILABLE",
    16: "NOT_COORDINATOR",
    24: "INVALID_GROUP_ID",
    29: "TOPIC_AUTHORIZATION_FAILED",
    30: "GROUP_AUTHORIZATION_FAILED",
    31: "CLUSTER_AUTHORIZATION_FAILED",
    35: "UNSUPPORTED_VERSION",
    42: "INVALID_REQUEST",
    45: "OUT_OF_ORDER_SEQUENCE_NUMBER",
    46: "DUPLICATE_SEQUENCE_NUMBER",
    47: "INVALID_PRODUCER_EPOCH",
    48: "INVALID_TXN_STATE",
    51: "CONCURRENT_TRANSACTIONS",
    53: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    55: "OPERATION_NOT_ATTEMPTED",
    59: "UNKNOWN_PRODUCER_ID",
    68: "NON_EMPTY_GROUP",
    69: "GROUP_ID_NOT_FOUND",
    86: "GROUP_SUBSCRIBED_TO_TOPIC",
    88: "UNSTABLE_OFFSET_COMMIT",
    90: "PRODUCER_FENCED",
    121: "TRANSACTION_ABORTABLE",
}
CLIENT_ID = b"qctl"
#: Requests in flight at once on a pipelined connection (see ``Probe.pipeline``).
PIPELINE_WINDOW = 64

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
#: partition, committed offset, committed leader epoch
_OFFSET_FETCH_PARTITION = struct.Struct(">iqi")
#: ListOffsets v4 answer per partition: partition, error, timestamp, offset, leader epoch
_LIST_OFFSETS_PARTITION = struct.Struct(">ihqqi")
#: ListOffsets v4 question per partition: partition, current leader epoch, timestamp
_LIST_OFFSETS_ASK = struct.Struct(">iiq")
#: ListOffsets timestamps that ask for the log-start and the end offset.
EARLIEST, LATEST = -2, -1


class WireError(Exception):
    """The probe failed; callers treat it as "information not available"."""


class WireAuthError(WireError):
    """The broker refused the probe's SASL login: not worth retrying."""


@dataclass
class ApiVersionsInfo:
    api_keys: dict[int, tuple[int, int]] = field(default_factory=dict)
    supported_features: dict[str, tuple[int, int]] = field(default_factory=dict)
    finalized_features: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class QuorumInfo:
    leader_id: int
    leader_epoch: int
    voters: list[int]
    observers: list[int]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise WireError("truncated response")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int8(self) -> int:
        value: int = struct.unpack(">b", self.take(1))[0]
        return value

    def int16(self) -> int:
        value: int = struct.unpack(">h", self.take(2))[0]
        return value

    def string(self) -> str | None:
        """A classic (non-flexible) string: int16 length, -1 for null."""
        n = self.int16()
        return None if n < 0 else self.take(n).decode("utf-8", "replace")

    def array_len(self) -> int:
        """A classic (non-flexible) array length: int32, -1 for null."""
        return max(self.int32(), 0)

    def int32(self) -> int:
        value: int = struct.unpack(">i", self.take(4))[0]
        return value

    def int64(self) -> int:
        value: int = struct.unpack(">q", self.take(8))[0]
        return value

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise WireError("varint too long")

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode("utf-8", "replace")

    def compact_array_len(self) -> int:
        n = self.uvarint()
        return max(n - 1, 0)

    def tagged_fields(self) -> dict[int, bytes]:
        fields = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            fields[tag] = self.take(self.uvarint())
        return fields


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _compact_string(text: str) -> bytes:
    raw = text.encode()
    return _uvarint(len(raw) + 1) + raw


def _request_header_v2(api_key: int, version: int, correlation_id: int) -> bytes:
    return (
        struct.pack(">hhi", api_key, version, correlation_id)
        + struct.pack(">h", len(CLIENT_ID))
        + CLIENT_ID
        + _uvarint(0)
    )


def encode_api_versions_request(correlation_id: int) -> bytes:
    body = _compact_string("qctl") + _compact_string("0") + _uvarint(0)
    return _request_header_v2(API_VERSIONS, 3, correlation_id) + body


def decode_api_versions_response(payload: bytes) -> ApiVersionsInfo:
    """Body of an ApiVersions v3 response (its header is v0: the correlation id only)."""
    r = _Reader(payload)
    r.int32()  # correlation id
    error = r.int16()
    if error:
        raise WireError(f"ApiVersions error code {error}")
    info = ApiVersionsInfo()
    for _ in range(r.compact_array_len()):
        key, low, high = r.int16(), r.int16(), r.int16()
        r.tagged_fields()
        info.api_keys[key] = (low, high)
    r.int32()  # throttle time
    tagged = r.tagged_fields()
    if 0 in tagged:
        t = _Reader(tagged[0])
        for _ in range(t.compact_array_len()):
            name = t.compact_string() or ""
            low, high = t.int16(), t.int16()
            t.tagged_fields()
            info.supported_features[name] = (low, high)
    if 2 in tagged:
        t = _Reader(tagged[2])
        for _ in range(t.compact_array_len()):
            name = t.compact_string() or ""
            max_level, min_level = t.int16(), t.int16()
            t.tagged_fields()
            info.finalized_features[name] = (min_level, max_level)
    return info


def encode_describe_quorum_request(correlation_id: int) -> bytes:
    body = (
        _uvarint(2)  # one topic
        + _compact_string("__cluster_metadata")
        + _uvarint(2)  # one partition
        + struct.pack(">i", 0)
        + _uvarint(0)
        + _uvarint(0)
        + _uvarint(0)
    )
    return _request_header_v2(DESCRIBE_QUORUM, 0, correlation_id) + body


def decode_describe_quorum_response(payload: bytes) -> QuorumInfo:
    r = _Reader(payload)
    r.int32()  # correlation id
    r.tagged_fields()  # response header v1
    error = r.int16()
    if error:
        raise WireError(f"DescribeQuorum error code {error}")
    for _ in range(r.compact_array_len()):
        r.compact_string()
        for _ in range(r.compact_array_len()):
            r.int32()  # partition index
            perror = r.int16()
            leader, epoch = r.int32(), r.int32()
            r.int64()  # high watermark
            voters = _replica_ids(r)
            observers = _replica_ids(r)
            r.tagged_fields()
            if perror:
                raise WireError(f"DescribeQuorum partition error code {perror}")
            return QuorumInfo(leader, epoch, voters, observers)
    raise WireError("DescribeQuorum returned no partition")


def _replica_ids(r: _Reader) -> list[int]:
    ids = []
    for _ in range(r.compact_array_len()):
        ids.append(r.int32())
        r.int64()  # log end offset
        r.tagged_fields()
    return ids


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"error code {code}")


def wire_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def request_header_v1(api_key: int, version: int, correlation_id: int) -> bytes:
    return (
        struct.pack(">hhi", api_key, version, correlation_id)
        + struct.pack(">h", len(CLIENT_ID))
        + CLIENT_ID
    )


@dataclass(frozen=True)
class Coordinator:
    """The broker that coordinates a group, or the error that says why there is none."""

    node_id: int
    host: str
    port: int
    error_code: int = 0
    error_message: str | None = None


def encode_find_coordinator_request(
    correlation_id: int, group_id: str, version: int, key_type: int = 0
) -> bytes:
    """FindCoordinator for a group (key type 0) or a transactional id (1): v4+ (batched,
    flexible) or v1-v3 (one key)."""
    kind = struct.pack(">b", key_type)
    if version >= 4:
        body = kind + _uvarint(2) + _compact_string(group_id) + _uvarint(0)
        return _request_header_v2(FIND_COORDINATOR, version, correlation_id) + body
    if version == 3:
        body = _compact_string(group_id) + kind + _uvarint(0)
        return _request_header_v2(FIND_COORDINATOR, 3, correlation_id) + body
    body = wire_string(group_id) + kind
    return request_header_v1(FIND_COORDINATOR, version, correlation_id) + body


def decode_find_coordinator_response(payload: bytes, version: int) -> Coordinator:
    r = _Reader(payload)
    r.int32()  # correlation id
    if version >= 3:
        r.tagged_fields()  # response header v1
    r.int32()  # throttle time
    if version >= 4:
        found = None
        for _ in range(r.compact_array_len()):
            r.compact_string()  # key
            node_id = r.int32()
            host = r.compact_string() or ""
            port = r.int32()
            error = r.int16()
            message = r.compact_string()
            r.tagged_fields()
            found = found or Coordinator(node_id, host, port, error, message)
        if found is None:
            raise WireError("FindCoordinator returned no coordinator")
        return found
    error = r.int16()
    message = (r.compact_string() if version == 3 else r.string()) if version >= 1 else None
    node_id = r.int32()
    host = (r.compact_string() if version == 3 else r.string()) or ""
    port = r.int32()
    return Coordinator(node_id, host, port, error, message)


@dataclass
class OffsetDeleteResult:
    """Top-level error of an OffsetDelete response, and the error of each partition."""

    error_code: int
    partitions: dict[tuple[str, int], int] = field(default_factory=dict)


def encode_offset_delete_request(
    correlation_id: int, group_id: str, partitions: dict[str, list[int]]
) -> bytes:
    """OffsetDelete v0 (the only version): group, then topics with partition indexes."""
    body = wire_string(group_id) + struct.pack(">i", len(partitions))
    for topic, indexes in partitions.items():
        body += wire_string(topic) + struct.pack(">i", len(indexes))
        body += b"".join(struct.pack(">i", p) for p in indexes)
    return request_header_v1(OFFSET_DELETE, 0, correlation_id) + body


def decode_offset_delete_response(payload: bytes) -> OffsetDeleteResult:
    r = _Reader(payload)
    r.int32()  # correlation id (response header v0)
    result = OffsetDeleteResult(error_code=r.int16())
    r.int32()  # throttle time
    for _ in range(r.array_len()):
        topic = r.string() or ""
        for _ in range(r.array_len()):
            partition = r.int32()
            result.partitions[(topic, partition)] = r.int16()
    return result


@dataclass
class OffsetFetchResult:
    """Top-level error of an OffsetFetch response, and each partition's offset and error."""

    error_code: int
    partitions: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)


def encode_offset_fetch_request(correlation_id: int, group_id: str) -> bytes:
    """OffsetFetch v5 (the last non-flexible one) for every partition the group committed.

    A null topic array asks for all of the group's offsets, as Kafka's own tools do.
    """
    body = wire_string(group_id) + struct.pack(">i", -1)
    return request_header_v1(OFFSET_FETCH, 5, correlation_id) + body


def read_topic_header(payload: bytes | memoryview, pos: int) -> tuple[str, int, int]:
    """A topic's name and the length of its partition array in a classic (non-flexible)
    answer: (name, count, the position after them). Raises struct.error when cut off."""
    (size,) = _INT16.unpack_from(payload, pos)
    pos += 2
    topic = str(payload[pos : pos + max(size, 0)], "utf-8", "replace")
    pos += max(size, 0)
    (count,) = _INT32.unpack_from(payload, pos)
    return topic, max(count, 0), pos + 4


def decode_offset_fetch_response(payload: bytes) -> OffsetFetchResult:
    """OffsetFetch v5, decoded with offsets into the buffer: a lag overview decodes one
    of these per group, thousands of partitions in all."""
    partitions: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        pos = 8  # correlation id (response header v0), throttle time
        (topics,) = _INT32.unpack_from(payload, pos)
        pos += 4
        for _ in range(max(topics, 0)):
            topic, count, pos = read_topic_header(payload, pos)
            for _ in range(count):
                partition, offset, _epoch = _OFFSET_FETCH_PARTITION.unpack_from(payload, pos)
                (size,) = _INT16.unpack_from(payload, pos + 16)  # metadata
                pos += 18 + max(size, 0)
                (code,) = _INT16.unpack_from(payload, pos)
                pos += 2
                partitions[(topic, partition)] = (offset, code)
        (error_code,) = _INT16.unpack_from(payload, pos)
    except struct.error:
        raise WireError("truncated response") from None
    return OffsetFetchResult(error_code=error_code, partitions=partitions)


def encode_list_offsets_request(
    correlation_id: int, topics: Mapping[str, Sequence[int]], timestamp: int, committed: bool
) -> bytes:
    """ListOffsets v4 (the last non-flexible one) for every partition of ``topics``:
    ``timestamp`` EARLIEST or LATEST, the end read_committed (last-stable) or not."""
    parts = [struct.pack(">ibi", -1, 1 if committed else 0, len(topics))]
    for topic, partitions in topics.items():
        parts.append(wire_string(topic) + _INT32.pack(len(partitions)))
        parts.extend(_LIST_OFFSETS_ASK.pack(p, -1, timestamp) for p in partitions)
    return request_header_v1(LIST_OFFSETS, 4, correlation_id) + b"".join(parts)


def decode_list_offsets_response(payload: bytes) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (error code, offset) of a ListOffsets v4 answer."""
    out: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        pos = 8  # correlation id (response header v0), throttle time
        (topics,) = _INT32.unpack_from(payload, pos)
        pos += 4
        for _ in range(max(topics, 0)):
            topic, count, pos = read_topic_header(payload, pos)
            for _ in range(count):
                partition, code, _ts, offset, _epoch = _LIST_OFFSETS_PARTITION.unpack_from(
                    payload, pos
                )
                pos += _LIST_OFFSETS_PARTITION.size
                out[(topic, partition)] = (code, offset)
    except struct.error:
        raise WireError("truncated response") from None
    return out


def ssl_context_from_settings(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """An SSL context from librdkafka's ``ssl.*`` properties, for the probe's sockets."""
    ctx = ssl.create_default_context(cafile=settings.get("ssl.ca.location"))
    cert = settings.get("ssl.certificate.location")
    if cert:
        ctx.load_cert_chain(
            cert, settings.get("ssl.key.location"), settings.get("ssl.key.password")
        )
    algorithm = str(settings.get("ssl.endpoint.identification.algorithm", "https"))
    if algorithm.lower() == "none":
        ctx.check_hostname = False
    if str(settings.get("enable.ssl.certificate.verification", "true")).lower() in ("false", "0"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Probe:
    """One connection to one broker, for a couple of requests, bounded by ``timeout``."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        sasl: SaslCredentials | None = None,
    ) -> None:
        self.deadline = time.monotonic() + timeout
        try:
            # An ASCII name as bytes (getaddrinfo takes both): a str is encoded with the
            # "idna" codec, whose import alone costs about 10 ms.
            name = host.encode("ascii") if host.isascii() else host
            sock = socket.create_connection((name, port), timeout=timeout)  # type: ignore[arg-type]
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            raise WireError(f"cannot connect to {host}:{port}: {exc}") from exc
        self.sock = sock
        self.correlation = 0
        if sasl is not None:
            self._login(sasl, host, port)

    def _login(self, sasl: SaslCredentials, host: str, port: int) -> None:
        from qctl.backends.kafka.sasl import SaslError, authenticate

        try:
            authenticate(self.request, sasl)
        except SaslError as exc:
            self.sock.close()
            raise WireAuthError(
                f"{host}:{port} refused the {sasl.mechanism} login of {sasl.username!r}: {exc}"
            ) from None
        self.correlation = 100  # past the login's correlation ids

    def __enter__(self) -> Probe:
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
                self.sock.sendall(b"".join(_INT32.pack(len(f)) + f for _, f in window))
                for correlation, _ in window:
                    (size,) = _INT32.unpack(self._recv(4))
                    answer = self._recv(size)
                    if answer[:4] != _INT32.pack(correlation):
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
            self.sock.sendall(_INT32.pack(len(frame)) + frame)
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
            (size,) = _INT32.unpack(self._recv(4))
            answer = self._recv_view(size)
        except (OSError, struct.error) as exc:
            raise WireError(str(exc)) from exc
        if answer[:4] != _INT32.pack(correlation):
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


@dataclass(frozen=True)
class ProbeSecurity:
    """How the probe connects to a context's brokers: TLS context and SASL login."""

    ssl_context: ssl.SSLContext | None
    sasl: SaslCredentials | None


def probe_security(settings: Mapping[str, Any]) -> ProbeSecurity | None:
    """TLS and SASL for the probe from librdkafka's properties (``insecure`` applied);
    None when the probe cannot connect the way librdkafka would (GSSAPI, OAUTHBEARER)."""
    from qctl.backends.kafka.client import ssl_settings
    from qctl.backends.kafka.sasl import credentials_from_settings

    protocol = str(settings.get("security.protocol", "PLAINTEXT")).upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        return None
    sasl = credentials_from_settings(settings)
    if protocol.startswith("SASL") and sasl is None:
        return None
    tls = ssl_context_from_settings(ssl_settings(settings)) if "SSL" in protocol else None
    return ProbeSecurity(tls, sasl)
