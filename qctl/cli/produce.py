"""``qctl produce``: send test events or recorded messages to a topic, queue or exchange."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import click

from qctl.cli.app import App, pass_app
from qctl.cli.options import output_option, timeout_option, yes_option
from qctl.errors import PartialFailure, QctlError, UsageError

EPILOG = """\b
Examples:
  qctl produce kafka:orders '{"status": "NEW"}' --key order-1 --header source=cli
  qctl produce kafka:orders --template order-created --count 100 --seed 42
  qctl produce kafka:orders --template order-flow --count 1000 --rate 50
  qctl produce rabbitmq:exchange/orders --routing-key order.created --template order-created
  qctl produce rabbitmq:queue/payments --property content_type=application/json \\
      --property delivery_mode=2 '{"amount": 10}'
  qctl produce kafka:orders --file lines.txt --key-separator :
  qctl consume kafka:orders -o jsonl | qctl produce kafka:orders-copy --format jsonl
  qctl produce --list-templates

\b
Input formats (--file F, or stdin):
  raw     each line is one value; with --key-separator S, "KEY<S>VALUE"
  jsonl   qctl's archive format (what `qctl consume -o jsonl` writes): key, value,
          headers, timestamp and RabbitMQ properties, byte-exact
  The default is jsonl for files ending in .jsonl, else raw.

