"""Resource references and time/duration parsing."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.errors import ExitCode, UsageError
from qctl.refs import Ref, parse_ref
from qctl.timespec import UTC, format_duration, parse_duration, parse_instant, to_millis


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kafka:orders", Ref("kafka", "topic", "orders")),
        ("kafka:orders.dlq/12", Ref("kafka", "topic", "orders.dlq", partition=12)),
        ("rabbitmq:queue/payments", Ref("rabbitmq", "queue", "payments")),
        ("rabbitmq:exchange/orders", Ref("rabbitmq", "exchange", "orders")),
        ("rabbitmq:queue/a/b", Ref("rabbitmq", "queue", "a/b")),
        ("rabbitmq://%2F/queue/q", Ref("rabbitmq", "queue", "q", vhost="/")),
        ("rabbitmq://shop/exchange/x", Ref("rabbitmq", "exchange", "x", vhost="shop")),
        ("mymq:stream/events", Ref("mymq", "stream", "events")),
    ],
)
def test_parse_ref(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected
    assert parse_ref(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("orders", "not a resource reference"),
        ("kafka:", "names no topic"),
        ("kafka:bad topic", "not a valid Kafka topic name"),
        ("kafka:orders/x", "partition 'x'"),
        ("rabbitmq:payments", "not a RabbitMQ reference"),
        ("rabbitmq:queue/", "names no queue"),
        ("rabbitmq:binding/x", "not a RabbitMQ reference"),
        ("rabbitmq://vhost", "names no resource"),
    ],
)
def test_bad_refs_are_usage_errors(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_ref(text)
    assert fragment in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE


def test_kind_restriction() -> None:
    with pytest.raises(UsageError, match="a queue is needed"):
        parse_ref("rabbitmq:exchange/x", kinds=("queue",))
    assert parse_ref("kafka:t", kinds=("topic", "queue")).name == "t"


@given(st.text(max_size=40))
def test_parse_ref_never_crashes(text: str) -> None:
    with contextlib.suppress(UsageError):
        parse_ref(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h30m", 9000),
        ("1d", 86400),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("PT15M", 900),
        ("P1DT2H", 93600),
        ("P2W", 1209600),
        ("pt1h", 3600),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "15x", "PT", "P", "1h-5m", "-5m", "P1DT"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T10:00:00Z", dt.datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00", dt.datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T11:00:00+01:00", dt.datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27 11:00 Europe/Berlin", dt.datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27", dt.datetime(2026, 11, 27, 0, 0, tzinfo=UTC)),
        ("-15m", dt.datetime(2026, 11, 27, 11, 45, tzinfo=UTC)),
        ("now", NOW),
    ],
)
def test_parse_instant(text: str, expected: dt.datetime) -> None:
    assert parse_instant(text, now=NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-27 10:00 Mars/Olympus",
        "2026-11-27T10:00+01:00 Europe/Berlin",
    ],
)
def test_bad_instants(text: str) -> None:
    with pytest.raises(UsageError):
        parse_instant(text, now=NOW)


def test_millis_and_formatting() -> None:
    assert to_millis(dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1000
    assert format_duration(dt.timedelta(hours=2, minutes=5, seconds=3)) == "2h 5m"
    assert format_duration(45) == "45s"
    assert format_duration(0.25) == "250ms"
    assert format_duration(dt.timedelta(days=3, hours=4)) == "3d 4h"
