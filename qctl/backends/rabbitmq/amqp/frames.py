"""AMQP 0-9-1 frames as bytes: found in a receive buffer, checked, and written.

pika decodes every delivery into a ``Basic.Deliver`` object and a ``BasicProperties``
(its headers table fully, ``x-death`` included) and encodes them again to publish:
about 150 µs a message in Python, which caps a move near 4k msg/s while the broker
could take four times that. A move needs almost none of it: the properties travel
unchanged except for a few headers, so this module keeps them as the bytes the broker
sent, finds the header entries by skipping over values (every AMQP field value has a
fixed or a prefixed length), and splices entries in and out.

Every frame read is checked before its payload is used: it ends with the frame-end
octet (0xCE) and is no larger than the negotiated ``frame_max``. Bytes that fail
either are not AMQP from this connection any more (a corrupted or desynchronised
stream), which is a ``FrameError``: the reader stops and trusts nothing after it.

Rare frames (connection and channel control, ``basic.return``) are decoded by pika's
codec; see ``connection`` and ``wiremove``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
#: Class and method ids (one 32-bit number) of the methods read or written here.
BASIC_DELIVER = (60 << 16) | 60
BASIC_ACK = (60 << 16) | 80
BASIC_NACK = (60 << 16) | 120
BASIC_RETURN = (60 << 16) | 50

#: A frame's type, channel and payload size.
FRAME_HEAD = struct.Struct(">BHI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
METHOD_ID = struct.Struct(">I")
_CONTENT_HEAD = struct.Struct(">HHQ")
_ACK = struct.Struct(">BHIIQB")
_END = bytes([FRAME_END])
HEARTBEAT = FRAME_HEAD.pack(FRAME_HEARTBEAT, 0, 0) + _END

#: Property flags (the first 16-bit word of a content header's properties).
_CONTENT_TYPE = 0x8000
_CONTENT_ENCODING = 0x4000
_HEADERS = 0x2000
_CONTINUED = 0x0001

#: Bytes after the type octet of each fixed-size field value.
_FIXED = {
    ord("t"): 1,
    ord("b"): 1,
    ord("B"): 1,
    ord("s"): 2,
    ord("u"): 2,
    ord("I"): 4,
    ord("i"): 4,
    ord("f"): 4,
    ord("l"): 8,
    ord("L"): 8,
    ord("d"): 8,
    ord("T"): 8,
    ord("D"): 5,
    ord("V"): 0,
}
#: Types whose value is a 32-bit length and that many bytes.
_PREFIXED = frozenset(map(ord, "SxAF"))


class FrameError(ValueError):
    """Bytes that are not the AMQP this module expects."""


def frame_at(buf: bytes | bytearray | memoryview, pos: int, end: int, frame_max: int) -> int:
    """Where the frame starting at ``pos`` ends (the index of its frame-end octet), or
    -1 when it has not arrived whole; ``FrameError`` when what arrived is not a frame:
    a payload larger than ``frame_max`` allows, or a wrong frame-end octet."""
    if end - pos < 7:
        return -1
    size: int = _U32.unpack_from(buf, pos + 3)[0]
    if size > frame_max - 8:
        raise FrameError(f"a frame of {size} bytes (more than frame_max {frame_max})")
    stop = pos + 7 + size
    if stop >= end:
        return -1
    if buf[stop] != FRAME_END:
        raise FrameError(f"frame end octet {buf[stop]:#04x} instead of 0xce")
    return stop


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return FRAME_HEAD.pack(kind, channel, len(payload)) + payload + _END


def ack(channel: int, tag: int, multiple: bool) -> bytes:
    """``basic.ack`` of one delivery (or, ``multiple``, of every one up to it)."""
    return _ACK.pack(FRAME_METHOD, channel, 13, BASIC_ACK, tag, 1 if multiple else 0) + _END


def nack_all(channel: int) -> bytes:
    """``basic.nack(0, multiple, requeue)``: every unacknowledged delivery back."""
    return _ACK.pack(FRAME_METHOD, channel, 13, BASIC_NACK, 0, 0b11) + _END


def shortstr(value: bytes) -> bytes:
    if len(value) > 255:
        raise FrameError("a short string is at most 255 bytes")
    return bytes([len(value)]) + value


def publish_method(channel: int, exchange: bytes, routing_key: bytes, mandatory: bool) -> bytes:
    """The ``basic.publish`` method frame (the same for every message of a route)."""
    payload = (
        METHOD_ID.pack((60 << 16) | 40)
        + b"\x00\x00"
        + shortstr(exchange)
        + shortstr(routing_key)
        + (b"\x01" if mandatory else b"\x00")
    )
    return frame(FRAME_METHOD, channel, payload)


def content(channel: int, properties: bytes, body: bytes, frame_max: int) -> list[bytes]:
    """The content header frame and the body frames of one message."""
    head = _CONTENT_HEAD.pack(60, 0, len(body)) + properties
    out = [FRAME_HEAD.pack(FRAME_HEADER, channel, len(head)), head, _END]
    room = frame_max - 8
    if len(body) <= room:
        if body:
            out += (FRAME_HEAD.pack(FRAME_BODY, channel, len(body)), body, _END)
        return out
    for start in range(0, len(body), room):
        chunk = body[start : start + room]
        out += (FRAME_HEAD.pack(FRAME_BODY, channel, len(chunk)), chunk, _END)
    return out


# -- field tables -------------------------------------------------------------------------------
def value_end(buf: bytes, pos: int) -> int:
    """Where the field value that starts (with its type octet) at ``pos`` ends."""
    kind = buf[pos]
    size = _FIXED.get(kind)
    if size is not None:
        end = pos + 1 + size
    elif kind in _PREFIXED:
        end = pos + 5 + _U32.unpack_from(buf, pos + 1)[0]
    else:
        raise FrameError(f"unknown field type {chr(kind)!r}")
    if end > len(buf):
        raise FrameError("a field value runs past its frame")
    return end


def table_entries(buf: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """The entries of the table whose entries span ``buf[start:end]``: (name, where the
    entry starts, where its value starts, where it ends)."""
    out = []
    pos = start
    while pos < end:
        n = buf[pos]
        name = buf[pos + 1 : pos + 1 + n]
        value = pos + 1 + n
        stop = value_end(buf, value)
        out.append((bytes(name), pos, value, stop))
        pos = stop
    if pos != end:
        raise FrameError("a table's entries overrun its length")
    return out


def longstr_entry(name: str, value: str) -> bytes:
    """A table entry holding text, as pika writes a ``str`` header (type ``S``)."""
    raw = value.encode("utf-8")
    return shortstr(name.encode("utf-8")) + b"S" + _U32.pack(len(raw)) + raw


class Properties:
    """A content header's property bytes (flags first), with the headers table located."""

    __slots__ = ("head", "raw", "table_end", "table_start")

    def __init__(self, raw: bytes) -> None:
        try:
            self._locate(raw)
        except (IndexError, struct.error):
            raise FrameError("properties cut short") from None

    def _locate(self, raw: bytes) -> None:
        self.raw = raw
        flags = _U16.unpack_from(raw, 0)[0]
        if flags & _CONTINUED:
            raise FrameError("continued property flags")
        pos = 2
        if flags & _CONTENT_TYPE:
            pos += 1 + raw[pos]
        if flags & _CONTENT_ENCODING:
            pos += 1 + raw[pos]
        #: Where the headers table (its length) is or would be inserted.
        self.head = pos
        if flags & _HEADERS:
            size = _U32.unpack_from(raw, pos)[0]
            self.table_start = pos + 4
            self.table_end = pos + 4 + size
            if self.table_end > len(raw):
                raise FrameError("a headers table runs past its frame")
        else:
            self.table_start = self.table_end = -1

    def entries(self) -> list[tuple[bytes, int, int, int]]:
        if self.table_start < 0:
            return []
        try:
            return table_entries(self.raw, self.table_start, self.table_end)
        except (IndexError, struct.error):
            raise FrameError("a headers table cut short") from None

    def rewritten(
        self,
        entries: list[tuple[bytes, int, int, int]],
        drop: frozenset[bytes],
        add: Iterable[bytes],
    ) -> bytes:
        """These properties with the header entries named in ``drop`` removed and the
        encoded entries ``add`` appended (``entries``: this object's ``entries()``)."""
        raw = self.raw
        parts = [raw[start:stop] for name, start, _, stop in entries if name not in drop]
        parts.extend(add)
        table = b"".join(parts)
        if self.table_start < 0:
            flags = _U16.unpack_from(raw, 0)[0] | _HEADERS
            return (
                _U16.pack(flags)
                + raw[2 : self.head]
                + _U32.pack(len(table))
                + table
                + raw[self.head :]
            )
        return raw[: self.head] + _U32.pack(len(table)) + table + raw[self.table_end :]


def decode_value(raw: bytes) -> object:
    """One field value (type octet first) as pika decodes it (rare path: the decision
    cache's misses)."""
    from pika import data

    value, _ = data.decode_value(raw, 0)
    return value
