"""The ``topology`` capability: read, change and own a cluster's declared objects.

The topology engine (``qctl.topology``) plans against the neutral data classes below and
hands the backend a list of ``TopologyChange`` objects to carry out; it never sees a
client library. One protocol covers both queue systems: a Kafka-like backend fills
``topics``, a RabbitMQ-like one fills exchanges, queues, bindings and policies, and a
third-party backend fills whichever kinds it has.

Method names carry a ``topology_`` prefix because every capability of a backend is a
mixin on one class: unprefixed names from two capabilities could silently shadow
each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: Kinds of objects a topology file can declare.
KINDS = ("topic", "exchange", "queue", "binding", "policy")

#: The compacted Kafka topic that holds ownership records (key: the owner label).
KAFKA_OWNERS_TOPIC = "qctl.topology.owners"
#: RabbitMQ global parameters that hold ownership records: ``<prefix>:<vhost>:<owner>``.
RABBIT_OWNER_PARAMETER_PREFIX = "qctl.topology.owner"
#: Suffix of the temporary queue a queue migration parks messages in.
MIGRATION_SUFFIX = ".qctl-migrate"

#: What a change does. ``unsupported`` changes are never sent to a backend;
#: ``recreate`` is an unsupported change the user allowed with ``--allow-recreate``.
ACTIONS = ("create", "update", "recreate", "unsupported", "delete")


# -- desired and live objects --------------------------------------------------------------
@dataclass
class TopicSpec:
    """A Kafka topic. ``configs`` holds only what is set on the topic, as strings."""

    name: str
    partitions: int | None = None
    replication_factor: int | None = None
    configs: dict[str, str] = field(default_factory=dict)


@dataclass
class ExchangeSpec:
    name: str
    type: str = "direct"
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueueSpec:
    """A queue; ``arguments`` are the broker's ``x-`` arguments without ``x-queue-type``."""

    name: str
    type: str = "classic"
    durable: bool = True
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class BindingSpec:
    source: str
    destination: str
    destination_type: str = "queue"
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """A stable identity: bindings have no name, only their five parts."""
        args = json.dumps(self.arguments, sort_keys=True, separators=(",", ":"))
        return "\x1f".join(
            (self.source, self.destination_type, self.destination, self.routing_key, args)
        )

    def label(self) -> str:
        """How a binding is shown to people: ``source -> queue:dest [key] {args}``."""
        text = f"{self.source or '(default)'} -> {self.destination_type}:{self.destination}"
        if self.routing_key:
            text += f" [{self.routing_key}]"
        if self.arguments:
            text += " " + json.dumps(self.arguments, sort_keys=True)
        return text


@dataclass
class PolicySpec:
    name: str
    pattern: str
    definition: dict[str, Any] = field(default_factory=dict)
    apply_to: str = "all"
    priority: int = 0


Spec = TopicSpec | ExchangeSpec | QueueSpec | BindingSpec | PolicySpec


@dataclass
class LiveTopic:
    """A topic as the cluster has it.

    ``spec.configs`` holds only configs set on the topic itself; ``effective`` holds
    every config's current value and ``defaults`` what the cluster would use if the
    topic set nothing (when the cluster tells us), so a planner can tell a real
    override from a broker default.
    """

    spec: TopicSpec
    effective: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    internal: bool = False


@dataclass
class LiveQueue:
    spec: QueueSpec
    #: Messages in the queue (ready + unacknowledged) as the cluster last counted them.
    messages: int | None = None
    consumers: int | None = None
    exclusive: bool = False
    policy: str | None = None


@dataclass
class LiveTopology:
    """What one backend holds in one scope (Kafka: the cluster; RabbitMQ: a vhost)."""

    backend: str
    scope: str
    topics: dict[str, LiveTopic] = field(default_factory=dict)
    #: Messages per topic (end minus start offsets), filled only when asked for.
    topic_messages: dict[str, int] = field(default_factory=dict)
    exchanges: dict[str, ExchangeSpec] = field(default_factory=dict)
    queues: dict[str, LiveQueue] = field(default_factory=dict)
    bindings: list[BindingSpec] = field(default_factory=list)
    policies: dict[str, PolicySpec] = field(default_factory=dict)


@dataclass(frozen=True)
class TopologyQuery:
    """What to read. ``names=None`` reads everything (export); else only those names.

    ``count_messages`` asks for message counts of the named topics (needed before a
    delete: non-empty objects are only deleted when forced).

    ``binding_sources`` says that only bindings from these exchanges matter (a plan
    without pruning compares just the file's bindings); a backend may then read those
    instead of every binding of the scope. ``None`` needs every binding.
    """

    scope: str | None = None
    names: frozenset[str] | None = None
    count_messages: bool = False
    binding_sources: frozenset[str] | None = None


