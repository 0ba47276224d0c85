"""The ``--where`` expression language: select messages by key, headers and JSON value.

Used by ``qctl consume`` and, later, by DLQ peek/drain/redrive and replay, so one syntax
selects messages everywhere. Expressions are compiled once into a predicate; a message's
value is parsed as JSON at most once, and only when a ``value.…`` path is used.

Examples::

    value.status == "FAILED"
    header.x-error ~ Timeout                      # regex search; a bare word is text
    key == "order-42" or key == "order-43"
    value.total > 100 and value.currency == "EUR"
    value.items[0].sku == "SKU-1"                 # index into arrays
    value.items[*].quantity >= 5                  # any element
    exists header.kafka_dlt-exception-message
    not header.event-type in ["OrderCreated", "OrderCancelled"]
    header["x name with spaces"] != "a"
    timestamp >= "2026-11-27T10:00:00Z"           # times as ISO-8601 (UTC by default)
    partition == 2 and offset < 1000

Grammar (``and`` binds tighter than ``or``; ``&&``, ``||``, ``!`` are accepted too)::

    expr     := term (("or" | "||") term)*
    term     := factor (("and" | "&&") factor)*
    factor   := ("not" | "!") factor | "(" expr ")" | "exists" field
              | field "exists" | field OP literal | field "in" "[" literal, ... "]"
    OP       := == | != | ~ | !~ | < | <= | > | >=
    field    := key | value | value PATH | header.NAME | header["NAME"]
              | property.NAME | timestamp | partition | offset | topic | queue
              | exchange | routing_key | redelivered
    PATH     := (.NAME | [INDEX] | [*] | ["NAME"])...
    literal  := "text" | 'text' | NUMBER | true | false | null | bare-word

Semantics: a field can have several values (a repeated header, ``[*]``): a comparison
holds when any value satisfies it (``!=`` and ``!~`` hold when none equals/matches). A
missing field satisfies only ``!=``, ``!~`` and ``== null``. Text and numbers compare
as numbers when both look like numbers; otherwise as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qctl.errors import UsageError
from qctl.messages import Message, value_text

Predicate = Callable[[Message], bool]

HINT = (
    "e.g. --where 'value.status == \"FAILED\"' or --where 'header.x-error ~ Timeout'; "
    "see the filter syntax in `qctl consume --help`"
)

SIMPLE_FIELDS = (
    "key",
    "value",
    "timestamp",
    "partition",
    "offset",
    "topic",
    "queue",
    "exchange",
    "routing_key",
    "redelivered",
)
_OPS = ("==", "!=", "!~", "<=", ">=", "~", "<", ">")
_NAME_RE = re.compile(r"[A-Za-z0-9_\-.:/$@]+")
_PATH_NAME_RE = re.compile(r"[A-Za-z0-9_\-$@]+")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![A-Za-z0-9_.\-])")
_BARE_RE = re.compile(r"[^\s()\[\],\"']+")
_MISSING: list[Any] = []


class FilterSyntaxError(UsageError):
    """A ``--where`` expression that does not parse (exit 2); knows the column."""

    def __init__(self, text: str, pos: int, problem: str) -> None:
        near = text[pos : pos + 20] or "end of expression"
        super().__init__(f"--where {text!r}: {problem} at column {pos + 1} (near {near!r})", HINT)
        self.column = pos + 1
        self.problem = problem


@dataclass(frozen=True)
class Field:
    """A parsed field reference: kind plus header name or JSON path."""

    kind: str  # key, value, header, property, timestamp, partition, ...
    name: str | None = None
    path: tuple[str | int, ...] = ()

    def describe(self) -> str:
        if self.kind in ("header", "property"):
            return f"{self.kind}.{self.name}"
        return self.kind + "".join(
            f"[{p}]" if isinstance(p, int) else ("[*]" if p == "*" else f".{p}") for p in self.path
        )


def compile_where(expressions: str | list[str] | tuple[str, ...] | None) -> Predicate | None:
    """One predicate for all ``--where`` expressions (they must all hold), or None."""
    if not expressions:
        return None
    texts = [expressions] if isinstance(expressions, str) else list(expressions)
    predicates = [parse(text) for text in texts]
    if len(predicates) == 1:
        return predicates[0]
    return lambda m: all(p(m) for p in predicates)


def parse(text: str) -> Predicate:
    """Compile one expression; raises FilterSyntaxError with the column of the problem."""
    parser = _Parser(text)
    inner = parser.expression()
    parser.skip_ws()
    if parser.pos < len(text):
        raise FilterSyntaxError(text, parser.pos, "unexpected text")
    return lambda message: inner(_Lazy(message))


# -- evaluation ------------------------------------------------------------------------------
class _Lazy:
    """Per-message cache: the value's JSON is parsed once, and only when needed."""

    __slots__ = ("json", "message", "parsed")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.parsed = False
        self.json: Any = None

    def value_json(self) -> Any:
        if not self.parsed:
            self.parsed = True
            try:
                self.json = self.message.json_value()
            except (ValueError, UnicodeDecodeError):
                self.json = _NOT_JSON
        return self.json


