"""Changing a consumer group's committed offsets: writing them, and deleting them.

Offset resets, their undo, and ``qctl offsets delete`` are the only writers. Both calls
report failures per partition instead of raising, because a broker accepts or refuses
each partition of one request separately: the engine must know exactly which partitions
took, to report a partial failure (exit 4) rather than a success that did nothing.
Problems that concern the whole request (unreachable cluster, unknown group, missing
authorization for the group) still raise ``QctlError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from qctl.backends.capabilities.groups import TopicPartition


@dataclass(frozen=True)
class PartitionError:
    """Why one partition of a write was refused."""

    tp: TopicPartition
    #: The broker's error name, e.g. ``UNKNOWN_TOPIC_OR_PARTITION``.
    code: str
    #: One line for a human: what happened and, where known, what to do.
    message: str

    def __str__(self) -> str:
        return f"{self.tp}: {self.message}"


@runtime_checkable
class SupportsOffsetAdmin(Protocol):
    """Write and delete the committed offsets of a consumer group."""

    def alter_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, int]
    ) -> list[PartitionError]:
        """Commit ``offsets`` for the group (creating it if needed); the refused partitions.

        The group must have no active members: a broker refuses commits from outside a
        live generation, and a live consumer would overwrite them anyway.
        """
        ...

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> list[PartitionError]:
        """Remove the group's committed offsets for ``partitions``; the refused partitions.

        Brokers refuse partitions of topics the group's live members subscribe to.
        """
        ...
