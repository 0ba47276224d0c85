"""DLQ jobs: redrive, drain and purge, on top of the job engines.

* Kafka DLQ → Kafka targets (the default redrive): exactly once. The backend's
  transactional copy writes each batch and advances the DLQ group in one transaction;
  messages that stay (not selected, origin unknown, target topic missing) are written
  back to the end of the DLQ in the same transaction.
* Everything else: the at-least-once mover. A queue DLQ acknowledges a message only
  after its copy was confirmed (publisher confirms and ``mandatory`` for RabbitMQ,
  acks=all for Kafka) or written and fsynced (drain); a Kafka DLQ advances its group
  only past messages that are done.

The job's options hold everything needed to run it again; a Kafka DLQ's end offsets are
fixed when the job is created, so a resume finishes the same window.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from qctl.backends.base import require
from qctl.backends.capabilities.messaging import (
    ConsumeRequest,
    Partitioner,
    ProduceOptions,
    SupportsProduce,
)
from qctl.backends.capabilities.transactions import (
    KEEP,
    SKIP,
    CopyDecision,
    CopyMapper,
    CopyProgress,
    CopyRequest,
    CopyRoute,
    RawMapper,
    RawRoute,
    SupportsTransactionalCopy,
)
from qctl.dlq.access import BackendFor, Dlq, Window, read_messages
from qctl.dlq.provenance import (
    H_ORIGINAL_PARTITION,
    H_REDRIVE_COUNT,
    H_REDRIVE_ID,
    from_kafka_headers,
    loop_guard_of,
    provenance_of,
)
from qctl.dlq.routing import (
    H_PARKED_BY,
    ORIGIN_NAMES,
    ORIGIN_UNKNOWN,
    UNKNOWN,
    Action,
    RedriveRules,
    Target,
    Verdict,
)
from qctl.dlq.selection import Selection
from qctl.errors import QctlError, UsageError
from qctl.jobs.model import AT_LEAST_ONCE, EXACTLY_ONCE, Counters, Job
from qctl.jobs.runner import JobRun, RunResult
from qctl.messages import Message
from qctl.refs import Ref, parse_ref

if TYPE_CHECKING:
    # The at-least-once mover and its parts: a Kafka redrive (the exactly-once copy)
    # does not load them.
    from qctl.jobs.lanes import Lane, Report
    from qctl.jobs.mover import Decide, Decision, MoveStats
    from qctl.jobs.sources import FileSource, MoveSource

#: Extra deliveries a queue DLQ may hold unacknowledged (failed or not selected) beyond
#: the window before a run stops.
HOLD = 1000


@dataclass
class DlqJobOptions:
    """The options of a DLQ job, as stored in the job file."""

    dlq: str
    to: str | None = None
    routing_key: str | None = None
    from_file: str | None = None
    to_file: str | None = None
    append: bool = False
    where: list[str] = field(default_factory=list)
    older_than: str | None = None
    limit: int | None = None
    rate: float | None = None
    max_redrives: int | None = None
    keep_partition: bool = False
    #: Kafka: partition by key even where the original partition is known.
    by_key: bool = False
    #: Kafka: how records written by key are partitioned (``Partitioner`` value); None:
    #: the context's ``partitioner``, else murmur2.
    partitioner: str | None = None
    to_origin_queue: bool = False
    strip_death_headers: bool = False
    window: int = 1000
    #: Kafka DLQs: the end offsets of the job's window, fixed at creation.
    end_offsets: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DlqJobOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def ends(self) -> dict[int, int] | None:
        if self.end_offsets is None:
            return None
        return {int(p): int(o) for p, o in self.end_offsets.items()}

    def key_partitioner(self) -> Partitioner | None:
        return None if self.partitioner is None else Partitioner(self.partitioner)


# -- planning ---------------------------------------------------------------------------------
def exactly_once(dlq: Dlq, opts: DlqJobOptions) -> bool:
    """Whether this redrive runs as a Kafka transaction (every target is a topic)."""
    if not dlq.log or opts.from_file:
        return False
    if opts.to is not None and parse_ref(opts.to).backend != dlq.ref.backend:
        return False
    return isinstance(dlq.backend, SupportsTransactionalCopy)


def new_job_options(dlq: Dlq, opts: DlqJobOptions) -> DlqJobOptions:
    """Fix what must not change between runs: a log DLQ's end offsets."""
    if dlq.log and not opts.from_file and opts.end_offsets is None:
        window = dlq.window()
        opts.end_offsets = {str(p): o for p, o in window.end.items()}
    return opts


