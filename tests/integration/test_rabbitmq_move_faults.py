"""A RabbitMQ redrive under faults: bodies larger than a frame, the broker closing the
publishing channel, a connection cut (anywhere, also inside a frame) or stalled by a
proxy between qctl and the broker.

In each, the outcome is read from the broker's side: every dead letter ends up in the
target (after a resume where the first run stopped), none is lost, and a message is
there twice only if it was confirmed but not yet acknowledged when the run stopped
(at most the window). A run that stops says why in one line and names the resume.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pika
import pytest

from tests.cli.test_root import run_qctl
from tests.fixtures.tcp_proxy import DOWN, UP, TcpProxy
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

MIB = 1 << 20
WINDOW = 1000
GENERIC = {"QCTL_RABBITMQ_WIRE_MOVE": "0"}


def big_dead_letters(rabbit: RabbitSetup, big: int, small: int) -> dict[int, bytes]:
    """``big`` messages of a little over 1 MiB (eight frames each) among ``small`` ones,
    expired into the pipeline's DLQ; their bodies by id."""
    p = rabbit.prefix
    ch = rabbit.channel()
    ch.confirm_delivery()
    bodies = {}
    for i in range(big + small):
        pad = "x" * MIB if i % (1 + small // max(big, 1)) == 0 and big else ""
        body = json.dumps({"id": i, "pad": pad}).encode()
        bodies[i] = body
        ch.basic_publish("", f"{p}.expire", body, pika.BasicProperties(delivery_mode=2))
    ch.connection.close()
    return bodies


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("qctl: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def assert_each_once_at_most_window_twice(got: Counter[int], expected: int) -> None:
    assert set(got) == set(range(expected)), sorted(set(range(expected)) - set(got))[:10]
    assert sum(n - 1 for n in got.values()) <= WINDOW


def resume(job: str) -> None:
    done = run_qctl("dlq", "redrive", "--resume", job, "--yes", timeout=180)
    assert done.returncode == 0, done.stderr


def test_bodies_larger_than_frame_max_move_byte_exact(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline()
    target = rabbit.queue(f"{rabbit.prefix}.target")
    bodies = big_dead_letters(rabbit, big=12, small=120)
    assert rabbit.wait_count(names["dlq"], len(bodies)) == len(bodies)
    proc = run_qctl(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"rabbitmq:queue/{target}",
        "--yes",
    )
    assert proc.returncode == 0, proc.stderr
    got = rabbit.drain_bodies(target)
    assert sorted(body for _props, body in got) == sorted(bodies.values())
    assert rabbit.count(names["dlq"]) == 0


@pytest.mark.parametrize("direction", [DOWN, UP])
def test_a_connection_cut_inside_a_large_frame_loses_nothing(
    rabbit: RabbitSetup, tcp_proxy: Callable[[str], TcpProxy], direction: str
) -> None:
    """The cut falls a few MiB into the move: inside a 1 MiB delivery arriving
    (``down``) or a 1 MiB copy being published (``up``)."""
    names = rabbit.pipeline()
    target = rabbit.queue(f"{rabbit.prefix}.target")
    bodies = big_dead_letters(rabbit, big=12, small=120)
    total = len(bodies)
    assert rabbit.wait_count(names["dlq"], total) == total
    proxy = tcp_proxy("127.0.0.1:5672")
    proxy.cut_after(3 * MIB + 12345, direction)
    proc = run_qctl(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"rabbitmq:queue/{target}",
        "--yes",
        env={"QCTL_RABBITMQ_URL": f"amqp://guest:guest@{proxy.address}/"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "connection" in one_line_error(proc.stderr)
    assert "--resume" in proc.stderr
    resume(only_job("redrive"))
    got = rabbit.drain_bodies(target)
    assert all(body == bodies[json.loads(body)["id"]] for _props, body in got)
    assert_each_once_at_most_window_twice(rabbit_ids(got), total)
    assert rabbit.count(names["dlq"]) == 0


@pytest.mark.parametrize(
    ("fault", "env"),
    [("cut", {}), ("cut", GENERIC), ("stall", {}), ("stall", GENERIC)],
    ids=["cut-wire", "cut-generic", "stall-wire", "stall-generic"],
)
def test_a_connection_cut_or_stalled_mid_move_loses_nothing(
    rabbit: RabbitSetup,
    tcp_proxy: Callable[[str], TcpProxy],
    fault: str,
    env: dict[str, str],
) -> None:
    """Every connection of the run goes through the proxy. ``cut``: all are closed at
    once mid-move. ``stall``: nothing is forwarded for longer than the confirm timeout
    allows. The run stops with exit 1 and the resume command; the resume (straight to
    the broker) finishes the job."""
    names = rabbit.pipeline()
    target = rabbit.queue(f"{rabbit.prefix}.target")
    total = 3000
    rabbit.dead_letter_by_expiry(total)
    assert rabbit.wait_count(names["dlq"], total) == total
    proxy = tcp_proxy("127.0.0.1:5672")
    proc = qctl_process(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"rabbitmq:queue/{target}",
        "--rate",
        "1000",
        "--timeout",
        "2",
        "--yes",
        env={**env, "QCTL_RABBITMQ_URL": f"amqp://guest:guest@{proxy.address}/"},
    )
    wait_for(lambda: rabbit.count(target) > 500)
    if fault == "cut":
        proxy.cut()
    else:
        proxy.pause()
    _out, err = proc.communicate(timeout=120)
    proxy.resume()
    assert proc.returncode == 1, err
    one_line_error(err)
    assert "--resume" in err
    assert rabbit.count(target) < total  # it stopped mid-move
    resume(only_job("redrive"))
    assert_each_once_at_most_window_twice(rabbit_ids(rabbit.drain_bodies(target)), total)
    assert rabbit.count(names["dlq"]) == 0


def test_the_broker_closing_the_publishing_channel_mid_move_loses_nothing(
    rabbit: RabbitSetup,
) -> None:
    """The target exchange is deleted mid-move: the broker closes the publishing
    channel (404 NOT_FOUND). What was confirmed is acknowledged, the rest stays in the
    DLQ (the generic mover takes over and finds the target gone); the run ends with a
    one-line error. Once the exchange is back, the resume finishes the job."""
    names = rabbit.pipeline()
    target = rabbit.queue(f"{rabbit.prefix}.target")
    fanout = f"{rabbit.prefix}.fanout"

    def declare_fanout() -> None:
        ch = rabbit.channel()
        ch.exchange_declare(fanout, "fanout", durable=True)
        ch.queue_bind(target, fanout, "")
        ch.connection.close()

    declare_fanout()
    rabbit.exchanges.append(fanout)
    total = 3000
    rabbit.dead_letter_by_expiry(total)
    assert rabbit.wait_count(names["dlq"], total) == total
    proc = qctl_process(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"rabbitmq:exchange/{fanout}",
        "--rate",
        "1000",
        "--yes",
    )
    wait_for(lambda: rabbit.count(target) > 500)
    ch = rabbit.channel()
    ch.exchange_delete(fanout)
    ch.connection.close()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode in (1, 4), err
    one_line_error(err)
    assert f"exchange {fanout!r}" in err or "NOT_FOUND" in err, err
    moved = rabbit.count(target)
    assert moved < total
    assert rabbit.wait_count(names["dlq"], total - moved, within=5) >= total - moved
    declare_fanout()
    resume(only_job("redrive"))
    assert_each_once_at_most_window_twice(rabbit_ids(rabbit.drain_bodies(target)), total)
    assert rabbit.count(names["dlq"]) == 0


def test_the_proxy_refuses_and_stalls_and_cuts_a_plain_connection(
    rabbitmq: str, tcp_proxy: Callable[[str], TcpProxy]
) -> None:
    """The fixture itself, with pika: a connection through it works, a cut ends it, a
    refused one never opens."""
    proxy = tcp_proxy("127.0.0.1:5672")
    url = f"amqp://guest:guest@{proxy.address}/"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    assert conn.channel().queue_declare("", exclusive=True).method.queue
    assert proxy.live == 1 and proxy.bytes[UP] > 0 and proxy.bytes[DOWN] > 0
    proxy.cut()
    with pytest.raises(pika.exceptions.AMQPError):
        conn.channel()
    proxy.refuse(True)
    params: Any = pika.URLParameters(url + "?connection_attempts=1&socket_timeout=2")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)
    proxy.refuse(False)
    pika.BlockingConnection(params).close()
    assert proxy.accepted == 3
