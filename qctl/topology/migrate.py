"""Recreate a queue (or exchange) whose immutable properties changed, losing nothing.

RabbitMQ cannot change a queue's type or arguments in place; Terraform deletes the
queue with its messages, the Topology Operator ignores the change. With
``--allow-recreate`` qctl migrates instead:

1. declare a temporary queue ``<name>.qctl-migrate`` and bind it like the queue, then
   unbind the queue, so new publishes land in the temporary queue from now on;
2. move the backlog into it (publisher confirms, mandatory, ack after confirm);
3. delete the queue only if it is empty, and declare it with the new arguments;
4. bind it again, unbind the temporary queue, move the backlog back, delete the
   temporary queue.

At every moment each message is in at least one of the two queues, and bindings
always route to at least one of them (a publish during a swap may land in both: at
least once, never lost). Publishes addressed to the queue by name through the default
exchange are unroutable while the queue is being redeclared (milliseconds). If the run
is interrupted, the temporary queue keeps the messages and the next ``apply`` moves
them back. Message order is kept within the backlog; messages published during the
migration may interleave with it.
"""

from __future__ import annotations

import time
from typing import Any

from qctl.backends.capabilities.topology import (
    BindingSpec,
    ChangeResult,
    ExchangeSpec,
    Progress,
    QueueSpec,
    SupportsQueueMigration,
    SupportsTopology,
    TopologyChange,
    TopologyQuery,
)
from qctl.errors import QctlError, UnsupportedCapability
from qctl.topology.ownership import MIGRATION_SUFFIX

#: How often the "delete only if empty" step is retried after a late publish.
_DELETE_ATTEMPTS = 5


class MigrationError(QctlError):
    """A migration step failed; the message says where the messages are now."""


def temporary_queue(name: str) -> str:
    return name + MIGRATION_SUFFIX


def migrate_queue(
    backend: SupportsTopology,
    scope: str | None,
    change: TopologyChange,
    progress: Progress | None = None,
    resume_only: bool = False,
) -> ChangeResult:
    """Carry out a queue ``recreate`` change (or, with ``resume_only``, finish one)."""
    if not isinstance(backend, SupportsQueueMigration):
        raise UnsupportedCapability(change.backend, "queue migration (--allow-recreate)")
    mover: SupportsQueueMigration = backend
    name = change.name
    desired: QueueSpec = change.desired
    temp = temporary_queue(name)
    say = progress or (lambda _msg: None)
    live = backend.topology_describe(TopologyQuery(scope=scope, names=frozenset({name, temp})))
    bindings = [
        b
        for b in live.bindings
        if b.destination_type == "queue" and b.destination == name and b.source != ""
    ]
    details: dict[str, Any] = {"temporary_queue": temp, "bindings": len(bindings)}
    step = _Steps(backend, scope, change)
    try:
        if name in live.queues:
            depth = mover.topology_queue_depth(scope, name)
            details["messages_before"] = depth.messages
            if depth.consumers:
                raise MigrationError(
                    f"queue {name!r} has {depth.consumers} consumer(s); recreating it would "
                    "cancel them and drop their unacknowledged messages",
                    "stop the consumers, then run apply again",
                )
            _check_fits(desired, depth.messages)
        old_type = live.queues[name].spec.type if name in live.queues else "classic"
        if temp in live.queues:
            temp_spec = live.queues[temp].spec
            details["leftover_messages"] = live.queues[temp].messages or 0
        else:
            # A quorum queue's backlog waits in a quorum queue: as safe as where it was.
            temp_spec = QueueSpec(temp, type="quorum" if old_type == "quorum" else "classic")
        if not resume_only:
            step.create_queue(temp_spec)
            step.bind([_rebind(b, temp) for b in bindings])
            step.unbind(bindings)
            say(f"rabbitmq: moving the backlog of {name} to {temp}")
            details["moved_out"] = mover.topology_move_messages(scope, name, temp, progress)
            _delete_when_empty(step, mover, scope, name, old_type, temp, details)
            step.create_queue(desired)
            step.bind(bindings)
        current = backend.topology_describe(TopologyQuery(scope=scope, names=frozenset({temp})))
        step.unbind(
            [
                b
                for b in current.bindings
                if b.destination_type == "queue" and b.destination == temp and b.source != ""
            ]
        )
        if temp in current.queues:
            say(f"rabbitmq: moving the backlog of {temp} back to {name}")
            details["moved_back"] = mover.topology_move_messages(scope, temp, name, progress)
            step.delete_queue(temp, temp_spec.type)
        details["messages_after"] = mover.topology_queue_depth(scope, name).messages
    except QctlError as exc:
        where = f"; messages not yet moved back wait in {temp!r}" if step.touched else ""
        return ChangeResult(change, ok=False, error=f"{exc}{where}", details=details)
    return ChangeResult(change, ok=True, details=details)