def guarantee(dlq: Dlq, opts: DlqJobOptions, kind: str) -> str:
    return EXACTLY_ONCE if kind == "redrive" and exactly_once(dlq, opts) else AT_LEAST_ONCE


def rules_for(dlq: Dlq, opts: DlqJobOptions, job_id: str) -> RedriveRules:
    traits = dlq.traits()
    parking = None
    if opts.max_redrives is not None:
        parking = dlq.dead_letters.ensure_parking_lot(dlq.ref)
    return RedriveRules(
        dlq=dlq.ref,
        job_id=job_id,
        to=parse_ref(opts.to) if opts.to else None,
        routing_key=opts.routing_key,
        keep_partition=opts.keep_partition,
        by_key=opts.by_key,
        to_origin_queue=opts.to_origin_queue,
        max_redrives=opts.max_redrives,
        parking=parking,
        strip_headers=tuple(traits.death_headers) if opts.strip_death_headers else (),
        copy_provenance=not traits.keeps_death_history,
    )


# -- dry run ----------------------------------------------------------------------------------
@dataclass
class RouteCount:
    origin: str
    target: str
    action: str
    count: int = 0


def dry_run(dlq: Dlq, opts: DlqJobOptions, max_messages: int | None = None) -> list[RouteCount]:
    """What a redrive would do, grouped by origin and target; nothing moves. Kafka
    targets say how their records are placed: in their original partition, or by key."""
    rules = _dry_rules(dlq, opts)
    placement = _Placement(dlq, opts)
    select = Selection.of(opts.where, None, dlq.ref.backend)
    groups: dict[tuple[str, str, str], RouteCount] = {}
    if opts.from_file:
        from qctl.jobs.sources import FileSource

        messages = FileSource(Path(opts.from_file))
        session = None
    else:
        session = dlq.peek_session()
    try:
        stream = _file_messages(messages) if session is None else read_messages(session, None)
        taken = 0
        for message in stream:
            prov = provenance_of(message.headers, dlq.ref.backend)
            if not select(message, prov):
                key = (prov.origin_label, "(stays)", "not selected")
            else:
                verdict = rules.verdict(prov, routing_key=message.routing_key)
                if verdict.action is Action.PARK:
                    key = (prov.origin_label, f"{dlq.ref.name}.parking", "park")
                elif verdict.target is None:
                    key = (prov.origin_label, "(stays)", ORIGIN_UNKNOWN)
                else:
                    key = (prov.origin_label, *placement.of(verdict.target))
                    taken += 1
            groups.setdefault(key, RouteCount(*key)).count += 1
            if opts.limit is not None and taken >= opts.limit:
                break
            if max_messages is not None and sum(g.count for g in groups.values()) >= max_messages:
                break
    finally:
        if session is not None:
            session.close()
    return sorted(groups.values(), key=lambda g: (-g.count, g.origin, g.target))


class _Placement:
    """Where a dry run says a Kafka target's records go: the original (or a given)
    partition while the topic has it, else by key with the redrive's partitioner."""

    def __init__(self, dlq: Dlq, opts: DlqJobOptions) -> None:
        self.dlq = dlq
        self.explicit = opts.to is not None and parse_ref(opts.to).partition is not None
        self.partitioner = opts.partitioner
        self.counts: dict[str, int | None] = {}

    def of(self, target: Target) -> tuple[str, str]:
        """(target label, action) of a record routed to ``target``."""
        ref = target.ref
        if ref.backend != "kafka":
            return target.label, "redrive"
        label = f"kafka:{ref.name}"
        if ref.partition is None:
            return label, f"redrive: by key ({self._partitioner()})"
        count = self._count(ref.name)
        if count is not None and ref.partition >= count:
            return label, (
                f"redrive: by key ({self._partitioner()}), its partition {ref.partition} is gone"
            )
        if self.explicit:
            return label, f"redrive: partition {ref.partition}"
        return label, "redrive: original partition"

    def _count(self, topic: str) -> int | None:
        if topic not in self.counts:
            from qctl.backends.capabilities.groups import SupportsConsumerGroups

            groups = require(self.dlq.backend_for("kafka"), SupportsConsumerGroups, "topics")
            self.counts[topic] = groups.topic_partitions([topic]).get(topic)
        return self.counts[topic]

    def _partitioner(self) -> str:
        if self.partitioner is not None:
            return self.partitioner
        settings = getattr(self.dlq.backend_for("kafka"), "settings", {})
        named = settings.get("partitioner")
        found = Partitioner.from_librdkafka(str(named)) if named is not None else None
        if named is not None and found is None:
            return str(named)
        return (found or Partitioner.MURMUR2).value


