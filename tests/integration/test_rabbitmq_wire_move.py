"""The RabbitMQ redrive's own AMQP loop (``wiremove``) against the real node.

The oracle is the generic mover (``QCTL_RABBITMQ_WIRE_MOVE=0``): the same DLQ
contents redriven both ways must arrive the same, property by property and header by
header (the job id and the death times aside), and what cannot go must stay.
"""

from __future__ import annotations

import decimal
import json
import signal
import time
from typing import Any

import pika
import pytest

from qctl.jobs.store import JobStore
from qctl.messages import AMQP_PROPERTIES
from tests.cli.test_root import run_qctl
from tests.integration.dlq_support import (
    RabbitSetup,
    only_job,
    qctl_process,
    rabbit_ids,
    wait_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.rabbitmq,
    pytest.mark.usefixtures("no_stray_qctl"),
]

GENERIC = {"QCTL_RABBITMQ_WIRE_MOVE": "0"}


def odd_messages(rabbit: RabbitSetup, names: dict[str, str], start: int) -> None:
    """Messages that test the byte-level splicing, dead-lettered by rejection: no
    properties at all, every property, headers of every field type, a body larger
    than a frame, an empty body, non-ASCII text."""
    ch = rabbit.channel()
    ch.confirm_delivery()
    big = json.dumps({"id": start + 2, "pad": "x" * 400_000}).encode()
    table: dict[str, Any] = {
        "s": "text ✓",
        "i": 7,
        "neg": -3,
        "big": 2**40,
        "dec": decimal.Decimal("1.5"),
        "b": True,
        "none": None,
        "list": [1, "two", {"three": 3}],
        "nested": {"a": {"b": [b"raw"]}},
        "bytes": b"\x00\xff",
        "qctl-redrive-count": "4",
    }
    every = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=table,
        delivery_mode=2,
        priority=3,
        correlation_id="corr",
        reply_to="replies",
        expiration="600000",
        message_id="m",
        timestamp=1_700_000_000,
        type="OrderCreated",
        user_id="guest",
        app_id="orders",
    )
    bodies = [
        (json.dumps({"id": start}).encode(), pika.BasicProperties()),
        (json.dumps({"id": start + 1}).encode(), every),
        (big, pika.BasicProperties(delivery_mode=2)),
        (json.dumps({"id": start + 3, "text": "Zürich → 東京"}).encode(), every),
    ]
    for body, props in bodies:
        ch.basic_publish(names["exchange"], "order.created", body, props)
    ch.basic_publish(names["exchange"], "order.created", b"", pika.BasicProperties(type="empty"))
    got = 0
    while got < len(bodies) + 1:
        method, _p, _b = ch.basic_get(names["work"])
        if method is None:
            continue
        ch.basic_reject(method.delivery_tag, requeue=False)
        got += 1
    ch.connection.close()


def comparable(props: Any, body: bytes) -> tuple[Any, ...]:
    headers = dict(props.headers or {})
    headers.pop("qctl-redrive-id", None)
    failed_at = headers.pop("qctl-failed-at", None)  # copied from the death's time
    if failed_at is not None:
        assert abs(int(failed_at) / 1000 - time.time()) < 600
    for death in headers.get("x-death") or []:
        death.pop("time", None)
    fields = {name: getattr(props, name) for name in AMQP_PROPERTIES}
    return (body, json.dumps(fields, sort_keys=True), repr(sorted(headers.items())))


def redrive_both_ways(
    rabbit: RabbitSetup, names: dict[str, str], *extra: str
) -> tuple[list[Any], list[Any]]:
    """The same DLQ contents redriven with the wire loop, then the generic mover."""
    results = []
    for env in ({}, GENERIC):
        rabbit.dead_letter_by_rejection(25)
        odd_messages(rabbit, names, 1000)
        assert rabbit.wait_count(names["dlq"], 30) == 30
        proc = run_qctl(
            "dlq", "redrive", f"rabbitmq:queue/{names['dlq']}", "--yes", *extra, env=env
        )
        assert proc.returncode == 0, proc.stderr
        assert rabbit.count(names["dlq"]) == 0
        results.append(sorted(comparable(p, b) for p, b in rabbit.drain_bodies(names["work"])))
    return results[0], results[1]


