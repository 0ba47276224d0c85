"""Running a replay job: Kafka to Kafka exactly once, everything else at least once.

* ``kafka:T`` → ``kafka:U``: the backend's transactional copy. The job has its own
  consumer group (``qctl.replay.<job id>``) whose committed offsets, written in the same
  transaction as the copies, are the replay's position; a resume after Ctrl-C or
  ``kill -9`` continues after the last committed transaction and ``read_committed``
  readers of the target see each message exactly once.
* ``kafka:T`` → RabbitMQ: the at-least-once mover, committing the job group's offsets
  only past messages whose publish was confirmed.
* a stream queue → anything: the at-least-once mover; the job records the stream offset
  after the last confirmed message, and a resume attaches there.

Each replayed message keeps its key, value, headers, timestamp and (RabbitMQ)
properties, and gets a ``qctl-replayed-from`` header with its source position
(``kafka:orders/0@42``, ``rabbitmq:queue/events@42``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from qctl.backends.base import Backend, require
from qctl.backends.capabilities.groups import SupportsConsumerGroups, TopicPartition
from qctl.backends.capabilities.messaging import (
    ConsumeRequest,
    Partitioner,
    Position,
    ProduceOptions,
    SupportsConsume,
    SupportsProduce,
)
from qctl.backends.capabilities.transactions import (
    SKIP,
    CopyDecision,
    CopyProgress,
    CopyRequest,
    CopyRoute,
    FixedRoute,
    SupportsTransactionalCopy,
)
from qctl.errors import UsageError
from qctl.filters import compile_where
from qctl.jobs.lanes import Lane, ProduceLane, Report
from qctl.jobs.model import AT_LEAST_ONCE, EXACTLY_ONCE, Counters, Job
from qctl.jobs.mover import Decision, Mover, MoveStats, Route
from qctl.jobs.runner import JobRun, RunResult
from qctl.jobs.sources import MoveSource, SessionSource
from qctl.messages import Message
from qctl.refs import Ref, parse_ref
from qctl.replay.window import KafkaWindow, kafka_window, stream_end_offset

REPLAYED_FROM = "qctl-replayed-from"
BackendFor = Callable[[str], Backend]


@dataclass
class ReplayOptions:
    """A replay job's options as stored in its job file."""

    source: str
    to: str
    where: list[str] = field(default_factory=list)
    limit: int | None = None
    rate: float | None = None
    routing_key: str | None = None
    keep_partition: bool = False
    #: Kafka targets: how records are partitioned by key (``Partitioner`` value); None:
    #: the context's ``partitioner``, else murmur2.
    partitioner: str | None = None
    window: int = 1000
    #: Kafka: the resolved window; streams: the start position and end offset.
    kafka_window: dict[str, Any] | None = None
    stream_start: dict[str, Any] | None = None
    stream_end: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplayOptions:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def key_partitioner(self) -> Partitioner | None:
        return None if self.partitioner is None else Partitioner(self.partitioner)


def group_of(job_id: str) -> str:
    return f"qctl.replay.{job_id}"


def is_exactly_once(source: Ref, target: Ref, backend: Backend) -> bool:
    return (
        source.backend == target.backend
        and isinstance(backend, SupportsTransactionalCopy)
        and isinstance(backend, SupportsConsumerGroups)
    )


def _position_json(pos: Position | None) -> dict[str, Any] | None:
    if pos is None:
        return None
    out: dict[str, Any] = {"kind": pos.kind, "value": pos.value}
    if pos.instant is not None:
        out["instant"] = pos.instant.isoformat()
    return out


def _position(data: Mapping[str, Any] | None) -> Position | None:
    import datetime as dt

    if not data:
        return None
    instant = data.get("instant")
    return Position(
        str(data["kind"]),
        data.get("value"),
        dt.datetime.fromisoformat(instant) if instant else None,
    )


