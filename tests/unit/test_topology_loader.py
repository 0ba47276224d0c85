"""The topology file loader: strict schema, positions, hints, ${VAR}, overlays."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from qctl.topology.loader import load, loads
from qctl.topology.model import TopologyFileError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "order-pipeline.yaml"


def issues_of(
    text: str, severity: str, env: str | None = None, environ: dict[str, str] | None = None
) -> list[str]:
    from qctl.topology.validate import validate

    topo, issues = loads(textwrap.dedent(text), "t.yaml", env=env, environ=environ or {})
    if topo is not None:
        issues += validate(topo)
    return [str(i) for i in issues if i.severity == severity]


def errors_of(
    text: str, env: str | None = None, environ: dict[str, str] | None = None
) -> list[str]:
    return issues_of(text, "error", env, environ)


def test_the_example_file_is_valid_in_every_environment() -> None:
    for env in (None, "dev", "prod"):
        topo = load(EXAMPLE, env=env)
        assert topo.owner == "order-pipeline"
        assert topo.kafka is not None and topo.rabbitmq is not None
    base = load(EXAMPLE)
    assert base.kafka is not None and base.rabbitmq is not None
    names = {t.name for t in base.kafka.topics}
    assert {"orders", "payments", "inventory", "notifications", "order-state"} <= names
    assert base.kafka.dlqs == {
        "orders.dlq": "orders",
        "payments.dlq": "payments",
        "inventory.dlq": "inventory",
    }
    state = next(t for t in base.kafka.topics if t.name == "order-state")
    assert state.configs["cleanup.policy"] == "compact"
    types = {e.type for e in base.rabbitmq.exchanges}
    assert types == {"direct", "topic", "fanout", "headers"}
    queues = {q.name: q for q in base.rabbitmq.queues}
    assert queues["payment.work"].type == "quorum"
    assert queues["payment.work"].arguments["x-delivery-limit"] == 5
    assert queues["audit.log"].type == "stream"
    assert queues["payment.retry"].arguments["x-dead-letter-routing-key"] == "payment.work"
    assert any(b.destination_type == "exchange" for b in base.rabbitmq.bindings)
    assert any(b.arguments.get("x-match") for b in base.rabbitmq.bindings)
    assert base.rabbitmq.policies


def test_environment_overlays_merge_by_name() -> None:
    dev = load(EXAMPLE, env="dev")
    prod = load(EXAMPLE, env="prod")
    assert dev.kafka is not None and prod.kafka is not None
    dev_topics = {t.name: t for t in dev.kafka.topics}
    prod_topics = {t.name: t for t in prod.kafka.topics}
    assert dev_topics["orders"].partitions == 1
    assert dev_topics["orders"].configs["retention.ms"] == "604800000"  # kept from the base
    assert prod_topics["orders"].partitions == 12
    assert prod_topics["payments"].replication_factor == 3  # from kafka.defaults
    assert prod_topics["payments"].configs["min.insync.replicas"] == "2"
    assert prod_topics["orders.dlq"].replication_factor == 3


def test_unknown_keys_have_position_and_did_you_mean() -> None:
    errors = errors_of(
        """\
        kafka:
          topics:
            - name: orders
              partitons: 3
        """
    )
    assert errors == [
        "t.yaml:4:7: error: unknown key 'partitons' in topic 'orders' (did you mean 'partitions'?)"
    ]


def test_unknown_top_level_key_lists_allowed_keys_when_nothing_is_close() -> None:
    errors = errors_of("zebra: 1\n")
    assert len(errors) == 1
    assert errors[0].startswith("t.yaml:1:1: error: unknown key 'zebra' in the file (allowed: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kafka:\n  topics:\n    - name: a\n      partitions: '3'\n", "t.yaml:4:19"),
        ("kafka:\n  topics:\n    - name: a\n      partitions: 0\n", "at least 1"),
        ("kafka:\n  topics:\n    - name: 7\n", "must be a string (quote it)"),
        ("kafka:\n  topics: {name: a}\n", "'kafka.topics' must be a list, not a mapping"),
        ("kafka:\n  topics:\n    - name: a\n      configs: {retention.ms: soon}\n", "integer"),
        ("kafka:\n  topics:\n    - name: a\n      configs: {retention.msec: 1}\n", "retention.ms"),
        (
            "kafka:\n  topics:\n    - name: a\n      configs: {preallocate: maybe}\n",
            "true or false",
        ),
        (
            "kafka:\n  topics:\n    - name: a\n      configs: {compression.type: zip}\n",
            "did you mean 'gzip'",
        ),
        ("kafka:\n  topics:\n    - name: a\n      dlq: sometimes\n", "must be a mapping"),
        ("rabbitmq:\n  exchanges:\n    - {name: e}\n", "has no 'type'"),
        ("rabbitmq:\n  queues:\n    - {name: q, type: lazy}\n", "'type' of queue 'q' cannot be"),
        ("rabbitmq:\n  queues:\n    - {name: q, message_ttl: 1.5}\n", "an integer"),
        ("rabbitmq:\n  queues:\n    - {name: q, overflow: drop}\n", "one of: drop-head"),
        ("rabbitmq:\n  queues:\n    - {name: q, exclusive: true}\n", "exclusive queues"),
        ("rabbitmq:\n  queues:\n    - {name: q, arguments: {x-queue-type: quorum}}\n", "'type:'"),
        ("rabbitmq:\n  queues:\n    - {name: q, durable: yes please}\n", "true or false"),
        ("rabbitmq:\n  bindings:\n    - {source: a}\n", "has no 'destination'"),
        ("owner: ''\n", "owner"),
        ("prefixes: ['']\n", "too short"),
        ("version: 2\n", "'version' must be 1"),
        ("- a\n- b\n", "a topology file is a mapping"),
        ("", "the file is empty"),
        ("kafka: [\n", "invalid YAML"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
    ],
)
def test_wrong_values_are_errors_with_positions(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert errors, f"no error for {text!r}"
    assert all(e.startswith("t.yaml:") and e.split(":")[1].isdigit() for e in errors)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rabbitmq:\n  exchanges:\n    - {name: e, type: topic}\n  bindings:\n"
            "    - {source: ee, destination: q}\n",
            "exchange 'ee' is not declared (did you mean 'e'?)",
        ),
        (
            "rabbitmq:\n  exchanges:\n    - {name: e, type: topic}\n  bindings:\n"
            "    - {source: e, destination: q}\n",
            "queue 'q' is not declared",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, type: quorum, max_priority: 3}\n",
            "not supported by quorum queues",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, type: stream, message_ttl: 3}\n",
            "not supported by stream queues",
        ),
        ("rabbitmq:\n  queues:\n    - {name: q, type: quorum, durable: false}\n", "durable"),
        ("rabbitmq:\n  queues:\n    - {name: q, dead_letter_routing_key: x}\n", "needs a"),
        ("rabbitmq:\n  exchanges:\n    - {name: amq.mine, type: topic}\n", "reserved"),
        (
            "rabbitmq:\n  policies:\n    - {name: p, pattern: '(', definition: {max-length: 1}}\n",
            "invalid pattern",
        ),
        (
            "rabbitmq:\n  policies:\n    - {name: p, pattern: x, definition: {max-lenght: 1}}\n",
            "did you mean 'max-length'",
        ),
        ("kafka:\n  topics:\n    - {name: a}\n    - {name: a}\n", "declared twice"),
        ("kafka:\n  topics:\n    - {name: a.b}\n    - {name: a_b}\n", "collides"),
        ("kafka:\n  topics:\n    - {name: __mine}\n", "Kafka-internal"),
        ("kafka:\n  topics:\n    - {name: 'bad name'}\n", "may only contain"),
        ("kafka:\n  topics:\n    - {name: a, dlq: true}\n    - {name: a.dlq}\n", "twice"),
        (
            "rabbitmq:\n  queues:\n    - {name: q, max_priority: -1}\n",
            "must be at least 1, not -1",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, type: stream, initial_cluster_size: 0}\n",
            "must be at least 1, not 0",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, type: quorum, max_priority: 0}\n",
            "max_priority (x-max-priority) is not supported by quorum queues",
        ),
        (
            "rabbitmq:\n  exchanges:\n    - {name: h, type: headers}\n  queues:\n"
            "    - {name: q}\n  bindings:\n"
            "    - {source: h, destination: q, arguments: {x-match: some}}\n",
            "x-match must be all or any, not 'some'",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q}\n  bindings:\n"
            "    - {source: amq.match, destination: q, arguments: {x-match: some}}\n",
            "x-match must be all or any, not 'some'",
        ),
        (
            "rabbitmq:\n  policies:\n    - {name: p, pattern: '\\p{Ll}(', "
            "definition: {max-length: 1}}\n",
            "invalid pattern",
        ),
        (
            "kafka:\n  topics:\n    - name: a\n      configs: {cleanup.policy: 'compact,purge'}\n",
            "must be delete, compact",
        ),
    ],
)
def test_semantic_errors(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kafka:\n  topics:\n    - {name: a, replication_factor: 1, "
            "configs: {min.insync.replicas: 2}}\n",
            "Kafka 3.7 and later (every version qctl supports) cap it at the replica count",
        ),
        (
            "kafka:\n  defaults: {replication_factor: 2}\n  topics:\n"
            "    - {name: a, configs: {min.insync.replicas: 3}}\n",
            "min.insync.replicas=3 exceeds replication_factor=2",
        ),
        (
            "kafka:\n  topics:\n    - {name: a, configs: {cleanup.policy: ''}}\n",
            "keeps every record",
        ),
        (
            "kafka:\n  topics:\n    - {name: a, configs: {cleanup.policy: []}}\n",
            "keeps every record",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, dead_letter_exchange: nowhere}\n",
            "dead-letter exchange 'nowhere' is not declared in the file; RabbitMQ accepts",
        ),
        (
            "rabbitmq:\n  exchanges:\n    - {name: e, type: topic, alternate_exchange: ae}\n",
            "alternate exchange 'ae' is not declared in the file; RabbitMQ accepts",
        ),
        (
            "rabbitmq:\n  policies:\n    - {name: p, pattern: x, "
            "definition: {dead-letter-exchange: nowhere}}\n",
            "dead-letter exchange 'nowhere' is not declared in the file; RabbitMQ accepts",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, arguments: {x-max-lenght: 5}}\n",
            "(did you mean 'x-max-length'?): RabbitMQ accepts arguments it does not know",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, max_priority: 0}\n",
            "RabbitMQ accepts it and treats it as 1",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, type: stream, "
            "stream_max_segment_size_bytes: 0}\n",
            "should be at least 1, not 0; RabbitMQ accepts it",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, arguments: {x-consumer-timeout: soon}}\n",
            "should be an integer, not 'soon'; RabbitMQ accepts it without checking the value",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, type: stream, consumer_timeout: 60000}\n",
            "streams ignore it",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, leader_locator: balanced}\n",
            "RabbitMQ 4.0 and later accept it on classic queues; 3.x refuses",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q, type: quorum, overflow: reject-publish-dlx}\n",
            "RabbitMQ accepts it and uses drop-head",
        ),
        (
            "rabbitmq:\n  exchanges:\n    - {name: d, type: direct}\n  queues:\n"
            "    - {name: q}\n  bindings:\n"
            "    - {source: d, destination: q, arguments: {x-match: some}}\n",
            "a direct exchange ignores it",
        ),
        (
            "rabbitmq:\n  queues:\n    - {name: q}\n  bindings:\n"
            "    - {source: amq.topic, destination: q, arguments: {x-match: 1}}\n",
            "a topic exchange ignores it",
        ),
        (
            "rabbitmq:\n  policies:\n    - {name: p, pattern: '^a(?i)b\\z', "
            "definition: {max-length: 1}}\n",
            "uses PCRE syntax qctl cannot check",
        ),
        (
            "rabbitmq:\n  policies:\n    - {name: p, pattern: '^(?<n>a)\\p{Lu}\\Q.*\\E', "
            "definition: {max-length: 1}}\n",
            "uses PCRE syntax qctl cannot check",
        ),
    ],
)
def test_what_the_brokers_accept_is_a_warning(text: str, expected: str) -> None:
    assert not errors_of(text)
    warnings = issues_of(text, "warning")
    assert any(expected in w for w in warnings), warnings


def test_rabbitmq_arguments_without_a_friendly_key_are_not_typos() -> None:
    text = "rabbitmq:\n  queues:\n    - {name: q, arguments: {x-queue-master-locator: random}}\n"
    topo, issues = loads(text, "t.yaml", environ={})
    assert topo is not None and topo.rabbitmq is not None and not issues
    assert topo.rabbitmq.queues[0].arguments == {"x-queue-master-locator": "random"}


def test_a_negative_policy_priority_is_fine() -> None:
    text = "rabbitmq:\n  policies:\n    - {name: p, pattern: x, priority: -2, definition: {a: 1}}\n"
    topo, issues = loads(text, "t.yaml", environ={})
    assert topo is not None and topo.rabbitmq is not None and not issues
    assert topo.rabbitmq.policies[0].priority == -2


def test_var_expansion_reads_plain_scalars_as_typed_values() -> None:
    text = """\
        owner: ${OWNER}
        kafka:
          topics:
            - name: ${PREFIX}orders
              partitions: ${PARTS}
              configs: {retention.ms: "${RETENTION}"}
            - name: literal
              configs: {cleanup.policy: delete}
        rabbitmq:
          queues:
            - name: q
              arguments: {x-note: "$${NOT_EXPANDED}"}
    """
    env = {"OWNER": "team-a", "PREFIX": "dev-", "PARTS": "4", "RETENTION": "1000"}
    topo, issues = loads(textwrap.dedent(text), "t.yaml", environ=env)
    assert topo is not None and not issues
    assert topo.owner == "team-a"
    assert topo.kafka is not None and topo.rabbitmq is not None
    orders = topo.kafka.topics[0]
    assert (orders.name, orders.partitions) == ("dev-orders", 4)
    assert orders.configs["retention.ms"] == "1000"
    assert topo.rabbitmq.queues[0].arguments["x-note"] == "${NOT_EXPANDED}"


def test_missing_variable_is_one_error_at_its_position() -> None:
    errors = errors_of("kafka:\n  topics:\n    - name: a\n      partitions: ${NOPE}\n")
    assert errors == [
        "t.yaml:4:19: error: environment variable NOPE is not set "
        "(set it, or write $${NOPE} for a literal ${NOPE})"
    ]


def test_unknown_environment_is_an_error_with_a_hint() -> None:
    errors = errors_of("kafka: {}\nenvironments:\n  dev: {}\n", env="dve")
    assert len(errors) == 1 and "no environment named 'dve' (did you mean 'dev'?)" in errors[0]


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = """\
        kafka:
          topics:
            - &base {name: a, partitions: 3, configs: {retention.ms: 1000}}
            - <<: *base
              name: b
    """
    topo, issues = loads(textwrap.dedent(text), "t.yaml", environ={})
    assert topo is not None and not issues
    assert topo.kafka is not None
    assert [(t.name, t.partitions) for t in topo.kafka.topics] == [("a", 3), ("b", 3)]


def test_alias_bombs_and_recursion_are_errors_not_hangs() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in range(1, 9):
        refs = ", ".join([f"*{chr(96 + level)}"] * 10)
        bomb += f"{chr(97 + level)}: &{chr(97 + level)} [{refs}]\n"
    errors = errors_of(bomb)
    assert any("alias bomb" in e for e in errors)
    errors = errors_of("kafka: &k\n  topics: [*k]\n")
    assert errors  # recursive alias: reported, no RecursionError


def test_queue_dlq_shorthand_routes_through_the_default_exchange() -> None:
    topo, issues = loads(
        "rabbitmq:\n  queues:\n    - {name: work, dlq: true}\n", "t.yaml", environ={}
    )
    assert topo is not None and topo.rabbitmq is not None and not issues
    queues = {q.name: q for q in topo.rabbitmq.queues}
    assert set(queues) == {"work", "work.dlq"}
    assert queues["work"].arguments == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "work.dlq",
    }
    assert topo.rabbitmq.dlqs == {"work.dlq": "work"}


def test_load_raises_one_error_listing_all(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  topics:\n    - name: a\n      partitons: 1\n    - nme: b\n")
    with pytest.raises(TopologyFileError) as caught:
        load(bad)
    assert len(caught.value.issues) >= 2
    assert str(caught.value).startswith(f"{bad}:4:7: error: unknown key 'partitons'")
    assert caught.value.exit_code == 2


def test_non_utf8_file_gives_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"kafka:\n  topics: \xff\xfe\n")
    with pytest.raises(TopologyFileError) as caught:
        load(bad)
    assert str(caught.value.issues[0]).startswith(f"{bad}:2:11: error: ")
