"""The three-way diff: desired vs live vs broker defaults, and the delete rules."""

from __future__ import annotations

from qctl.backends.capabilities.topology import (
    BindingSpec,
    ExchangeSpec,
    LiveQueue,
    LiveTopic,
    LiveTopology,
    OwnerRecord,
    PolicySpec,
    QueueSpec,
    TopicSpec,
)
from qctl.topology.model import RabbitTopology
from qctl.topology.ownership import Ownership, updated_record
from qctl.topology.planner import (
    PlanOptions,
    config_equal,
    destroy_changes,
    diff_topic,
    plan_rabbit,
    plan_topics,
    prune_changes,
)

DEFAULTS = {"retention.ms": "604800000", "cleanup.policy": "delete", "segment.ms": "604800000"}


def live_topic(name: str, partitions: int = 3, rf: int = 1, **overrides: str) -> LiveTopic:
    effective = {**DEFAULTS, **overrides}
    return LiveTopic(
        spec=TopicSpec(name, partitions, rf, dict(overrides)),
        effective=effective,
        defaults=dict(DEFAULTS),
    )


def kafka_live(*topics: LiveTopic) -> LiveTopology:
    return LiveTopology("kafka", "", topics={t.spec.name: t for t in topics})


# -- kafka ---------------------------------------------------------------------------------
def test_settings_left_at_the_broker_default_are_not_drift() -> None:
    live = live_topic("t")
    assert diff_topic(TopicSpec("t", 3, 1, {}), live) is None
    # The file spells out the default; the topic inherits it: the same effective value.
    assert diff_topic(TopicSpec("t", 3, 1, {"retention.ms": "604800000"}), live) is None
    # An override equal to the default is not drift either.
    pinned = live_topic("t", **{"retention.ms": "604800000"})
    assert diff_topic(TopicSpec("t", 3, 1, {}), pinned) is None


def test_unset_partitions_and_replication_factor_are_not_compared() -> None:
    assert diff_topic(TopicSpec("t", None, None, {}), live_topic("t", 12, 3)) is None


def test_config_changes_and_overrides_back_to_default() -> None:
    live = live_topic("t", **{"retention.ms": "1000", "segment.ms": "5000"})
    change = diff_topic(TopicSpec("t", 3, 1, {"retention.ms": "2000"}), live)
    assert change is not None and change.action == "update"
    fields = {f.field: f for f in change.fields}
    assert (fields["config:retention.ms"].live, fields["config:retention.ms"].desired) == (
        "1000",
        "2000",
    )
    assert fields["config:segment.ms"].unset
    assert fields["config:segment.ms"].desired == "604800000"


def test_partition_increase_is_an_update_and_decrease_unsupported() -> None:
    grow = diff_topic(TopicSpec("t", 6), live_topic("t", 3))
    assert grow is not None and grow.action == "update"
    assert [(f.field, f.live, f.desired) for f in grow.fields] == [("partitions", 3, 6)]
    shrink = diff_topic(TopicSpec("t", 2, None, {"retention.ms": "5"}), live_topic("t", 3))
    assert shrink is not None and shrink.action == "unsupported"
    assert "cannot decrease" in (shrink.reason or "")


def test_replication_factor_change_is_unsupported_with_a_hint() -> None:
    change = diff_topic(TopicSpec("t", 3, 3), live_topic("t", 3, 1))
    assert change is not None and change.action == "unsupported"
    assert "reassignment" in (change.reason or "")
    assert "kafka-reassign-partitions" in (change.hint or "")


def test_missing_topics_are_created() -> None:
    changes = plan_topics([TopicSpec("new", 3, 1, {"retention.ms": "1"})], kafka_live())
    assert [(c.action, c.name) for c in changes] == [("create", "new")]


def test_config_value_comparison_is_semantic() -> None:
    assert config_equal("cleanup.policy", "compact,delete", "delete,compact")
    assert config_equal("min.cleanable.dirty.ratio", "0.50", "0.5")
    assert config_equal("preallocate", "True", "true")
    assert not config_equal("retention.ms", "1000", "1001")
    assert not config_equal("compression.type", "gzip", "zstd")


