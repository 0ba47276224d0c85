"""`qctl dlq list` on the real RabbitMQ: which queues feed each DLQ, and NEWEST.

The broker is the oracle: each test dead-letters real messages (rejected by a consumer)
and checks that they land where `qctl dlq list` says they do, and nowhere it says they
do not.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
import yaml

from qctl.backends.rabbitmq.behaviour import behaviour_for
from qctl.backends.rabbitmq.deadletters import NEWEST_AT_TAIL
from tests.cli.test_root import run_qctl
from tests.conftest import RABBITMQ_URL
from tests.integration.test_topology_support import apply, mgmt, prefix, prefixed_example

__all__ = ["prefix"]

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


# -- helpers ----------------------------------------------------------------------------------
@contextmanager
def channel() -> Iterator[Any]:
    conn = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        yield ch
    finally:
        conn.close()


def dlq_rows(prefix: str) -> dict[str, dict[str, Any]]:
    """`qctl dlq list -b rabbitmq -o json`, the rows under ``prefix`` by queue name."""
    proc = run_qctl("dlq", "list", "-b", "rabbitmq", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return {r["name"]: r for r in json.loads(proc.stdout) if r["name"].startswith(prefix)}


def source(
    queue: str,
    exchange: str,
    key: str | None,
    feeds: str = "always",
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "queue": queue,
        "dead_letter_exchange": exchange,
        "dead_letter_routing_key": key,
        "feeds": feeds,
        "reason": reason,
    }


def reject_into_dlx(
    queue: str, exchange: str, key: str, headers: dict[str, Any] | None = None
) -> None:
    """Publish one message that reaches ``queue``, take it and reject it: the broker
    dead-letters it."""
    with channel() as ch:
        ch.basic_publish(
            exchange,
            key,
            b"{}",
            pika.BasicProperties(delivery_mode=2, headers=headers),
            mandatory=True,
        )
        deadline = time.monotonic() + 20
        while True:
            method, _props, _body = ch.basic_get(queue)
            if method is not None:
                ch.basic_reject(method.delivery_tag, requeue=False)
                return
            assert time.monotonic() < deadline, f"nothing arrived in {queue}"
            time.sleep(0.05)


def count(queue: str) -> int:
    with channel() as ch:
        return int(ch.queue_declare(queue, passive=True).method.message_count)


def wait_count(queue: str, expected: int, within: float = 20) -> int:
    deadline = time.monotonic() + within
    while (got := count(queue)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def set_policy(name: str, queue: str, definition: dict[str, Any]) -> None:
    """A policy for exactly ``queue``, waited for until the broker applies it."""
    with mgmt() as api:
        api.put(
            f"/policies/%2F/{quote(name, safe='')}",
            json={"pattern": f"^{queue}$", "definition": definition, "apply-to": "queues"},
        ).raise_for_status()
        deadline = time.monotonic() + 20
        while api.get(f"/queues/%2F/{quote(queue, safe='')}").json().get("policy") != name:
            assert time.monotonic() < deadline, f"policy {name} not applied to {queue}"
            time.sleep(0.1)


def rabbitmq_version() -> str:
    with mgmt() as api:
        return str(api.get("/overview").json()["rabbitmq_version"])


# -- sources ----------------------------------------------------------------------------------
def test_example_topology_names_the_queue_that_feeds_each_dlq(tmp_path: Path, prefix: str) -> None:
    """The order pipeline: one direct DLX shared by payment.work and analytics.work, with
    distinct dead-letter routing keys, in front of one DLQ per service."""
    p = prefix
    doc = prefixed_example(p)
    del doc["kafka"], doc["environments"]
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, _, stderr = apply(path)
    assert code == 0, stderr

    rows = dlq_rows(p)
    payment, analytics = rows[f"{p}payment.dlq"], rows[f"{p}analytics.dlq"]
    dlx = f"{p}orders.dlx"
    assert payment["why"] == f"bound to dead-letter exchange '{dlx}' of queue '{p}payment.work'"
    assert payment["sources"] == [source(f"{p}payment.work", dlx, "payment")]
    assert payment["source"] == f"{p}payment.work"
    assert analytics["why"] == (
        f"bound to dead-letter exchange '{dlx}' of queue '{p}analytics.work'"
    )
    assert analytics["sources"] == [source(f"{p}analytics.work", dlx, "analytics")]
    # Nothing dead-letters into these two (their work queues retry through orders.retry).
    for name in ("inventory.dlq", "notification.dlq"):
        assert rows[f"{p}{name}"]["why"] == "name matches '*.dlq'"
        assert rows[f"{p}{name}"]["sources"] == []
    assert not any(".retry" in name or ".work" in name for name in rows)

    table = run_qctl("dlq", "list", "-b", "rabbitmq")
    assert table.returncode == 0, table.stderr
    line = next(x for x in table.stdout.splitlines() if f"queue/{p}payment.dlq " in x)
    assert line.endswith(f"of queue '{p}payment.work'")

    # The broker agrees: a message rejected in each work queue lands in its own DLQ.
    reject_into_dlx(f"{p}payment.work", f"{p}payments.commands", "charge")
    reject_into_dlx(f"{p}analytics.work", f"{p}analytics", "x", headers={"domain": "orders"})
    assert wait_count(f"{p}payment.dlq", 1) == 1
    assert wait_count(f"{p}analytics.dlq", 1) == 1
    assert count(f"{p}inventory.dlq") == count(f"{p}notification.dlq") == 0


def test_topic_and_fanout_dead_letter_exchanges(prefix: str) -> None:
    p = prefix
    with channel() as ch:
        ch.exchange_declare(f"{p}tdlx", "topic")
        ch.exchange_declare(f"{p}fdlx", "fanout")
        ch.queue_declare(
            f"{p}src",
            arguments={"x-dead-letter-exchange": f"{p}tdlx", "x-dead-letter-routing-key": "a.b.c"},
        )
        for name, pattern in (("hash", "a.#"), ("star", "a.*.c"), ("miss", "a.*")):
            ch.queue_declare(f"{p}{name}")
            ch.queue_bind(f"{p}{name}", f"{p}tdlx", pattern)
        ch.queue_declare(
            f"{p}f1",
            arguments={"x-dead-letter-exchange": f"{p}fdlx", "x-dead-letter-routing-key": "x"},
        )
        ch.queue_declare(f"{p}f2", arguments={"x-dead-letter-exchange": f"{p}fdlx"})
        ch.queue_declare(f"{p}fan-sink")
        ch.queue_bind(f"{p}fan-sink", f"{p}fdlx", "unused")

    rows = dlq_rows(p)
    assert set(rows) == {f"{p}hash", f"{p}star", f"{p}fan-sink"}
    for name in ("hash", "star"):
        assert rows[f"{p}{name}"]["sources"] == [source(f"{p}src", f"{p}tdlx", "a.b.c")]
    assert rows[f"{p}fan-sink"]["sources"] == [
        source(f"{p}f1", f"{p}fdlx", "x"),
        source(f"{p}f2", f"{p}fdlx", None),
    ]
    assert rows[f"{p}fan-sink"]["why"] == (
        f"bound to dead-letter exchange '{p}fdlx' of queues '{p}f1', '{p}f2'"
    )
    assert rows[f"{p}fan-sink"]["source"] is None  # two queues feed it

    reject_into_dlx(f"{p}src", "", f"{p}src")
    reject_into_dlx(f"{p}f1", "", f"{p}f1")
    reject_into_dlx(f"{p}f2", "", f"{p}f2")
    assert wait_count(f"{p}hash", 1) == 1
    assert wait_count(f"{p}star", 1) == 1
    assert wait_count(f"{p}fan-sink", 2) == 2
    assert count(f"{p}miss") == 0


def test_headers_dead_letter_exchange_may_feed(prefix: str) -> None:
    p = prefix
    with channel() as ch:
        ch.exchange_declare(f"{p}hdlx", "headers")
        ch.queue_declare(
            f"{p}hsrc",
            arguments={"x-dead-letter-exchange": f"{p}hdlx", "x-dead-letter-routing-key": "k"},
        )
        ch.queue_declare(f"{p}poison-sink")
        ch.queue_bind(f"{p}poison-sink", f"{p}hdlx", arguments={"x-match": "any", "kind": "poison"})

    rows = dlq_rows(p)
    assert rows[f"{p}poison-sink"]["why"] == (
        f"may be fed through dead-letter exchange '{p}hdlx' by queue '{p}hsrc'"
    )
    reason = f"headers exchange '{p}hdlx': depends on the message headers (x-match any of kind)"
    assert rows[f"{p}poison-sink"]["sources"] == [
        source(f"{p}hsrc", f"{p}hdlx", "k", "maybe", reason)
    ]
    # Maybe indeed: one dead letter arrives, the other does not.
    reject_into_dlx(f"{p}hsrc", "", f"{p}hsrc", headers={"kind": "poison"})
    reject_into_dlx(f"{p}hsrc", "", f"{p}hsrc", headers={"kind": "other"})
    assert wait_count(f"{p}poison-sink", 1) == 1
    time.sleep(1)
    assert count(f"{p}poison-sink") == 1


def test_policy_dead_lettering_and_arguments_winning_key_by_key(prefix: str) -> None:
    """A policy can set the DLX and key; a queue argument overrules the policy's value of
    the same key only (RabbitMQ's documented precedence)."""
    p = prefix
    with channel() as ch:
        ch.exchange_declare(f"{p}pdlx", "direct")
        ch.exchange_declare(f"{p}adlx", "direct")
        ch.queue_declare(f"{p}pol-src")
        ch.queue_declare(
            f"{p}arg-src",
            arguments={"x-dead-letter-exchange": f"{p}adlx", "x-dead-letter-routing-key": "ak"},
        )
        ch.queue_declare(f"{p}mix-src", arguments={"x-dead-letter-exchange": f"{p}adlx"})
        for sink, exchange, key in (
            ("pol-sink", "pdlx", "pk"),
            ("arg-sink", "adlx", "ak"),
            ("mix-sink", "adlx", "mk"),
        ):
            ch.queue_declare(f"{p}{sink}")
            ch.queue_bind(f"{p}{sink}", f"{p}{exchange}", key)
    policy = {"dead-letter-exchange": f"{p}pdlx", "dead-letter-routing-key": "pk"}
    set_policy(f"{p}pol", f"{p}pol-src", policy)
    set_policy(f"{p}arg", f"{p}arg-src", policy)
    set_policy(f"{p}mix", f"{p}mix-src", {**policy, "dead-letter-routing-key": "mk"})

    rows = dlq_rows(p)
    for sink, src, exchange in (
        ("pol", "pol", "pdlx"),
        ("arg", "arg", "adlx"),
        ("mix", "mix", "adlx"),
    ):
        assert rows[f"{p}{sink}-sink"]["why"] == (
            f"bound to dead-letter exchange '{p}{exchange}' of queue '{p}{src}-src'"
        )
    assert rows[f"{p}pol-sink"]["sources"] == [source(f"{p}pol-src", f"{p}pdlx", "pk")]
    assert rows[f"{p}arg-sink"]["sources"] == [source(f"{p}arg-src", f"{p}adlx", "ak")]
    assert rows[f"{p}mix-sink"]["sources"] == [source(f"{p}mix-src", f"{p}adlx", "mk")]

    for queue in ("pol-src", "arg-src", "mix-src"):
        reject_into_dlx(f"{p}{queue}", "", f"{p}{queue}")
    for sink in ("pol-sink", "arg-sink", "mix-sink"):
        assert wait_count(f"{p}{sink}", 1) == 1, sink


def test_without_a_dead_letter_key_messages_keep_their_own_keys(prefix: str) -> None:
    p = prefix
    with channel() as ch:
        ch.exchange_declare(f"{p}commands", "direct")
        ch.exchange_declare(f"{p}odlx", "direct")
        ch.queue_declare(f"{p}own-src", arguments={"x-dead-letter-exchange": f"{p}odlx"})
        ch.queue_bind(f"{p}own-src", f"{p}commands", "charge")
        ch.queue_declare(f"{p}charge-sink")
        ch.queue_bind(f"{p}charge-sink", f"{p}odlx", "charge")
        ch.queue_declare(f"{p}shipping-sink")
        ch.queue_bind(f"{p}shipping-sink", f"{p}odlx", "shipping")

    rows = dlq_rows(p)
    assert set(rows) == {f"{p}charge-sink"}
    reason = (
        "no dead-letter routing key: the messages keep their own, and "
        f"'{p}own-src' receives 'charge' (through '{p}commands')"
    )
    assert rows[f"{p}charge-sink"]["sources"] == [
        source(f"{p}own-src", f"{p}odlx", None, "maybe", reason)
    ]
    # Those published with 'charge' arrive; those sent to the queue by name do not.
    reject_into_dlx(f"{p}own-src", f"{p}commands", "charge")
    reject_into_dlx(f"{p}own-src", "", f"{p}own-src")
    assert wait_count(f"{p}charge-sink", 1) == 1
    time.sleep(1)
    assert count(f"{p}charge-sink") == 1
    assert count(f"{p}shipping-sink") == 0


def stream_messages(name: str) -> list[Any]:
    """Properties of every message of stream ``name`` (reading takes nothing away)."""
    got: list[Any] = []
    conn = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=100)

        def on(c: Any, method: Any, props: Any, body: bytes) -> None:
            got.append(props)
            c.basic_ack(method.delivery_tag)

        ch.basic_consume(name, on, arguments={"x-stream-offset": "first"})
        conn.process_data_events(time_limit=2)
    finally:
        conn.close()
    return got


