"""Safety: unsupported changes apply nothing, prune deletes only what qctl owns."""

from __future__ import annotations

from pathlib import Path

import pika

from qctl.backends.base import BackendConfig
from qctl.backends.kafka import KafkaBackend
from qctl.backends.rabbitmq import RabbitMQBackend
from qctl.topology.applier import apply_plan
from qctl.topology.engine import Target, plan_file
from qctl.topology.loader import load
from qctl.topology.planner import PlanOptions
from tests.conftest import KAFKA_BOOTSTRAP, RABBITMQ_URL
from tests.integration.test_topology_support import (
    actions,
    apply,
    kafka_admin,
    mgmt,
    plan,
    prefix,
    qctl,
    rabbit_queue,
    topic_configs,
    write,
)
from tests.oracles import kafka_tool, rabbitmqctl

__all__ = ["prefix"]


def test_unsupported_changes_are_refused_and_nothing_is_applied(
    tmp_path: Path, prefix: str
) -> None:
    p = prefix
    base = f"""\
        owner: {p.rstrip("-")}
        kafka:
          topics:
            - {{name: {p}t, partitions: 3, configs: {{retention.ms: 3600000}}}}
        rabbitmq:
          exchanges:
            - {{name: {p}ex, type: topic}}
          queues:
            - {{name: {p}q, max_length: 100}}
        """
    path = write(tmp_path, base)
    code, _, stderr = apply(path)
    assert code == 0, stderr
    cases = {
        "partition decrease": ("partitions: 3", "partitions: 2", "partitions cannot decrease"),
        "replication factor": (
            "partitions: 3,",
            "partitions: 3, replication_factor: 2,",
            "needs a partition reassignment",
        ),
        "queue argument": ("max_length: 100", "max_length: 200", "cannot change in place"),
        "queue type": ("max_length: 100", "max_length: 100, type: quorum", "cannot change"),
        "exchange type": ("type: topic", "type: direct", "cannot change in place"),
    }
    for label, (old, new, message) in cases.items():
        # Each unsupported change comes with changes that *could* be applied: a config
        # update and a new queue. None of them may happen.
        text = base.replace(old, new).replace("retention.ms: 3600000", "retention.ms: 7200000")
        text = text.replace("  queues:\n", f"  queues:\n            - {{name: {p}new}}\n")
        changed = write(tmp_path, text, "changed.yaml")
        proc = qctl("topology", "apply", str(changed), "--yes")
        assert proc.returncode == 1, (label, proc.stdout, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("qctl: error: refusing to apply: "), last
        assert message in last and "nothing was changed" in last, (label, last)
    # Nothing was applied: Kafka's and RabbitMQ's own tools show the original state.
    assert topic_configs(f"{p}t")["retention.ms"] == ("3600000", True)
    described = kafka_tool(
        "topics", "--bootstrap-server", KAFKA_BOOTSTRAP, "--describe", "--topic", f"{p}t"
    )
    assert "PartitionCount: 3" in described and "ReplicationFactor: 1" in described
    queues = rabbitmqctl("list_queues", "name", "arguments", "--quiet", "--no-table-headers")
    mine = {line.split("\t")[0]: line for line in queues.splitlines() if line.startswith(p)}
    assert set(mine) == {f"{p}q"}
    assert "100" in mine[f"{p}q"] and "200" not in mine[f"{p}q"]
    with mgmt() as api:
        assert api.get(f"/exchanges/%2F/{p}ex").json()["type"] == "topic"


def test_dry_run_and_confirmation(tmp_path: Path, prefix: str) -> None:
    path = write(tmp_path, f"kafka:\n  topics:\n    - {{name: {prefix}t, partitions: 1}}\n")
    dry = qctl("topology", "apply", str(path), "--dry-run")
    assert dry.returncode == 0 and "+ create      topic" in dry.stdout
    asked = qctl("topology", "apply", str(path))  # stdin is not a terminal
    assert asked.returncode == 2 and "pass --yes" in asked.stderr
    assert ("create", "topic", f"{prefix}t") in actions(plan(path))  # still not created


def owned_file(tmp_path: Path, p: str, owner: str, *, topics: list[str], queues: list[str]) -> Path:
    lines = [f"owner: {owner}", "kafka:", "  topics:"]
    lines += [f"    - {{name: {p}{t}, partitions: 1}}" for t in topics] or ["    []"]
    lines += ["rabbitmq:", "  queues:"]
    lines += [f"    - {{name: {p}{q}}}" for q in queues] or ["    []"]
    return write(tmp_path, "\n".join(lines) + "\n", f"{owner}.yaml")


def test_prune_deletes_only_owned_objects(tmp_path: Path, prefix: str) -> None:
    p = prefix
    mine, theirs = p + "mine", p + "theirs"
    first = owned_file(tmp_path, p, mine, topics=["a", "b"], queues=["qa", "qb"])
    other = owned_file(tmp_path, p, theirs, topics=["c"], queues=["qc"])
    assert apply(first)[0] == 0 and apply(other)[0] == 0
    # Created by hand, owned by nobody.
    kafka_tool("topics", "--bootstrap-server", KAFKA_BOOTSTRAP, "--create", "--topic", f"{p}manual")
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as conn:
        conn.channel().queue_declare(f"{p}qmanual", durable=True)

    # The file drops b and qb: only those are pruned. A prefix that matches everything
    # of ours still leaves the other owner's objects and broker-internal objects alone.
    greedy = write(tmp_path, "owner: x\nprefixes: ['amq.', '__']\nkafka: {}\n", "greedy.yaml")
    assert qctl("topology", "validate", str(greedy)).returncode == 2
    smaller = owned_file(tmp_path, p, mine, topics=["a"], queues=["qa"])
    data = plan(smaller, "--prune")
    assert actions(data) == {("delete", "topic", f"{p}b"), ("delete", "queue", f"{p}qb")}
    with_prefix = write(
        tmp_path,
        smaller.read_text().replace("kafka:", f"prefixes: ['{p}']\nkafka:"),
        "prefixed.yaml",
    )
    data = plan(with_prefix, "--prune")
    deleted = {n for a, _, n in actions(data) if a == "delete"}
    assert deleted == {f"{p}b", f"{p}qb", f"{p}manual", f"{p}qmanual"}  # not c / qc

    # --max-deletes is a hard stop, before anything is deleted.
    proc = qctl("topology", "apply", str(with_prefix), "--prune", "--yes", "--max-deletes", "3")
    assert proc.returncode == 1 and "more than --max-deletes 3" in proc.stderr
    topics = set(kafka_admin().list_topics(timeout=30).topics)
    assert {f"{p}b", f"{p}manual"} <= topics

    # Non-empty queues and topics need --force-delete-nonempty.
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as conn:
        conn.channel().basic_publish("", f"{p}qb", b"keep me")
    proc = qctl("topology", "apply", str(smaller), "--prune", "--yes")
    assert proc.returncode == 1 and f"queue '{p}qb' holds 1 message" in proc.stderr
    assert rabbit_queue(f"{p}qb")["name"] == f"{p}qb"
    code, report, stderr = apply(smaller, "--prune", "--force-delete-nonempty")
    assert code == 0 and report["verified"], stderr
    topics = set(kafka_admin().list_topics(timeout=30).topics)
    assert f"{p}b" not in topics
    assert {f"{p}a", f"{p}c", f"{p}manual", "__consumer_offsets"} <= topics
    queues = rabbitmqctl("list_queues", "name", "--quiet", "--no-table-headers").split()
    assert f"{p}qb" not in queues
    assert {f"{p}qa", f"{p}qc", f"{p}qmanual"} <= set(queues)
    # Pruned objects left the ownership record: a second prune plans nothing.
    assert plan(smaller, "--prune")["changes"] == []


def test_nonempty_kafka_topic_needs_force(tmp_path: Path, prefix: str) -> None:
    first = owned_file(tmp_path, prefix, prefix + "k", topics=["full", "keep"], queues=[])
    assert apply(first)[0] == 0
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP})
    producer.produce(f"{prefix}full", b"data")
    assert producer.flush(30) == 0
    smaller = owned_file(tmp_path, prefix, prefix + "k", topics=["keep"], queues=[])
    data = plan(smaller, "--prune")
    (delete,) = data["changes"]
    assert (delete["name"], delete["messages"]) == (f"{prefix}full", 1)
    proc = qctl("topology", "apply", str(smaller), "--prune", "--yes")
    assert proc.returncode == 1 and "--force-delete-nonempty" in proc.stderr


