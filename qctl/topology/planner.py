"""The three-way diff: desired (the file) vs live (the cluster) vs the broker's defaults.

Every difference becomes a ``TopologyChange`` classified as create, update (in place),
unsupported (the broker cannot change it in place: a partition decrease, a replication
factor change without reassignment, an immutable queue argument), recreate (an
unsupported queue/exchange change the user allowed with ``--allow-recreate``) or delete
(only with ``--prune`` / ``destroy``, and only for owned objects).

A setting the file leaves out is compared with the broker's default, not with nothing:
a topic that inherits ``retention.ms`` from the broker is not drift, and a file that
spells out the default value matches a topic that inherits it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qctl.backends.capabilities.topology import (
    BindingSpec,
    ExchangeSpec,
    FieldChange,
    LiveQueue,
    LiveTopic,
    LiveTopology,
    PolicySpec,
    QueueSpec,
    TopicSpec,
    TopologyChange,
)
from qctl.topology import schema
from qctl.topology.model import RabbitTopology
from qctl.topology.ownership import MIGRATION_SUFFIX, Ownership, is_internal

#: The field of a queue update that finishes an interrupted migration.
PENDING_MIGRATION = "pending-migration"

#: Order in which changes are shown and applied.
ACTION_ORDER = {"create": 0, "update": 1, "recreate": 2, "unsupported": 3, "delete": 4}
KIND_ORDER = {"topic": 0, "exchange": 1, "queue": 2, "policy": 3, "binding": 4}


@dataclass(frozen=True)
class PlanOptions:
    prune: bool = False
    allow_recreate: bool = False
    force_delete_nonempty: bool = False


@dataclass
class Skipped:
    """An object a delete left alone, and why (not owned, internal)."""

    backend: str
    kind: str
    name: str
    reason: str


@dataclass
class BackendPlan:
    backend: str
    target: str
    scope: str
    changes: list[TopologyChange] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class Plan:
    file: str
    env: str | None
    owner: str | None
    backends: list[BackendPlan] = field(default_factory=list)

    @property
    def changes(self) -> list[TopologyChange]:
        return [c for b in self.backends for c in b.changes]

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTION_ORDER, 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def pending(self) -> bool:
        return bool(self.changes)


def sort_changes(changes: list[TopologyChange]) -> list[TopologyChange]:
    return sorted(
        changes,
        key=lambda c: (ACTION_ORDER[c.action], KIND_ORDER.get(c.kind, 9), c.name),
    )


# -- value comparison ----------------------------------------------------------------------
def config_equal(key: str, a: str | None, b: str | None) -> bool:
    """Kafka config values as the broker means them ("1.0" == "1", "True" == "true")."""
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    if key == "cleanup.policy":
        return _csv_set(a) == _csv_set(b)
    if a.lower() in ("true", "false") and b.lower() in ("true", "false"):
        return a.lower() == b.lower()
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _csv_set(value: str) -> set[str]:
    return {p.strip() for p in value.split(",") if p.strip()}


def values_equal(a: Any, b: Any) -> bool:
    """RabbitMQ argument values: types matter (the broker rejects "5" for an integer),
    except that 5 and 5.0 are the same number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# -- kafka ---------------------------------------------------------------------------------
def plan_topics(
    desired: list[TopicSpec], live: LiveTopology, backend: str = "kafka"
) -> list[TopologyChange]:
    changes = []
    for spec in desired:
        current = live.topics.get(spec.name)
        if current is None:
            changes.append(_create_topic(spec, backend))
            continue
        change = diff_topic(spec, current, backend)
        if change is not None:
            changes.append(change)
    return changes


def _create_topic(spec: TopicSpec, backend: str) -> TopologyChange:
    fields = [
        FieldChange("partitions", None, spec.partitions if spec.partitions else "broker default"),
        FieldChange(
            "replication_factor",
            None,
            spec.replication_factor if spec.replication_factor else "broker default",
        ),
    ]
    fields += [FieldChange(f"config:{k}", None, v) for k, v in sorted(spec.configs.items())]
    return TopologyChange(backend, "topic", spec.name, "create", fields, desired=spec)


