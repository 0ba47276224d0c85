"""`qctl consume` arguments, positions, output writers and format strings."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from qctl.backends.capabilities.messaging import Position
from qctl.cli.consume import (
    FormatWriter,
    JsonlWriter,
    JsonWriter,
    RawWriter,
    TableWriter,
    compile_format,
    parse_position,
)
from qctl.errors import UsageError
from qctl.messages import Message, kafka_source, rabbitmq_source
from tests.cli.test_root import imported_modules, run_qctl

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def test_help_stays_light() -> None:
    assert imported_modules("consume", "--help") == set()


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("earliest", "earliest", None),
        ("beginning", "earliest", None),
        ("latest", "latest", None),
        ("end", "latest", None),
        ("first", "first", None),
        ("last", "last", None),
        ("next", "next", None),
        ("stored", "stored", None),
        ("42", "offset", 42),
        ("-10", "relative", 10),
    ],
)
def test_named_and_numeric_positions(text: str, kind: str, value: int | None) -> None:
    assert parse_position(text, "--from") == Position(kind, value=value)


def test_time_positions() -> None:
    pos = parse_position("2026-11-27T10:00:00Z", "--from")
    assert pos.kind == "timestamp"
    assert pos.instant == dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)
    naive = parse_position("2026-11-27T10:00:00", "--from")
    assert naive.instant == pos.instant  # UTC unless a zone is given
    zoned = parse_position("2026-11-27 11:00 Europe/Berlin", "--from")
    assert zoned.instant == pos.instant
    ago = parse_position("-15m", "--from")
    assert ago.kind == "timestamp" and ago.instant is not None
    assert abs((dt.datetime.now(dt.UTC) - ago.instant).total_seconds() - 900) < 5


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-45", "-15x", "+3"])
def test_bad_positions_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_position(bad, "--from")
    assert f"--from {bad!r} is not a position" in str(caught.value)


def test_bad_input_from_the_command_line() -> None:
    proc = run_qctl("consume", "kafka:orders", "--from", "tuesday")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "--from 'tuesday' is not a position" in proc.stderr
    proc = run_qctl("consume", "kafka:orders", "--where", "value.status = 1")
    assert proc.returncode == 2
    assert "column 14" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run_qctl("consume", "rabbitmq:exchange/orders")
    assert proc.returncode == 2
    assert "consume a queue" in proc.stderr
    proc = run_qctl("consume", "kafka:orders", "--format-string", "%q")
    assert proc.returncode == 2
    assert "unknown format token %q" in proc.stderr
    proc = run_qctl("consume", "kafka:orders", "-o", "yaml")
    assert proc.returncode == 2


def kafka_msg(value: bytes | None = b"v", key: bytes | None = b"k") -> Message:
    return Message(
        value,
        key,
        [("a", "1"), ("b", b"\xff")],
        1764237600123,
        source=kafka_source("orders", 3, 17),
    )


def write(writer_cls: type, messages: list[Message], **kw: object) -> bytes:
    out = io.BytesIO()
    writer = writer_cls(stream=out, **kw)
    writer.write(messages)
    writer.close()
    return out.getvalue()


def test_format_string_like_kcat() -> None:
    got = write(
        FormatWriter, [kafka_msg(), kafka_msg(None, None)], fmt="%t/%p@%o %k=%s (%S/%K) %T [%h]\\n"
    )
    assert got == (
        b"orders/3@17 k=v (1/1) 1764237600123 [a=1,b=\xef\xbf\xbd]\n"
        b"orders/3@17 = (-1/-1) 1764237600123 [a=1,b=\xef\xbf\xbd]\n"
    )
    assert compile_format("100%% \\x41\\t") == [b"100% A\t"]


def test_format_string_for_rabbitmq_fields() -> None:
    m = Message(
        b"body",
        source=rabbitmq_source(
            vhost="/", queue="q", exchange="ex", routing_key="rk", redelivered=False
        ),
    )
    assert write(FormatWriter, [m], fmt="%t %e %r %s %p") == b"q ex rk body -1"


def test_raw_writer_is_binary_safe() -> None:
    out = io.BytesIO()
    writer = RawWriter(stream=out)
    writer.write_values([b"\x00\xff", None, b"x"])
    assert out.getvalue() == b"\x00\xff\n\nx\n"


def test_jsonl_and_json_writers() -> None:
    lines = write(JsonlWriter, [kafka_msg(), kafka_msg(b"\xff")]).decode().splitlines()
    assert [json.loads(line)["value"] for line in lines] == ["v", {"b64": "/w=="}]
    assert Message.from_line(lines[1]).value == b"\xff"
    doc = json.loads(write(JsonWriter, [kafka_msg(), kafka_msg()]))
    assert len(doc) == 2 and doc[0]["source"]["offset"] == 17
    assert json.loads(write(JsonWriter, [])) == []


def test_table_writer() -> None:
    text = write(TableWriter, [kafka_msg(b"line\nbreak"), kafka_msg(None)]).decode()
    head, first, second = text.splitlines()
    assert head.split()[:3] == ["PARTITION/OFFSET", "TIMESTAMP", "KEY"]
    assert first.startswith("3/17")
    assert "2025-11-27 10:00:00.123Z" in first
    assert "line\\nbreak" in first
    assert second.rstrip().endswith("null")