_NOT_JSON = object()

#: A compiled condition over one message's lazily evaluated view.
_Cond = Callable[[_Lazy], bool]


def _getter(field: Field) -> Callable[[_Lazy], list[Any]]:
    kind = field.kind
    if kind == "header":
        name = field.name

        def header(ctx: _Lazy) -> list[Any]:
            return [v for k, v in ctx.message.headers if k == name]

        return header
    if kind == "property":
        pname = field.name or ""

        def prop(ctx: _Lazy) -> list[Any]:
            props = ctx.message.properties or {}
            return [props[pname]] if props.get(pname) is not None else _MISSING

        return prop
    if kind == "key":
        return lambda ctx: _MISSING if ctx.message.key is None else [ctx.message.key]
    if kind == "value" and not field.path:
        return lambda ctx: _MISSING if ctx.message.value is None else [ctx.message.value]
    if kind == "value":
        path = field.path

        def json_path(ctx: _Lazy) -> list[Any]:
            doc = ctx.value_json()
            if doc is _NOT_JSON:
                return _MISSING
            return _walk([doc], path)

        return json_path
    if kind == "timestamp":
        return lambda ctx: _MISSING if ctx.message.timestamp is None else [ctx.message.timestamp]

    def source(ctx: _Lazy) -> list[Any]:
        value = (ctx.message.source or {}).get(kind)
        return _MISSING if value is None else [value]

    return source


def _walk(values: list[Any], path: tuple[str | int, ...]) -> list[Any]:
    for step in path:
        nxt: list[Any] = []
        for v in values:
            if step == "*":
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif isinstance(step, int):
                if isinstance(v, list) and -len(v) <= step < len(v):
                    nxt.append(v[step])
            elif isinstance(v, dict) and step in v:
                nxt.append(v[step])
        values = nxt
        if not values:
            break
    return values


def _text(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return value_text(v)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (str, bytes)) or type(v).__name__ == "Decimal":
        try:
            return float(v.decode() if isinstance(v, bytes) else v)
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def _equal(v: Any, lit: Any) -> bool:
    if lit is None:
        return v is None
    if isinstance(lit, bool):
        if isinstance(v, bool):
            return v is lit
        return isinstance(v, (str, bytes)) and _text(v) == ("true" if lit else "false")
    if isinstance(lit, (int, float)):
        n = _number(v)
        return n is not None and n == float(lit)
    if isinstance(v, bool):
        return bool(lit == ("true" if v else "false"))
    if v is None:
        return False
    return bool(_text(v) == lit)


def _order(v: Any, lit: Any) -> int | None:
    """-1/0/1 comparing v with lit, or None when they cannot be ordered."""
    a, b = _number(v), _number(lit)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    if v is None or lit is None or isinstance(lit, bool) or isinstance(v, bool):
        return None
    sa, sb = _text(v), _text(lit)
    return (sa > sb) - (sa < sb)


def _compare(field: Field, op: str, lit: Any) -> _Cond:
    get = _getter(field)
    if op in ("==", "!="):
        negate = op == "!="

        def eq(ctx: _Lazy) -> bool:
            values = get(ctx)
            hit = any(_equal(v, lit) for v in values) if values else lit is None
            return hit != negate

        return eq
    if op in ("~", "!~"):
        regex: re.Pattern[str] = lit
        negate = op == "!~"

        def match(ctx: _Lazy) -> bool:
            hit = any(v is not None and regex.search(_text(v)) for v in get(ctx))
            return hit != negate

        return match
    wanted = {"<": (-1,), "<=": (-1, 0), ">": (1,), ">=": (1, 0)}[op]

    def order(ctx: _Lazy) -> bool:
        return any(_order(v, lit) in wanted for v in get(ctx))

    return order


