"""The Message model and the JSONL archive format: one message per line, byte-exact.

Everything that moves messages speaks this model: ``qctl consume`` writes it,
``qctl produce`` reads it, DLQ drain/redrive and replay read and write it. It is
deliberately broker-neutral: a Kafka record and a RabbitMQ delivery are both a
``Message`` with a key, a value, ordered headers, a timestamp, AMQP properties (RabbitMQ
only) and a ``source`` that says where it was read from.

Archive line (keys in this order; unknown keys are ignored when reading)::

    {"key": "order-1", "value": "{\\"total\\": 42}", "headers": [["event-type", "OrderCreated"]],
     "timestamp": 1764237600123,
     "source": {"backend": "kafka", "topic": "orders", "partition": 0, "offset": 42}}

* ``key`` / ``value``: UTF-8 text, ``{"b64": "..."}`` when the bytes are not valid
  UTF-8, or ``null`` when absent (a Kafka tombstone has ``"value": null``).
* ``headers``: a list of ``[name, value]`` pairs, in order, names may repeat (Kafka).
  Values use the typed encoding below so AMQP field-table types survive.
* ``timestamp``: milliseconds since the epoch (UTC), or null.
* ``source``: where the message was read; ``properties`` (the AMQP basic properties)
  live in it, as do ``x-death`` (a readable copy of that header; the header itself
  stays in ``headers`` and is what a re-publish sends).

Typed values (header values and AMQP properties)::

    "text"                     str  (AMQP long string 'S'; Kafka: the UTF-8 bytes)
    {"b64": "..."}             bytes (AMQP byte array 'x'; Kafka: non-UTF-8 bytes)
    42 / true / null           int (sent as AMQP 'l') / bool ('t') / void ('V')
    1.5                        float (AMQP cannot carry floats through pika: sent as text)
    {"decimal": "1.50"}        decimal.Decimal ('D')
    {"timestamp": "...Z"}      datetime, whole seconds, UTC ('T')
    {"table": {...}}           nested field table ('F'); its values typed the same way
    [...]                      field array ('A'), e.g. x-death

A JSON object is always one of these one-key wrappers, so reading is unambiguous.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from qctl.errors import UsageError

#: A header or property value as qctl holds it (see the module docstring).
HeaderValue = Any

#: The AMQP 0-9-1 basic properties qctl carries (``headers`` are the message's headers).
AMQP_PROPERTIES = (
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)
_INT_PROPERTIES = {"delivery_mode", "priority", "timestamp"}


@dataclass(slots=True)
class Message:
    """One message, broker-neutral.

    ``properties`` is None for messages that never had AMQP properties (Kafka records,
    templates) and a dict for RabbitMQ deliveries (possibly empty), so a RabbitMQ round
    trip re-sends exactly the properties it read. ``source`` is free-form provenance
    (see ``kafka_source`` / ``rabbitmq_source``); it never changes what is sent, except
    that an exchange target without ``--routing-key`` reuses ``source.routing_key``.
    """

    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, HeaderValue]] = field(default_factory=list)
    timestamp: int | None = None
    properties: dict[str, Any] | None = None
    source: dict[str, Any] | None = None

    # -- headers ---------------------------------------------------------------------------
    def header(self, name: str, default: HeaderValue = None) -> HeaderValue:
        """The last value of header ``name`` (the one a table-based broker would keep)."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return default

    def header_values(self, name: str) -> list[HeaderValue]:
        """Every value of ``name``, in order (Kafka headers may repeat)."""
        return [value for key, value in self.headers if key == name]

    def has_header(self, name: str) -> bool:
        return any(key == name for key, _ in self.headers)

    def set_header(self, name: str, value: HeaderValue) -> None:
        """Replace every ``name`` header by one with ``value`` (kept at the first position)."""
        out: list[tuple[str, HeaderValue]] = []
        placed = False
        for key, old in self.headers:
            if key != name:
                out.append((key, old))
            elif not placed:
                out.append((name, value))
                placed = True
        if not placed:
            out.append((name, value))
        self.headers = out

    def add_header(self, name: str, value: HeaderValue) -> None:
        self.headers.append((name, value))

    def remove_header(self, *names: str) -> int:
        """Drop every header with one of ``names``; returns how many were removed."""
        before = len(self.headers)
        self.headers = [(k, v) for k, v in self.headers if k not in names]
        return before - len(self.headers)

    def header_text(self, name: str) -> str | None:
        """The last ``name`` header as text (bytes decoded, numbers formatted), or None."""
        value = self.header(name)
        return None if value is None else value_text(value)

    # -- content ---------------------------------------------------------------------------
    @property
    def key_text(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")

    @property
    def value_text(self) -> str | None:
        return None if self.value is None else self.value.decode("utf-8", "replace")

    def json_value(self) -> Any:
        """The value parsed as JSON; raises ValueError when it is not JSON."""
        if self.value is None:
            raise ValueError("the message has no value")
        return json.loads(self.value)

    # -- provenance ------------------------------------------------------------------------
    @property
    def backend(self) -> str | None:
        return (self.source or {}).get("backend")

    @property
    def topic(self) -> str | None:
        return (self.source or {}).get("topic")

    @property
    def partition(self) -> int | None:
        return (self.source or {}).get("partition")

    @property
    def offset(self) -> int | None:
        return (self.source or {}).get("offset")

    @property
    def queue(self) -> str | None:
        return (self.source or {}).get("queue")

    @property
    def exchange(self) -> str | None:
        return (self.source or {}).get("exchange")

    @property
    def routing_key(self) -> str | None:
        return (self.source or {}).get("routing_key")

    def origin(self) -> str:
        """Where the message was read: ``kafka:orders/0@42``, ``rabbitmq:queue/q``."""
        src = self.source or {}
        if src.get("topic") is not None:
            where = f"kafka:{src['topic']}"
            if src.get("partition") is not None:
                where += f"/{src['partition']}"
            if src.get("offset") is not None:
                where += f"@{src['offset']}"
            return where
        if src.get("queue") is not None:
            where = f"{src.get('backend') or 'rabbitmq'}:queue/{src['queue']}"
            if src.get("offset") is not None:
                where += f"@{src['offset']}"
            return where
        if src.get("exchange") is not None:
            return f"{src.get('backend') or 'rabbitmq'}:exchange/{src['exchange']}"
        return "-"

    def copy(self) -> Message:
        """A copy whose header list, properties and source can be changed independently."""
        return Message(
            value=self.value,
            key=self.key,
            headers=list(self.headers),
            timestamp=self.timestamp,
            properties=dict(self.properties) if self.properties is not None else None,
            source=dict(self.source) if self.source is not None else None,
        )

    # -- archive ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The archive object of this message (``json.dumps`` it for one line)."""
        out: dict[str, Any] = {
            "key": encode_bytes(self.key),
            "value": encode_bytes(self.value),
            "headers": [[name, encode_value(value)] for name, value in self.headers],
            "timestamp": self.timestamp,
        }
        source = dict(self.source) if self.source else {}
        if self.properties is not None:
            source["properties"] = {k: encode_value(v) for k, v in self.properties.items()}
        if source:
            out["source"] = source
        return out

    def to_line(self) -> str:
        """One archive line, without the newline."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: Any) -> Message:
        """A message from an archive object; raises ValueError naming the bad field."""
        if not isinstance(obj, Mapping):
            raise ValueError("a message must be a JSON object")
        headers = _decode_headers(obj.get("headers"))
        source = obj.get("source")
        if source is not None and not isinstance(source, Mapping):
            raise ValueError("'source' must be an object")
        source = dict(source) if source else None
        properties: dict[str, Any] | None = None
        raw_props = obj.get("properties")
        if raw_props is None and source is not None:
            raw_props = source.pop("properties", None)
        elif source is not None:
            source.pop("properties", None)
        if raw_props is not None:
            if not isinstance(raw_props, Mapping):
                raise ValueError("'properties' must be an object")
            properties = {str(k): _decode_property(str(k), v) for k, v in raw_props.items()}
        return cls(
            key=_decode_content(obj.get("key"), "key"),
            value=_decode_content(obj.get("value"), "value"),
            headers=headers,
            timestamp=_decode_timestamp(obj.get("timestamp")),
            properties=properties,
            source=source,
        )

    @classmethod
    def from_line(cls, line: str | bytes) -> Message:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
        return cls.from_json(obj)


# -- sources -------------------------------------------------------------------------------
def kafka_source(
    topic: str, partition: int, offset: int, timestamp_type: str | None = None
) -> dict[str, Any]:
    src: dict[str, Any] = {
        "backend": "kafka",
        "topic": topic,
        "partition": partition,
        "offset": offset,
    }
    if timestamp_type:
        src["timestamp_type"] = timestamp_type
    return src


def rabbitmq_source(
    *,
    vhost: str,
    queue: str | None,
    exchange: str,
    routing_key: str,
    redelivered: bool,
    offset: int | None = None,
    x_death: Any = None,
) -> dict[str, Any]:
    src: dict[str, Any] = {"backend": "rabbitmq", "vhost": vhost}
    if queue is not None:
        src["queue"] = queue
    src["exchange"] = exchange
    src["routing_key"] = routing_key
    src["redelivered"] = redelivered
    if offset is not None:
        src["offset"] = offset
    if x_death:
        src["x-death"] = readable(x_death)
    return src


#: Values that ``readable`` and ``amqp_value`` pass through as they are. Looked up by
#: exact type first: they run for every field of every ``x-death`` table of a redrive.
_AS_IS = frozenset({str, int, bool, type(None)})


def readable(value: HeaderValue) -> Any:
    """A typed value as plain JSON for people (times as ISO text, bytes decoded)."""
    if type(value) in _AS_IS:
        return value
    if isinstance(value, dict):
        return {str(k): readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


# -- bytes ---------------------------------------------------------------------------------
def encode_bytes(data: bytes | None) -> Any:
    """Key/value encoding: text when valid UTF-8, else ``{"b64": ...}``."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def _decode_content(raw: Any, what: str) -> bytes | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogatepass")
    if isinstance(raw, Mapping) and set(raw) == {"b64"}:
        return _b64(raw["b64"], what)
    if isinstance(raw, (Mapping, list, int, float, bool)):
        # Convenience for hand-written files: a JSON value is sent as compact JSON text.
        return json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode()
    raise ValueError(f'{what!r} must be text, {{"b64": ...}}, a JSON value or null')