def test_what_did_not_take_effect_is_reported(tmp_path: Path, prefix: str) -> None:
    """Verification re-reads the cluster: a change that silently did not happen fails."""
    p = prefix
    queues = "\n".join(f"    - {{name: {p}q{i}}}" for i in range(25))
    path = write(
        tmp_path,
        f"kafka:\n  topics:\n    - {{name: {p}t1, partitions: 1}}\n"
        f"    - {{name: {p}t2, partitions: 1}}\n"
        f"rabbitmq:\n  queues:\n{queues}\n",
    )
    topo = load(path)
    kafka = KafkaBackend.from_config(BackendConfig("t", {"bootstrap_servers": KAFKA_BOOTSTRAP}))
    rabbit = RabbitMQBackend.from_config(BackendConfig("t", {"url": RABBITMQ_URL}))
    try:
        targets = [
            Target("kafka", kafka, kafka.target()),
            Target("rabbitmq", rabbit, rabbit.target()),
        ]
        the_plan = plan_file(topo, targets, PlanOptions())
        # Between plan and apply, someone else creates two of the objects differently.
        # The bulk declaration (a definitions import) silently keeps the other queue.
        with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as conn:
            conn.channel().queue_declare(f"{p}q3", durable=True, arguments={"x-max-length": 1})
        kafka_tool(
            "topics",
            "--bootstrap-server",
            KAFKA_BOOTSTRAP,
            "--create",
            "--topic",
            f"{p}t2",
            "--partitions",
            "1",
        )
        report = apply_plan(topo, the_plan, targets, PlanOptions())
    finally:
        kafka.close()
        rabbit.close()
    failed = {r.change.name for r in report.failed}
    assert failed == {f"{p}t2"}  # TOPIC_ALREADY_EXISTS: reported, though t2 now matches
    assert not report.verified
    remaining = {(c.action, c.name) for c in report.remaining}
    assert remaining == {("unsupported", f"{p}q3")}  # seen only by re-reading the cluster


def test_partial_failure_is_exit_4(tmp_path: Path, prefix: str) -> None:
    path = write(
        tmp_path,
        f"""\
        rabbitmq:
          queues:
            - {{name: {prefix}ok}}
          policies:
            - name: {prefix}bad
              pattern: ^{prefix}ok$
              definition: {{qctl-test-not-a-policy-key: 1}}
        """,
    )
    proc = qctl("topology", "apply", str(path), "--yes")
    assert proc.returncode == 4, proc.stderr
    assert f"policy '{prefix}bad'" in proc.stderr
    assert "FAILED" in proc.stdout and "NOT verified" in proc.stdout
    assert rabbit_queue(f"{prefix}ok")["name"] == f"{prefix}ok"