def diff_topic(spec: TopicSpec, live: LiveTopic, backend: str = "kafka") -> TopologyChange | None:
    fields: list[FieldChange] = []
    unsupported: list[str] = []
    hints: list[str] = []
    have = live.spec
    if spec.partitions is not None and have.partitions is not None:
        if spec.partitions > have.partitions:
            fields.append(FieldChange("partitions", have.partitions, spec.partitions))
        elif spec.partitions < have.partitions:
            fields.append(
                FieldChange(
                    "partitions",
                    have.partitions,
                    spec.partitions,
                    note="unsupported: Kafka cannot remove partitions",
                )
            )
            unsupported.append(
                f"partitions cannot decrease ({have.partitions} -> {spec.partitions})"
            )
            hints.append(
                f"keep partitions at {have.partitions}, or recreate the topic under a new name"
            )
    if (
        spec.replication_factor is not None
        and have.replication_factor is not None
        and spec.replication_factor != have.replication_factor
    ):
        fields.append(
            FieldChange(
                "replication_factor",
                have.replication_factor,
                spec.replication_factor,
                note="unsupported: needs a partition reassignment",
            )
        )
        unsupported.append(
            f"replication factor change ({have.replication_factor} -> "
            f"{spec.replication_factor}) needs a partition reassignment, which this backend "
            "cannot run"
        )
        hints.append(
            "reassign with kafka-reassign-partitions, then update the file; or keep "
            f"replication_factor: {have.replication_factor}"
        )
    for key in sorted(set(spec.configs) | set(have.configs)):
        current = live.effective.get(key, have.configs.get(key))
        if key in spec.configs:
            wanted = spec.configs[key]
            if not config_equal(key, wanted, current):
                fields.append(FieldChange(f"config:{key}", current, wanted))
            continue
        # Set on the topic but not in the file: back to the default, unless the value
        # already is the default (then nothing would change), or the config is one this
        # qctl cannot declare (a newer broker's): a file could never keep it, and export
        # leaves it out, so qctl leaves it alone.
        if key not in schema.KAFKA_TOPIC_CONFIGS:
            continue
        default = live.defaults.get(key)
        if default is not None and config_equal(key, default, current):
            continue
        fields.append(
            FieldChange(
                f"config:{key}",
                current,
                default,
                unset=True,
                note="not in the file: back to the broker default",
            )
        )
    if not fields:
        return None
    action = "unsupported" if unsupported else "update"
    return TopologyChange(
        backend,
        "topic",
        spec.name,
        action,
        fields,
        desired=spec,
        live=have,
        reason="; ".join(unsupported) or None,
        hint="; ".join(hints) or None,
    )


# -- rabbitmq ------------------------------------------------------------------------------
def plan_rabbit(
    desired: RabbitTopology,
    live: LiveTopology,
    options: PlanOptions,
    backend: str = "rabbitmq",
) -> list[TopologyChange]:
    changes: list[TopologyChange] = []
    for exchange in desired.exchanges:
        current = live.exchanges.get(exchange.name)
        if current is None:
            changes.append(
                TopologyChange(
                    backend,
                    "exchange",
                    exchange.name,
                    "create",
                    _exchange_fields(exchange),
                    desired=exchange,
                )
            )
            continue
        change = diff_exchange(exchange, current, options, backend)
        if change is not None:
            changes.append(change)
    for queue in desired.queues:
        live_queue = live.queues.get(queue.name)
        if live_queue is None:
            changes.append(
                TopologyChange(
                    backend, "queue", queue.name, "create", _queue_fields(queue), desired=queue
                )
            )
            continue
        change = diff_queue(queue, live_queue, options, backend)
        if change is not None:
            changes.append(change)
        leftover = live.queues.get(queue.name + MIGRATION_SUFFIX)
        if leftover is not None and change is None:
            changes.append(
                TopologyChange(
                    backend,
                    "queue",
                    queue.name,
                    "update",
                    [
                        FieldChange(
                            PENDING_MIGRATION,
                            f"{leftover.messages or 0} messages in {leftover.spec.name}",
                            f"moved back into {queue.name}",
                        )
                    ],
                    desired=queue,
                    live=live_queue.spec,
                    reason="an interrupted migration left messages in a temporary queue",
                    messages=leftover.messages,
                )
            )
    for policy in desired.policies:
        current_policy = live.policies.get(policy.name)
        if current_policy is None:
            changes.append(
                TopologyChange(
                    backend,
                    "policy",
                    policy.name,
                    "create",
                    _policy_fields(policy, None),
                    desired=policy,
                )
            )
            continue
        fields = _policy_fields(policy, current_policy)
        if fields:
            changes.append(
                TopologyChange(
                    backend,
                    "policy",
                    policy.name,
                    "update",
                    fields,
                    desired=policy,
                    live=current_policy,
                )
            )
    live_keys = {b.key() for b in live.bindings}
    for binding in _unique(desired.bindings):
        if binding.key() not in live_keys:
            changes.append(
                TopologyChange(backend, "binding", binding.label(), "create", desired=binding)
            )
    return changes


