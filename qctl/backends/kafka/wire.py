"""A minimal Kafka wire-protocol probe for what librdkafka does not expose.

confluent-kafka cannot tell which software version a broker runs, nor which node is the
active KRaft controller (in KRaft, the ``controller`` field of Metadata is a random
broker). Two small requests answer both:

* ApiVersions v3: its ``SupportedFeatures`` and ``FinalizedFeatures`` carry the
  ``metadata.version`` levels the broker supports and the cluster has finalized.
  ApiVersions is allowed before authentication, so this works on SASL listeners too.
* DescribeQuorum v0 for ``__cluster_metadata``: the active controller and the voters.
  It needs no SASL only on PLAINTEXT/SSL listeners, so it is skipped on SASL ones.

Only the fields qctl reads are decoded; everything else is skipped by its length.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

API_VERSIONS = 18
DESCRIBE_QUORUM = 55
CLIENT_ID = b"qctl"


class WireError(Exception):
    """The probe failed; callers treat it as "information not available"."""


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

    def int16(self) -> int:
        value: int = struct.unpack(">h", self.take(2))[0]
        return value

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


class Probe:
    """One connection to one broker, for a couple of requests, bounded by ``timeout``."""

    def __init__(
        self, host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.deadline = time.monotonic() + timeout
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            raise WireError(f"cannot connect to {host}:{port}: {exc}") from exc
        self.sock = sock
        self.correlation = 0

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

    def _recv(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self.sock.recv(n - len(chunks))
            if not chunk:
                raise WireError("connection closed by the broker")
            chunks += chunk
        return bytes(chunks)

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
