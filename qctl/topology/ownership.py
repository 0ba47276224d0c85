"""Which objects qctl may delete: ownership records kept on the cluster.

``--prune`` and ``destroy`` delete only what an ``owner:`` label owns: objects declared
by an earlier apply of a file with the same label (recorded on the cluster itself, so
two operators or CI runners agree), or objects whose name starts with one of the
file's declared ``prefixes``. Broker-internal objects (``__*`` topics, ``amq.*`` and
the default exchange) are never owned, whatever the file says.

The records also remember which topics and queues were declared as dead-letter queues
with ``dlq:``; ``declared_dlqs`` reads them for the DLQ tooling.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from qctl import __version__
from qctl.backends.capabilities.topology import (
    KAFKA_OWNERS_TOPIC,
    MIGRATION_SUFFIX,
    OwnerRecord,
    SupportsTopology,
)

OWNERS_TOPIC = KAFKA_OWNERS_TOPIC
__all__ = ["MIGRATION_SUFFIX", "OWNERS_TOPIC", "Ownership", "declared_dlqs", "is_internal"]


def is_internal(kind: str, name: str) -> bool:
    """Objects qctl never exports, plans or deletes."""
    if kind == "topic":
        return name.startswith("__") or name == OWNERS_TOPIC
    if kind == "exchange":
        return name == "" or name.startswith("amq.")
    if kind == "queue":
        return name.startswith("amq.") or name.endswith(MIGRATION_SUFFIX)
    return False


@dataclass
class Ownership:
    """The ownership view of one backend scope for one file."""

    owner: str | None
    prefixes: list[str] = field(default_factory=list)
    records: list[OwnerRecord] = field(default_factory=list)

    def mine(self) -> OwnerRecord | None:
        return next((r for r in self.records if r.owner == self.owner), None)

    def recorded(self, kind: str, name: str) -> bool:
        record = self.mine()
        return record is not None and name in record.resources.get(kind, [])

    def other_owner(self, kind: str, name: str) -> str | None:
        """Another label that recorded this object (a prefix never overrides that)."""
        for record in self.records:
            if record.owner != self.owner and name in record.resources.get(kind, []):
                return record.owner
        return None

    def owns(self, kind: str, name: str) -> bool:
        if is_internal(kind, name):
            return False
        if self.recorded(kind, name):
            return True
        if self.other_owner(kind, name) is not None:
            return False
        return any(name.startswith(p) for p in self.prefixes)

    def why_not(self, kind: str, name: str) -> str:
        if is_internal(kind, name):
            return "broker-internal"
        other = self.other_owner(kind, name)
        if other is not None:
            return f"owned by {other!r}"
        return f"not owned by {self.owner!r}" if self.owner else "no owner label or prefix"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def updated_record(
    previous: OwnerRecord | None,
    owner: str,
    scope: str,
    declared: Mapping[str, Iterable[str]],
    dlqs: dict[str, str],
    prefixes: Iterable[str],
    deleted: Mapping[str, Iterable[str]] | None = None,
) -> OwnerRecord:
    """The record after an apply: what was owned before plus what is declared now, minus
    what was deleted. Objects dropped from the file stay owned until pruned."""
    resources: dict[str, set[str]] = {}
    if previous is not None:
        for kind, names in previous.resources.items():
            resources.setdefault(kind, set()).update(names)
    for kind, added in declared.items():
        resources.setdefault(kind, set()).update(added)
    all_dlqs = dict(previous.dlqs) if previous else {}
    all_dlqs.update(dlqs)
    for kind, removed in (deleted or {}).items():
        gone = set(removed)
        resources.setdefault(kind, set()).difference_update(gone)
        if kind in ("topic", "queue"):
            for name in gone:
                all_dlqs.pop(name, None)
        if kind in ("queue", "exchange"):
            # Bindings disappear with the queue or exchange at either end.
            resources["binding"] = {
                key for key in resources.get("binding", set()) if not _touches(key, kind, gone)
            }
    return OwnerRecord(
        owner=owner,
        scope=scope,
        resources={k: sorted(v) for k, v in sorted(resources.items()) if v},
        dlqs=all_dlqs,
        prefixes=sorted(set(prefixes) | set(previous.prefixes if previous else [])),
        updated_at=now_iso(),
        updated_by=f"qctl {__version__}",
    )


def _touches(binding_key: str, kind: str, names: set[str]) -> bool:
    parts = binding_key.split("\x1f")
    if len(parts) < 3:
        return False
    source, dest_type, dest = parts[0], parts[1], parts[2]
    if kind == "exchange" and source in names:
        return True
    return dest_type == kind and dest in names


def is_empty(record: OwnerRecord) -> bool:
    return not any(record.resources.values())


@dataclass
class DeclaredDlq:
    """A dead-letter queue/topic declared with ``dlq:`` in an applied topology file."""

    name: str
    source: str
    owner: str
    scope: str


def declared_dlqs(backend: SupportsTopology, scope: str | None = None) -> list[DeclaredDlq]:
    """Every DLQ declared with ``dlq:`` by any applied topology file in the scope.

    Backend-neutral: Kafka keeps the records in a compacted topic, RabbitMQ in global
    parameters; both answer through ``SupportsTopology``.
    """
    found: list[DeclaredDlq] = []
    for record in backend.topology_owner_records(scope):
        for dlq, source in sorted(record.dlqs.items()):
            found.append(DeclaredDlq(dlq, source, record.owner, record.scope))
    return found
