"""The backend plugin API: what qctl needs from a queue system, as small protocols.

A backend is a class registered under the ``qctl.backends`` entry-point group (qctl's
own Kafka and RabbitMQ backends are registered that way too). The class is built from
the context section named after it (``contexts.<ctx>.<backend name>``) and a timeout
that bounds every network call it makes.

What a backend can do beyond the core is expressed as separate capability protocols
(``SupportsClusterInfo`` and the ones the engines add), checked at run time with
``require()``: a command that needs a capability the backend lacks fails with a clear
"backend X does not support Y" error instead of an AttributeError.

Engines (topology, offsets, dlq, lag) talk to clusters only through these protocols and
the neutral data classes below; they never import a client library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from qctl.errors import UnsupportedCapability

#: Default bound, in seconds, for any single network call.
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class BackendConfig:
    """What a backend is built from: its context section and the time bound."""

    context: str
    settings: Mapping[str, Any]
    timeout: float = DEFAULT_TIMEOUT


@dataclass
class Node:
    """One broker or cluster node."""

    id: str
    host: str
    port: int | None
    roles: list[str] = field(default_factory=list)
    controller: bool = False
    running: bool = True


@dataclass
class ClusterInfo:
    """What ``qctl cluster info`` shows for one backend; stable JSON field names."""

    backend: str
    address: str
    reachable: bool
    version: str | None = None
    cluster_id: str | None = None
    nodes: list[Node] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@runtime_checkable
class Backend(Protocol):
    """The core every backend implements."""

    #: The backend's name; also the scheme of its resource references (``kafka:orders``)
    #: and the key of its section in a context.
    name: ClassVar[str]

    @classmethod
    def from_config(cls, config: BackendConfig) -> Backend:
        """Build the backend. Must not touch the network: connections open lazily."""
        ...

    def target(self) -> str:
        """A short, secret-free description of the address, for messages."""
        ...

    def close(self) -> None:
        """Release connections. Safe to call twice."""
        ...


@runtime_checkable
class SupportsClusterInfo(Protocol):
    """Can describe the cluster: reachability, version, nodes, object counts."""

    def cluster_info(self) -> ClusterInfo:
        """Raise ``UnreachableError`` (or a subclass) when the cluster cannot be reached."""
        ...


P = TypeVar("P")


def require(backend: Backend, capability: type[P], what: str) -> P:
    """Return ``backend`` typed as ``capability``, or fail with a clear usage error."""
    if not isinstance(backend, capability):
        raise UnsupportedCapability(backend.name, what)
    return backend


def capabilities(backend: Backend | type[Backend]) -> list[str]:
    """The names of the capability protocols a backend (or backend class) implements."""
    from qctl.backends import CAPABILITIES

    names = []
    for name, proto in CAPABILITIES.items():
        members = _protocol_members(proto)
        if all(callable(getattr(backend, m, None)) for m in members):
            names.append(name)
    return names


def _protocol_members(proto: type) -> set[str]:
    return {
        name
        for name in vars(proto)
        if not name.startswith("_") and callable(getattr(proto, name, None))
    }
