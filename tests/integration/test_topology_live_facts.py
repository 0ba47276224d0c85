"""Whatever the live brokers accept, an export of it plans back to nothing.

The brokers accept settings that qctl's checks doubt (a min.insync.replicas above the
replication factor, an empty cleanup.policy, a dead-letter exchange that does not exist,
an argument RabbitMQ ignores, a policy pattern only PCRE understands). Such a fact about
the live cluster is a warning with its reason, never a reason to refuse planning it. What
the brokers refuse stays an error (exit 2), and the brokers' own answers are the oracle
for which is which.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import KAFKA_BOOTSTRAP
from tests.integration.test_topology_support import (
    apply,
    kafka_admin,
    mgmt,
    prefix,
    qctl,
    write,
)

__all__ = ["prefix"]

#: Topic suffix -> configs Kafka accepts although they look wrong (all with RF 1).
ODD_TOPICS: dict[str, dict[str, str]] = {
    "isr-above-rf": {"min.insync.replicas": "2"},
    "keep-everything": {"cleanup.policy": ""},
    "compact-at-once": {
        "cleanup.policy": "compact,compact",
        "min.cleanable.dirty.ratio": "0",
        "delete.retention.ms": "0",
        "min.compaction.lag.ms": "0",
    },
    "local-over-total": {
        "cleanup.policy": "delete, compact",
        "local.retention.ms": "1000",
        "retention.ms": "500",
        "max.message.bytes": "0",
    },
}


def create_odd_topics(p: str) -> None:
    from confluent_kafka.admin import NewTopic

    admin = kafka_admin()
    futures = admin.create_topics(
        [NewTopic(p + name, 1, 1, config=configs) for name, configs in ODD_TOPICS.items()],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result(timeout=60)  # Kafka accepts every one of them


def put(path: str, body: dict[str, Any]) -> None:
    with mgmt() as api:
        response = api.put(path, json=body)
    assert response.status_code in (201, 204), f"{path}: {response.text}"


def odd_rabbit_objects(p: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Name -> (management API path, body) of objects RabbitMQ accepts as they are."""
    nowhere = p + "no-such-exchange"

    def queue(name: str, qtype: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
        body = {"durable": True, "arguments": {"x-queue-type": qtype, **arguments}}
        return f"/queues/%2F/{quote(p + name, safe='')}", body

    return {
        "prio-zero": queue("prio-zero", "classic", **{"x-max-priority": 0}),
        "typo": queue("typo", "classic", **{"x-max-lenght": 5}),
        "timeout-zero": queue("timeout-zero", "classic", **{"x-consumer-timeout": 0}),
        "stream-timeout": queue("stream-timeout", "stream", **{"x-consumer-timeout": 60000}),
        "stream-no-segments": queue(
            "stream-no-segments", "stream", **{"x-stream-max-segment-size-bytes": 0}
        ),
        "quorum-dlx-overflow": queue(
            "quorum-dlx-overflow", "quorum", **{"x-overflow": "reject-publish-dlx"}
        ),
        "dead-end": queue("dead-end", "classic", **{"x-dead-letter-exchange": nowhere}),
        # Not odd at all, but once taken for a misspelt x-queue-leader-locator.
        "master-locator": queue(
            "master-locator", "classic", **{"x-queue-master-locator": "min-masters"}
        ),
        "ae-nowhere": (
            f"/exchanges/%2F/{quote(p + 'ae-nowhere', safe='')}",
            {"type": "direct", "durable": True, "arguments": {"alternate-exchange": nowhere}},
        ),
        "direct": (
            f"/exchanges/%2F/{quote(p + 'direct', safe='')}",
            {"type": "direct", "durable": True},
        ),
        "pcre": (
            f"/policies/%2F/{quote(p + 'pcre', safe='')}",
            {
                "pattern": "^" + re.escape(p) + r"odd\.\p{Ll}+$",
                "definition": {"dead-letter-exchange": nowhere},
                "priority": -1,
                "apply-to": "queues",
            },
        ),
    }


def create_odd_rabbit(p: str) -> None:
    for path, body in odd_rabbit_objects(p).values():
        put(path, body)
    # x-match means something only to a headers exchange; a direct exchange keeps it.
    with mgmt() as api:
        response = api.post(
            f"/bindings/%2F/e/{quote(p + 'direct', safe='')}/q/{quote(p + 'typo', safe='')}",
            json={"routing_key": "k", "arguments": {"x-match": "sometimes"}},
        )
    assert response.status_code == 201, response.text


def test_export_of_odd_but_accepted_objects_plans_no_changes(tmp_path: Path, prefix: str) -> None:
    from confluent_kafka import Producer

    create_odd_topics(prefix)
    create_odd_rabbit(prefix)

    # Kafka acknowledges acks=all writes to a topic whose min.insync.replicas exceeds
    # its replication factor: the broker caps the minimum at the replica count.
    producer = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "acks": "all"})
    delivered: list[Any] = []
    producer.produce(
        prefix + "isr-above-rf", b"v", on_delivery=lambda err, msg: delivered.append(err)
    )
    producer.flush(30)
    assert delivered == [None]

    exported = tmp_path / "live.yaml"
    proc = qctl("topology", "export", "--include", f"^{re.escape(prefix)}", "-f", str(exported))
    assert proc.returncode == 0, proc.stderr
    text = exported.read_text()
    for name in [*ODD_TOPICS, *odd_rabbit_objects(prefix)]:
        assert prefix + name in text, name
    assert "x-match: sometimes" in text

    proc = qctl("topology", "plan", str(exported), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["changes"] == []
    warnings = [line for line in proc.stderr.splitlines() if ": warning: " in line]
    expected = {
        "isr-above-rf": "min.insync.replicas=2 exceeds replication_factor=1",
        "keep-everything": "empty cleanup.policy",
        "prio-zero": "max_priority",
        "typo": "'x-max-lenght'",
        "timeout-zero": "consumer_timeout",
        "stream-timeout": "streams",
        "stream-no-segments": "stream_max_segment_size_bytes",
        "quorum-dlx-overflow": "reject-publish-dlx",
        "dead-end": "no-such-exchange",
        "ae-nowhere": "no-such-exchange",
        "direct": "x-match",
        "pcre": "PCRE",
    }
    for name, words in expected.items():
        assert any(prefix + name in w and words in w for w in warnings), (name, warnings)
    assert not [w for w in warnings if prefix + "master-locator" in w]
    assert ": error: " not in proc.stderr

    proc = qctl("topology", "plan", str(exported), "--detailed-exitcode")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No changes." in proc.stdout
    assert qctl("topology", "validate", str(exported)).returncode == 0
    code, report, stderr = apply(exported)
    assert code == 0 and report["results"] == [] and not report["applied"], stderr


#: File text (names under the test's prefix ``P``) -> the error qctl gives, and the
#: management API request with which RabbitMQ refuses the same thing.
REFUSED_BY_RABBITMQ: list[tuple[str, str, str, str, dict[str, Any]]] = [
    (
        "rabbitmq:\n  queues:\n    - {name: Pq, type: quorum, max_priority: 5}\n",
        "not supported by quorum queues",
        "PUT",
        "/queues/%2F/Pq",
        {"durable": True, "arguments": {"x-queue-type": "quorum", "x-max-priority": 5}},
    ),
    (
        "rabbitmq:\n  queues:\n    - {name: Pq, delivery_limit: 5}\n",
        "not supported by classic queues",
        "PUT",
        "/queues/%2F/Pq",
        {"durable": True, "arguments": {"x-queue-type": "classic", "x-delivery-limit": 5}},
    ),
    (
        "rabbitmq:\n  queues:\n    - {name: Pq, type: quorum, durable: false}\n",
        "quorum queues are always durable",
        "PUT",
        "/queues/%2F/Pq",
        {"durable": False, "arguments": {"x-queue-type": "quorum"}},
    ),
    (
        "rabbitmq:\n  queues:\n    - {name: Pq, expires: 0}\n",
        "must be at least 1",
        "PUT",
        "/queues/%2F/Pq",
        {"durable": True, "arguments": {"x-expires": 0}},
    ),
    (
        "rabbitmq:\n  queues:\n    - {name: Pq, dead_letter_routing_key: k}\n",
        "needs a dead_letter_exchange",
        "PUT",
        "/queues/%2F/Pq",
        {"durable": True, "arguments": {"x-dead-letter-routing-key": "k"}},
    ),
    (
        "rabbitmq:\n  policies:\n    - {name: Pp, pattern: '^P(', definition: {max-length: 1}}\n",
        "invalid pattern",
        "PUT",
        "/policies/%2F/Pp",
        {"pattern": "^P(", "definition": {"max-length": 1}},
    ),
    (
        "rabbitmq:\n  policies:\n    - {name: Pp, pattern: '^P$', definition: {max-lenght: 1}}\n",
        "did you mean 'max-length'",
        "PUT",
        "/policies/%2F/Pp",
        {"pattern": "^P$", "definition": {"max-lenght": 1}},
    ),
    (
        "rabbitmq:\n  exchanges:\n    - {name: Ph, type: headers}\n  queues:\n    - {name: Pq}\n"
        "  bindings:\n    - {source: Ph, destination: Pq, arguments: {x-match: sometimes}}\n",
        "x-match must be all or any",
        "POST",
        "/bindings/%2F/e/Ph/q/Pq",
        {"arguments": {"x-match": "sometimes"}},
    ),
]


@pytest.mark.parametrize(
    ("text", "error", "method", "path", "body"),
    REFUSED_BY_RABBITMQ,
    ids=[case[1] for case in REFUSED_BY_RABBITMQ],
)
def test_what_rabbitmq_refuses_stays_an_error(
    tmp_path: Path,
    prefix: str,
    text: str,
    error: str,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    p = prefix
    file = write(tmp_path, text.replace("P", p))
    proc = qctl("topology", "plan", str(file))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert error in proc.stderr, proc.stderr
    # The oracle: RabbitMQ refuses the same declaration.
    with mgmt() as api:
        if "/bindings/" in path:
            put(f"/exchanges/%2F/{p}h", {"type": "headers", "durable": True})
            put(f"/queues/%2F/{p}q", {"durable": True})
        body = json.loads(json.dumps(body).replace("^P", "^" + p))
        response = api.request(method, path.replace("/P", "/" + p), json=body)
    assert response.status_code == 400, response.text


def test_what_kafka_refuses_stays_an_error(tmp_path: Path, prefix: str) -> None:
    from confluent_kafka.admin import NewTopic

    name = prefix + "purge"
    file = write(
        tmp_path, f"kafka:\n  topics:\n    - {{name: {name}, configs: {{cleanup.policy: purge}}}}\n"
    )
    proc = qctl("topology", "plan", str(file))
    assert proc.returncode == 2 and "must be delete, compact" in proc.stderr, proc.stderr
    admin = kafka_admin()  # keep a reference: the futures die with the client
    (future,) = admin.create_topics(
        [NewTopic(name, 1, 1, config={"cleanup.policy": "purge"})]
    ).values()
    with pytest.raises(Exception, match="INVALID_CONFIG"):
        future.result(timeout=60)