def test_wire_move_writes_what_the_generic_mover_writes(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline()
    wire, generic = redrive_both_ways(rabbit, names)
    assert len(wire) == 30
    assert wire == generic
    for body, _fields, headers in wire:
        if b'"id": 1001' in body or b'"id": 1003' in body:
            assert "('qctl-redrive-count', '5')" in headers
        else:
            assert "('qctl-redrive-count', '1')" in headers  # one more than it had


def test_wire_move_strips_death_headers_like_the_generic_mover(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline()
    to = ("--to", f"rabbitmq:queue/{names['work']}", "--strip-death-headers")
    wire, generic = redrive_both_ways(rabbit, names, *to)
    assert wire == generic
    for _body, _fields, headers in wire:
        assert "x-death" not in headers and "x-first-death-queue" not in headers
        assert "qctl-original-queue" in headers


def test_wire_move_parks_and_honours_the_limit(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline()
    odd_messages(rabbit, names, 1000)  # two of them were redriven 4 times
    rabbit.dead_letter_by_rejection(40)
    assert rabbit.wait_count(names["dlq"], 45) == 45
    dlq = f"rabbitmq:queue/{names['dlq']}"
    proc = run_qctl("dlq", "redrive", dlq, "--max-redrives", "3", "--limit", "10", "--yes")
    assert proc.returncode == 0, proc.stderr
    moved = rabbit.drain_bodies(names["work"])
    parked = rabbit.drain_bodies(f"{names['dlq']}.parking")
    assert len(moved) == 10
    assert rabbit_ids(parked) == {1001: 1, 1003: 1}  # parked ones do not count
    assert parked[0][0].headers["qctl-parked-by"].startswith("redrive-")
    assert rabbit.count(names["dlq"]) == 45 - 12


def test_wire_move_from_a_quorum_dlq_gives_back_what_it_did_not_take(
    rabbit: RabbitSetup,
) -> None:
    names = rabbit.pipeline(quorum_dlq=True)
    rabbit.dead_letter_by_rejection(30)
    assert rabbit.wait_count(names["dlq"], 30) == 30
    dlq = f"rabbitmq:queue/{names['dlq']}"
    proc = run_qctl("dlq", "redrive", dlq, "--limit", "12", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert rabbit_ids(rabbit.drain_bodies(names["work"])) == dict.fromkeys(range(12), 1)
    assert rabbit.wait_count(names["dlq"], 18) == 18
    rest = run_qctl("dlq", "redrive", dlq, "--yes")
    assert rest.returncode == 0, rest.stderr
    assert rabbit_ids(rabbit.drain_bodies(names["work"])) == dict.fromkeys(range(12, 30), 1)


def test_a_refused_publish_hands_over_and_loses_nothing(rabbit: RabbitSetup) -> None:
    """An internal exchange passes the existence check but refuses publishes (the
    broker closes the channel): the wire loop hands over, nothing is acknowledged
    without its copy, and the run ends with an error naming the target."""
    names = rabbit.pipeline()
    ch = rabbit.channel()
    internal = f"{rabbit.prefix}.internal"
    ch.exchange_declare(internal, "fanout", durable=True, internal=True)
    ch.connection.close()
    rabbit.exchanges.append(internal)
    rabbit.dead_letter_by_rejection(20)
    assert rabbit.wait_count(names["dlq"], 20) == 20
    proc = run_qctl(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"rabbitmq:exchange/{internal}",
        "--yes",
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert internal in proc.stderr or "ACCESS_REFUSED" in proc.stderr, proc.stderr
    assert rabbit.wait_count(names["dlq"], 20) == 20


def test_ctrl_c_stops_cleanly_and_resume_finishes(rabbit: RabbitSetup) -> None:
    """A stop finishes the copies in flight and acknowledges them: nothing is lost and,
    the stop being clean, nothing is written twice."""
    names = rabbit.pipeline()
    target = rabbit.queue(f"{rabbit.prefix}.target")
    rabbit.dead_letter_by_expiry(3000)
    assert rabbit.wait_count(names["dlq"], 3000) == 3000
    dlq = f"rabbitmq:queue/{names['dlq']}"
    proc = qctl_process(
        "dlq", "redrive", dlq, "--to", f"rabbitmq:queue/{target}", "--rate", "1000", "--yes"
    )
    wait_for(lambda: rabbit.count(target) > 0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    job = only_job("redrive")
    assert JobStore().load(job).state == "interrupted"
    moved = rabbit.count(target)
    assert 0 < moved < 3000
    assert rabbit.wait_count(names["dlq"], 3000 - moved) == 3000 - moved
    done = run_qctl("dlq", "redrive", "--resume", job, timeout=120)
    assert done.returncode == 0, done.stderr
    assert rabbit.count(names["dlq"]) == 0
    assert rabbit_ids(rabbit.drain_bodies(target)) == dict.fromkeys(range(3000), 1)
