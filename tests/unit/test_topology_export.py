"""Export writes a file that loads back into exactly the live state (round trip)."""

from __future__ import annotations

import re

from qctl.backends.capabilities.topology import (
    BindingSpec,
    ExchangeSpec,
    LiveQueue,
    LiveTopic,
    LiveTopology,
    PolicySpec,
    QueueSpec,
    TopicSpec,
)
from qctl.topology.export import ExportFilter, document, export_kafka, export_rabbit, to_yaml
from qctl.topology.loader import loads
from qctl.topology.planner import PlanOptions, plan_rabbit, plan_topics
from qctl.topology.validate import validate

DEFAULTS = {"retention.ms": "604800000", "cleanup.policy": "delete"}


def kafka_state() -> LiveTopology:
    live = LiveTopology("kafka", "")
    overrides = {
        "retention.ms": "3600000",
        "cleanup.policy": "compact,delete",
        "preallocate": "true",
    }
    live.topics["app.orders"] = LiveTopic(
        TopicSpec("app.orders", 6, 1, dict(overrides)), {**DEFAULTS, **overrides}, dict(DEFAULTS)
    )
    pinned = {"retention.ms": "604800000"}  # an override equal to the default
    live.topics["app.plain"] = LiveTopic(
        TopicSpec("app.plain", 1, 1, dict(pinned)), dict(DEFAULTS), dict(DEFAULTS)
    )
    live.topics["__consumer_offsets"] = LiveTopic(
        TopicSpec("__consumer_offsets", 50, 1), internal=True
    )
    live.topics["qctl.topology.owners"] = LiveTopic(TopicSpec("qctl.topology.owners", 1, 1))
    live.topics["other"] = LiveTopic(TopicSpec("other", 1, 1))
    return live


def rabbit_state() -> LiveTopology:
    live = LiveTopology("rabbitmq", "/")
    for ex in (
        ExchangeSpec("", "direct"),
        ExchangeSpec("amq.topic", "topic"),
        ExchangeSpec("app.events", "topic", arguments={"alternate-exchange": "app.ae"}),
        ExchangeSpec("app.ae", "fanout", durable=False, internal=True),
        ExchangeSpec("app.h", "headers", arguments={"x-custom": 1}),
        ExchangeSpec("app.$dollar${HOME}", "direct"),
    ):
        live.exchanges[ex.name] = ex
    for q in (
        QueueSpec(
            "app.work", "quorum", arguments={"x-delivery-limit": 5, "x-dead-letter-exchange": ""}
        ),
        QueueSpec("app.retry", arguments={"x-message-ttl": 5000, "x-unknown": "v"}),
        QueueSpec("app.log", "stream", arguments={"x-max-age": "7D"}),
        QueueSpec("app.tmp", durable=False, auto_delete=True),
        QueueSpec("amq.gen-xyz"),
    ):
        live.queues[q.name] = LiveQueue(q, messages=0)
    live.queues["app.excl"] = LiveQueue(QueueSpec("app.excl"), exclusive=True)
    live.bindings = [
        BindingSpec("", "app.work", "queue", "app.work"),
        BindingSpec("app.events", "app.work", "queue", "a"),
        BindingSpec("app.events", "app.work", "queue", "b"),
        BindingSpec("app.events", "app.h", "exchange", "#"),
        BindingSpec("app.h", "app.retry", "queue", "", {"x-match": "any", "k": "v"}),
        BindingSpec("amq.topic", "app.log", "queue", "audit.#"),
        BindingSpec("app.events", "app.excl", "queue", "x"),
        BindingSpec("app.events", "elsewhere", "queue", "x"),
    ]
    live.policies["app-limits"] = PolicySpec(
        "app-limits", "^app\\.", {"max-length": 10}, "queues", 2
    )
    return live


def test_round_trip_plans_zero_changes() -> None:
    kafka, rabbit = kafka_state(), rabbit_state()
    filt = ExportFilter(re.compile(r"^(app|amq\.topic)"), None)
    doc = document(export_kafka(kafka, filt), export_rabbit(rabbit, filt, None), owner="me")
    text = to_yaml(doc, header="exported")
    topo, issues = loads(text, "export.yaml", environ={})
    assert topo is not None
    issues += validate(topo)
    assert not [i for i in issues if i.severity == "error"], issues
    assert topo.kafka is not None and topo.rabbitmq is not None
    assert plan_topics(topo.kafka.topics, kafka) == []
    assert plan_rabbit(topo.rabbitmq, rabbit, PlanOptions()) == []
    assert topo.owner == "me"


def test_export_omits_defaults_and_internal_objects() -> None:
    filt = ExportFilter()
    topics = {t["name"]: t for t in export_kafka(kafka_state(), filt)["topics"]}
    assert set(topics) == {"app.orders", "app.plain", "other"}
    assert "configs" not in topics["app.plain"]  # its override equals the default
    assert topics["app.orders"]["configs"] == {
        "cleanup.policy": "compact,delete",
        "preallocate": True,
        "retention.ms": 3600000,
    }
    state = rabbit_state()
    state.queues["app.work.qctl-migrate"] = LiveQueue(QueueSpec("app.work.qctl-migrate"))
    rabbit = export_rabbit(state, filt, None)
    assert "" not in {e["name"] for e in rabbit["exchanges"]}
    assert "amq.topic" not in {e["name"] for e in rabbit["exchanges"]}
    queues = {q["name"]: q for q in rabbit["queues"]}
    assert set(queues) == {"app.work", "app.retry", "app.log", "app.tmp"}
    assert queues["app.retry"] == {
        "name": "app.retry",
        "message_ttl": 5000,
        "arguments": {"x-unknown": "v"},  # no friendly key: kept as a raw argument
    }
    assert queues["app.work"] == {
        "name": "app.work",
        "type": "quorum",
        "dead_letter_exchange": "",
        "delivery_limit": 5,
    }
    grouped = [b for b in rabbit["bindings"] if b.get("routing_keys")]
    assert grouped == [
        {"source": "app.events", "destination": "app.work", "routing_keys": ["a", "b"]}
    ]


def test_dollar_signs_survive_the_round_trip() -> None:
    rabbit = export_rabbit(rabbit_state(), ExportFilter(re.compile("dollar")), None)
    (exchange,) = rabbit["exchanges"]
    assert exchange["name"] == "app.$dollar$${HOME}"
    topo, _ = loads(to_yaml(document(None, rabbit)), "x.yaml", environ={"HOME": "/root"})
    assert topo is not None and topo.rabbitmq is not None
    assert topo.rabbitmq.exchanges[0].name == "app.$dollar${HOME}"


def test_a_config_this_qctl_cannot_declare_is_left_alone() -> None:
    """A newer broker's topic config is left out of the export, and the plan of that
    export does not reset it (a file could never keep it)."""
    live = LiveTopology("kafka", "")
    overrides = {"retention.ms": "3600000", "some.future.config": "on"}
    defaults = {**DEFAULTS, "some.future.config": "off"}
    live.topics["app.new"] = LiveTopic(
        TopicSpec("app.new", 1, 1, dict(overrides)), {**defaults, **overrides}, defaults
    )
    (topic,) = export_kafka(live, ExportFilter())["topics"]
    assert topic["configs"] == {"retention.ms": 3600000}
    topo, issues = loads(to_yaml(document({"topics": [topic]}, None)), "x.yaml", environ={})
    assert topo is not None and topo.kafka is not None and not issues
    assert plan_topics(topo.kafka.topics, live) == []