def _b64(raw: Any, what: str) -> bytes:
    if not isinstance(raw, str):
        raise ValueError(f"{what!r}: b64 must be a string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what!r}: invalid base64") from None


# -- typed values --------------------------------------------------------------------------
def encode_value(value: HeaderValue) -> Any:
    """A typed header/property value as archive JSON (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"timestamp": _iso(value)}
    if isinstance(value, Mapping):
        return {"table": {str(k): encode_value(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    raise TypeError(f"cannot encode a {type(value).__name__} header value")


def decode_value(raw: Any, where: str = "value") -> HeaderValue:
    """The inverse of ``encode_value``; raises ValueError naming ``where``."""
    if raw is None or isinstance(raw, (bool, int, float, str)):
        return raw
    if isinstance(raw, list):
        return [decode_value(v, where) for v in raw]
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((tag, inner),) = raw.items()
        if tag == "b64":
            return _b64(inner, where)
        if tag == "decimal":
            try:
                return decimal.Decimal(str(inner))
            except decimal.InvalidOperation:
                raise ValueError(f"{where}: invalid decimal {inner!r}") from None
        if tag == "timestamp":
            return _parse_iso(inner, where)
        if tag == "float":
            try:
                return float(inner)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: invalid float {inner!r}") from None
        if tag == "table":
            if not isinstance(inner, Mapping):
                raise ValueError(f"{where}: a table must be an object")
            return {str(k): decode_value(v, f"{where}.{k}") for k, v in inner.items()}
    raise ValueError(
        f'{where}: objects must be one of {{"b64"}}, {{"decimal"}}, {{"timestamp"}}, {{"table"}}'
    )


def _decode_headers(raw: Any) -> list[tuple[str, HeaderValue]]:
    if raw is None:
        return []
    if isinstance(raw, Mapping):  # hand-written convenience: {"name": value}
        return [(str(k), decode_value(v, f"header {k!r}")) for k, v in raw.items()]
    if not isinstance(raw, list):
        raise ValueError("'headers' must be a list of [name, value] pairs")
    out: list[tuple[str, HeaderValue]] = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError("each header must be a [name, value] pair with a text name")
        out.append((item[0], decode_value(item[1], f"header {item[0]!r}")))
    return out


def _decode_property(name: str, raw: Any) -> Any:
    value = decode_value(raw, f"property {name!r}")
    if name in _INT_PROPERTIES and isinstance(value, dt.datetime):
        return int(value.timestamp())
    return value


def _decode_timestamp(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ValueError("'timestamp' must be milliseconds since the epoch or ISO-8601 text")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        instant = _parse_iso(raw, "timestamp")
        return int(instant.timestamp() * 1000)
    raise ValueError("'timestamp' must be milliseconds since the epoch or ISO-8601 text")


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(raw: Any, where: str) -> dt.datetime:
    if not isinstance(raw, str):
        raise ValueError(f"{where}: a timestamp must be ISO-8601 text")
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{where}: {raw!r} is not an ISO-8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def value_text(value: HeaderValue) -> str:
    """A typed value as one line of text (for filters, tables and format strings)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, (dict, list)):
        return json.dumps(readable(value), ensure_ascii=False, separators=(",", ":"))
    return str(value)