def _unique(bindings: Iterable[BindingSpec]) -> list[BindingSpec]:
    seen: dict[str, BindingSpec] = {}
    for b in bindings:
        seen.setdefault(b.key(), b)
    return list(seen.values())


def _exchange_fields(spec: ExchangeSpec) -> list[FieldChange]:
    fields = [FieldChange("type", None, spec.type)]
    if not spec.durable:
        fields.append(FieldChange("durable", None, False))
    if spec.auto_delete:
        fields.append(FieldChange("auto_delete", None, True))
    if spec.internal:
        fields.append(FieldChange("internal", None, True))
    fields += [FieldChange(k, None, v) for k, v in sorted(spec.arguments.items())]
    return fields


def _queue_fields(spec: QueueSpec) -> list[FieldChange]:
    fields = [FieldChange("type", None, spec.type)]
    if not spec.durable:
        fields.append(FieldChange("durable", None, False))
    if spec.auto_delete:
        fields.append(FieldChange("auto_delete", None, True))
    fields += [FieldChange(k, None, v) for k, v in sorted(spec.arguments.items())]
    return fields


def _policy_fields(spec: PolicySpec, live: PolicySpec | None) -> list[FieldChange]:
    fields = []
    for attr in ("pattern", "apply_to", "priority"):
        wanted, have = getattr(spec, attr), getattr(live, attr) if live else None
        if live is None or not values_equal(wanted, have):
            fields.append(FieldChange(attr, have, wanted))
    have_def = live.definition if live else {}
    for key in sorted(set(spec.definition) | set(have_def)):
        wanted = spec.definition.get(key)
        have = have_def.get(key)
        if key not in spec.definition:
            fields.append(FieldChange(key, have, None, unset=True))
        elif key not in have_def or not values_equal(wanted, have):
            fields.append(FieldChange(key, have if key in have_def else None, wanted))
    return fields


def diff_exchange(
    spec: ExchangeSpec, live: ExchangeSpec, options: PlanOptions, backend: str = "rabbitmq"
) -> TopologyChange | None:
    fields = []
    for attr in ("type", "durable", "auto_delete", "internal"):
        wanted, have = getattr(spec, attr), getattr(live, attr)
        if wanted != have:
            fields.append(FieldChange(attr, have, wanted))
    fields += _argument_fields(spec.arguments, live.arguments, policy_keys={"alternate-exchange"})
    if not fields:
        return None
    hint = "with --allow-recreate qctl deletes and redeclares it and restores its bindings"
    if all(f.field == "alternate-exchange" for f in fields):
        hint = "a policy with alternate-exchange can set this without recreating; or " + hint
    return TopologyChange(
        backend,
        "exchange",
        spec.name,
        "recreate" if options.allow_recreate else "unsupported",
        fields,
        desired=spec,
        live=live,
        reason="exchange properties and arguments cannot change in place",
        hint=hint,
    )


def _argument_fields(
    wanted: dict[str, Any], have: dict[str, Any], policy_keys: set[str] | None = None
) -> list[FieldChange]:
    fields = []
    for key in sorted(set(wanted) | set(have)):
        if key in wanted and key in have and values_equal(wanted[key], have[key]):
            continue
        arg = schema.QUEUE_ARGS_BY_ARGUMENT.get(key)
        policy_key = arg.policy_key if arg else None
        if policy_keys and key in policy_keys:
            policy_key = key
        note = f"a policy can set {policy_key}" if policy_key else "immutable argument"
        fields.append(
            FieldChange(
                key,
                have.get(key),
                wanted.get(key),
                unset=key not in wanted,
                note=note,
            )
        )
    return fields


