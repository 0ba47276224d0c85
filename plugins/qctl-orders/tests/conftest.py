"""Fixtures of the qctl-orders tests: an isolated qctl config and state per test, the
real brokers, and a namespaced copy of the example topology applied for the test.

The plugin is tested as a user runs it: through the installed ``qctl`` (a subprocess of
the same interpreter), so the entry point comes from the installed metadata.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from orders_helpers import EXAMPLE, KAFKA_BOOTSTRAP, Pipeline, qctl


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
def isolated_qctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own qctl config path and state directory."""
    monkeypatch.setenv("QCTL_CONFIG", str(tmp_path / "config" / "config.yaml"))
    monkeypatch.setenv("QCTL_STATE_DIR", str(tmp_path / "state"))
    for var in (
        "QCTL_CONTEXT",
        "QCTL_KAFKA_BOOTSTRAP",
        "QCTL_RABBITMQ_URL",
        "QCTL_RABBITMQ_MANAGEMENT_URL",
        "QCTL_TIMEOUT",
        "QCTL_ORDERS_NAMESPACE",
    ):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture(params=["kafka", "rabbitmq"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, skipped (or failed, in CI) when its broker is not running."""
    name: str = request.param
    if name == "kafka":
        host, port = KAFKA_BOOTSTRAP.rsplit(":", 1)
        _require("Kafka", host, int(port))
    else:
        _require("RabbitMQ", "127.0.0.1", 5672)
        _require("RabbitMQ management API", "127.0.0.1", 15672)
    return name


@pytest.fixture
def pipeline(backend: str, tmp_path: Path) -> Iterator[Pipeline]:
    """The example topology under a unique namespace, applied to one backend."""
    namespace = f"t{uuid.uuid4().hex[:8]}"
    topology = tmp_path / f"{namespace}.yaml"
    made = qctl("orders", "topology", str(EXAMPLE), "-n", namespace, "-f", str(topology))
    assert made.returncode == 0, made.stderr
    applied = qctl("topology", "apply", str(topology), "-b", backend, "--yes", "-o", "json")
    assert applied.returncode == 0, applied.stderr
    try:
        yield Pipeline(backend, namespace, topology)
    finally:
        qctl(
            "topology", "destroy", str(topology), "-b", backend, "--yes",
            "--force-delete-nonempty", "--max-deletes", "100",
        )  # fmt: skip
        if backend == "kafka":
            _delete_groups(namespace)


def _delete_groups(namespace: str) -> None:
    """The services' and qctl's DLQ groups of the namespace (topics are gone already)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    groups = [
        g.group_id
        for g in admin.list_consumer_groups(request_timeout=30).result().valid
        if g.group_id.startswith(f"{namespace}.") or g.group_id.startswith(f"qctl.dlq.{namespace}.")
    ]
    if groups:
        for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
            with contextlib.suppress(Exception):  # a group that is gone already
                future.result()
