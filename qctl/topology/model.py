"""The parsed topology file: neutral specs plus where in the file each came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qctl.backends.capabilities.topology import (
    BindingSpec,
    ExchangeSpec,
    PolicySpec,
    QueueSpec,
    TopicSpec,
)
from qctl.errors import UsageError


@dataclass(frozen=True)
class Location:
    """A position in a file, 1-based like editors and compilers show it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class FileIssue:
    """One problem found in a topology file."""

    location: Location
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "severity": self.severity,
            "message": self.message,
        }


class TopologyFileError(UsageError):
    """The file is not a valid topology file (exit 2); every problem has file:line:column."""

    def __init__(self, path: str, issues: list[FileIssue]) -> None:
        self.path = path
        self.issues = [i for i in issues if i.severity == "error"] or issues
        first = self.issues[0]
        more = len(self.issues) - 1
        what = str(first) + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
        super().__init__(what, f"fix the file; `qctl topology validate {path}` lists every error")


@dataclass
class KafkaTopology:
    topics: list[TopicSpec] = field(default_factory=list)
    #: DLQ topics declared with ``dlq:``: dlq name -> source topic.
    dlqs: dict[str, str] = field(default_factory=dict)


@dataclass
class RabbitTopology:
    vhost: str | None = None
    exchanges: list[ExchangeSpec] = field(default_factory=list)
    queues: list[QueueSpec] = field(default_factory=list)
    bindings: list[BindingSpec] = field(default_factory=list)
    policies: list[PolicySpec] = field(default_factory=list)
    #: DLQ queues declared with ``dlq:``: dlq name -> source queue.
    dlqs: dict[str, str] = field(default_factory=dict)


@dataclass
class TopologyFile:
    """A loaded (and, after ``validate``, checked) topology file."""

    path: str
    env: str | None = None
    owner: str | None = None
    prefixes: list[str] = field(default_factory=list)
    kafka: KafkaTopology | None = None
    rabbitmq: RabbitTopology | None = None
    #: (kind, name) -> where it was declared; bindings use their ``key()`` as name.
    locations: dict[tuple[str, str], Location] = field(default_factory=dict)
    warnings: list[FileIssue] = field(default_factory=list)

    def location(self, kind: str, name: str) -> Location:
        return self.locations.get((kind, name), Location(self.path, 1, 1))

    def backends(self) -> list[str]:
        return [name for name in ("kafka", "rabbitmq") if getattr(self, name) is not None]

    def counts(self) -> dict[str, int]:
        k, r = self.kafka, self.rabbitmq
        return {
            "topics": len(k.topics) if k else 0,
            "exchanges": len(r.exchanges) if r else 0,
            "queues": len(r.queues) if r else 0,
            "bindings": len(r.bindings) if r else 0,
            "policies": len(r.policies) if r else 0,
        }