# -- conversions for the brokers -----------------------------------------------------------
def kafka_header_bytes(value: HeaderValue) -> bytes | None:
    """A header value as Kafka bytes: text UTF-8 encoded, other types as their text."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return value_text(value).encode("utf-8")


def kafka_header_value(raw: bytes | None) -> HeaderValue:
    """A Kafka header value in the model: text when valid UTF-8 (so it reads well in the
    archive and round-trips to the same bytes), bytes otherwise."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw)


def amqp_value(value: HeaderValue) -> HeaderValue:
    """A value pika can encode into a field table (floats become text: pika cannot send them)."""
    kind = type(value)
    if kind in _AS_IS or kind is bytes:
        return value
    if kind is dict:
        return {str(k): amqp_value(v) for k, v in value.items()}
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): amqp_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [amqp_value(v) for v in value]
    return value


def amqp_headers(headers: Sequence[tuple[str, HeaderValue]]) -> tuple[dict[str, Any], list[str]]:
    """Headers as an AMQP table, and the names that repeated (a table keeps the last)."""
    table: dict[str, Any] = {}
    repeated: list[str] = []
    for name, value in headers:
        if name in table and name not in repeated:
            repeated.append(name)
        table[name] = amqp_value(value)
    return table, repeated


# -- archive files -------------------------------------------------------------------------
class ArchiveError(UsageError):
    """A line of an archive file cannot be read (exit 2), naming the file and line."""


