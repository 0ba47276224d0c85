"""Executing a plan: refuse live groups, snapshot, write, then read back and verify.

Kafka's own tool reports success when a reset on an active group was ignored or when
some partitions were refused. Here every partition is read back after writing and
compared with what the plan wanted; any that did not take fails the command (exit 4
when others took, exit 1 when none did), naming each partition and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from qctl.backends.capabilities.groups import SupportsConsumerGroups, TopicPartition
from qctl.backends.capabilities.offsets import PartitionError, SupportsOffsetAdmin
from qctl.errors import PartialFailure, QctlError
from qctl.offsets.model import FAILED, OK, GroupActive, OffsetPlan, PartitionChange
from qctl.offsets.snapshots import Snapshot, SnapshotStore


@dataclass(frozen=True)
class Where:
    """Where a change happens, recorded in its snapshot."""

    context: str
    backend: str
    target: str


def execute_plan(
    groups: SupportsConsumerGroups,
    admin: SupportsOffsetAdmin,
    plan: OffsetPlan,
    store: SnapshotStore,
    where: Where,
    action: str,
    refuse_active: bool = True,
) -> OffsetPlan:
    """Apply ``plan`` in place: status and read-back offset per partition, snapshot id.

    Call ``raise_for_failures(plan)`` afterwards (after showing the result) to turn
    partitions that did not take into the documented exit code. ``refuse_active`` is
    False only for deleting offsets, which brokers allow for topics a live group does
    not subscribe to (and refuse, per partition, for the others).
    """
    desc = groups.describe_groups([plan.group])[plan.group]
    if refuse_active and desc.active:
        raise GroupActive(desc)
    writable = [c for c in plan.partitions if c.status != FAILED]
    before = groups.committed_offsets([plan.group]).get(plan.group, {})
    snapshot = store.save(
        plan.group,
        {c.tp: before.get(c.tp) for c in writable},
        context=where.context,
        backend=where.backend,
        target=where.target,
        action=action,
    )
    plan.snapshot = snapshot.id
    plan.executed = True

    writes = {c.tp: c.new for c in writable if c.new is not None}
    deletes = [c.tp for c in writable if c.new is None and before.get(c.tp) is not None]
    refused: dict[TopicPartition, PartitionError] = {}
    # Deletions first: a backend that cannot delete (Kafka on a SASL listener) then
    # fails before anything was written.
    if deletes:
        refused.update({e.tp: e for e in admin.delete_offsets(plan.group, deletes)})
    if writes:
        refused.update({e.tp: e for e in admin.alter_offsets(plan.group, writes)})

    after = groups.committed_offsets([plan.group]).get(plan.group, {})
    for change in writable:
        _verify(change, after.get(change.tp), refused.get(change.tp))
    unchanged = not any(after.get(c.tp) != before.get(c.tp) for c in writable)
    if unchanged and any(c.status == FAILED for c in plan.partitions):
        # Nothing was written: a snapshot of an unchanged state only clutters the history.
        _discard(store, snapshot, plan)
    return plan


def _verify(change: PartitionChange, actual: int | None, refused: PartitionError | None) -> None:
    change.verified = actual
    if refused is not None:
        change.status, change.error = FAILED, refused.message
    elif actual != change.new:
        change.status = FAILED
        wanted = "no commit" if change.new is None else str(change.new)
        found = "no commit" if actual is None else str(actual)
        change.error = f"read back {found}, expected {wanted} (a consumer may have committed)"
    else:
        change.status = OK


def _discard(store: SnapshotStore, snapshot: Snapshot, plan: OffsetPlan) -> None:
    store.remove(snapshot)
    plan.snapshot = None


def raise_for_failures(plan: OffsetPlan, verb: str = "reset") -> None:
    failed = [c for c in plan.partitions if c.status == FAILED]
    if not failed:
        return
    shown = "; ".join(f"{c.tp} ({c.error})" for c in failed[:5])
    if len(failed) > 5:
        shown += f"; and {len(failed) - 5} more (see -o json)"
    total = len(plan.partitions)
    took = total - len(failed)
    if took == 0:
        raise QctlError(
            f"{verb} of group {plan.group!r} failed on every partition: {shown}",
            "nothing was changed; fix the cause and retry",
        )
    undo = f"`qctl offsets undo --group {plan.group} {plan.snapshot}`" if plan.snapshot else ""
    raise PartialFailure(
        f"{verb} of group {plan.group!r}: {len(failed)} of {total} partitions did not take: "
        f"{shown}",
        f"the other {took} were written and verified"
        + (f"; revert them with {undo}" if undo else ""),
    )
