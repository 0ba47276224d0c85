"""Shared fixtures: an isolated config/state per test, and the real local brokers.

Integration tests talk to the brokers `dev/brokers up` starts. When a broker is not
running the test is skipped, unless QCTL_REQUIRE_BROKERS=1 (CI and `make test` set it),
where a missing broker is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Property tests check correctness, not speed: on a loaded 2-core CI machine a single
# example can take longer than hypothesis' default 200 ms deadline.
settings.register_profile("qctl", deadline=None)
settings.load_profile("qctl")

KAFKA_BOOTSTRAP = os.environ.get("QCTL_TEST_KAFKA", "127.0.0.1:9092")
RABBITMQ_URL = os.environ.get("QCTL_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
RABBITMQ_MANAGEMENT = os.environ.get("QCTL_TEST_RABBITMQ_MANAGEMENT", "http://127.0.0.1:15672")
REPO = Path(__file__).resolve().parent.parent

#: ``private_brokers``: a second broker pair for tests that restart brokers;
#: ``secure_brokers``: the dev brokers' TLS/SASL listeners and contexts for them;
#: ``kafka_cluster``: a private 3-node Kafka cluster for tests that kill a broker;
#: ``kafka_proxy``: a fault-injecting Kafka proxy in front of the dev broker;
#: ``tcp_proxy``: a TCP proxy that cuts, stalls or refuses connections on command.
pytest_plugins = [
    "tests.fixtures.private_brokers",
    "tests.fixtures.secure_brokers",
    "tests.fixtures.kafka_cluster",
    "tests.fixtures.kafka_proxy",
    "tests.fixtures.tcp_proxy",
]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int) -> None:
    if _port_open(host, port):
        return
    message = f"{name} is not running on {host}:{port} (start it with `dev/brokers up`)"
    if os.environ.get("QCTL_REQUIRE_BROKERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config file path and state dir; the user's are never read."""
    config = tmp_path / "config" / "config.yaml"
    monkeypatch.setenv("QCTL_CONFIG", str(config))
    monkeypatch.setenv("QCTL_STATE_DIR", str(tmp_path / "state"))
    for var in (
        "QCTL_CONTEXT",
        "QCTL_KAFKA_BOOTSTRAP",
        "QCTL_RABBITMQ_URL",
        "QCTL_RABBITMQ_MANAGEMENT_URL",
        "QCTL_TIMEOUT",
        "NO_COLOR",
    ):
        monkeypatch.delenv(var, raising=False)
    return config


@pytest.fixture
def kafka() -> str:
    """The bootstrap address of the real Kafka broker."""
    host, port = KAFKA_BOOTSTRAP.rsplit(":", 1)
    _require("Kafka", host, int(port))
    return KAFKA_BOOTSTRAP


@pytest.fixture
def rabbitmq() -> str:
    """The AMQP URL of the real RabbitMQ node (management API checked too)."""
    _require("RabbitMQ", "127.0.0.1", 5672)
    _require("RabbitMQ management API", "127.0.0.1", 15672)
    return RABBITMQ_URL


@pytest.fixture
def unique() -> Iterator[str]:
    """A name no other test (or parallel worker) uses."""
    yield f"qctl-test-{uuid.uuid4().hex[:10]}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report how many fuzz cases ran (tests record ``fuzz_cases``; works under xdist)."""
    total = 0
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get(
        "failed", []
    ):
        for name, value in getattr(report, "user_properties", []):
            if name == "fuzz_cases" and report.when == "call":
                total += int(value)
    if total:
        terminalreporter.write_line(f"fuzz: {total} CLI cases tried")
