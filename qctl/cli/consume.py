"""``qctl consume``: read messages from a topic or queue, filter and print them.

Every batch is written and flushed before its offsets are committed or its deliveries
acknowledged, so output piped into another program (``| qctl produce``) sees messages
as they come and nothing is acknowledged that was not written out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import click

from qctl.cli.app import App, pass_app
from qctl.cli.options import timeout_option
from qctl.errors import OperationTimeout, UsageError

#: Messages asked for per batch (written, flushed and committed together).
BATCH = 20_000

EPILOG = """\b
Examples:
  qctl consume kafka:orders --max 10
  qctl consume kafka:orders/2 --from -15m --until now -o jsonl > orders.jsonl
  qctl consume kafka:orders --from 2026-11-27T10:00:00Z --where 'value.status == "FAILED"'
  qctl consume kafka:orders --group audit --follow -o raw
  qctl consume kafka:orders --format-string '%p:%o %k=%s\\n'
  qctl consume rabbitmq:queue/payments --max 5            # peek: nothing is removed
  qctl consume rabbitmq:queue/payments --ack -o jsonl     # take the messages
  qctl consume rabbitmq:queue/events-stream --from -1h    # a stream queue
  qctl consume kafka:orders -o jsonl | qctl produce kafka:orders-copy --format jsonl

\b
Positions (--from, --until): earliest | latest | OFFSET | -N (N before the end) |
  ISO-8601 time (UTC unless a zone is given) | -DURATION (e.g. -15m) | now;
  stream queues: first | last | next | OFFSET | time | -DURATION.
  Without --follow, reading stops at the end as of the start.

\b
Filters (--where, repeat to require all):
  value.status == "FAILED"            header.x-error ~ Timeout
  value.total > 100 and key != "x"    value.items[0].sku == "SKU-1"
  exists header.retry                 not header.type in [A, B]
  Operators: == != ~ (regex) !~ < <= > >= in exists and or not ( ).

\b
Output (-o): table (default on a terminal), jsonl (default in a pipe: the archive
format, byte-exact, readable by `qctl produce --format jsonl`), json, raw (values).
--format-string like kcat -f: %s value, %k key, %t topic/queue, %p partition,
  %o offset, %T timestamp (ms), %h headers (n=v,...), %S/%K value/key size,
  %e exchange, %r routing key, \\n \\t \\xHH, %%.

