"""Both built-in backends pass the contract every backend must pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from qctl.testing.contract import BackendContract
from tests.conftest import RABBITMQ_MANAGEMENT


class TestKafkaContract(BackendContract):
    backend_name = "kafka"

    @pytest.fixture
    def live_settings(self, kafka: str) -> Mapping[str, Any]:
        return {"bootstrap_servers": kafka}

    @pytest.fixture
    def unreachable_settings(self) -> Mapping[str, Any]:
        return {"bootstrap_servers": "127.0.0.1:1"}


class TestRabbitMQContract(BackendContract):
    backend_name = "rabbitmq"

    @pytest.fixture
    def live_settings(self, rabbitmq: str) -> Mapping[str, Any]:
        return {"url": rabbitmq, "management_url": RABBITMQ_MANAGEMENT}

    @pytest.fixture
    def unreachable_settings(self) -> Mapping[str, Any]:
        return {"url": "amqp://guest:guest@127.0.0.1:1/", "management_url": "http://127.0.0.1:1"}