def _dry_rules(dlq: Dlq, opts: DlqJobOptions) -> RedriveRules:
    parking = Ref(dlq.ref.backend, dlq.ref.kind, f"{dlq.ref.name}.parking", vhost=dlq.ref.vhost)
    return RedriveRules(
        dlq=dlq.ref,
        job_id="dry-run",
        to=parse_ref(opts.to) if opts.to else None,
        routing_key=opts.routing_key,
        keep_partition=opts.keep_partition,
        by_key=opts.by_key,
        to_origin_queue=opts.to_origin_queue,
        max_redrives=opts.max_redrives,
        parking=parking,
    )


def _file_messages(source: FileSource) -> Any:
    while True:
        batch = source.next_batch(1000)
        if batch is None:
            return
        yield from batch.messages


# -- running ----------------------------------------------------------------------------------
def run_dlq_job(job: Job, backend_for: BackendFor, run: JobRun, timeout: float) -> RunResult:
    """Run (or resume) a redrive, drain or purge job."""
    opts = DlqJobOptions.from_json(job.options)
    dlq = Dlq(opts.dlq, backend_for)
    if job.kind == "redrive" and job.guarantee == EXACTLY_ONCE:
        return _transactional_redrive(job, dlq, opts, run)
    from qctl.dlq import queue_redrive
    from qctl.jobs.mover import Route

    select = Selection.of(opts.where, opts.older_than, dlq.ref.backend)
    backend = dlq.ref.backend
    own_loop = None  # the rules of a redrive the backend moves itself
    decide: Decide
    if job.kind == "redrive":
        rules = rules_for(dlq, opts, job.id)
        from_file = opts.from_file is not None
        if queue_redrive.applies(dlq, rules, select, from_file):
            own_loop = rules
        decide = move_decider(rules, select, backend, from_file=from_file)
    else:
        sink: tuple[str, ...] = ("archive",) if opts.to_file else ("discard",)
        label = opts.to_file or "(deleted)"

        def decide(message: Message) -> Decision:
            if not select(message):
                return KEEP
            return Route(sink, message, label)

    lanes = _lane_factory(backend_for, opts, timeout)
    first = None
    if own_loop is not None:
        first = queue_redrive.run(
            dlq,
            own_loop,
            run,
            window=opts.window,
            limit=opts.limit,
            rate=opts.rate,
            timeout=timeout,
            initial=_depth(dlq),
        )
        limit = None if opts.limit is None else max(opts.limit - first.moved, 0)
        if first.handover is None or limit == 0 or run.stop.is_set():
            result = queue_redrive.merged(first, None)
            result.remaining = _depth(dlq)
            return result
        opts = replace(opts, limit=limit)
    rest = _move(
        job, dlq, opts, run, decide, lanes, selective=not select.everything, timeout=timeout
    )
    return rest if first is None else queue_redrive.merged(first, rest)


def move_decider(
    rules: RedriveRules, select: Selection, backend: str, *, from_file: bool
) -> Decide:
    """The redrive's verdicts as the generic mover's decisions: a route to the target's
    produce lane with the copy ``Verdict.applied`` gives, or to the reject lane."""
    from qctl.jobs.mover import Route

    full = rules.needs_origin or select.older_than is not None

    def decide(message: Message) -> Decision:
        prov = provenance_of(message.headers, backend) if full else loop_guard_of(message.headers)
        if not select(message, prov):
            return SKIP if from_file else KEEP
        verdict = rules.message_verdict(message, prov)
        target = verdict.target
        if target is None:
            return Route(("reject", ORIGIN_UNKNOWN), message, ORIGIN_UNKNOWN)
        parked = verdict.action is Action.PARK
        return Route(("produce", target.ref), verdict.applied(message), target.label, parked)

    return decide