# -- rabbitmq ------------------------------------------------------------------------------
def rabbit_live(
    queues: list[QueueSpec] | None = None,
    exchanges: list[ExchangeSpec] | None = None,
    bindings: list[BindingSpec] | None = None,
    policies: list[PolicySpec] | None = None,
    messages: int = 0,
) -> LiveTopology:
    live = LiveTopology("rabbitmq", "/")
    for q in queues or []:
        live.queues[q.name] = LiveQueue(q, messages=messages, consumers=0)
    for e in exchanges or []:
        live.exchanges[e.name] = e
    live.bindings = list(bindings or [])
    for p in policies or []:
        live.policies[p.name] = p
    return live


def test_immutable_queue_arguments_are_unsupported_and_policy_hinted() -> None:
    desired = RabbitTopology(queues=[QueueSpec("q", arguments={"x-message-ttl": 2000})])
    live = rabbit_live([QueueSpec("q", arguments={"x-message-ttl": 1000})], messages=7)
    (change,) = plan_rabbit(desired, live, PlanOptions())
    assert change.action == "unsupported"
    assert change.fields[0].note == "a policy can set message-ttl"
    assert "policy" in (change.hint or "")
    assert change.messages == 7
    (allowed,) = plan_rabbit(desired, live, PlanOptions(allow_recreate=True))
    assert allowed.action == "recreate"


def test_arguments_without_a_policy_equivalent_say_so() -> None:
    desired = RabbitTopology(queues=[QueueSpec("q", arguments={"x-max-priority": 5})])
    (change,) = plan_rabbit(desired, rabbit_live([QueueSpec("q")]), PlanOptions())
    assert change.fields[0].note == "immutable argument"
    assert "policy can" not in (change.hint or "")


def test_queue_type_change_and_streams() -> None:
    desired = RabbitTopology(queues=[QueueSpec("q", type="quorum")])
    (change,) = plan_rabbit(
        desired, rabbit_live([QueueSpec("q")]), PlanOptions(allow_recreate=True)
    )
    assert change.action == "recreate"
    stream = RabbitTopology(queues=[QueueSpec("s", type="stream", arguments={"x-max-age": "1D"})])
    live = rabbit_live([QueueSpec("s", type="stream", arguments={"x-max-age": "7D"})])
    (refused,) = plan_rabbit(stream, live, PlanOptions(allow_recreate=True))
    assert refused.action == "unsupported"
    assert "stream" in (refused.reason or "")


def test_an_argument_the_file_does_not_set_is_drift() -> None:
    desired = RabbitTopology(queues=[QueueSpec("q")])
    live = rabbit_live([QueueSpec("q", arguments={"x-max-length": 10})])
    (change,) = plan_rabbit(desired, live, PlanOptions())
    assert change.fields[0].unset and change.fields[0].field == "x-max-length"


def test_equal_state_plans_nothing_and_number_types_are_respected() -> None:
    spec = QueueSpec("q", "quorum", arguments={"x-delivery-limit": 5})
    ex = ExchangeSpec("e", "headers")
    binding = BindingSpec("e", "q", "queue", "", {"x-match": "any", "a": "1"})
    policy = PolicySpec("p", "^q$", {"max-length": 10}, "queues", 1)
    desired = RabbitTopology(exchanges=[ex], queues=[spec], bindings=[binding], policies=[policy])
    live = rabbit_live([spec], [ex], [binding], [policy])
    assert plan_rabbit(desired, live, PlanOptions()) == []
    live.queues["q"].spec = QueueSpec("q", "quorum", arguments={"x-delivery-limit": "5"})
    assert plan_rabbit(desired, live, PlanOptions())  # "5" is not 5 for RabbitMQ


def test_exchange_policy_and_binding_changes() -> None:
    desired = RabbitTopology(
        exchanges=[ExchangeSpec("e", "topic", arguments={"alternate-exchange": "ae"})],
        queues=[QueueSpec("q")],
        bindings=[BindingSpec("e", "q", routing_key="a.#")],
        policies=[PolicySpec("p", "^q", {"max-length": 20})],
    )
    live = rabbit_live(
        [QueueSpec("q")],
        [ExchangeSpec("e", "topic")],
        [BindingSpec("e", "q", routing_key="b.#")],
        [PolicySpec("p", "^q", {"max-length": 10})],
    )
    changes = {(c.kind, c.action) for c in plan_rabbit(desired, live, PlanOptions())}
    assert changes == {("exchange", "unsupported"), ("policy", "update"), ("binding", "create")}
    (ex_change,) = [c for c in plan_rabbit(desired, live, PlanOptions()) if c.kind == "exchange"]
    assert "policy with alternate-exchange" in (ex_change.hint or "")


