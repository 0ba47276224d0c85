"""Broker restarts in the middle of a redrive, on a private broker pair.

qctl either rides out the restart or stops with a resumable job (exit 1); after
``--resume`` nothing is lost: RabbitMQ's target holds every message at least once and
the DLQ is empty, Kafka's target holds each exactly once for read_committed readers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.fixtures.private_brokers import PrivateBrokers
from tests.integration.dlq_support import (
    KafkaTopics,
    RabbitSetup,
    fill_kafka,
    ids,
    kafka_end,
    only_job,
    qctl_dead_letter,
    qctl_process,
    rabbit_ids,
    read_kafka,
    wait_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.disruptive,
    pytest.mark.slow,
    pytest.mark.usefixtures("no_stray_qctl"),
]


def qctl(
    pair: PrivateBrokers, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qctl", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **pair.qctl_env(), **(env or {})},
        timeout=300,
        check=False,
    )


@pytest.fixture
def rabbit(private_brokers: PrivateBrokers, unique: str) -> Iterator[RabbitSetup]:
    setup = RabbitSetup(private_brokers.amqp_url, unique)
    yield setup
    setup.cleanup()


@pytest.fixture
def topics(private_brokers: PrivateBrokers) -> Iterator[KafkaTopics]:
    made = KafkaTopics(private_brokers.kafka_bootstrap)
    yield made
    made.cleanup()


def finish(
    pair: PrivateBrokers, proc: subprocess.Popen[str], env: dict[str, str] | None = None
) -> None:
    """The interrupted run ended either done (0) or resumable (1); resume if needed."""
    try:
        _out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:  # never leave a stuck qctl behind a failed test
            proc.kill()
            proc.wait(10)
    assert proc.returncode in (0, 1), err
    if proc.returncode == 1:
        assert "--resume" in err, err
        resumed = qctl(
            pair, "dlq", "redrive", "--resume", only_job("redrive"), "--timeout", "20", env=env
        )
        assert resumed.returncode == 0, resumed.stderr


@pytest.mark.parametrize("loop", ["own-amqp-loop", "generic-mover"])
def test_rabbitmq_restart_mid_redrive_loses_nothing(
    private_brokers: PrivateBrokers, rabbit: RabbitSetup, loop: str
) -> None:
    env = {"QCTL_RABBITMQ_WIRE_MOVE": "0" if loop == "generic-mover" else "1"}
    names = rabbit.pipeline()
    target = rabbit.queue(f"{rabbit.prefix}.target")
    rabbit.dead_letter_by_expiry(10_000)
    assert rabbit.wait_count(names["dlq"], 10_000) == 10_000
    proc = qctl_process(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"rabbitmq:queue/{target}",
        "--rate",
        "2000",
        "--yes",
        env={**private_brokers.qctl_env(), **env},
    )
    wait_for(lambda: rabbit.count(target) > 500)
    private_brokers.brokers("restart", "rabbitmq")
    finish(private_brokers, proc, env)
    assert rabbit.count(names["dlq"]) == 0
    got = rabbit_ids(rabbit.drain_bodies(target))
    assert set(got) == set(range(10_000))


@pytest.mark.parametrize("workers", ["1", "3"], ids=["one-process", "worker-processes"])
def test_kafka_restart_mid_redrive_is_still_exactly_once(
    private_brokers: PrivateBrokers, topics: KafkaTopics, unique: str, workers: str
) -> None:
    bootstrap = private_brokers.kafka_bootstrap
    origin = topics.make(unique)
    dlq = topics.make(f"{unique}.dlq")
    fill_kafka(bootstrap, dlq, 10_000, lambda i: qctl_dead_letter(origin, i))
    proc = qctl_process(
        "dlq",
        "redrive",
        f"kafka:{dlq}",
        "--rate",
        "2000",
        "--yes",
        "--timeout",
        "20",
        env={**private_brokers.qctl_env(), "QCTL_KAFKA_COPY_WORKERS": workers},
    )
    wait_for(lambda: kafka_end(bootstrap, origin) > 500)
    private_brokers.brokers("restart", "kafka")
    finish(private_brokers, proc)
    got = ids(read_kafka(bootstrap, origin, timeout=60))
    assert got == dict.fromkeys(range(10000), 1)