def _lane_factory(
    backend_for: BackendFor, opts: DlqJobOptions, timeout: float
) -> Callable[[Hashable, Report], Lane]:
    from qctl.jobs.lanes import ArchiveLane, DiscardLane, ProduceLane, RejectLane

    def make(key: Hashable, report: Report) -> Lane:
        kind = cast(tuple[Any, ...], key)[0]
        if kind == "produce":
            ref: Ref = cast(tuple[Any, ...], key)[1]
            producer = require(backend_for(ref.backend), SupportsProduce, "produce")
            options = ProduceOptions(
                routing_key=None,
                mandatory=True,
                window=opts.window,
                keep_timestamps=True,
                partitioner=opts.key_partitioner(),
            )
            return ProduceLane(producer, ref, options, report)
        if kind == "archive":
            assert opts.to_file is not None
            return ArchiveLane(Path(opts.to_file), report, append=True)
        if kind == "discard":
            return DiscardLane(report)
        if kind == "reject":
            return RejectLane(str(cast(tuple[Any, ...], key)[1]), report)
        raise QctlError(f"unknown lane {key!r}")

    return make


def _move(
    job: Job,
    dlq: Dlq,
    opts: DlqJobOptions,
    run: JobRun,
    decide: Decide,
    lanes: Callable[[Hashable, Report], Lane],
    *,
    selective: bool,
    timeout: float,
) -> RunResult:
    from qctl.jobs.mover import Mover, Route
    from qctl.jobs.sources import FileSource, SessionSource

    keep_route = None
    hold_limit: int | None = None
    on_log_failure = "keep"
    source: MoveSource
    if opts.from_file:
        done = int(job.checkpoint.get("messages_done", 0))
        source = FileSource(Path(opts.from_file), skip=done)
        remaining = None
        on_log_failure = "skip"
    elif dlq.log:
        window = dlq.window()
        ends = opts.ends() or window.end
        start = {p: min(o, ends.get(p, o)) for p, o in window.start.items()}
        request = ConsumeRequest(
            group=dlq.group, start_offsets=start, end_offsets=ends, isolation="read_committed"
        )
        session = dlq.consumer().open_consumer(dlq.ref, request)
        source = SessionSource(session, log=True, commit_every=0.5)
        remaining = Window(start, ends).remaining

        def keep_route(message: Message) -> Route:
            ref = Ref("kafka", "topic", dlq.ref.name, message.partition)
            return Route(("produce", ref), message, f"{dlq.ref} (kept)")

    else:
        request = ConsumeRequest(
            ack=True, selective=selective, prefetch=opts.window + HOLD, settle=True
        )
        session = dlq.consumer().open_consumer(dlq.ref, request)
        source = SessionSource(session, log=False)
        hold_limit = None if selective else HOLD
        remaining = _depth(dlq)
    initial = remaining

    def on_round(stats: MoveStats, src: MoveSource) -> None:
        c = stats.counters
        left = None
        if initial is not None:
            left = max(initial - (c.moved + c.parked + c.kept + c.skipped + c.failed), 0)
        run.update(c, left, src.checkpoint())

    def on_failure(message: Message, reason: str) -> None:
        run.failure(message.origin(), reason)

    mover = Mover(
        source,
        decide,
        lanes,
        window=opts.window,
        limit=opts.limit,
        rate=opts.rate,
        stop=run.stop.is_set,
        keep_route=keep_route,
        on_log_failure=on_log_failure,
        hold_limit=hold_limit,
        timeout=timeout,
        on_round=on_round,
        on_failure=on_failure,
    )
    try:
        stats = mover.run()
    finally:
        source.close()
    c = stats.counters
    left = None
    if initial is not None:
        left = max(initial - (c.moved + c.parked + c.kept + c.skipped + c.failed), 0)
    if stats.exhausted and stats.problem is None and not stats.stopped and dlq.log:
        left = 0
    elif not dlq.log and not opts.from_file:
        left = _depth(dlq)
    return RunResult(
        counters=stats.counters,
        errors=stats.errors,
        per_target=stats.per_target,
        stopped=stats.stopped,
        problem=stats.problem,
        warnings=stats.warnings,
        checkpoint=source.checkpoint(),
        remaining=left,
    )


def _depth(dlq: Dlq) -> int | None:
    try:
        found = dlq.dead_letters.dead_letter_queues({}, [dlq.ref.name])
    except QctlError:
        return None
    return found[0].messages if found else None