def prepare(
    opts: ReplayOptions, start: Position | None, end: Position | None, backend_for: BackendFor
) -> tuple[ReplayOptions, list[str]]:
    """Resolve the window (stored in the job); warnings for the user."""
    source = parse_ref(opts.source)
    backend = backend_for(source.backend)
    if isinstance(backend, SupportsConsumerGroups) and source.kind == "topic":
        window = kafka_window(backend, source, start, end)
        opts.kafka_window = window.to_json()
        return opts, window.warnings
    consumer = require(backend, SupportsConsume, "consume")
    opts.stream_start = _position_json(start or Position("first"))
    opts.stream_end = stream_end_offset(consumer, source, end)
    return opts, []


# -- dry run ----------------------------------------------------------------------------------
@dataclass
class PartitionPlan:
    partition: int | None
    start: int | None
    end: int | None
    messages: int
    first: str | None = None
    last: str | None = None


def dry_run(opts: ReplayOptions, backend_for: BackendFor) -> list[PartitionPlan]:
    """Counts per partition and the time span the replay covers; reads only when a
    filter or a stream needs it."""
    from qctl.backends.capabilities.groups import Position as GroupPosition
    from qctl.dlq.inspect import _iso

    source = parse_ref(opts.source)
    backend = backend_for(source.backend)
    predicate = compile_where(list(opts.where))
    if opts.kafka_window is not None and predicate is None:
        groups = require(backend, SupportsConsumerGroups, "consumer groups")
        window = KafkaWindow.from_json(opts.kafka_window)
        probes = []
        for p in window.end:
            if window.end[p] > window.start[p]:
                probes.append(GroupPosition(TopicPartition(source.name, p), window.start[p]))
                probes.append(GroupPosition(TopicPartition(source.name, p), window.end[p] - 1))
        stamps = groups.message_timestamps(probes) if probes else {}
        plans = []
        for p in sorted(window.end):
            first = stamps.get(GroupPosition(TopicPartition(source.name, p), window.start[p]))
            last = stamps.get(GroupPosition(TopicPartition(source.name, p), window.end[p] - 1))
            plans.append(
                PartitionPlan(
                    p,
                    window.start[p],
                    window.end[p],
                    max(window.end[p] - window.start[p], 0),
                    _iso(first.timestamp) if first else None,
                    _iso(last.timestamp) if last else None,
                )
            )
        return plans
    session = _open_source(opts, backend, group=None, resume={})
    counts: dict[int | None, PartitionPlan] = {}
    taken = 0
    try:
        while opts.limit is None or taken < opts.limit:
            batch = session.next_batch(1000)
            if batch is None:
                break
            for m in batch.messages():
                if predicate is not None and not predicate(m):
                    continue
                plan = counts.get(m.partition)
                if plan is None:
                    plan = counts[m.partition] = PartitionPlan(m.partition, m.offset, m.offset, 0)
                plan.messages += 1
                plan.end = (m.offset + 1) if m.offset is not None else None
                stamp = _iso(m.timestamp)
                plan.first = plan.first or stamp
                plan.last = stamp or plan.last
                taken += 1
                if opts.limit is not None and taken >= opts.limit:
                    break
    finally:
        session.close()
    return [counts[k] for k in sorted(counts, key=lambda k: -1 if k is None else k)]


def _open_source(
    opts: ReplayOptions, backend: Backend, group: str | None, resume: Mapping[Any, Any]
) -> Any:
    source = parse_ref(opts.source)
    consumer = require(backend, SupportsConsume, "consume")
    if opts.kafka_window is not None:
        window = KafkaWindow.from_json(opts.kafka_window)
        start = dict(window.start)
        start.update({p: o for p, o in resume.items() if p in start})
        request = ConsumeRequest(
            group=group,
            start_offsets=start,
            end_offsets=dict(window.end),
            isolation="read_committed",
        )
    else:
        offset = resume.get("offset")
        start_pos = Position("offset", int(offset)) if offset is not None else None
        request = ConsumeRequest(
            start=start_pos or _position(opts.stream_start) or Position("first"),
            end=Position("offset", opts.stream_end) if opts.stream_end is not None else None,
            prefetch=max(opts.window, 1),
        )
    return consumer.open_consumer(source, request)


