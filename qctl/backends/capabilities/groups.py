"""Reading consumer groups and partition offsets: what lag and offset resets both need.

Lag (committed vs end offsets, time lag from message timestamps) and offset resets (plans
computed from log-start/log-end/times, verification after writing) read the same facts.
This capability reads them in batches: one ListOffsets per broker for all partitions,
concurrent OffsetFetch requests for all groups, so a cluster with hundreds of groups is
described in about one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable


class TopicPartition(NamedTuple):
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    state: str
    #: "consumer" (KIP-848), "classic", or "unknown" on brokers that do not say.
    type: str = "unknown"
    #: Simple groups only commit offsets; they have no members or protocol.
    simple: bool = False


@dataclass
class GroupMember:
    member_id: str
    client_id: str
    host: str
    group_instance_id: str | None = None
    assignment: list[TopicPartition] = field(default_factory=list)


@dataclass
class GroupDescription:
    group_id: str
    #: Kafka's own names: Stable, Empty, PreparingRebalance, CompletingRebalance, Dead, ...
    state: str
    members: list[GroupMember] = field(default_factory=list)
    assignor: str | None = None
    coordinator: int | None = None
    type: str = "unknown"
    simple: bool = False

    @property
    def active(self) -> bool:
        """Whether the group has live members (offset changes would be overwritten)."""
        return bool(self.members) or self.state not in ("Empty", "Dead", "Unknown")


@dataclass(frozen=True)
class PartitionOffsets:
    """The three ends of a partition's log that lag and resets are measured against."""

    log_start: int
    #: High watermark: what read_uncommitted consumers can read up to.
    log_end: int
    #: Last stable offset: what read_committed consumers can read up to. Equal to
    #: ``log_end`` unless a transaction is open; commit markers sit below it.
    last_stable: int


class Position(NamedTuple):
    """One offset in one partition."""

    tp: TopicPartition
    offset: int


@dataclass(frozen=True)
class MessageTimestamp:
    """The timestamp found at a position, or why there is none."""

    #: Milliseconds since the epoch, or None when no message was found.
    timestamp: int | None
    #: The offset of the message actually read (differs when compaction removed the one
    #: asked for; then ``exact`` is False).
    offset: int | None
    exact: bool
    #: When nothing was found: the end of the partition the reader reached (a later end
    #: means messages arrived after the read).
    end_offset: int | None = None


@runtime_checkable
class SupportsConsumerGroups(Protocol):
    """Read consumer groups, their committed offsets and the partitions' offsets."""

    def list_groups(self) -> list[GroupListing]:
        """All consumer groups of the cluster."""
        ...

    def describe_groups(self, group_ids: Iterable[str]) -> dict[str, GroupDescription]:
        """State and members of each group, requested concurrently."""
        ...

    def committed_offsets(
        self, group_ids: Iterable[str]
    ) -> dict[str, dict[TopicPartition, int | None]]:
        """Committed offsets per group (None: the group has no commit for that partition).

        Only partitions the group ever committed are returned.
        """
        ...

    def topic_partitions(self, topics: Iterable[str]) -> dict[str, int]:
        """Partition counts of the named topics (missing topics are left out)."""
        ...

    def partition_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, PartitionOffsets]:
        """Log-start, log-end and last-stable offset of each partition, in one batch."""
        ...

    def offsets_for_times(
        self, requests: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """The first offset whose timestamp is >= the given millis; None: past the end."""
        ...

    def message_timestamps(
        self, positions: Iterable[Position], isolation: str = "read_uncommitted"
    ) -> dict[Position, MessageTimestamp]:
        """The timestamp of the message at each position (for lag in time).

        ``isolation`` is "read_uncommitted" or "read_committed" (then transaction markers
        and aborted messages are skipped, as a read_committed consumer would). A position
        with nothing readable at or after it (the end of the partition) maps to
        ``MessageTimestamp(None, None, False, end_offset)``; positions that could not be
        read (out of range, not authorized, not within the timeout) are left out.
        """
        ...
