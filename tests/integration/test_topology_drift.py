"""Drift: every kind of out-of-band change is seen by plan, and defaults are not drift."""

from __future__ import annotations

import json
from pathlib import Path

import pika

from tests.conftest import KAFKA_BOOTSTRAP, RABBITMQ_URL
from tests.integration.test_topology_support import (
    actions,
    apply,
    mgmt,
    plan,
    prefix,
    qctl,
    topic_configs,
    write,
)
from tests.oracles import kafka_tool, rabbitmqctl

__all__ = ["prefix"]


def kafka_file(tmp_path: Path, p: str) -> Path:
    return write(
        tmp_path,
        f"""\
        owner: {p.rstrip("-")}
        kafka:
          topics:
            - name: {p}a
              partitions: 2
              configs: {{retention.ms: 3600000}}
            - name: {p}b
              partitions: 1
        """,
    )


def test_kafka_drift(tmp_path: Path, prefix: str) -> None:
    path = kafka_file(tmp_path, prefix)
    code, _, stderr = apply(path)
    assert code == 0, stderr
    a, b = f"{prefix}a", f"{prefix}b"
    # Out of band, with Kafka's own tools: more partitions, a changed and an added config.
    kafka_tool(
        "topics",
        "--bootstrap-server",
        KAFKA_BOOTSTRAP,
        "--alter",
        "--topic",
        b,
        "--partitions",
        "3",
    )
    kafka_tool(
        "configs",
        "--bootstrap-server",
        KAFKA_BOOTSTRAP,
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        a,
        "--add-config",
        "retention.ms=60000,segment.bytes=10485760",
    )
    data = plan(path)
    changes = {c["name"]: c for c in data["changes"]}
    assert changes[a]["action"] == "update"
    fields = {f["field"]: f for f in changes[a]["fields"]}
    assert (fields["config:retention.ms"]["live"], fields["config:retention.ms"]["desired"]) == (
        "60000",
        "3600000",
    )
    assert fields["config:segment.bytes"]["unset"]
    assert fields["config:segment.bytes"]["desired"] == "1073741824"  # the broker default
    assert changes[b]["action"] == "unsupported"
    assert "cannot decrease" in changes[b]["reason"]
    assert qctl("topology", "plan", str(path), "--detailed-exitcode").returncode == 5

    # A deleted topic is planned as a create.
    kafka_tool("topics", "--bootstrap-server", KAFKA_BOOTSTRAP, "--delete", "--topic", b)
    path.write_text(path.read_text().replace("partitions: 1", "partitions: 3"))
    assert ("create", "topic", b) in actions(plan(path))
    code, report, stderr = apply(path)
    assert code == 0 and report["verified"], stderr
    assert topic_configs(a)["retention.ms"] == ("3600000", True)
    assert not topic_configs(a)["segment.bytes"][1]  # back to the broker default
    assert plan(path)["changes"] == []


def test_default_aware_diff(tmp_path: Path, prefix: str) -> None:
    """Broker defaults (also dynamic cluster-level ones) are never reported as drift."""
    plain, pinned = f"{prefix}plain", f"{prefix}pinned"
    kafka_tool(
        "topics",
        "--bootstrap-server",
        KAFKA_BOOTSTRAP,
        "--create",
        "--topic",
        plain,
        "--partitions",
        "2",
    )
    kafka_tool(
        "topics",
        "--bootstrap-server",
        KAFKA_BOOTSTRAP,
        "--create",
        "--topic",
        pinned,
        "--partitions",
        "1",
        "--config",
        "retention.ms=604800000",  # equal to the default
    )
    configs = topic_configs(plain)
    path = write(
        tmp_path,
        f"""\
        kafka:
          topics:
            - name: {plain}
              partitions: 2
              configs:                       # spelled out, all equal to the defaults
                retention.ms: 604800000
                cleanup.policy: delete
                min.insync.replicas: {configs["min.insync.replicas"][0]}
            - name: {pinned}
              partitions: 1
        """,
    )
    data = plan(path)
    assert data["changes"] == [], json.dumps(data["changes"], indent=1)
    # The export omits them too, and its plan is empty.
    proc = qctl("topology", "export", "-b", "kafka", "--include", f"^{prefix}")
    assert proc.returncode == 0, proc.stderr
    assert "configs" not in proc.stdout
    exported = write(tmp_path, proc.stdout, "export.yaml")
    assert plan(exported)["changes"] == []


def rabbit_file(tmp_path: Path, p: str, extra: str = "") -> Path:
    return write(
        tmp_path,
        f"""\
        owner: {p.rstrip("-")}
        rabbitmq:
          exchanges:
            - {{name: {p}events, type: topic}}
            - {{name: {p}side, type: fanout}}
          queues:
            - name: {p}work
              message_ttl: 60000
            - {{name: {p}gone}}
          bindings:
            - {{source: {p}events, destination: {p}work, routing_key: order.*}}
          policies:
            - name: {p}limits
              pattern: ^{p}work$
              apply_to: queues
              definition: {{max-length: 1000}}
            - name: {p}ttl
              pattern: ^{p}gone$
              definition: {{message-ttl: 5000}}
        {extra}""",
    )