# -- running ----------------------------------------------------------------------------------
def guarantee_of(opts: ReplayOptions, backend_for: BackendFor) -> str:
    source = parse_ref(opts.source)
    target = parse_ref(opts.to)
    if opts.kafka_window is not None and is_exactly_once(
        source, target, backend_for(source.backend)
    ):
        return EXACTLY_ONCE
    return AT_LEAST_ONCE


def run_replay(job: Job, backend_for: BackendFor, run: JobRun, timeout: float) -> RunResult:
    opts = ReplayOptions.from_json(job.options)
    if job.guarantee == EXACTLY_ONCE:
        return _transactional(job, opts, backend_for, run)
    return _at_least_once(job, opts, backend_for, run, timeout)


class _Control:
    def __init__(self, run: JobRun) -> None:
        self.run = run

    def started(self, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
        remaining = sum(max(ends[p] - positions.get(p, ends[p]), 0) for p in ends)
        self.run.update(Counters(), remaining, {"positions": dict(positions)}, force=True)

    def stopping(self) -> bool:
        return self.run.stop.is_set()

    def committed(self, progress: CopyProgress) -> None:
        self.run.update(
            _copy_counters(progress),
            progress.remaining,
            {"positions": {str(p): o for p, o in progress.positions.items()}},
            force=True,
        )


def _copy_counters(progress: CopyProgress) -> Counters:
    return Counters(moved=progress.routed, skipped=progress.skipped)


def _transactional(
    job: Job, opts: ReplayOptions, backend_for: BackendFor, run: JobRun
) -> RunResult:
    source = parse_ref(opts.source)
    target = parse_ref(opts.to)
    backend = backend_for(source.backend)
    copier = require(backend, SupportsTransactionalCopy, "exactly-once copies")
    assert opts.kafka_window is not None
    window = KafkaWindow.from_json(opts.kafka_window)
    predicate = compile_where(list(opts.where))
    fixed = None
    mapper = None
    if predicate is None:
        fixed = FixedRoute(
            topic=target.name,
            keep_partition=opts.keep_partition,
            position_header=REPLAYED_FROM,
            partition=target.partition,
        )
    else:

        def mapper(message: Message) -> CopyDecision:
            if not predicate(message):
                return SKIP
            out = message.copy()
            out.add_header(REPLAYED_FROM, message.origin())
            partition = target.partition
            if partition is None and opts.keep_partition:
                partition = message.partition
            return CopyRoute(target.name, out, partition)

    request = CopyRequest(
        source=source,
        group=group_of(job.id),
        transactional_id=f"qctl-{job.id}",
        mapper=mapper,
        fixed=fixed,
        start_offsets=window.start,
        end_offsets=window.end,
        limit=opts.limit,
        rate=opts.rate,
        on_missing_topic="fail",
        first_run=job.runs <= 1,
        partitioner=opts.key_partitioner(),
    )
    report = copier.transactional_copy(request, _Control(run))
    return RunResult(
        counters=_copy_counters(report),
        per_target={str(target): report.routed},
        stopped=report.stopped,
        warnings=report.warnings,
        checkpoint={"positions": {str(p): o for p, o in report.positions.items()}},
        remaining=0 if report.limited else report.remaining,
    )


def _at_least_once(
    job: Job, opts: ReplayOptions, backend_for: BackendFor, run: JobRun, timeout: float
) -> RunResult:
    source = parse_ref(opts.source)
    target = parse_ref(opts.to)
    backend = backend_for(source.backend)
    predicate = compile_where(list(opts.where))
    resume: dict[Any, Any] = {}
    group = None
    remaining = None
    if opts.kafka_window is not None:
        group = group_of(job.id)
        groups = require(backend, SupportsConsumerGroups, "consumer groups")
        committed = groups.committed_offsets([group]).get(group, {})
        resume = {tp.partition: o for tp, o in committed.items() if o is not None}
        window = KafkaWindow.from_json(opts.kafka_window)
        remaining = sum(max(window.end[p] - resume.get(p, window.start[p]), 0) for p in window.end)
    elif job.checkpoint.get("offset") is not None:
        resume = {"offset": job.checkpoint["offset"]}
    session = _open_source(opts, backend, group, resume)
    src: MoveSource = SessionSource(session, log=True, commit_every=0.5 if group else 0.0)
    label = str(target)
    options = ProduceOptions(
        routing_key=opts.routing_key,
        mandatory=True,
        window=opts.window,
        keep_timestamps=True,
        partitioner=opts.key_partitioner(),
    )
    partition = target.partition

    def decide(message: Message) -> Decision:
        if predicate is not None and not predicate(message):
            return SKIP
        out = message.copy()
        if target.backend == "kafka":
            out.add_header(REPLAYED_FROM, message.origin())  # Kafka keeps a replay's history
        else:
            out.set_header(REPLAYED_FROM, message.origin())
        ref = target
        if partition is None and opts.keep_partition and message.partition is not None:
            ref = Ref(target.backend, target.kind, target.name, message.partition, target.vhost)
        return Route(("produce", ref), out, label)

    def lanes(key: Hashable, report: Report) -> Lane:
        ref = cast(tuple[Any, ...], key)[1]
        producer = require(backend_for(ref.backend), SupportsProduce, "produce")
        return ProduceLane(producer, ref, options, report, label)

    initial = remaining

    def on_round(stats: MoveStats, s: MoveSource) -> None:
        c = stats.counters
        left = None if initial is None else max(initial - c.moved - c.skipped, 0)
        run.update(c, left, s.checkpoint())

    mover = Mover(
        src,
        decide,
        lanes,
        window=opts.window,
        limit=opts.limit,
        rate=opts.rate,
        stop=run.stop.is_set,
        on_log_failure="block",
        timeout=timeout,
        on_round=on_round,
        on_failure=lambda m, reason: run.failure(m.origin(), reason),
    )
    try:
        stats = mover.run()
    finally:
        src.close()
    c = stats.counters
    left = None if initial is None else max(initial - c.moved - c.skipped, 0)
    if stats.limited or (stats.exhausted and stats.problem is None and not stats.stopped):
        left = 0
    checkpoint = dict(job.checkpoint)
    checkpoint.update(src.checkpoint())
    return RunResult(
        counters=c,
        errors=stats.errors,
        per_target=stats.per_target,
        stopped=stats.stopped,
        problem=stats.problem,
        warnings=stats.warnings,
        checkpoint=checkpoint,
        remaining=left,
    )


def validate(source: Ref, target: Ref, opts: ReplayOptions) -> None:
    if source.backend == "rabbitmq" and source.kind != "queue":
        raise UsageError(
            f"cannot replay from {source}", "replay a stream queue: rabbitmq:queue/NAME"
        )
    if opts.routing_key is not None and target.kind != "exchange":
        raise UsageError("--routing-key applies to rabbitmq:exchange/NAME targets")
    if opts.keep_partition and target.backend != "kafka":
        raise UsageError("--keep-partition applies to kafka targets")
    if opts.partitioner is not None and target.backend != "kafka":
        raise UsageError("--partitioner applies to kafka targets")
    same = (source.backend, source.kind, source.name) == (target.backend, target.kind, target.name)
    if same and source.backend != "kafka":
        raise UsageError(
            f"replaying {source} into itself would never end",
            "replay into another queue (a Kafka replay's window is fixed, a stream's is not)",
        )
