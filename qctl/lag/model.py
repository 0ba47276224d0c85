"""What ``qctl lag`` reports: groups, partitions, queues, and their evaluation.

The field names of these classes are the JSON contract of ``qctl lag -o json`` and are
documented in docs/lag.md; add fields, never rename them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """Burrow's vocabulary: how a consumer is doing, judged from a window of samples."""

    OK = "OK"
    #: Lag rose at every sample of the window while the consumer made progress.
    WARN = "WARN"
    #: The offset moved backwards (a reset or a rewind by the application).
    REWIND = "REWIND"
    #: A live consumer owns the partition but its offset did not move while lag > 0.
    STALL = "STALL"
    #: Nobody committed for longer than the window while lag > 0.
    STOP = "STOP"
    #: Lag cannot be trusted or data was lost: committed below log-start, offsets
    #: unavailable, committed beyond the log end, a queue not running.
    ERR = "ERR"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    Status.OK: 0,
    Status.WARN: 1,
    Status.REWIND: 2,
    Status.STALL: 3,
    Status.STOP: 4,
    Status.ERR: 5,
}


class Trend(StrEnum):
    INCREASING = "increasing"
    STABLE = "stable"
    DECREASING = "decreasing"
    #: Fewer than two samples: nothing to compare yet.
    UNKNOWN = "unknown"


class PartitionState(StrEnum):
    OK = "ok"
    #: The group has no committed offset here; ``backlog`` counts from log-start.
    NEVER_COMMITTED = "never-committed"
    #: The committed offset is below log-start: retention removed unread messages.
    DATA_LOST = "data-lost"
    #: The committed offset is beyond the log end (topic recreated or truncated).
    AHEAD = "ahead"
    #: The topic no longer exists; the group's commit for it is stale.
    TOPIC_DELETED = "topic-deleted"
    #: The partition's offsets could not be read (leader unavailable).
    UNAVAILABLE = "unavailable"


class TimeLagSource(StrEnum):
    """Where ``time_lag_seconds`` came from, most trustworthy first."""

    #: Nothing left to read: the consumer is caught up, lag in time is 0.
    CAUGHT_UP = "caught-up"
    #: The timestamp of the message at the committed offset.
    MESSAGE = "message"
    #: That message is gone (compaction, retention, a transaction marker): the timestamp
    #: of the next message the consumer will read. Approximate.
    NEXT_MESSAGE = "next-message"
    #: No message could be read: interpolated from recorded log-end offsets. Approximate.
    INTERPOLATED = "interpolated"
    #: RabbitMQ: the ``timestamp`` property of the queue's oldest message.
    HEAD_MESSAGE = "head-message"


@dataclass
class Evaluation:
    """Status, trend, rates and ETA of one group, partition or queue."""

    status: Status = Status.OK
    trend: Trend = Trend.UNKNOWN
    #: One line: why the status is what it is.
    reason: str = ""
    #: Messages per second consumed (offsets committed / messages acknowledged).
    consume_rate: float | None = None
    #: Messages per second produced (log-end growth / messages published).
    produce_rate: float | None = None
    #: Seconds until the lag reaches 0 at the current rates; None when not catching up.
    eta_seconds: float | None = None
    #: Samples in the evaluated window, and the time they span.
    samples: int = 0
    window_seconds: float = 0.0


@dataclass
class Owner:
    member_id: str
    client_id: str
    host: str


@dataclass
class PartitionLag:
    topic: str
    partition: int
    state: PartitionState
    committed: int | None
    log_start: int | None
    log_end: int | None
    last_stable: int | None
    #: The end the lag is measured against: last_stable for read_committed, else log_end.
    end: int | None
    #: Messages the group still has to read; None when never committed or unknown.
    lag: int | None
    #: Never committed: messages from log-start to the end (what a new consumer reading
    #: from the earliest offset would face).
    backlog: int | None = None
    #: Data lost: messages removed by retention below the committed offset.
    data_lost: int | None = None
    time_lag_seconds: float | None = None
    time_lag_source: TimeLagSource | None = None
    #: False when the time lag is approximate (see ``time_lag_source``).
    time_lag_exact: bool = True
    owner: Owner | None = None
    evaluation: Evaluation = field(default_factory=Evaluation)

    @property
    def key(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass
class MemberView:
    member_id: str
    client_id: str
    host: str
    group_instance_id: str | None
    partitions: list[str]


@dataclass
class GroupLag:
    backend: str
    group: str
    #: Kafka's state name: Stable, Empty, PreparingRebalance, CompletingRebalance, Dead.
    state: str
    #: read_committed (measured against the last-stable offset) or read_uncommitted.
    isolation: str
    members: list[MemberView]
    topics: list[str]
    #: Sum of partition lag (never-committed partitions are counted in ``backlog``).
    lag: int
    #: The largest partition time lag, in seconds.
    time_lag_seconds: float | None
    #: False when any partition's time lag is approximate.
    time_lag_exact: bool
    backlog: int
    never_committed: int
    data_lost: int
    partitions: list[PartitionLag]
    evaluation: Evaluation = field(default_factory=Evaluation)

    @property
    def key(self) -> str:
        return f"{self.backend}:{self.group}"


@dataclass
class QueueLag:
    backend: str
    vhost: str
    queue: str
    type: str
    state: str
    ready: int
    unacked: int
    #: ready + unacked: the queue's lag.
    depth: int
    consumers: int
    consumer_utilisation: float | None
    publish_rate: float | None
    deliver_rate: float | None
    ack_rate: float | None
    redeliver_rate: float | None
    #: Change of depth per second (negative while draining).
    depth_rate: float | None
    #: Age of the oldest message, when publishers set the timestamp property.
    time_lag_seconds: float | None
    time_lag_source: TimeLagSource | None
    dead_letter: bool
    dead_letter_reason: str | None
    #: DLQs only: messages arriving per second (dead-lettered or published).
    inflow_rate: float | None
    evaluation: Evaluation = field(default_factory=Evaluation)

    @property
    def key(self) -> str:
        return f"{self.backend}:{self.vhost}/{self.queue}"


@dataclass
class BackendError:
    backend: str
    address: str
    error: str
    exit_code: int


@dataclass
class LagSnapshot:
    """One sample of everything selected, across backends."""

    context: str
    #: ISO-8601 UTC time the sample was taken.
    sampled_at: str
    groups: list[GroupLag] = field(default_factory=list)
    queues: list[QueueLag] = field(default_factory=list)
    errors: list[BackendError] = field(default_factory=list)
    #: Backend name -> address, for the footer of the live view.
    targets: dict[str, str] = field(default_factory=dict)