def test_a_stream_is_fed_only_by_dead_letters_the_broker_delivers_to_it(prefix: str) -> None:
    """Before 3.12 a stream drops at-most-once dead letters (a classic queue's): qctl lists
    the classic queue as a source of the stream exactly when the broker delivers."""
    p = prefix
    with channel() as ch:
        ch.exchange_declare(f"{p}sdlx", "direct")
        ch.queue_declare(
            f"{p}s-src",
            arguments={"x-dead-letter-exchange": f"{p}sdlx", "x-dead-letter-routing-key": "k"},
        )
        ch.queue_declare(f"{p}s-log", durable=True, arguments={"x-queue-type": "stream"})
        ch.queue_bind(f"{p}s-log", f"{p}sdlx", "k")
        ch.queue_declare(f"{p}s-sink")
        ch.queue_bind(f"{p}s-sink", f"{p}sdlx", "k")

    rows = dlq_rows(p)
    reject_into_dlx(f"{p}s-src", "", f"{p}s-src")
    assert wait_count(f"{p}s-sink", 1) == 1
    delivered = len(stream_messages(f"{p}s-log")) == 1
    assert delivered is behaviour_for(rabbitmq_version()).streams_take_at_most_once_dead_letters
    # Only dead-lettering could make the stream a DLQ (its name is no DLQ name).
    assert (f"{p}s-log" in rows) is delivered
    if delivered:
        assert rows[f"{p}s-log"]["sources"] == [source(f"{p}s-src", f"{p}sdlx", "k")]
    assert rows[f"{p}s-sink"]["sources"] == [source(f"{p}s-src", f"{p}sdlx", "k")]