def test_exclusive_queue_with_the_same_name_is_unsupported() -> None:
    live = rabbit_live([QueueSpec("q")])
    live.queues["q"].exclusive = True
    (change,) = plan_rabbit(RabbitTopology(queues=[QueueSpec("q")]), live, PlanOptions())
    assert change.action == "unsupported" and "exclusive" in (change.reason or "")


def test_leftover_migration_queue_is_finished() -> None:
    live = rabbit_live([QueueSpec("q"), QueueSpec("q.qctl-migrate")], messages=3)
    (change,) = plan_rabbit(RabbitTopology(queues=[QueueSpec("q")]), live, PlanOptions())
    assert change.action == "update"
    assert change.fields[0].field == "pending-migration"


# -- deletes -------------------------------------------------------------------------------
def test_prune_deletes_only_owned_objects() -> None:
    live = kafka_live(
        live_topic("app.kept"),
        live_topic("app.dropped"),
        live_topic("app.other-team"),
        live_topic("unrelated"),
        live_topic("__consumer_offsets"),
        live_topic("qctl.topology.owners"),
    )
    other = OwnerRecord("team-b", resources={"topic": ["app.other-team"]})
    mine = OwnerRecord("team-a", resources={"topic": ["__consumer_offsets", "unrelated-2"]})
    ownership = Ownership("team-a", ["app."], [mine, other])
    changes, _ = prune_changes("kafka", live, {"topic": {"app.kept"}}, ownership, PlanOptions())
    assert [c.name for c in changes] == ["app.dropped"]


def test_prune_bindings_needs_both_ends_owned_and_skips_deleted_queues() -> None:
    live = rabbit_live(
        [QueueSpec("app.q"), QueueSpec("app.gone"), QueueSpec("theirs")],
        [ExchangeSpec("app.e", "direct"), ExchangeSpec("amq.topic", "topic")],
        [
            BindingSpec("app.e", "app.q", routing_key="old"),
            BindingSpec("app.e", "app.gone", routing_key="x"),
            BindingSpec("app.e", "theirs", routing_key="y"),
            BindingSpec("amq.topic", "app.q", routing_key="z"),
            BindingSpec("", "app.q", routing_key="app.q"),
        ],
    )
    desired = {"queue": {"app.q"}, "exchange": {"app.e"}, "binding": set()}
    ownership = Ownership("o", ["app."], [])
    changes, _ = prune_changes("rabbitmq", live, desired, ownership, PlanOptions())
    assert sorted((c.kind, c.name) for c in changes) == [
        ("binding", "app.e -> queue:app.q [old]"),
        ("queue", "app.gone"),
    ]


def test_destroy_keeps_what_is_not_owned() -> None:
    live = kafka_live(live_topic("a"), live_topic("b"))
    ownership = Ownership("o", [], [OwnerRecord("o", resources={"topic": ["a"]})])
    changes, skipped = destroy_changes(
        "kafka",
        live,
        {"topic": [TopicSpec("a"), TopicSpec("b"), TopicSpec("c")]},
        ownership,
        PlanOptions(),
    )
    assert [c.name for c in changes] == ["a"]
    assert [(s.name, s.reason) for s in skipped] == [("b", "not owned by 'o'")]


def test_ownership_record_accumulates_and_forgets_deleted() -> None:
    first = updated_record(None, "o", "/", {"queue": ["a", "b"]}, {"b.dlq": "b"}, ["app."])
    binding = BindingSpec("e", "b").key()
    second = updated_record(first, "o", "/", {"queue": ["c"], "binding": [binding]}, {}, [])
    assert second.resources["queue"] == ["a", "b", "c"]
    assert second.prefixes == ["app."]
    third = updated_record(second, "o", "/", {}, {}, [], deleted={"queue": ["b"]})
    assert third.resources["queue"] == ["a", "c"]
    assert "binding" not in third.resources  # went with its queue
    assert third.dlqs == {"b.dlq": "b"}  # the DLQ itself still exists
    fourth = updated_record(third, "o", "/", {}, {}, [], deleted={"queue": ["b.dlq"]})
    assert fourth.dlqs == {}
    assert OwnerRecord.from_json(third.to_json()) == OwnerRecord.from_json(third.to_json())
    assert OwnerRecord.from_json({"owner": 3}) is None