# -- changes -------------------------------------------------------------------------------
@dataclass
class FieldChange:
    """One differing field. ``desired=None`` with ``unset=True`` means "back to default"."""

    field: str
    live: Any = None
    desired: Any = None
    unset: bool = False
    note: str | None = None


@dataclass
class TopologyChange:
    """One planned change to one object; also the unit of work a backend applies."""

    backend: str
    kind: str
    name: str
    action: str
    fields: list[FieldChange] = field(default_factory=list)
    desired: Any = None
    live: Any = None
    reason: str | None = None
    hint: str | None = None
    #: For deletes: the object holds messages (Kafka records, RabbitMQ messages).
    messages: int | None = None
    #: For deletes of non-empty objects: the user passed --force-delete-nonempty.
    force: bool = False


@dataclass
class ChangeResult:
    """What became of one change. ``details`` carries counts (e.g. messages moved)."""

    change: TopologyChange
    ok: bool
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


#: Called with a short progress message ("created 300 topics").
Progress = Callable[[str], None]


# -- ownership ---------------------------------------------------------------------------
@dataclass
class OwnerRecord:
    """What one ``owner:`` label has declared in a scope, kept on the cluster itself.

    Stored on the cluster (a compacted Kafka topic, a RabbitMQ global parameter) so two
    operators or CI runners agree about what qctl may prune.
    """

    owner: str
    scope: str = ""
    resources: dict[str, list[str]] = field(default_factory=dict)
    #: Dead-letter topics/queues declared with ``dlq:``: dlq name -> source name.
    dlqs: dict[str, str] = field(default_factory=dict)
    prefixes: list[str] = field(default_factory=list)
    updated_at: str = ""
    updated_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "scope": self.scope,
            "resources": {k: sorted(set(v)) for k, v in sorted(self.resources.items()) if v},
            "dlqs": dict(sorted(self.dlqs.items())),
            "prefixes": sorted(set(self.prefixes)),
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }

    @classmethod
    def from_json(cls, data: Any) -> OwnerRecord | None:
        """Parse a stored record; None when it is not one of ours (or damaged)."""
        if not isinstance(data, dict) or not isinstance(data.get("owner"), str):
            return None
        resources = data.get("resources") or {}
        dlqs = data.get("dlqs") or {}
        prefixes = data.get("prefixes") or []
        if not (
            isinstance(resources, dict) and isinstance(dlqs, dict) and isinstance(prefixes, list)
        ):
            return None
        return cls(
            owner=data["owner"],
            scope=str(data.get("scope") or ""),
            resources={
                str(k): [str(n) for n in v] for k, v in resources.items() if isinstance(v, list)
            },
            dlqs={str(k): str(v) for k, v in dlqs.items()},
            prefixes=[str(p) for p in prefixes],
            updated_at=str(data.get("updated_at") or ""),
            updated_by=str(data.get("updated_by") or ""),
        )


@dataclass
class QueueDepth:
    """A queue's exact counts from the broker (not the management API's sampled stats)."""

    messages: int
    consumers: int


# -- protocols -----------------------------------------------------------------------------
@runtime_checkable
class SupportsTopology(Protocol):
    """Can read its topology, apply changes, and keep ownership records on the cluster."""

    def topology_kinds(self) -> tuple[str, ...]:
        """The object kinds this backend has (e.g. ``("topic",)``)."""
        ...

    def topology_describe(self, query: TopologyQuery) -> LiveTopology:
        """Read the live objects with as few calls as possible (batched, one per kind)."""
        ...

    def topology_apply(
        self, scope: str | None, changes: Sequence[TopologyChange], progress: Progress | None
    ) -> list[ChangeResult]:
        """Carry out creates, updates and deletes (batched); one result per change.

        ``recreate`` changes are not passed here: they go through the migration
        protocol. A backend never raises for one failing object; it reports it.
        """
        ...

    def topology_owner_records(self, scope: str | None) -> list[OwnerRecord]:
        """All ownership records of the scope (empty when none was ever written)."""
        ...

    def topology_write_owner_record(self, record: OwnerRecord, delete: bool = False) -> None:
        """Store (or, with ``delete``, remove) one record."""
        ...


@runtime_checkable
class SupportsQueueMigration(Protocol):
    """Primitives for recreating a queue without losing a message (``--allow-recreate``)."""

    def topology_queue_depth(self, scope: str | None, queue: str) -> QueueDepth:
        """Exact ready-message and consumer counts of a queue."""
        ...

    def topology_move_messages(
        self,
        scope: str | None,
        source: str,
        target: str,
        progress: Progress | None,
    ) -> int:
        """Move every message from ``source`` into ``target``; return how many moved.

        Each message is acknowledged on the source only after the broker confirmed it
        on the target, and an unroutable publish aborts the move with the message
        still in the source. Stops when the source is empty.
        """
        ...