def diff_queue(
    spec: QueueSpec, live: LiveQueue, options: PlanOptions, backend: str = "rabbitmq"
) -> TopologyChange | None:
    have = live.spec
    fields = []
    for attr in ("type", "durable", "auto_delete"):
        wanted, current = getattr(spec, attr), getattr(have, attr)
        if wanted != current:
            fields.append(FieldChange(attr, current, wanted, note="immutable"))
    fields += _argument_fields(spec.arguments, have.arguments)
    if live.exclusive:
        return TopologyChange(
            backend,
            "queue",
            spec.name,
            "unsupported",
            fields,
            desired=spec,
            live=have,
            reason="an exclusive queue of a client connection has this name",
            hint="close that connection or pick another name",
        )
    if not fields:
        return None
    policy_keys = [f.note.split()[-1] for f in fields if f.note and f.note.startswith("a policy")]
    only_policy = len(policy_keys) == len(fields)
    messages = live.messages
    hint_parts = []
    if only_policy:
        hint_parts.append(
            "these can be set by a policy instead, with no recreate "
            f"({', '.join(policy_keys)}): move them from the queue to a policy in the file"
        )
    streams = "stream" in (spec.type, have.type)
    if streams:
        reason = "queue arguments cannot change in place, and a stream cannot be migrated"
        hint_parts.append("declare a new stream under another name")
        action = "unsupported"
    else:
        reason = "queue type, durability and arguments cannot change in place"
        hint_parts.append("--allow-recreate migrates the queue without losing messages")
        action = "recreate" if options.allow_recreate else "unsupported"
    return TopologyChange(
        backend,
        "queue",
        spec.name,
        action,
        fields,
        desired=spec,
        live=have,
        reason=reason,
        hint="; ".join(hint_parts),
        messages=messages,
    )


# -- deletes (prune and destroy) -----------------------------------------------------------
def prune_changes(
    backend: str,
    live: LiveTopology,
    desired: dict[str, set[str]],
    ownership: Ownership,
    options: PlanOptions,
) -> tuple[list[TopologyChange], list[Skipped]]:
    """Deletes for owned live objects the file no longer declares."""
    changes: list[TopologyChange] = []
    skipped: list[Skipped] = []
    candidates: list[tuple[str, str, Any]] = []
    candidates += [("topic", n, t.spec) for n, t in live.topics.items()]
    candidates += [("exchange", n, e) for n, e in live.exchanges.items()]
    candidates += [("queue", n, q.spec) for n, q in live.queues.items()]
    candidates += [("policy", n, p) for n, p in live.policies.items()]
    deleted_queues: set[str] = set()
    deleted_exchanges: set[str] = set()
    for kind, name, spec in candidates:
        if name in desired.get(kind, set()) or is_internal(kind, name):
            continue
        if kind == "queue" and live.queues[name].exclusive:
            continue
        if not ownership.owns(kind, name):
            continue
        changes.append(_delete(backend, kind, name, spec, live, options))
        if kind == "queue":
            deleted_queues.add(name)
        if kind == "exchange":
            deleted_exchanges.add(name)
    wanted_bindings = desired.get("binding", set())
    for binding in live.bindings:
        if binding.source == "" or binding.key() in wanted_bindings:
            continue
        # Bindings of deleted queues/exchanges disappear with them.
        if binding.source in deleted_exchanges or binding.destination in (
            deleted_queues if binding.destination_type == "queue" else deleted_exchanges
        ):
            continue
        if ownership.recorded("binding", binding.key()) or (
            ownership.owns("exchange", binding.source)
            and ownership.owns(binding.destination_type, binding.destination)
        ):
            changes.append(
                TopologyChange(
                    backend, "binding", binding.label(), "delete", live=binding, desired=None
                )
            )
    return changes, skipped


def destroy_changes(
    backend: str,
    live: LiveTopology,
    declared: dict[str, list[Any]],
    ownership: Ownership,
    options: PlanOptions,
) -> tuple[list[TopologyChange], list[Skipped]]:
    """Deletes for what the file declares and the cluster has, if qctl owns it."""
    changes: list[TopologyChange] = []
    skipped: list[Skipped] = []
    present: dict[str, Mapping[str, object]] = {
        "topic": live.topics,
        "exchange": live.exchanges,
        "queue": live.queues,
        "policy": live.policies,
    }
    for kind, specs in declared.items():
        for spec in specs:
            name = spec.name
            if name not in present.get(kind, {}):
                continue
            if not ownership.owns(kind, name):
                skipped.append(Skipped(backend, kind, name, ownership.why_not(kind, name)))
                continue
            changes.append(_delete(backend, kind, name, spec, live, options))
    return changes, skipped


def _delete(
    backend: str, kind: str, name: str, spec: Any, live: LiveTopology, options: PlanOptions
) -> TopologyChange:
    messages: int | None = None
    if kind == "queue":
        messages = live.queues[name].messages
    elif kind == "topic":
        messages = live.topic_messages.get(name)
    live_spec = spec
    if kind == "topic":
        live_spec = live.topics[name].spec
    elif kind == "queue":
        live_spec = live.queues[name].spec
    elif kind == "exchange":
        live_spec = live.exchanges[name]
    elif kind == "policy":
        live_spec = live.policies[name]
    return TopologyChange(
        backend,
        kind,
        name,
        "delete",
        live=live_spec,
        messages=messages,
        force=options.force_delete_nonempty,
    )