def _in(field: Field, items: list[Any]) -> _Cond:
    get = _getter(field)

    def contains(ctx: _Lazy) -> bool:
        values = get(ctx)
        if not values:
            return None in items
        return any(_equal(v, lit) for v in values for lit in items)

    return contains


def _exists(field: Field) -> _Cond:
    get = _getter(field)
    return lambda ctx: bool(get(ctx))


# -- parsing ---------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, problem: str, pos: int | None = None) -> FilterSyntaxError:
        return FilterSyntaxError(self.text, self.pos if pos is None else pos, problem)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek_word(self, *words: str) -> str | None:
        """The keyword at the cursor (whole word, case-insensitive), without consuming it."""
        self.skip_ws()
        for word in words:
            end = self.pos + len(word)
            chunk = self.text[self.pos : end]
            if not chunk:
                continue
            if word[0].isalpha():
                if chunk.lower() == word and (
                    end >= len(self.text)
                    or not (self.text[end].isalnum() or self.text[end] in "_-.")
                ):
                    return word
            elif chunk == word:
                return word
        return None

    def take_word(self, *words: str) -> str | None:
        found = self.peek_word(*words)
        if found:
            self.pos += len(found)
        return found

    # expr := term (or term)*
    def expression(self) -> _Cond:
        left = self.term()
        while self.take_word("or", "||"):
            right = self.term()
            left = _or(left, right)
        return left

    def term(self) -> _Cond:
        left = self.factor()
        while self.take_word("and", "&&"):
            right = self.factor()
            left = _and(left, right)
        return left

    def factor(self) -> _Cond:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail("expected a condition")
        if self.text.startswith("!=", self.pos) or self.text.startswith("!~", self.pos):
            raise self.fail("expected a field before the operator")
        if self.take_word("not", "!"):
            inner = self.factor()
            return lambda ctx: not inner(ctx)
        if self.text[self.pos] == "(":
            self.pos += 1
            inner = self.expression()
            self.skip_ws()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise self.fail("expected ')'")
            self.pos += 1
            return inner
        if self.take_word("exists"):
            return _exists(self.field())
        start = self.pos
        fld = self.field()
        if self.take_word("exists"):
            return _exists(fld)
        if self.take_word("in"):
            items = self.list_literal()
            return _in(fld, items)
        self.skip_ws()
        op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
        if op is None:
            if self.pos >= len(self.text):
                raise self.fail(
                    f"expected an operator (==, !=, ~, <, >, in, exists) after "
                    f"{self.text[start : self.pos].strip()!r}"
                )
            raise self.fail("expected an operator (==, !=, ~, !~, <, <=, >, >=, in, exists)")
        self.pos += len(op)
        self.skip_ws()
        lit_pos = self.pos
        lit = self.literal(bare_ok=True)
        if op in ("~", "!~"):
            try:
                return _compare(fld, op, re.compile(_text(lit) if lit is not None else "null"))
            except re.error as exc:
                raise self.fail(f"invalid regular expression: {exc}", lit_pos) from None
        if fld.kind == "timestamp" and isinstance(lit, str):
            lit = self.instant(lit, lit_pos)
        if op not in ("==", "!=") and lit is None:
            raise self.fail("null can only be compared with == or !=", lit_pos)
        return _compare(fld, op, lit)

    def instant(self, text: str, pos: int) -> int:
        from qctl.timespec import parse_instant, to_millis

        try:
            return to_millis(parse_instant(text))
        except UsageError as exc:
            raise self.fail(f"bad time: {exc.what}", pos) from None

    def field(self) -> Field:
        self.skip_ws()
        start = self.pos
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(self.text, self.pos)
        if not match:
            raise self.fail("expected a field (key, value, value.PATH, header.NAME, ...)")
        word = match.group(0).lower()
        self.pos = match.end()
        if word in ("header", "headers", "property", "properties"):
            kind = "header" if word.startswith("header") else "property"
            return Field(kind, self.name_after_dot_or_bracket(kind))
        if word == "value":
            return Field("value", path=self.json_path())
        if word in SIMPLE_FIELDS:
            return Field(word)
        raise self.fail(
            f"unknown field {match.group(0)!r} (fields: key, value, value.PATH, header.NAME, "
            "property.NAME, timestamp, partition, offset, topic, queue, exchange, "
            "routing_key, redelivered)",
            start,
        )

    def name_after_dot_or_bracket(self, kind: str) -> str:
        if self.text.startswith(".", self.pos):
            match = _NAME_RE.match(self.text, self.pos + 1)
            if not match:
                raise self.fail(f"expected a {kind} name after '.'", self.pos + 1)
            self.pos = match.end()
            return match.group(0)
        if self.text.startswith("[", self.pos):
            self.pos += 1
            name = self.string()
            if not self.text.startswith("]", self.pos):
                raise self.fail("expected ']'")
            self.pos += 1
            return name
        raise self.fail(f'expected {kind}.NAME or {kind}["NAME"]')

    def json_path(self) -> tuple[str | int, ...]:
        path: list[str | int] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == ".":
                match = _PATH_NAME_RE.match(self.text, self.pos + 1)
                if not match:
                    raise self.fail("expected a field name after '.'", self.pos + 1)
                path.append(match.group(0))
                self.pos = match.end()
            elif ch == "[":
                self.pos += 1
                self.skip_ws()
                if self.text.startswith("*", self.pos):
                    self.pos += 1
                    path.append("*")
                elif self.pos < len(self.text) and self.text[self.pos] in "\"'":
                    path.append(self.string())
                else:
                    match = re.compile(r"-?\d+").match(self.text, self.pos)
                    if not match:
                        raise self.fail("expected an index, * or a quoted name inside [ ]")
                    path.append(int(match.group(0)))
                    self.pos = match.end()
                self.skip_ws()
                if not self.text.startswith("]", self.pos):
                    raise self.fail("expected ']'")
                self.pos += 1
            else:
                break
        return tuple(path)

    def string(self) -> str:
        quote = self.text[self.pos] if self.pos < len(self.text) else ""
        if quote not in ("'", '"'):
            raise self.fail("expected a quoted string")
        start = self.pos
        i = self.pos + 1
        out: list[str] = []
        while i < len(self.text):
            ch = self.text[i]
            if ch == "\\" and i + 1 < len(self.text):
                nxt = self.text[i + 1]
                mapping = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
                if nxt in mapping:
                    out.append(mapping[nxt])
                elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.text[i + 2 : i + 6]):
                    out.append(chr(int(self.text[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                else:  # keep other escapes for regexes (\d, \s, ...)
                    out.append(ch + nxt)
                i += 2
                continue
            if ch == quote:
                self.pos = i + 1
                text = "".join(out)
                try:  # join \uD83D\uDE00-style surrogate pairs into one character
                    return text.encode("utf-16", "surrogatepass").decode("utf-16")
                except UnicodeDecodeError:
                    return text
            out.append(ch)
            i += 1
        raise self.fail("unterminated string", start)

    def literal(self, bare_ok: bool) -> Any:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail("expected a value")
        ch = self.text[self.pos]
        if ch in "\"'":
            return self.string()
        number = _NUMBER_RE.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            raw = number.group(0)
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.peek_word(word):
                self.pos += len(word)
                return value
        if bare_ok:
            bare = _BARE_RE.match(self.text, self.pos)
            if bare and bare.group(0).lower() not in ("and", "or", "not"):
                self.pos = bare.end()
                return bare.group(0)
        raise self.fail('expected a value ("text", a number, true, false or null)')

    def list_literal(self) -> list[Any]:
        self.skip_ws()
        if not self.text.startswith("[", self.pos):
            raise self.fail("expected '[' after 'in'")
        self.pos += 1
        items: list[Any] = []
        self.skip_ws()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return items
        while True:
            items.append(self.literal(bare_ok=True))
            self.skip_ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return items
            raise self.fail("expected ',' or ']'")


def _and(a: _Cond, b: _Cond) -> _Cond:
    return lambda ctx: a(ctx) and b(ctx)


def _or(a: _Cond, b: _Cond) -> _Cond:
    return lambda ctx: a(ctx) or b(ctx)
