"""The primitives of Kafka's wire protocol that every request of qctl's client shares.

Request headers (v1 classic, v2 flexible), the classic and the flexible (compact,
varint-prefixed) strings and arrays, a bounded reader for answers, and the names of the
error codes qctl acts on. Only the fields qctl reads are decoded; everything else is
skipped by its length.
"""

from __future__ import annotations

import struct

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
#: The client id the request encoders write; ``Connection`` puts the context's
#: ``client.id`` in its place when it differs.
CLIENT_ID = b"qctl"

INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")


class WireError(Exception):
    """A request failed (connection, timeout, a malformed answer); callers treat it as
    "information not available" or hand the work to librdkafka."""


class WireAuthError(WireError):
    """The broker refused the client's SASL login: not worth retrying."""


class WireUnsupported(WireError):
    """The wire client cannot do this here (a broker that does not speak the versions
    it needs, a refused SASL login, a TLS refusal): the caller hands the work to
    librdkafka, which explains a refusal best. Handlers of ``WireError`` that retry or
    skip a broker let it through."""


class WireRefused(WireUnsupported):
    """The broker refused the connection itself: its SASL login or its TLS handshake."""


class Reader:
    """Reads an answer front to back; running past its end is a ``WireError``."""

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


def uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def compact_string(text: str) -> bytes:
    raw = text.encode()
    return uvarint(len(raw) + 1) + raw


def request_header_v2(api_key: int, version: int, correlation_id: int) -> bytes:
    return (
        struct.pack(">hhi", api_key, version, correlation_id)
        + struct.pack(">h", len(CLIENT_ID))
        + CLIENT_ID
        + uvarint(0)
    )


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


def nullable_string(text: str | None) -> bytes:
    return INT16.pack(-1) if text is None else wire_string(text)


def read_topic_header(payload: bytes | memoryview, pos: int) -> tuple[str, int, int]:
    """A topic's name and the length of its partition array in a classic (non-flexible)
    answer: (name, count, the position after them). Raises struct.error when cut off."""
    (size,) = INT16.unpack_from(payload, pos)
    pos += 2
    topic = str(payload[pos : pos + max(size, 0)], "utf-8", "replace")
    pos += max(size, 0)
    (count,) = INT32.unpack_from(payload, pos)
    return topic, max(count, 0), pos + 4