# -- NEWEST -----------------------------------------------------------------------------------
def test_newest_is_read_from_a_stream_and_said_unknown_for_queues(prefix: str) -> None:
    p = prefix
    stamps = [1_700_000_000, 1_700_000_100, 1_700_000_200]
    with channel() as ch:
        ch.queue_declare(f"{p}c.dlq")
        ch.queue_declare(f"{p}q.dlq", durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_declare(f"{p}s.dlq", durable=True, arguments={"x-queue-type": "stream"})
        ch.queue_declare(f"{p}empty.dlq")
        for name in ("c.dlq", "q.dlq", "s.dlq"):
            for stamp in stamps:
                ch.basic_publish(
                    "",
                    f"{p}{name}",
                    b"{}",
                    pika.BasicProperties(delivery_mode=2, timestamp=stamp),
                    mandatory=True,
                )
    before = {"c.dlq": count(f"{p}c.dlq"), "q.dlq": count(f"{p}q.dlq")}
    deadline = time.monotonic() + 30
    while True:  # the management API's counts lag a few seconds
        rows = dlq_rows(p)
        if all(rows[f"{p}{n}"]["messages"] == 3 for n in ("c.dlq", "q.dlq", "s.dlq")):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)

    newest = dt.datetime.fromtimestamp(stamps[-1], dt.UTC).isoformat().replace("+00:00", "Z")
    assert rows[f"{p}s.dlq"]["newest"] == newest
    assert rows[f"{p}s.dlq"]["newest_unknown"] is None
    for name in ("c.dlq", "q.dlq"):
        assert rows[f"{p}{name}"]["newest"] is None
        assert rows[f"{p}{name}"]["newest_unknown"] == NEWEST_AT_TAIL
    assert rows[f"{p}empty.dlq"]["newest"] is None
    assert rows[f"{p}empty.dlq"]["newest_unknown"] is None

    table = run_qctl("dlq", "list", "-b", "rabbitmq")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    start, end = lines[0].index("NEWEST"), lines[0].index("INFLOW")

    def newest_cell(name: str) -> str:
        return next(x for x in lines if f"queue/{p}{name} " in x)[start:end].strip()

    assert newest_cell("c.dlq") == newest_cell("q.dlq") == "-*"
    assert f"* newest unknown: {NEWEST_AT_TAIL}" in lines
    assert newest_cell("s.dlq").endswith("h")  # an age in days and hours
    assert newest_cell("empty.dlq") == "-"
    # Listing took nothing off the queues, nor marked anything redelivered.
    assert {"c.dlq": count(f"{p}c.dlq"), "q.dlq": count(f"{p}q.dlq")} == before
    with channel() as ch:
        method, _props, _body = ch.basic_get(f"{p}c.dlq")
        assert method is not None and not method.redelivered
        ch.basic_nack(method.delivery_tag, requeue=True)