\b
Delivery: Kafka without --group commits nothing; with --group, offsets are committed
after each batch is written (at-least-once), or before with --commit-before
(at-most-once). RabbitMQ peeks by default (get, then requeue in order); --ack
acknowledges each message after it was written."""


@click.command("consume", epilog=EPILOG)
@click.argument("source")
@click.option("--from", "start", metavar="POSITION", help="Where to start (see below).")
@click.option("--until", "end", metavar="POSITION", help="Where to stop (exclusive).")
@click.option("--group", "-g", help="Kafka: consume as this group, committing offsets.")
@click.option("--commit-before", is_flag=True, help="Kafka: commit before writing (at-most-once).")
@click.option(
    "--isolation",
    type=click.Choice(["read_committed", "read_uncommitted"]),
    default="read_committed",
    show_default=True,
    help="Kafka: whether to see messages of open or aborted transactions.",
)
@click.option("--ack", is_flag=True, help="RabbitMQ: consume destructively (ack after writing).")
@click.option("--max", "-n", "max_messages", type=click.IntRange(min=1), help="Stop after N.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new messages.")
@click.option("--where", "-w", multiple=True, metavar="EXPR", help="Only messages matching EXPR.")
@click.option("--format-string", "format_string", metavar="FMT", help="kcat-style output format.")
@click.option(
    "--prefetch",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="RabbitMQ: deliveries in flight.",
)
@timeout_option
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Choice(["table", "jsonl", "json", "raw"]),
    help="table, jsonl, json or raw (default: table on a terminal, else jsonl).",
)
@click.pass_context
@pass_app
def consume(
    app: App,
    ctx: click.Context,
    source: str,
    start: str | None,
    end: str | None,
    group: str | None,
    commit_before: bool,
    isolation: str,
    ack: bool,
    max_messages: int | None,
    follow: bool,
    where: tuple[str, ...],
    format_string: str | None,
    prefetch: int,
    timeout: float,
    output: str | None,
) -> None:
    """Read messages from SOURCE: kafka:TOPIC[/PARTITION] or rabbitmq:queue/NAME.

    --timeout bounds every network call; with --follow, giving it explicitly also
    stops after that many seconds without a message.
    """
    from qctl.backends.base import require
    from qctl.backends.capabilities.messaging import ConsumeRequest, SupportsConsume
    from qctl.filters import compile_where
    from qctl.gcpause import paused_gc
    from qctl.messages import make_stdout_private
    from qctl.refs import parse_ref

    ref = parse_ref(source)
    if ref.backend == "rabbitmq" and ref.kind != "queue":
        raise UsageError(f"cannot consume from {ref}", "consume a queue: rabbitmq:queue/NAME")
    predicate = compile_where(list(where))
    fmt = _output_format(app, output, format_string)
    request = ConsumeRequest(
        start=parse_position(start, "--from") if start else None,
        end=parse_position(end, "--until") if end else None,
        follow=follow,
        group=group,
        commit_before=commit_before,
        isolation=isolation,
        ack=ack,
        selective=predicate is not None,
        prefetch=prefetch,
    )
    explicit_timeout = ctx.get_parameter_source("timeout") in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )
    writer = make_writer(fmt, format_string)
    make_stdout_private()  # message data: `> f` gets mode 0600 like an archive
    backend = require(app.backend(ref.backend, timeout), SupportsConsume, "consume")
    session = backend.open_consumer(ref, request)
    shown = 0

    def show_warnings() -> None:
        nonlocal shown
        for warning in session.warnings[shown:]:
            app.warn(warning)
        shown = len(session.warnings)

    show_warnings()
    written = filtered = 0
    started = time.monotonic()
    idle_since = started
    try:
        with session, paused_gc() as gc_pause:
            while max_messages is None or written < max_messages:
                gc_pause.tick()
                remaining = max_messages - written if max_messages else BATCH
                limit = BATCH if predicate is not None else min(BATCH, remaining)
                batch = session.next_batch(limit)
                if batch is None:
                    break
                if not len(batch):
                    idle = time.monotonic() - idle_since
                    if follow and explicit_timeout and idle >= timeout:
                        break
                    if not follow and idle >= timeout:
                        raise OperationTimeout(
                            f"no message for {timeout:g}s before reaching the end of {ref}",
                            "raise --timeout, or use --follow to wait for new messages",
                        )
                    continue
                idle_since = time.monotonic()
                skipped: Sequence[int] = ()
                if predicate is None and writer.wants_values:
                    values = batch.values()
                    if len(values) > remaining:
                        values = values[:remaining]
                    writer.write_values(values)
                    count = len(values)
                    taken = count
                else:
                    msgs = batch.messages()
                    chosen: list[int] = []
                    for i, m in enumerate(msgs):
                        if predicate is None or predicate(m):
                            chosen.append(i)
                            if len(chosen) >= remaining:
                                break
                    full = len(chosen) >= remaining
                    count = chosen[-1] + 1 if full else len(msgs)
                    if len(chosen) < count:
                        picked = set(chosen)
                        skipped = [i for i in range(count) if i not in picked]
                    writer.write([msgs[i] for i in chosen])
                    taken = len(chosen)
                    filtered += count - taken
                writer.flush()
                session.commit(batch, count, skipped)
                written += taken
                show_warnings()
    finally:
        writer.close()
    show_warnings()
    if sys.stderr.isatty():
        extra = f", {filtered} filtered out" if filtered else ""
        app.info(f"{written} messages{extra} in {time.monotonic() - started:.2f}s from {ref}")


def _output_format(app: App, output: str | None, format_string: str | None) -> str:
    if format_string is not None:
        if output is not None:
            raise UsageError("give either --format-string or -o, not both")
        return "format"
    chosen = output or app.output_format
    if chosen == "yaml":
        raise UsageError("consume writes table, jsonl, json or raw", "e.g. -o jsonl")
    if chosen is None:
        chosen = "table" if sys.stdout.isatty() else "jsonl"
    return chosen


# -- positions ---------------------------------------------------------------------------------
_NAMED = {
    "earliest": "earliest",
    "beginning": "earliest",
    "first": "first",
    "latest": "latest",
    "end": "latest",
    "last": "last",
    "next": "next",
    "stored": "stored",
}


def parse_position(text: str, option: str) -> Any:
    """``earliest``, ``latest``, ``first``/``last``/``next``, ``stored``, ``OFFSET``,
    ``-N`` (N before the end), an ISO-8601 time, ``-DURATION`` or ``now``."""
    from qctl.backends.capabilities.messaging import Position
    from qctl.timespec import INSTANT_HINT, parse_instant

    raw = text.strip()
    named = _NAMED.get(raw.lower())
    if named:
        return Position(named)
    if raw.isdigit():
        return Position("offset", value=int(raw))
    if raw.startswith("-") and raw[1:].isdigit():
        return Position("relative", value=int(raw[1:]))
    try:
        return Position("timestamp", instant=parse_instant(raw))
    except UsageError:
        raise UsageError(
            f"{option} {text!r} is not a position",
            "use earliest, latest, an offset, -N, " + INSTANT_HINT,
        ) from None


# -- writers -----------------------------------------------------------------------------------
class Writer:
    """Writes batches to stdout; ``wants_values``: only values are needed (fast path)."""

    wants_values = False

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self.out: IO[bytes] = stream if stream is not None else sys.stdout.buffer

    def write_values(self, values: list[bytes | None]) -> None:
        raise NotImplementedError

    def write(self, messages: list[Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.out.flush()


class RawWriter(Writer):
    """Values only, one per line (kcat's default)."""

    wants_values = True

    def write_values(self, values: list[bytes | None]) -> None:
        if not values:
            return
        try:
            data = b"\n".join(values)  # type: ignore[arg-type]
        except TypeError:  # a null value (tombstone) prints as an empty line
            data = b"\n".join([v or b"" for v in values])
        self.out.write(data)
        self.out.write(b"\n")

    def write(self, messages: list[Any]) -> None:
        self.write_values([m.value for m in messages])


class JsonlWriter(Writer):
    def write(self, messages: list[Any]) -> None:
        if messages:
            self.out.write("".join(m.to_line() + "\n" for m in messages).encode())


class JsonWriter(Writer):
    """One JSON array, streamed: items are written as they come."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        super().__init__(stream)
        self.count = 0

    def write(self, messages: list[Any]) -> None:
        parts = []
        for m in messages:
            text = json.dumps(m.to_json(), ensure_ascii=False, indent=2)
            parts.append(("[\n" if self.count == 0 else ",\n") + _indent(text))
            self.count += 1
        if parts:
            self.out.write("".join(parts).encode())

    def close(self) -> None:
        try:
            self.out.write(b"[]\n" if self.count == 0 else b"\n]\n")
        except (BrokenPipeError, ValueError):
            return
        super().close()


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


class TableWriter(Writer):
    """A streaming table: the header once, then one row per message."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        super().__init__(stream)
        self.header_done = False
        self.width = max(shutil.get_terminal_size((120, 24)).columns, 60)
        self.n = 0

    def write(self, messages: list[Any]) -> None:
        lines = []
        for m in messages:
            self.n += 1
            kafka = m.topic is not None
            if not self.header_done:
                self.header_done = True
                head = (
                    ("PARTITION/OFFSET", "TIMESTAMP", "KEY")
                    if kafka
                    else ("#", "TIMESTAMP", "ROUTING KEY")
                )
                lines.append(self._row(*head, "HEADERS", "VALUE"))
            if kafka:
                pos = f"{m.partition}/{m.offset}"
                key = m.key_text if m.key is not None else "-"
            else:
                pos = str(m.offset) if m.offset is not None else str(self.n)
                key = m.routing_key or "-"
            when = "-"
            if m.timestamp is not None:
                when = (
                    dt.datetime.fromtimestamp(m.timestamp / 1000, dt.UTC).strftime(
                        "%Y-%m-%d %H:%M:%S.%f"
                    )[:-3]
                    + "Z"
                )
            headers = str(len(m.headers)) if m.headers else "-"
            value = "null" if m.value is None else _printable(m.value)
            lines.append(self._row(pos, when, _printable(key.encode()), headers, value))
        if lines:
            self.out.write(("\n".join(lines) + "\n").encode())

    def _row(self, pos: str, when: str, key: str, headers: str, value: str) -> str:
        left = f"{pos:<16.16} {when:<24} {_clip(key, 24):<24} {headers:>7}  "
        return left + _clip(value, max(self.width - len(left), 20))


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class FormatWriter(Writer):
    """kcat ``-f`` compatible format strings, binary-safe."""

    def __init__(self, fmt: str, stream: IO[bytes] | None = None) -> None:
        super().__init__(stream)
        self.parts = compile_format(fmt)

    def write(self, messages: list[Any]) -> None:
        parts = self.parts
        out = []
        for m in messages:
            for part in parts:
                out.append(part if isinstance(part, bytes) else part(m))
        if out:
            self.out.write(b"".join(out))


def _size(data: bytes | None) -> bytes:
    return b"-1" if data is None else str(len(data)).encode()


def _num(value: Any) -> bytes:
    return b"-1" if value is None else str(value).encode()


def _headers(m: Any) -> bytes:
    from qctl.messages import value_text

    return ",".join(f"{k}={'' if v is None else value_text(v)}" for k, v in m.headers).encode()


_TOKENS: dict[str, Callable[[Any], bytes]] = {
    "s": lambda m: m.value or b"",
    "S": lambda m: _size(m.value),
    "k": lambda m: m.key or b"",
    "K": lambda m: _size(m.key),
    "t": lambda m: (m.topic or m.queue or "").encode(),
    "p": lambda m: _num(m.partition),
    "o": lambda m: _num(m.offset),
    "T": lambda m: _num(m.timestamp),
    "h": _headers,
    "e": lambda m: (m.exchange or "").encode(),
    "r": lambda m: (m.routing_key or "").encode(),
}


def compile_format(fmt: str) -> list[bytes | Callable[[Any], bytes]]:
    """Split a kcat-style format string into literal bytes and field functions."""
    parts: list[bytes | Callable[[Any], bytes]] = []
    literal = bytearray()
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            token = fmt[i + 1]
            if token == "%":
                literal += b"%"
            elif token in _TOKENS:
                if literal:
                    parts.append(bytes(literal))
                    literal.clear()
                parts.append(_TOKENS[token])
            else:
                raise UsageError(
                    f"unknown format token %{token} in {fmt!r}",
                    "tokens: %s %S %k %K %t %p %o %T %h %e %r %%",
                )
            i += 2
            continue
        if ch == "\\" and i + 1 < len(fmt):
            nxt = fmt[i + 1]
            simple = {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", "0": b"\0"}
            if nxt in simple:
                literal += simple[nxt]
                i += 2
                continue
            if nxt == "x" and i + 3 < len(fmt) + 0:
                hexdigits = fmt[i + 2 : i + 4]
                try:
                    literal.append(int(hexdigits, 16))
                except ValueError:
                    raise UsageError(f"bad escape \\x{hexdigits} in {fmt!r}") from None
                i += 4
                continue
        literal += ch.encode()
        i += 1
    if literal:
        parts.append(bytes(literal))
    return parts


def make_writer(fmt: str, format_string: str | None = None) -> Writer:
    if fmt == "format":
        assert format_string is not None
        return FormatWriter(format_string)
    writers: dict[str, type[Writer]] = {
        "raw": RawWriter,
        "jsonl": JsonlWriter,
        "json": JsonWriter,
        "table": TableWriter,
    }
    return writers[fmt]()
