"""Fixtures the DLQ and replay tests share: scratch topics and queues, no stray qctl."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.dlq_support import KafkaTopics, RabbitSetup, kill_leftovers


@pytest.fixture
def no_stray_qctl() -> Iterator[None]:
    """A failed test must not leave a background qctl running."""
    yield
    kill_leftovers()


@pytest.fixture
def topics(kafka: str) -> Iterator[KafkaTopics]:
    """Topics made on the dev Kafka, deleted after the test."""
    made = KafkaTopics(kafka)
    yield made
    made.cleanup()


@pytest.fixture
def rabbit(rabbitmq: str, unique: str) -> Iterator[RabbitSetup]:
    """Queues made on the dev RabbitMQ, deleted after the test."""
    setup = RabbitSetup(rabbitmq, unique)
    yield setup
    setup.cleanup()
