"""Helpers shared by the topology integration tests (this module holds no tests).

Every test works on names under its own unique prefix and cleans up everything under
that prefix afterwards, including ownership records: tests run in parallel against one
shared broker, next to other tests' topics and queues.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from tests.cli.test_root import run_qctl
from tests.conftest import KAFKA_BOOTSTRAP, RABBITMQ_MANAGEMENT

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "order-pipeline.yaml"
AUTH = ("guest", "guest")


def mgmt() -> httpx.Client:
    return httpx.Client(base_url=RABBITMQ_MANAGEMENT + "/api", auth=AUTH, timeout=30)


def qctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_qctl(*args, env=env, timeout=180)


def write(tmp_path: Path, text: str, name: str = "topology.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def plan(path: Path, *args: str) -> dict[str, Any]:
    proc = qctl("topology", "plan", str(path), "-o", "json", *args)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def actions(data: dict[str, Any]) -> set[tuple[str, str, str]]:
    """{(action, kind, name)} of a plan (or of the plan inside an apply report)."""
    data = data.get("plan", data)
    return {(c["action"], c["kind"], c["name"]) for c in data["changes"]}


def apply(path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = qctl("topology", "apply", str(path), "-o", "json", "--yes", *args)
    data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, data, proc.stderr


def prefixed_example(prefix: str) -> dict[str, Any]:
    """The order pipeline with every name (and reference) under ``prefix``."""
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["owner"] = prefix.rstrip("-.")

    def ren(name: str) -> str:
        return name if name == "" or name.startswith("amq.") else prefix + name

    for topic in doc["kafka"]["topics"]:
        topic["name"] = ren(topic["name"])
    rabbit = doc["rabbitmq"]
    for exchange in rabbit["exchanges"]:
        exchange["name"] = ren(exchange["name"])
    for queue in rabbit["queues"]:
        queue["name"] = ren(queue["name"])
        if "dead_letter_exchange" in queue:
            if queue["dead_letter_exchange"] == "":
                queue["dead_letter_routing_key"] = ren(queue["dead_letter_routing_key"])
            else:
                queue["dead_letter_exchange"] = ren(queue["dead_letter_exchange"])
    for binding in rabbit["bindings"]:
        binding["source"] = ren(binding["source"])
        binding["destination"] = ren(binding["destination"])
    for policy in rabbit["policies"]:
        policy["name"] = ren(policy["name"])
        policy["pattern"] = "^" + re.escape(prefix) + policy["pattern"].lstrip("^")
    for env in doc.get("environments", {}).values():
        for topic in env.get("kafka", {}).get("topics", []):
            topic["name"] = ren(topic["name"])
    return doc


def rabbit_queue(name: str) -> dict[str, Any]:
    with mgmt() as api:
        response = api.get(f"/queues/%2F/{quote(name, safe='')}")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


def kafka_admin() -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})


def topic_configs(name: str) -> dict[str, tuple[str, bool]]:
    """{config: (value, set on the topic)} as Kafka reports it."""
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    admin = kafka_admin()  # keep a reference: the futures die with the client
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name)])
    (future,) = futures.values()
    entries = future.result(timeout=30)
    return {
        k: (e.value, e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
        for k, e in entries.items()
    }


def cleanup_prefix(prefix: str) -> None:
    """Delete every topic, exchange, queue, policy and owner record under ``prefix``."""
    admin = kafka_admin()
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # already gone
                future.result(timeout=60)
    with mgmt() as api:
        for kind in ("queues", "exchanges", "policies"):
            for item in api.get(f"/{kind}/%2F").json():
                if item["name"].startswith(prefix):
                    api.delete(f"/{kind}/%2F/{quote(item['name'], safe='')}")
        for item in api.get("/global-parameters").json():
            if (
                item["name"].startswith("qctl.topology.owner:")
                and prefix.rstrip("-.") in item["name"]
            ):
                api.delete(f"/global-parameters/{quote(item['name'], safe='')}")
    owner = prefix.rstrip("-.")
    from qctl.backends.base import BackendConfig
    from qctl.backends.capabilities.topology import OwnerRecord
    from qctl.backends.kafka import KafkaBackend

    backend = KafkaBackend.from_config(
        BackendConfig("test", {"bootstrap_servers": KAFKA_BOOTSTRAP}, timeout=20)
    )
    try:
        for record in backend.topology_owner_records(None):
            if record.owner.startswith(owner):
                backend.topology_write_owner_record(OwnerRecord(record.owner), delete=True)
    finally:
        backend.close()


@pytest.fixture
def prefix(unique: str, kafka: str, rabbitmq: str) -> Iterator[str]:
    """A unique name prefix; everything under it is removed after the test."""
    name = unique + "-"
    yield name
    cleanup_prefix(name)
