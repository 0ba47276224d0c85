"""The --where language: documented examples, semantics, and errors with a column."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.errors import ExitCode, UsageError
from qctl.filters import FilterSyntaxError, compile_where, parse
from qctl.messages import Message, kafka_source

ORDER = {
    "status": "FAILED",
    "total": 120.5,
    "currency": "EUR",
    "items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 7}],
    "paid": False,
    "note": None,
}


def msg(**kw: object) -> Message:
    value = kw.pop("value", json.dumps(ORDER).encode())
    m = Message(
        value=value,  # type: ignore[arg-type]
        key=kw.pop("key", b"order-42"),  # type: ignore[arg-type]
        headers=kw.pop(  # type: ignore[arg-type]
            "headers",
            [("x-error", "java.util.concurrent.TimeoutException: Timeout after 30s"), ("n", "5")],
        ),
        timestamp=kw.pop("timestamp", 1764237600000),  # type: ignore[arg-type]
        source=kafka_source("orders", 2, 999),
    )
    assert not kw
    return m


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('value.status == "FAILED"', True),
        ("value.status == FAILED", True),
        ('value.status != "FAILED"', False),
        ("header.x-error ~ Timeout", True),
        ('header.x-error ~ "^java\\\\.util"', True),
        ("header.x-error !~ Timeout", False),
        ('key == "order-42" or key == "order-43"', True),
        ('value.total > 100 and value.currency == "EUR"', True),
        ("value.total >= 120.5 and value.total <= 120.5", True),
        ("value.total < 100", False),
        ('value.items[0].sku == "SKU-1"', True),
        ('value.items[-1].sku == "SKU-2"', True),
        ("value.items[*].quantity >= 5", True),
        ("value.items[*].quantity > 7", False),
        ('value["status"] == FAILED', True),
        ("exists header.x-error", True),
        ("header.x-error exists", True),
        ("exists header.nope", False),
        ("not exists header.nope", True),
        ("! exists header.nope", True),
        ('header.n in ["4", "5"]', True),
        ("header.n == 5", True),
        ("header.n > 4", True),
        ('header["x-error"] ~ Timeout', True),
        ("value.paid == false", True),
        ("value.note == null", True),
        ("value.missing == null", True),
        ("value.missing != 1", True),
        ("value.missing == 1", False),
        ('timestamp >= "2025-11-27T09:00:00Z"', True),
        ('timestamp < "2025-11-27T10:00:00+01:00"', False),
        ("partition == 2 and offset < 1000", True),
        ('topic == "orders"', True),
        ("(key == a or key == order-42) && value.total > 1", True),
        ("NOT value.status == FAILED OR value.total > 1", True),
        ("value ~ SKU-2", True),
    ],
)
def test_documented_semantics(expr: str, expected: bool) -> None:
    assert parse(expr)(msg()) is expected


def test_repeated_headers_match_any_value() -> None:
    m = msg(headers=[("retry", "1"), ("retry", "2")])
    assert parse("header.retry == 2")(m)
    assert not parse("header.retry != 2")(m)  # != holds when no value equals


def test_values_that_are_not_json() -> None:
    m = msg(value=b"\xff\xfe not json")
    assert not parse('value.status == "x"')(m)
    assert not parse("exists value.status")(m)
    assert parse("value ~ json")(m)
    tombstone = msg(value=None)
    assert parse("value == null")(tombstone)
    assert not parse("exists value")(tombstone)


def test_several_where_options_must_all_hold() -> None:
    both = compile_where(["value.total > 100", 'value.currency == "EUR"'])
    assert both is not None and both(msg())
    none = compile_where(["value.total > 100", 'value.currency == "USD"'])
    assert none is not None and not none(msg())
    assert compile_where([]) is None


@pytest.mark.parametrize(
    ("expr", "column", "problem"),
    [
        ("value.status ==", 16, "expected a value"),
        ("value.status = 1", 14, "expected an operator"),
        ("foo == 1", 1, "unknown field 'foo'"),
        ('value.status ~ "("', 16, "invalid regular expression"),
        ("(key == 1", 10, "expected ')'"),
        ("key == 1 extra", 10, "unexpected text"),
        ("header. == 1", 8, "expected a header name"),
        ('key == "open', 8, "unterminated string"),
        ("value.items[x] == 1", 13, "expected an index"),
        ('timestamp > "yesterday"', 13, "bad time"),
        ("", 1, "expected a condition"),
        ("key < null", 7, "null can only be compared"),
        ("key in 1", 8, "expected '['"),
    ],
)
def test_parse_errors_say_where(expr: str, column: int, problem: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse(expr)
    err = caught.value
    assert err.exit_code == ExitCode.USAGE
    assert err.column == column, str(err)
    assert problem in err.problem
    assert f"column {column}" in str(err)
    assert "\n" not in str(err)


@given(st.text(max_size=60))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        predicate = parse(text)
    except UsageError:
        return
    predicate(msg())  # and evaluating it never raises


keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(a=keys, b=keys)
def test_key_equality_is_exact(a: str, b: str) -> None:
    literal = quote(a)
    m = msg(key=b.encode())
    assert parse(f"key == {literal}")(m) is (a == b or _numeric_equal(a, b))


def quote(text: str) -> str:
    """A --where string literal for any text (control characters as \\uXXXX; \\b stays
    a regex word boundary in --where, so it is never used for backspace)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _numeric_equal(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6))
def test_numeric_comparisons_agree_with_python(a: int, b: int) -> None:
    m = msg(value=json.dumps({"n": a}).encode())
    assert parse(f"value.n < {b}")(m) is (a < b)
    assert parse(f"value.n >= {b}")(m) is (a >= b)
    assert parse(f"value.n == {b}")(m) is (a == b)
