"""Plan a topology file against live backends: read state, diff, find owned deletes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qctl.backends.capabilities.topology import (
    LiveTopology,
    SupportsTopology,
    TopologyChange,
    TopologyQuery,
)
from qctl.errors import UsageError
from qctl.topology.model import TopologyFile
from qctl.topology.ownership import Ownership
from qctl.topology.planner import (
    BackendPlan,
    Plan,
    PlanOptions,
    destroy_changes,
    plan_rabbit,
    plan_topics,
    prune_changes,
    sort_changes,
)


@dataclass
class Target:
    """One backend the file is planned against."""

    name: str
    backend: SupportsTopology
    address: str
    #: Filled while planning, reused by apply and verify.
    live: LiveTopology | None = None
    ownership: Ownership | None = None


def scope_of(topo: TopologyFile, backend: str) -> str | None:
    if backend == "rabbitmq" and topo.rabbitmq is not None:
        return topo.rabbitmq.vhost
    return None


def desired_names(topo: TopologyFile, backend: str) -> dict[str, set[str]]:
    if backend == "kafka" and topo.kafka is not None:
        return {"topic": {t.name for t in topo.kafka.topics}}
    if backend == "rabbitmq" and topo.rabbitmq is not None:
        r = topo.rabbitmq
        return {
            "exchange": {e.name for e in r.exchanges},
            "queue": {q.name for q in r.queues},
            "policy": {p.name for p in r.policies},
            "binding": {b.key() for b in r.bindings},
        }
    return {}


def declared_specs(topo: TopologyFile, backend: str) -> dict[str, list[Any]]:
    if backend == "kafka" and topo.kafka is not None:
        return {"topic": list(topo.kafka.topics)}
    if backend == "rabbitmq" and topo.rabbitmq is not None:
        r = topo.rabbitmq
        # Queues before exchanges before policies: the order deletes happen in.
        return {"queue": list(r.queues), "exchange": list(r.exchanges), "policy": list(r.policies)}
    return {}


def dlqs_of(topo: TopologyFile, backend: str) -> dict[str, str]:
    if backend == "kafka" and topo.kafka is not None:
        return dict(topo.kafka.dlqs)
    if backend == "rabbitmq" and topo.rabbitmq is not None:
        return dict(topo.rabbitmq.dlqs)
    return {}


def binding_sources(topo: TopologyFile, backend: str) -> frozenset[str]:
    """The exchanges the file's bindings start from."""
    if backend == "rabbitmq" and topo.rabbitmq is not None:
        return frozenset(b.source for b in topo.rabbitmq.bindings)
    return frozenset()


def describe(
    target: Target,
    topo: TopologyFile,
    extra_names: set[str] | None = None,
    all_bindings: bool = True,
) -> LiveTopology:
    """Read what the file names; ``all_bindings=False`` reads only its bindings' sources
    (enough for a plan that does not prune; pruning looks at every binding)."""
    names: set[str] = set()
    for kind, kind_names in desired_names(topo, target.name).items():
        if kind != "binding":
            names |= kind_names
    names |= extra_names or set()
    query = TopologyQuery(
        scope=scope_of(topo, target.name),
        names=frozenset(names),
        binding_sources=None if all_bindings else binding_sources(topo, target.name),
    )
    return target.backend.topology_describe(query)


def read_ownership(target: Target, topo: TopologyFile) -> Ownership:
    records = target.backend.topology_owner_records(scope_of(topo, target.name))
    return Ownership(owner=topo.owner, prefixes=list(topo.prefixes), records=records)


def require_owner(topo: TopologyFile, what: str) -> None:
    if not topo.owner and not topo.prefixes:
        raise UsageError(
            f"{topo.path} has no 'owner:' label and no 'prefixes:'; {what} deletes only "
            "what qctl owns",
            "add `owner: <team-or-app>` to the file (and apply it) before pruning",
        )


def plan_file(
    topo: TopologyFile,
    targets: list[Target],
    options: PlanOptions,
    mode: str = "apply",
) -> Plan:
    """Read every target once and build the plan. ``mode`` is "apply" or "destroy"."""
    plan = Plan(file=topo.path, env=topo.env, owner=topo.owner)
    for target in targets:
        live = describe(target, topo, all_bindings=options.prune or mode == "destroy")
        target.live = live
        changes: list[TopologyChange] = []
        bplan = BackendPlan(backend=target.name, target=target.address, scope=live.scope)
        if mode == "apply":
            if target.name == "kafka" and topo.kafka is not None:
                changes += plan_topics(topo.kafka.topics, live, target.name)
            if target.name == "rabbitmq" and topo.rabbitmq is not None:
                changes += plan_rabbit(topo.rabbitmq, live, options, target.name)
        if options.prune or mode == "destroy":
            target.ownership = read_ownership(target, topo)
            if mode == "destroy":
                deletes, skipped = destroy_changes(
                    target.name, live, declared_specs(topo, target.name), target.ownership, options
                )
            else:
                deletes, skipped = prune_changes(
                    target.name, live, desired_names(topo, target.name), target.ownership, options
                )
            deletes = _with_exact_counts(target, topo, deletes)
            changes += deletes
            bplan.skipped = skipped
        recreates = [
            c for c in changes if c.kind == "queue" and c.action in ("unsupported", "recreate")
        ]
        _with_exact_counts(target, topo, recreates)
        bplan.changes = sort_changes(changes)
        plan.backends.append(bplan)
    return plan


def _with_exact_counts(
    target: Target, topo: TopologyFile, deletes: list[TopologyChange]
) -> list[TopologyChange]:
    """Re-read message counts of delete candidates exactly (the broker, not sampled stats)."""
    names = frozenset(c.name for c in deletes if c.kind in ("topic", "queue"))
    if not names:
        return deletes
    counted = target.backend.topology_describe(
        TopologyQuery(scope=scope_of(topo, target.name), names=names, count_messages=True)
    )
    for change in deletes:
        if change.kind == "topic" and change.name in counted.topic_messages:
            change.messages = counted.topic_messages[change.name]
        if change.kind == "queue" and change.name in counted.queues:
            change.messages = counted.queues[change.name].messages
    return deletes