def _check_fits(desired: QueueSpec, backlog: int) -> None:
    limit = desired.arguments.get("x-max-length")
    overflow = desired.arguments.get("x-overflow", "drop-head")
    if isinstance(limit, int) and backlog > limit and overflow == "drop-head":
        raise MigrationError(
            f"queue {desired.name!r} holds {backlog} messages but the new max_length is "
            f"{limit} with overflow drop-head: moving the backlog back would drop "
            f"{backlog - limit} of them",
            "drain the queue first, raise max_length, or use overflow reject-publish",
        )


def _delete_when_empty(
    step: _Steps,
    mover: SupportsQueueMigration,
    scope: str | None,
    name: str,
    queue_type: str,
    temp: str,
    details: dict[str, Any],
) -> None:
    """Delete the old queue only when empty; a late publish is moved first."""
    for attempt in range(_DELETE_ATTEMPTS):
        try:
            step.delete_queue(name, queue_type)
            return
        except QctlError:
            if attempt == _DELETE_ATTEMPTS - 1:
                raise
            time.sleep(0.1)
            details["moved_out"] = details.get("moved_out", 0) + mover.topology_move_messages(
                scope, name, temp, None
            )


def _rebind(binding: BindingSpec, queue: str) -> BindingSpec:
    return BindingSpec(binding.source, queue, "queue", binding.routing_key, dict(binding.arguments))


class _Steps:
    """Single-object changes through the backend's batch API, failing loudly."""

    def __init__(self, backend: SupportsTopology, scope: str | None, change: TopologyChange):
        self.backend = backend
        self.scope = scope
        self.name = change.backend
        self.touched = False

    def run(self, changes: list[TopologyChange]) -> None:
        if not changes:
            return
        self.touched = True
        for result in self.backend.topology_apply(self.scope, changes, None):
            if not result.ok:
                raise MigrationError(
                    f"{result.change.action} {result.change.kind} {result.change.name!r} "
                    f"failed: {result.error}"
                )

    def create_queue(self, spec: QueueSpec) -> None:
        self.run([TopologyChange(self.name, "queue", spec.name, "create", desired=spec)])

    def delete_queue(self, name: str, queue_type: str) -> None:
        """Delete ``name`` only if it is empty (the backend checks right before)."""
        spec = QueueSpec(name, type=queue_type)
        self.run([TopologyChange(self.name, "queue", name, "delete", live=spec, force=False)])

    def bind(self, bindings: list[BindingSpec]) -> None:
        self.run(
            [TopologyChange(self.name, "binding", b.label(), "create", desired=b) for b in bindings]
        )

    def unbind(self, bindings: list[BindingSpec]) -> None:
        self.run(
            [TopologyChange(self.name, "binding", b.label(), "delete", live=b) for b in bindings]
        )


def recreate_exchange(
    backend: SupportsTopology,
    scope: str | None,
    change: TopologyChange,
    progress: Progress | None = None,
) -> ChangeResult:
    """Delete and redeclare an exchange, restoring every binding it had (both ways)."""
    name = change.name
    desired: ExchangeSpec = change.desired
    live = backend.topology_describe(TopologyQuery(scope=scope, names=frozenset({name})))
    bindings = [
        b
        for b in live.bindings
        if b.source == name or (b.destination_type == "exchange" and b.destination == name)
    ]
    step = _Steps(backend, scope, change)
    try:
        step.run(
            [
                TopologyChange(
                    change.backend, "exchange", name, "delete", live=live.exchanges.get(name)
                )
            ]
        )
        step.run([TopologyChange(change.backend, "exchange", name, "create", desired=desired)])
        step.bind(bindings)
    except QctlError as exc:
        return ChangeResult(change, ok=False, error=str(exc), details={"bindings": len(bindings)})
    if progress:
        progress(f"rabbitmq: recreated exchange {name} with {len(bindings)} binding(s)")
    return ChangeResult(change, ok=True, details={"bindings_restored": len(bindings)})
