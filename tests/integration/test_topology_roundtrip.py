"""The order pipeline on the real brokers: apply, plan, export, re-apply, destroy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from qctl.backends.base import BackendConfig
from qctl.backends.kafka import KafkaBackend
from qctl.backends.rabbitmq import RabbitMQBackend
from qctl.topology.ownership import declared_dlqs
from tests.conftest import KAFKA_BOOTSTRAP, RABBITMQ_URL
from tests.integration.test_topology_support import (
    actions,
    apply,
    mgmt,
    plan,
    prefix,
    prefixed_example,
    qctl,
)
from tests.oracles import kafka_tool, rabbitmqctl

__all__ = ["prefix"]


def describe_topics(prefix: str) -> dict[str, tuple[int, dict[str, str]]]:
    """{topic: (partitions, configs)} from Kafka's own kafka-topics --describe."""
    text = kafka_tool(
        "topics",
        "--bootstrap-server",
        KAFKA_BOOTSTRAP,
        "--describe",
        "--if-exists",
        "--topic",
        prefix.replace(".", "\\.") + ".*",
    )
    topics = {}
    for line in text.splitlines():
        match = re.match(r"^Topic: (\S+)\s.*PartitionCount: (\d+).*Configs: ?(.*)$", line)
        if match:
            configs = dict(kv.split("=", 1) for kv in match.group(3).split(",") if "=" in kv)
            topics[match.group(1)] = (int(match.group(2)), configs)
    return topics


def test_example_round_trip(tmp_path: Path, prefix: str) -> None:
    owner = prefix.rstrip("-")
    example = tmp_path / "pipeline.yaml"
    example.write_text(yaml.safe_dump(prefixed_example(prefix), sort_keys=False))

    code, report, stderr = apply(example)
    assert code == 0, stderr
    assert report["verified"] and report["applied"]
    assert all(r["ok"] for r in report["results"])
    assert len(report["results"]) == 9 + 6 + 12 + 16 + 1

    # The brokers' own tools agree with what the file declares.
    described = describe_topics(prefix)
    assert described[f"{prefix}orders"][0] == 6
    assert described[f"{prefix}order-state"][1]["cleanup.policy"] == "compact"
    assert described[f"{prefix}orders.dlq"][1]["retention.ms"] == "1209600000"
    queues = rabbitmqctl("list_queues", "name", "type", "--quiet", "--no-table-headers")
    types = dict(line.split("\t") for line in queues.splitlines() if line.startswith(prefix))
    assert types[f"{prefix}payment.work"] == "quorum"
    assert types[f"{prefix}audit.log"] == "stream"
    assert types[f"{prefix}inventory.work"] == "classic"
    with mgmt() as api:
        bindings = api.get("/bindings/%2F").json()
    assert {
        "source": f"{prefix}orders.events",
        "destination": f"{prefix}notifications",
        "destination_type": "exchange",
        "routing_key": "#",
    }.items() <= next(b for b in bindings if b["destination"] == f"{prefix}notifications").items()

    # Applying the same file again changes nothing.
    again = qctl("topology", "plan", str(example), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout
    code, report, _ = apply(example)
    assert code == 0 and report["results"] == [] and not report["applied"]

    # Export, then plan the export: zero changes.
    exported = tmp_path / "export.yaml"
    proc = qctl(
        "topology",
        "export",
        "--include",
        f"^{re.escape(prefix)}",
        "--owner",
        owner,
        "-f",
        str(exported),
    )
    assert proc.returncode == 0, proc.stderr
    text = exported.read_text()
    assert "order-state" in text and "qctl.topology.owners" not in text
    assert "amq." not in text and "__consumer_offsets" not in text
    assert plan(exported)["changes"] == []
    assert qctl("topology", "plan", str(exported), "--detailed-exitcode").returncode == 0
    code, report, stderr = apply(exported)
    assert code == 0 and report["results"] == [], stderr

    # The DLQs declared with `dlq:` are recorded on the cluster for the DLQ tooling.
    kafka = KafkaBackend.from_config(BackendConfig("t", {"bootstrap_servers": KAFKA_BOOTSTRAP}))
    try:
        dlqs = {d.name: d.source for d in declared_dlqs(kafka) if d.owner == owner}
    finally:
        kafka.close()
    assert dlqs == {
        f"{prefix}orders.dlq": f"{prefix}orders",
        f"{prefix}payments.dlq": f"{prefix}payments",
        f"{prefix}inventory.dlq": f"{prefix}inventory",
    }

    # destroy: everything the file declares, and the ownership records, are gone.
    refused = qctl("topology", "destroy", str(example), "--yes")
    assert refused.returncode == 1 and "more than --max-deletes 10" in refused.stderr
    assert plan(example)["changes"] == []  # nothing was deleted
    proc = qctl("topology", "destroy", str(example), "--yes", "--max-deletes", "100", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verified"]
    assert describe_topics(prefix) == {}
    with mgmt() as api:
        assert not [q for q in api.get("/queues/%2F").json() if q["name"].startswith(prefix)]
        assert not [e for e in api.get("/exchanges/%2F").json() if e["name"].startswith(prefix)]
        params = [p["name"] for p in api.get("/global-parameters").json()]
        assert not [p for p in params if p.endswith(":" + owner)]
    rabbit = RabbitMQBackend.from_config(BackendConfig("t", {"url": RABBITMQ_URL}))
    try:
        assert not [r for r in rabbit.topology_owner_records(None) if r.owner == owner]
    finally:
        rabbit.close()
    assert {a for a, _, _ in actions(plan(example))} == {"create"}


def test_dev_environment_overlay_applies_fewer_partitions(tmp_path: Path, prefix: str) -> None:
    doc = prefixed_example(prefix)
    doc.pop("rabbitmq")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, _, stderr = apply(path, "--env", "dev", "-b", "kafka")
    assert code == 0, stderr
    assert describe_topics(prefix)[f"{prefix}orders"][0] == 1
    # The base file now wants 6 partitions: an in-place increase.
    assert (("update", "topic", f"{prefix}orders")) in actions(plan(path))
