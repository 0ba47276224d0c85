"""``RejectingSession``: a consumer hands a delivery back as failed, and the queue's own
dead-lettering (dead-letter exchange, ``x-death``) takes it, on classic and quorum queues.

rabbitmqctl is the oracle for what stays in which queue.
"""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest

from qctl.backends.base import BackendConfig
from qctl.backends.capabilities.messaging import (
    ConsumeRequest,
    RejectingSession,
    SettlingSession,
)
from qctl.backends.rabbitmq import RabbitMQBackend
from qctl.dlq.provenance import from_amqp_headers
from qctl.refs import Ref
from tests.oracles import rabbitmqctl

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


def counts(prefix: str) -> dict[str, int]:
    out = rabbitmqctl("list_queues", "name", "messages", "--quiet", "--no-table-headers")
    rows = (line.split("\t") for line in out.splitlines() if line.startswith(prefix))
    return {name: int(n) for name, n in rows}


@pytest.fixture
def topology(rabbitmq: str, unique: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """``<unique>.work`` (classic or quorum) dead-lettering into ``<unique>.dlx`` →
    ``<unique>.dlq``, with five messages waiting in the work queue."""
    kind = getattr(request, "param", "classic")
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    ch = conn.channel()
    ch.exchange_declare(f"{unique}.dlx", "direct", durable=True)
    ch.queue_declare(f"{unique}.dlq", durable=True)
    ch.queue_bind(f"{unique}.dlq", f"{unique}.dlx", "failed")
    args = {
        "x-queue-type": kind,
        "x-dead-letter-exchange": f"{unique}.dlx",
        "x-dead-letter-routing-key": "failed",
    }
    ch.queue_declare(f"{unique}.work", durable=True, arguments=args)
    for i in range(5):
        ch.basic_publish("", f"{unique}.work", f"m{i}".encode())
    yield unique
    for name in (f"{unique}.work", f"{unique}.dlq"):
        ch.queue_delete(name)
    ch.exchange_delete(f"{unique}.dlx")
    conn.close()


@pytest.fixture
def backend(rabbitmq: str) -> Iterator[RabbitMQBackend]:
    made = RabbitMQBackend.from_config(BackendConfig("test", {"url": rabbitmq}, timeout=10))
    yield made
    made.close()


@pytest.mark.parametrize("topology", ["classic", "quorum"], indirect=True)
def test_rejected_messages_are_dead_lettered_and_the_rest_settled(
    topology: str, backend: RabbitMQBackend
) -> None:
    request = ConsumeRequest(ack=True, follow=True, settle=True, prefetch=10)
    with backend.open_consumer(Ref("rabbitmq", "queue", f"{topology}.work"), request) as session:
        assert isinstance(session, RejectingSession) and isinstance(session, SettlingSession)
        batches = []
        while sum(len(b) for b in batches) < 5:
            batch = session.next_batch(10)
            assert batch is not None
            batches.append(batch)
        for batch in batches:
            values = [m.value for m in batch.messages()]
            session.reject(batch, [i for i, v in enumerate(values) if v in (b"m1", b"m3")])
        for batch in batches:  # a multiple ack must step over the rejected ones
            values = [m.value for m in batch.messages()]
            session.settle(batch, [i for i, v in enumerate(values) if v not in (b"m1", b"m3")])
    assert counts(topology) == {f"{topology}.work": 0, f"{topology}.dlq": 2}

    peek = ConsumeRequest()
    with backend.open_consumer(Ref("rabbitmq", "queue", f"{topology}.dlq"), peek) as session:
        batch = session.next_batch(10)
        assert batch is not None
        messages = batch.messages()
    assert sorted(m.value for m in messages) == [b"m1", b"m3"]
    prov = from_amqp_headers(dict(messages[0].headers))
    assert prov.deaths and prov.deaths[0].reason == "rejected"
    assert prov.deaths[0].queue == f"{topology}.work"


def test_reject_with_requeue_puts_it_back_and_commit_skips_it(
    topology: str, backend: RabbitMQBackend
) -> None:
    request = ConsumeRequest(ack=True, follow=True, prefetch=10)
    with backend.open_consumer(Ref("rabbitmq", "queue", f"{topology}.work"), request) as session:
        batches = []
        while sum(len(b) for b in batches) < 5:
            batch = session.next_batch(10)
            assert batch is not None
            batches.append(batch)
        last = batches[-1]
        session.reject(last, [len(last) - 1], requeue=True)
        for batch in batches:  # acknowledges the other four; the rejected tag is skipped
            session.commit(batch, len(batch))
    assert counts(topology) == {f"{topology}.work": 1, f"{topology}.dlq": 0}


def test_a_peek_cannot_reject(topology: str, backend: RabbitMQBackend) -> None:
    from qctl.errors import UsageError

    with backend.open_consumer(
        Ref("rabbitmq", "queue", f"{topology}.work"), ConsumeRequest()
    ) as session:
        batch = session.next_batch(10)
        assert batch is not None
        with pytest.raises(UsageError, match="only being read"):
            session.reject(batch, [0])
    assert counts(topology)[f"{topology}.work"] == 5