\b
Delivery: Kafka with acks=all and idempotence; RabbitMQ with publisher confirms
(--window in flight) and mandatory routing. The summary (stderr) counts sent and
failed messages; RabbitMQ also names the failed ones by their number in the input
(the first message is 1; -o json lists them all, up to 1000). Exit 1 when all
failed, 4 when some did."""


@click.command("produce", epilog=EPILOG)
@click.argument("target", required=False)
@click.argument("value", required=False)
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Read messages from this file ('-' for stdin).",
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["raw", "jsonl"]),
    help="Input format of --file/stdin (default: jsonl for *.jsonl, else raw).",
)
@click.option("--key-separator", "-K", metavar="SEP", help="raw input: split KEY<SEP>VALUE.")
@click.option("--key", "-k", help="Key of every message (Kafka; RabbitMQ: default routing key).")
@click.option(
    "--header", "-H", "headers", multiple=True, metavar="NAME=VALUE", help="Add a header (repeat)."
)
@click.option(
    "--property",
    "-P",
    "properties",
    multiple=True,
    metavar="NAME=VALUE",
    help="RabbitMQ property: content_type, content_encoding, delivery_mode (1|2|persistent), "
    "priority, expiration, message_id, correlation_id, reply_to, type, app_id, user_id, "
    "timestamp (seconds, ISO-8601 or now).",
)
@click.option("--routing-key", "-r", help="RabbitMQ exchange targets: the routing key.")
@click.option(
    "--mandatory/--no-mandatory",
    default=True,
    show_default=True,
    help="RabbitMQ: an unroutable message is a failure instead of being dropped.",
)
@click.option(
    "--count",
    "-n",
    type=click.IntRange(min=0, max=2**62),
    help="Send VALUE/template N times; files: at most N.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="PER_SECOND",
    help="Messages per second (token bucket).",
)
@click.option("--template", "-t", metavar="NAME", help="Generate events from a template.")
@click.option("--seed", type=int, help="Make template output reproducible.")
@click.option("--list-templates", is_flag=True, help="List the available templates and exit.")
@click.option("--dry-run", is_flag=True, help="Print the messages (jsonl) instead of sending.")
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="RabbitMQ: publishes awaiting a confirm at once.",
)
@click.option(
    "--new-timestamps",
    is_flag=True,
    help="Kafka: let the producer stamp messages now instead of keeping jsonl timestamps.",
)
@timeout_option
@yes_option
@output_option("table", "json", "yaml")
@pass_app
def produce(
    app: App,
    target: str | None,
    value: str | None,
    file: Path | None,
    input_format: str | None,
    key_separator: str | None,
    key: str | None,
    headers: tuple[str, ...],
    properties: tuple[str, ...],
    routing_key: str | None,
    mandatory: bool,
    count: int | None,
    rate: float | None,
    template: str | None,
    seed: int | None,
    list_templates: bool,
    dry_run: bool,
    window: int,
    new_timestamps: bool,
    timeout: float,
    yes: bool,
    output: str | None,
) -> None:
    """Send messages to TARGET: kafka:TOPIC[/PARTITION], rabbitmq:queue/NAME or
    rabbitmq:exchange/NAME.

    The message comes from VALUE, --template, --file or stdin (one per line, or the
    jsonl archive format).
    """
    if list_templates:
        _list_templates(app, output)
        return
    if not target:
        raise UsageError("missing TARGET", "e.g. qctl produce kafka:orders 'hello'")
    from qctl.backends.base import require
    from qctl.backends.capabilities.messaging import ProduceOptions, SupportsProduce, expand
    from qctl.refs import parse_ref

    ref = parse_ref(target)
    _validate_target(ref, routing_key, properties)
    header_pairs = [_pair(h, "--header") for h in headers]
    props = _properties(properties)
    source = _SourceGuard(
        _messages(value, file, input_format, key_separator, template, seed, count)
    )
    messages: Iterable[Any] = source
    if key is not None or header_pairs or props or rate is not None or dry_run:
        messages = expand(messages)  # per-message work below: no bare-value batches
    if key is not None or header_pairs or props:
        messages = _override(messages, key, header_pairs, props)
    if dry_run:
        _dry_run(app, ref, messages)
        source.raise_error()
        return
    if rate is not None:
        from qctl.ratelimit import TokenBucket, rate_limited

        messages = rate_limited(messages, TokenBucket(rate))
    app.confirm_mutation(f"send messages to {ref}", yes)
    backend = require(app.backend(ref.backend, timeout), SupportsProduce, "produce")
    options = ProduceOptions(
        routing_key=routing_key,
        mandatory=mandatory,
        window=window,
        keep_timestamps=not new_timestamps,
    )
    report = backend.produce(ref, messages, options)
    for warning in report.warnings:
        app.warn(warning)
    app.info(
        f"sent {report.sent}, failed {report.failed} in {report.elapsed:.2f}s "
        f"({report.rate:,.0f} msg/s) to {ref}"
    )
    if output in ("json", "yaml"):
        data = {
            "target": str(ref),
            "sent": report.sent,
            "failed": report.failed,
            "errors": report.errors,
            "elapsed": round(report.elapsed, 3),
            "rate": round(report.rate, 1),
            "aborted": report.aborted,
            "failures": [{"message": f.number, "reason": f.reason} for f in report.failures],
        }
        app.output(output).emit(data)
    for reason, n in sorted(report.errors.items(), key=lambda kv: -kv[1]):
        app.info(f"qctl: {n} failed: {reason}")
    _name_failures(app, report.failures, report.failed)
    source.raise_error(sent=report.sent)
    if report.aborted:
        raise (PartialFailure if report.sent else QctlError)(
            f"stopped: {report.aborted} ({report.sent} sent, {report.failed} failed)",
            "rerun to send the rest; check the broker's health",
        )
    if report.failed:
        what = next(iter(sorted(report.errors, key=lambda r: -report.errors[r])), "failed")
        if report.sent:
            raise PartialFailure(
                f"{report.failed} of {report.sent + report.failed} messages failed: {what}",
                _failure_hint(what),
            )
        raise QctlError(f"all {report.failed} messages failed: {what}", _failure_hint(what))


#: Failed messages named on stderr (all of them, up to 1000, in the JSON output).
_FAILURES_SHOWN = 10


def _name_failures(app: App, failures: list[Any], failed: int) -> None:
    """Which messages failed (by number in the input), the first few."""
    if not failures:
        return
    shown = ", ".join(str(f.number) for f in failures[:_FAILURES_SHOWN])
    more = failed - min(len(failures), _FAILURES_SHOWN)
    rest = f" and {more} more (all numbers: -o json)" if more > 0 else ""
    app.info(f"qctl: failed messages (number in the input): {shown}{rest}")


def _failure_hint(reason: str) -> str:
    if "unroutable" in reason:
        return "no queue is bound for that routing key; check --routing-key and the bindings"
    return "see the reasons above"


# -- validation --------------------------------------------------------------------------------
def _validate_target(ref: Any, routing_key: str | None, properties: tuple[str, ...]) -> None:
    if ref.backend == "kafka":
        if routing_key is not None:
            raise UsageError("--routing-key applies to RabbitMQ exchanges", "use --key for Kafka")
        if properties:
            raise UsageError(
                "--property sets RabbitMQ message properties", "use --header for Kafka"
            )
    elif ref.backend == "rabbitmq" and ref.kind == "queue" and routing_key is not None:
        raise UsageError(
            "--routing-key applies to exchange targets",
            "a queue target publishes through the default exchange with the queue's name",
        )


def _pair(text: str, option: str) -> tuple[str, str]:
    name, sep, val = text.partition("=")
    if not sep or not name:
        raise UsageError(f"{option} {text!r} is not NAME=VALUE", f"e.g. {option} source=cli")
    return name, val


def _properties(items: tuple[str, ...]) -> dict[str, Any]:
    from qctl.messages import AMQP_PROPERTIES

    props: dict[str, Any] = {}
    for item in items:
        name, raw = _pair(item, "--property")
        name = name.replace("-", "_")
        if name not in AMQP_PROPERTIES:
            raise UsageError(
                f"unknown property {name!r}", f"properties: {', '.join(AMQP_PROPERTIES)}"
            )
        props[name] = _property_value(name, raw)
    return props


def _property_value(name: str, raw: str) -> Any:
    if name == "delivery_mode":
        named = {"persistent": 2, "transient": 1, "non-persistent": 1}
        if raw.lower() in named:
            return named[raw.lower()]
        if raw in ("1", "2"):
            return int(raw)
        raise UsageError(f"delivery_mode {raw!r} must be 1, 2, transient or persistent")
    if name == "priority":
        if not raw.isdigit() or int(raw) > 255:
            raise UsageError(f"priority {raw!r} must be a number 0-255")
        return int(raw)
    if name == "timestamp":
        if raw.isdigit():
            return int(raw)
        from qctl.timespec import parse_instant

        return int(parse_instant(raw).timestamp())
    if name == "expiration" and not raw.isdigit():
        raise UsageError(f"expiration {raw!r} must be milliseconds, e.g. 60000")
    return raw


# -- message sources ---------------------------------------------------------------------------
def _messages(
    value: str | None,
    file: Path | None,
    input_format: str | None,
    key_separator: str | None,
    template: str | None,
    seed: int | None,
    count: int | None,
) -> Iterator[Any]:
    from qctl.messages import Message

    chosen = [n for n, v in (("VALUE", value), ("--file", file), ("--template", template)) if v]
    if len(chosen) > 1:
        raise UsageError(f"give only one of {' and '.join(chosen)}", "they are message sources")
    if seed is not None and not template:
        raise UsageError("--seed applies to --template")
    if template:
        return _template_messages(template, seed, 1 if count is None else count)
    if value is not None:
        return itertools.repeat(Message(value=value.encode()), 1 if count is None else count)
    if file is None or str(file) == "-":
        if sys.stdin is None or (sys.stdin.isatty() and file is None):
            raise UsageError(
                "nothing to send", "give VALUE, --template or --file, or pipe messages to stdin"
            )
        fmt = input_format or "raw"
        name = "<stdin>"
        stream = _stdin_lines()
    else:
        fmt = input_format or ("jsonl" if file.suffix == ".jsonl" else "raw")
        name = str(file)
        stream = _file_lines(file)
    if fmt == "jsonl":
        if key_separator is not None:
            raise UsageError("--key-separator applies to raw input", "jsonl lines carry keys")
        produced: Iterator[Any] = _passing_none(stream, name)
    else:
        produced = _raw_messages(stream, key_separator)
    if count is None:
        return produced
    from qctl.backends.capabilities.messaging import expand

    return _limit(expand(produced), count)


def _template_messages(name: str, seed: int | None, count: int) -> Iterator[Any]:
    import datetime as dt
    import random

    from qctl.templates import SEEDED_START, load_template

    tpl = load_template(name)
    rng = random.Random(seed)
    start = SEEDED_START if seed is not None else dt.datetime.now(dt.UTC)
    return itertools.islice(tpl.generate(rng, start), count)


def _limit(items: Iterator[Any], count: int) -> Iterator[Any]:
    sent = 0
    if count == 0:
        return
    for item in items:
        yield item
        if item is not None:
            sent += 1
            if sent >= count:
                return


#: Lines (without their newline) arrive in chunks, or None when a pipe has nothing
#: right now: one ``split`` per megabyte costs far less per line than reading line by
#: line, and a list goes to the producer as one batch.
Chunks = Iterator[list[bytes] | None]


def _raw_messages(chunks: Chunks, separator: str | None) -> Iterator[Any]:
    from qctl.backends.capabilities.messaging import ValueBatch
    from qctl.messages import Message

    sep = separator.encode() if separator is not None else None
    for chunk in chunks:
        if chunk is None:
            yield None
            continue
        if not chunk:
            continue
        if sep is None:
            yield ValueBatch(chunk)
            continue
        for line in chunk:
            k, found, v = line.partition(sep)
            yield Message(v, k) if found else Message(k)


def _passing_none(chunks: Chunks, name: str) -> Iterator[Any]:
    """Archive messages, passing through the None of an idle stdin pipe."""
    from qctl.messages import iter_archive

    number = 1
    for chunk in chunks:
        if chunk is None:
            yield None
            continue
        yield from iter_archive(chunk, name, start_line=number)
        number += len(chunk)


def _file_lines(path: Path) -> Chunks:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None

    def chunks() -> Chunks:
        with handle:
            yield from _split_lines(handle)

    return chunks()


def _split_lines(stream: IO[bytes]) -> Iterator[list[bytes]]:
    """Lists of lines without their newline, from 1 MiB reads (the last line of the
    input may lack its newline; a trailing newline does not make an empty message)."""
    pending = b""
    while True:
        block = stream.read(1 << 20)
        if not block:
            break
        lines = (pending + block).split(b"\n") if pending else block.split(b"\n")
        pending = lines.pop()
        if lines:
            yield lines
    if pending:
        yield [pending]


def _stdin_lines() -> Chunks:
    """stdin's lines; from a pipe or terminal through a reader thread that never blocks
    the sender (None = nothing yet), so confirms and heartbeats keep flowing while the
    other end of a pipe (`qctl consume --follow | qctl produce`) is quiet."""
    stream: IO[bytes] = sys.stdin.buffer
    try:
        regular = _is_regular(stream)
    except (OSError, ValueError, AttributeError):
        regular = False
    if regular:
        return _split_lines(stream)
    return _threaded_lines(stream)


def _is_regular(stream: IO[bytes]) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)


def _threaded_lines(stream: IO[bytes]) -> Chunks:
    import queue
    import threading

    chunks: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=64)

    def reader() -> None:
        pending = b""
        try:
            try:
                fd = stream.fileno()
                read: Callable[[int], bytes] = lambda n: os.read(fd, n)  # noqa: E731
            except (OSError, ValueError):  # an in-memory stdin (tests, embedding)
                read = stream.read
            while True:
                data = read(1 << 16)
                if not data:
                    break
                pending += data
                parts = pending.split(b"\n")
                pending = parts.pop()
                if parts:
                    chunks.put(parts)
        finally:
            if pending:
                chunks.put([pending])
            chunks.put(None)

    threading.Thread(target=reader, daemon=True, name="qctl-stdin").start()

    def lines() -> Chunks:
        while True:
            try:
                chunk = chunks.get(timeout=0.01)
            except queue.Empty:
                yield None
                continue
            if chunk is None:
                return
            yield chunk

    return lines()


def _override(
    messages: Iterable[Any], key: str | None, headers: list[tuple[str, str]], props: dict[str, Any]
) -> Iterator[Any]:
    key_bytes = key.encode() if key is not None else None
    for original in messages:
        if original is None:
            yield None
            continue
        m = original.copy()
        if key_bytes is not None:
            m.key = key_bytes
        m.headers.extend(headers)
        if props:
            m.properties = {**(m.properties or {}), **props}
        yield m


class _SourceGuard:
    """Wraps the message source so a bad input line stops sending cleanly: what was
    read before it is still sent and confirmed, then the error is reported."""

    def __init__(self, items: Iterator[Any]) -> None:
        self.items = items
        self.error: QctlError | None = None

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.items
        except QctlError as exc:
            self.error = exc

    def raise_error(self, sent: int | None = None) -> None:
        if self.error is None:
            return
        if sent:
            self.error.what += f" (the {sent} messages before it were sent)"
        raise self.error


def _dry_run(app: App, ref: Any, messages: Iterable[Any]) -> None:
    n = 0
    out = sys.stdout
    for m in messages:
        if m is None:
            continue
        out.write(m.to_line() + "\n")
        n += 1
    out.flush()
    app.info(f"dry run: {n} messages would be sent to {ref}")


def _list_templates(app: App, output: str | None) -> None:
    from qctl.output import table
    from qctl.templates import template_infos

    infos = template_infos()

    def render(rows: list[dict[str, Any]]) -> str:
        return table(rows, [("name", "NAME"), ("description", "DESCRIPTION"), ("source", "FROM")])

    app.output(output).emit(infos, render)