def iter_archive(
    lines: Iterable[bytes | str], name: str = "<stdin>", start_line: int = 1
) -> Iterator[Message]:
    """Messages from archive lines; blank lines are skipped. Errors name the line number."""
    for number, line in enumerate(lines, start_line):
        if not line.strip():
            continue
        try:
            yield Message.from_line(line)
        except (ValueError, TypeError) as exc:
            raise ArchiveError(
                f"{name} line {number}: {exc}",
                "each line must be one JSON message of the qctl archive format "
                "(see `qctl consume -o jsonl`)",
            ) from None


def read_archive(path: str | Path) -> Iterator[Message]:
    """Messages of an archive file, streamed (files may be larger than memory)."""
    p = Path(path)
    try:
        handle = p.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror}") from None
    with handle:
        yield from iter_archive(handle, str(p))


class ArchiveWriter:
    """Writes messages as archive lines; ``sync()`` makes them durable (flush + fsync).

    DLQ drain acknowledges a message only after ``sync()`` returned for it.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.count = 0

    @classmethod
    def open(cls, path: str | Path, append: bool = False) -> ArchiveWriter:
        """Created with mode 0600 from the start: archives often hold personal data."""
        import os

        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(path, flags, 0o600)
        return cls(os.fdopen(fd, "a" if append else "w", encoding="utf-8"))

    def write(self, message: Message) -> None:
        self.stream.write(message.to_line() + "\n")
        self.count += 1

    def write_all(self, messages: Sequence[Message]) -> None:
        self.stream.write("".join(m.to_line() + "\n" for m in messages))
        self.count += len(messages)

    def sync(self) -> None:
        import contextlib
        import os

        self.stream.flush()
        with contextlib.suppress(OSError, ValueError):  # pipes and terminals cannot fsync
            os.fsync(self.stream.fileno())

    def close(self) -> None:
        self.stream.close()


def make_stdout_private(stream: IO[Any] | None = None) -> bool:
    """Mode 0600 on stdout when it is a regular file (``qctl consume -o jsonl > f``).

    The shell creates the file before qctl starts, with the user's umask (often 0644);
    qctl tightens it before writing the first message. Pipes, terminals and files the
    user does not own are left alone. Returns whether the mode was changed.
    """
    import os
    import stat
    import sys

    stream = sys.stdout if stream is None else stream
    try:
        fd = stream.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError, AttributeError):  # CliRunner's buffers have no fd
        return False
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o077 or st.st_uid != os.getuid():
        return False
    try:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o600)
    except OSError:
        return False
    return True