def test_rabbitmq_drift(tmp_path: Path, prefix: str) -> None:
    p = prefix
    path = rabbit_file(tmp_path, p)
    code, _, stderr = apply(path)
    assert code == 0, stderr
    # Out of band: a policy edited and one cleared, an exchange and a queue deleted, a
    # queue and an exchange redeclared with other arguments / type (which drops the
    # declared binding), another binding added.
    rabbitmqctl(
        "set_policy", f"{p}limits", f"^{p}work$", '{"max-length": 5}', "--apply-to", "queues"
    )
    rabbitmqctl("clear_policy", f"{p}ttl")
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as conn:
        ch = conn.channel()
        ch.queue_delete(f"{p}gone")
        ch.queue_delete(f"{p}work")  # its binding goes with it
        ch.queue_declare(f"{p}work", durable=True, arguments={"x-message-ttl": 1000})
        ch.exchange_delete(f"{p}events")
        ch.exchange_declare(f"{p}events", "direct", durable=True)
        ch.queue_bind(f"{p}work", f"{p}events", "audit.#")
        ch.exchange_delete(f"{p}side")
    data = plan(path)
    got = {(c["action"], c["kind"], c["name"]) for c in data["changes"]}
    assert got == {
        ("update", "policy", f"{p}limits"),
        ("create", "policy", f"{p}ttl"),
        ("create", "exchange", f"{p}side"),
        ("create", "binding", f"{p}events -> queue:{p}work [order.*]"),
        ("create", "queue", f"{p}gone"),
        ("unsupported", "queue", f"{p}work"),
        ("unsupported", "exchange", f"{p}events"),
    }
    work = next(c for c in data["changes"] if c["name"] == f"{p}work")
    assert work["fields"][0]["note"] == "a policy can set message-ttl"
    assert "policy" in work["hint"]
    # The extra binding is drift too, but only --prune deletes it.
    pruned = plan(path, "--prune")
    assert ("delete", "binding", f"{p}events -> queue:{p}work [audit.#]") in actions(pruned)

    code, report, stderr = apply(path, "--allow-recreate", "--prune")
    assert code == 0, stderr
    assert report["verified"]
    assert plan(path, "--prune")["changes"] == []
    with mgmt() as api:
        policy = api.get(f"/policies/%2F/{p}limits").json()
        assert policy["definition"] == {"max-length": 1000}
        queue = api.get(f"/queues/%2F/{p}work").json()
        assert queue["arguments"]["x-message-ttl"] == 60000
        exchange = api.get(f"/exchanges/%2F/{p}events").json()
        assert exchange["type"] == "topic"


def test_rabbitmq_reads_only_the_bindings_it_was_asked_for(prefix: str) -> None:
    """A plan without --prune reads bindings per source exchange: exactly theirs, all of
    theirs (exchange and queue destinations), and nothing for an exchange not there yet."""
    from qctl.backends.base import BackendConfig
    from qctl.backends.capabilities.topology import TopologyQuery
    from qctl.backends.rabbitmq import RabbitMQBackend

    p = prefix
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as conn:
        ch = conn.channel()
        for exchange in ("events", "other", "sink"):
            ch.exchange_declare(f"{p}{exchange}", "topic", durable=True)
        ch.queue_declare(f"{p}work", durable=True)
        ch.queue_bind(f"{p}work", f"{p}events", "order.*")
        ch.queue_bind(f"{p}work", f"{p}other", "audit.#")
        ch.exchange_bind(f"{p}sink", f"{p}events", "#")

    rabbit = RabbitMQBackend.from_config(BackendConfig("t", {"url": RABBITMQ_URL}))
    try:

        def keys(sources: frozenset[str] | None) -> set[tuple[str, str, str, str]]:
            query = TopologyQuery(names=frozenset({f"{p}work"}), binding_sources=sources)
            live = rabbit.topology_describe(query)
            assert f"{p}work" in live.queues
            return {
                (b.source, b.destination_type, b.destination, b.routing_key)
                for b in live.bindings
                if b.source.startswith(p)
            }

        narrow = keys(frozenset({f"{p}events", f"{p}not-yet"}))
        everything = keys(None)
    finally:
        rabbit.close()
    assert narrow == {
        (f"{p}events", "queue", f"{p}work", "order.*"),
        (f"{p}events", "exchange", f"{p}sink", "#"),
    }
    assert everything == narrow | {(f"{p}other", "queue", f"{p}work", "audit.#")}
