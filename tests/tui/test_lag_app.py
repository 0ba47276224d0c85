"""The live view driven by textual's pilot against the real brokers.

Broker failures are simulated without touching the shared brokers: Kafka's bootstrap
points at a closed port that later gets a proxy, and RabbitMQ's management API goes
through a proxy the test cuts and restores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KTP
from confluent_kafka.admin import AdminClient, NewTopic
from textual.pilot import Pilot
from textual.widgets import DataTable

from qctl.backends.base import Backend, BackendConfig
from qctl.backends.kafka import KafkaBackend
from qctl.backends.rabbitmq import RabbitMQBackend
from qctl.lag.collect import LagCollector, Selection
from qctl.tui.app import LagApp
from qctl.tui.widgets.group_detail import GroupScreen
from qctl.tui.widgets.help import HelpScreen
from qctl.tui.widgets.lag_table import LagTable
from qctl.tui.widgets.queue_detail import QueueScreen
from qctl.tui.widgets.status_bar import StatusBar
from tests.conftest import RABBITMQ_MANAGEMENT
from tests.tui.proxy import Proxy, free_port


@pytest.fixture
def lagging(kafka: str, rabbitmq: str, unique: str) -> Iterator[tuple[str, str]]:
    """A group 7 messages behind on a 2-partition topic, and a queue with 5 messages."""
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(unique, 2, 1)])[unique].result(15)
    producer = Producer({"bootstrap.servers": kafka})
    for p in range(2):
        for i in range(10):
            producer.produce(unique, b"m%d" % i, partition=p)
    assert producer.flush(10) == 0
    group = f"{unique}-g"
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    consumer.commit(offsets=[KTP(unique, 0, 3), KTP(unique, 1, 10)], asynchronous=False)
    consumer.close()
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    ch = conn.channel()
    queue = f"{unique}-q"
    ch.queue_declare(queue)
    for _ in range(5):
        ch.basic_publish("", queue, b"x")
    yield group, queue
    ch.queue_delete(queue)
    conn.close()
    admin.delete_topics([unique])[unique].result(15)


def collector(
    kafka_settings: dict[str, Any],
    rabbit_settings: dict[str, Any],
    selection: Selection,
    timeout: float = 3.0,
) -> LagCollector:
    def factory(cls: Any, settings: dict[str, Any]) -> Callable[[], Backend]:
        return lambda: cls.from_config(BackendConfig("test", settings, timeout))

    return LagCollector(
        context="test",
        backends={
            "kafka": factory(KafkaBackend, kafka_settings),
            "rabbitmq": factory(RabbitMQBackend, rabbit_settings),
        },
        targets={
            "kafka": kafka_settings["bootstrap_servers"],
            "rabbitmq": rabbit_settings.get("management_url", "127.0.0.1:5672"),
        },
        selection=selection,
        timeout=timeout,
    )


async def wait_for(
    pilot: Pilot[None], check: Callable[[], bool], what: str, limit: float = 30
) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.1)


def cell(app: LagApp, key: str, column: str) -> str:
    table = app.query_one(LagTable)
    return str(table.get_cell(key, column))


def status_text(app: LagApp) -> str:
    return str(app.query_one(StatusBar).content)


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(scenario())


def test_the_table_shows_lag_and_drills_down(
    kafka: str, rabbitmq: str, lagging: tuple[str, str]
) -> None:
    group, queue = lagging
    source = collector(
        {"bootstrap_servers": kafka},
        {"url": rabbitmq, "management_url": RABBITMQ_MANAGEMENT},
        Selection(groups=(group,), queues=(queue,)),
    )
    app = LagApp(source, interval=1.0)
    gkey, qkey = f"kafka:{group}", f"rabbitmq://{queue}"

    async def scenario() -> None:
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.query_one(LagTable)
            await wait_for(pilot, lambda: gkey in table.row_keys, "the group row")
            assert cell(app, gkey, "lag") == "7"
            assert cell(app, gkey, "status") == "OK"
            assert cell(app, gkey, "detail") == "Empty, 0 members"
            # The management API's queue lengths trail by up to 5 s.
            await wait_for(
                pilot, lambda: qkey in table.row_keys and cell(app, qkey, "lag") == "5", "depth 5"
            )
            assert table.row_keys == [gkey, qkey]  # sorted by lag
            assert "kafka " + kafka in status_text(app) and "refreshed" in status_text(app)

            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, GroupScreen), "group screen")
            await pilot.pause(0.3)
            parts = app.screen.query_one("#partitions", DataTable)
            assert parts.row_count == 2
            lags = [str(parts.get_row_at(i)[5]) for i in range(2)]
            assert lags == ["7", "0"]
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, GroupScreen), "back")

            await pilot.press("down", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, QueueScreen), "queue screen")
            await pilot.press("escape")

            await pilot.press("s")
            assert "sort time lag" in status_text(app)
            await pilot.press("b")
            assert table.row_keys == [gkey] and "backend kafka" in status_text(app)
            await pilot.press("b")
            assert table.row_keys == [qkey]
            await pilot.press("b")
            assert sorted(table.row_keys) == sorted([gkey, qkey])

            await pilot.press("slash", *queue[-4:])
            assert table.row_keys == [qkey]
            await pilot.press("escape")
            assert app.text_filter == "" and len(table.row_keys) == 2

            await pilot.press("p")
            assert "PAUSED" in status_text(app)
            await wait_for(pilot, lambda: not app.refreshing, "the last refresh to end")
            paused_at = app.refresh_count
            await pilot.pause(2.5)
            assert app.refresh_count == paused_at
            await pilot.press("r")
            await wait_for(pilot, lambda: app.refresh_count > paused_at, "a manual refresh")
            await pilot.press("p")
            assert "PAUSED" not in status_text(app)

            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await pilot.press("q")
        assert app.return_code == 0

    run(scenario)


def test_survives_unreachable_brokers_and_recovers(
    kafka: str, rabbitmq: str, lagging: tuple[str, str]
) -> None:
    group, queue = lagging
    kafka_port = free_port()  # nothing listens here yet
    mgmt_host, mgmt_port = RABBITMQ_MANAGEMENT.rsplit(":", 1)
    mgmt_proxy = Proxy((mgmt_host.split("//")[-1], int(mgmt_port))).start()
    kafka_proxy = Proxy(("127.0.0.1", int(kafka.rsplit(":", 1)[1])), port=kafka_port)
    source = collector(
        {"bootstrap_servers": f"127.0.0.1:{kafka_port}"},
        {"url": rabbitmq, "management_url": f"http://{mgmt_proxy.address}"},
        Selection(groups=(group,), queues=(queue,)),
        timeout=2.0,
    )
    app = LagApp(source, interval=0.5)
    notes: list[tuple[str, str]] = []
    real_notify = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        notes.append((kwargs.get("title", ""), message))
        real_notify(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    gkey, qkey = f"kafka:{group}", f"rabbitmq://{queue}"

    async def scenario() -> None:
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.query_one(LagTable)
            await wait_for(pilot, lambda: "kafka" in app.errors, "the kafka error")
            assert f"kafka at 127.0.0.1:{kafka_port} is unreachable" in app.errors["kafka"]
            assert f"kafka: kafka at 127.0.0.1:{kafka_port} is unreachable" in status_text(app)
            assert ("kafka unreachable", app.errors["kafka"]) in notes
            await wait_for(pilot, lambda: qkey in table.row_keys, "the queue row, meanwhile")

            kafka_proxy.start()  # the address works now
            await wait_for(pilot, lambda: "kafka" not in app.errors, "kafka to recover")
            await wait_for(pilot, lambda: gkey in table.row_keys, "the group row")
            assert cell(app, gkey, "lag") == "7"
            assert ("recovered", "kafka is answering again") in notes

            mgmt_proxy.cut()
            await wait_for(pilot, lambda: "rabbitmq" in app.errors, "the rabbitmq error")
            assert "management API" in app.errors["rabbitmq"]
            assert "rabbitmq:" in status_text(app)
            assert qkey in table.row_keys  # the last known row stays, dimmed
            assert table.get_cell(qkey, "name").style == "dim"
            assert app.is_running

            restored = Proxy(mgmt_proxy.target, port=mgmt_proxy.port).start()
            try:
                await wait_for(pilot, lambda: "rabbitmq" not in app.errors, "rabbitmq to recover")
                assert table.get_cell(qkey, "name").style != "dim"
                assert ("recovered", "rabbitmq is answering again") in notes
            finally:
                await pilot.press("q")
                restored.cut()

    try:
        run(scenario)
    finally:
        kafka_proxy.cut()
        mgmt_proxy.cut()