# -- exactly-once redrive ---------------------------------------------------------------------
class _CopyControl:
    def __init__(self, run: JobRun, counters: Callable[[CopyProgress], Counters]) -> None:
        self.run = run
        self.counters = counters

    def started(self, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
        remaining = sum(max(ends[p] - positions.get(p, ends[p]), 0) for p in ends)
        self.run.update(Counters(), remaining, {"positions": dict(positions)}, force=True)

    def stopping(self) -> bool:
        return self.run.stop.is_set()

    def committed(self, progress: CopyProgress) -> None:
        self.run.update(
            self.counters(progress),
            progress.remaining,
            {"positions": {str(p): o for p, o in progress.positions.items()}},
            force=True,
        )


def _transactional_redrive(job: Job, dlq: Dlq, opts: DlqJobOptions, run: JobRun) -> RunResult:
    select = Selection.of(opts.where, opts.older_than, "kafka")
    rules = rules_for(dlq, opts, job.id)
    parking_topic = rules.parking.name if rules.parking is not None else None

    def counters(progress: CopyProgress) -> Counters:
        parked = progress.per_target.get(parking_topic or "", 0)
        failed = sum(progress.rejected.values())
        return Counters(
            moved=progress.routed - parked,
            parked=parked,
            skipped=progress.skipped,
            kept=max(progress.kept - failed, 0),
            failed=failed,
        )

    copier = require(dlq.backend, SupportsTransactionalCopy, "exactly-once copies")
    raw = raw_mapper(rules) if select.everything else None
    request = CopyRequest(
        source=dlq.ref,
        group=dlq.group or f"qctl.dlq.{dlq.ref.name}",
        transactional_id=f"qctl-{job.id}",
        mapper=copy_mapper(rules, select),
        raw_mapper=raw,
        end_offsets=opts.ends(),
        limit=opts.limit,
        rate=opts.rate,
        on_missing_topic="keep",
        first_run=job.runs <= 1,
        partitioner=opts.key_partitioner(),
    )
    report = copier.transactional_copy(request, _CopyControl(run, counters))
    errors = dict(report.rejected)
    return RunResult(
        counters=counters(report),
        errors=errors,
        per_target={f"kafka:{t}": n for t, n in report.per_target.items()},
        stopped=report.stopped,
        warnings=report.warnings,
        checkpoint={"positions": {str(p): o for p, o in report.positions.items()}},
        remaining=report.remaining,
    )


def copy_mapper(rules: RedriveRules, select: Selection) -> CopyMapper:
    """The redrive's verdicts as the exactly-once copy's decisions: the copy
    ``Verdict.applied`` gives to the target topic (and partition); a parked record stays
    in its own partition."""

    def mapper(message: Message) -> CopyDecision:
        prov = provenance_of(message.headers, "kafka")
        if not select(message, prov):
            return KEEP
        verdict = rules.message_verdict(message, prov)
        target = verdict.target
        if target is None:
            return UNKNOWN
        out = verdict.applied(message)
        if verdict.action is Action.PARK:
            return CopyRoute(target.ref.name, out, message.partition)
        return CopyRoute(target.ref.name, out, target.ref.partition)

    return mapper


#: The headers a Kafka redrive's verdict depends on: origin topic and partition in each
#: convention, qctl's origin headers, and the headers a verdict replaces (the loop
#: guard's, the parking mark).
_ROUTING_SET = frozenset(
    (
        *ORIGIN_NAMES,
        H_ORIGINAL_PARTITION,
        "kafka_dlt-original-topic",
        "kafka_dlt-original-partition",
        "__connect.errors.topic",
        "__connect.errors.partition",
        H_REDRIVE_COUNT,
        H_REDRIVE_ID,
        H_PARKED_BY,
    )
)


@dataclass(frozen=True, slots=True)
class _RawEdit:
    """A verdict as edits of a raw Kafka header list and a route."""

    #: ROUTE: the one route object for every record with these headers.
    route: RawRoute | None
    #: PARK: the parking lot's topic (the record stays in its partition).
    parking: str | None
    #: The names to remove first; None when the record has none of them.
    drop: frozenset[str] | None
    #: The headers to append then.
    append: tuple[tuple[str, bytes], ...]


def _raw_edit(verdict: Verdict, relevant: tuple[tuple[str, bytes | None], ...]) -> _RawEdit:
    """``verdict`` for records whose routing headers are ``relevant`` (the names the
    verdict replaces are among those, so whether a record has any is known here)."""
    replaced = frozenset(name for name, _ in verdict.replace)
    drop = None
    if verdict.drop or any(name in replaced for name, _ in relevant):
        drop = verdict.drop | replaced
    append = tuple((name, value.encode()) for name, value in (*verdict.add, *verdict.replace))
    target = verdict.target
    route = parking = None
    if target is not None and verdict.action is Action.PARK:
        parking = target.ref.name
    elif target is not None:
        route = RawRoute(target.ref.name, None, target.ref.partition)
    return _RawEdit(route, parking, drop, append)


def raw_mapper(rules: RedriveRules) -> RawMapper:
    """The redrive's verdicts from raw Kafka headers, the same as ``rules`` gives for a
    Message, cached by the few headers they depend on (a DLQ holds many messages from
    few origins): per message, one pass over its headers and a dictionary lookup."""
    cache: dict[tuple[tuple[str, bytes | None], ...], _RawEdit] = {}
    routing = _ROUTING_SET
    #: A parked record stays in its partition: one route per partition.
    parked: dict[int, RawRoute] = {}

    def decide(headers: list[tuple[str, bytes | None]], partition: int, offset: int) -> Any:
        # A loop, not a comprehension: most messages have one such header, and this
        # runs for every message.
        key: tuple[tuple[str, bytes | None], ...] = ()
        for h in headers:
            if h[0] in routing:
                key += (h,)
        edit = cache.get(key)
        if edit is None:
            prov = from_kafka_headers(list(key))
            recorded = any(name in ORIGIN_NAMES for name, _ in key)
            edit = _raw_edit(rules.verdict(prov, has_origin_headers=recorded), key)
            if len(cache) > 10_000:
                cache.clear()
            cache[key] = edit
        drop = edit.drop
        if drop is not None:
            headers[:] = [h for h in headers if h[0] not in drop]
        headers.extend(edit.append)
        if edit.route is not None:
            return edit.route  # with the headers as changed here
        if edit.parking is not None:
            found = parked.get(partition)
            if found is None:
                found = parked[partition] = RawRoute(edit.parking, None, partition)
            return found
        return UNKNOWN

    return decide


# -- purge fast paths -------------------------------------------------------------------------
def purge_positions(dlq: Dlq, older_than: str | None) -> Window:
    """Kafka: where the group would move to drop everything (older than D)."""
    import datetime as dt
    import time

    from qctl.backends.capabilities.groups import SupportsConsumerGroups, TopicPartition
    from qctl.timespec import parse_duration

    window = dlq.window()
    if older_than is None:
        return window
    cutoff = int(time.time() * 1000 - parse_duration(older_than) / dt.timedelta(milliseconds=1))
    groups = require(dlq.backend, SupportsConsumerGroups, "consumer groups")
    found = groups.offsets_for_times({TopicPartition(dlq.ref.name, p): cutoff for p in window.end})
    end = {}
    for p, last in window.end.items():
        at = found.get(TopicPartition(dlq.ref.name, p))
        end[p] = max(window.start.get(p, 0), min(at if at is not None else last, last))
    return Window(window.start, end)


def advance_group(dlq: Dlq, to: Mapping[int, int]) -> None:
    from qctl.backends.capabilities.groups import TopicPartition
    from qctl.backends.capabilities.offsets import SupportsOffsetAdmin
    from qctl.errors import PartialFailure

    admin = require(dlq.backend, SupportsOffsetAdmin, "writing group offsets")
    errors = admin.alter_offsets(
        dlq.group or "", {TopicPartition(dlq.ref.name, p): o for p, o in to.items()}
    )
    if errors:
        raise PartialFailure(
            f"moving group {dlq.group!r} failed for {len(errors)} partition(s): "
            + "; ".join(str(e) for e in errors[:3]),
            "retry; a running `qctl dlq` job on the same DLQ must finish first",
        )


def check_to_file(path: str, append: bool) -> None:
    target = Path(path)
    if target.exists() and not append:
        raise UsageError(f"{path} already exists", "choose another file, or add --append")
    if not target.parent.exists():
        raise UsageError(f"the folder of {path} does not exist")
