"""The exactly-once copy through librdkafka: any mapper, any source format.

The classic consume-transform-produce loop of Kafka's exactly-once semantics, with
confluent-kafka's transactional producer and a read_committed consumer:

1. a transactional producer (``transactional.id`` stable for the job) calls
   ``init_transactions``, which fences a killed predecessor with the same id and aborts
   its open transaction — so it runs *before* the source position is read;
2. the source partitions are assigned at the group's committed offsets (a consumer
   reading ``read_committed`` waits while a transaction holds offsets of the group);
3. per transaction, up to ``txn_messages`` messages or ``txn_seconds`` of work are
   mapped and produced, the group's new position is added with
   ``send_offsets_to_transaction``, and the transaction is committed.

A commit that fails with an abortable error (a target topic deleted meanwhile, a
timeout) is aborted, the consumer is rewound to the committed position and the batch is
done again, with topics found missing handled as the request says. Ctrl-C (the
engine's ``stopping()``) finishes the batch in hand, commits it, and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from qctl.backends.capabilities.transactions import (
    KEEP,
    SKIP,
    CopyControl,
    CopyReport,
    CopyRequest,
    CopyRoute,
    RawRoute,
    Rejected,
)
from qctl.backends.kafka.client import ErrorWatch, translate
from qctl.backends.kafka.copy.common import (
    BatchTally,
    committed_offsets,
    missing_topic,
    no_target,
    plan_positions,
    transaction_timeout_ms,
    watermarks,
)
from qctl.backends.kafka.messaging import (
    BOUNDED_READ,
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    to_message,
)
from qctl.errors import NotFoundError, OperationTimeout, QctlError
from qctl.messages import kafka_header_bytes

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer

    from qctl.backends.kafka.core import KafkaCore

log = logging.getLogger(__name__)

#: Messages asked of the consumer at once.
_FETCH = 10_000
_POLL = 0.1
_MISSING_TOPIC_CODES = ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_ID")


class _Abort(Exception):
    """The transaction must be aborted and the batch done again."""


#: Grace on top of a call's own timeout before qctl stops waiting for it.
_GRACE = 5.0


def _bounded(call: Callable[[], Any], keep: tuple[Any, ...], timeout: float, what: str) -> Any:
    """Run a blocking transactional call with a hard bound.

    librdkafka's transactional calls can block far past their own timeout when the group
    or transaction coordinator goes away (e.g. ``send_offsets_to_transaction`` after a
    broker restart: librdkafka issues #5456 and #5511). The call runs in a daemon thread;
    if it does not return in time the copy stops with a resumable error. The thread's
    frame keeps ``keep`` (the clients) referenced, so they are never destroyed while
    librdkafka still works on them — which would crash the process.
    """
    outcome: list[Any] = []

    def run() -> None:
        _clients = keep  # referenced by this frame for as long as the call runs
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))
        del _clients

    thread = threading.Thread(target=run, name="qctl-kafka-txn", daemon=True)
    thread.start()
    thread.join(timeout + _GRACE)
    if thread.is_alive():
        raise _Stuck(
            f"kafka did not finish {what} within {timeout + _GRACE:g}s (the client is stuck "
            "waiting for a coordinator; known after broker restarts)",
            "check that the cluster is up, then resume the job; the copies of the last "
            "transaction were not committed and will be made again",
        )
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class _Stuck(QctlError):
    """A transactional call did not return: the clients must not be touched again."""


class LibraryCopier:
    """One run of a copy through librdkafka (``CopyEngine``); it never hands over."""

    def __init__(self, backend: KafkaCore, request: CopyRequest, control: CopyControl) -> None:
        self.backend = backend
        self.request = request
        self.control = control
        self.topic = request.source.name
        self.report = CopyReport()
        self.errors = ErrorWatch()
        self.delivery_errors: dict[str, str] = {}
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.in_txn = False
        self.positions: dict[int, int] = {}
        self.ends: dict[int, int] = {}
        self.active: set[int] = set()
        self.stuck = False
        self.topics: dict[str, int] = {}
        self.missing: set[str] = set()
        self.warned_partitions: set[str] = set()
        self.metadata_checked = 0.0
        self.bucket: Any = None
        if request.rate:
            from qctl.ratelimit import TokenBucket

            self.bucket = TokenBucket(request.rate)

    # -- setup -----------------------------------------------------------------------------
    def _fail(self, exc: Exception, what: str) -> QctlError:
        if isinstance(exc, QctlError):
            return exc
        return translate(exc, self.backend.bootstrap, what)

    def _clients(self) -> None:
        from confluent_kafka import Consumer, KafkaException, Producer

        req = self.request

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                self.delivery_errors[msg.topic()] = err.name()

        pconf: dict[str, Any] = dict(PRODUCER_DEFAULTS)
        pconf.update(
            self.backend.client_config(
                error_cb=self.errors,
                **{
                    "transactional.id": req.transactional_id,
                    "transaction.timeout.ms": transaction_timeout_ms(self.backend.settings),
                    "delivery.report.only.error": True,
                    "on_delivery": on_delivery,
                },
            )
        )
        if req.partitioner is not None:
            pconf["partitioner"] = req.partitioner.librdkafka
        cconf: dict[str, Any] = {**CONSUMER_DEFAULTS, **BOUNDED_READ}  # moves end at the end
        cconf.update(
            self.backend.client_config(
                error_cb=self.errors,
                **{
                    "group.id": req.group,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "isolation.level": req.isolation,
                },
            )
        )
        try:
            self.producer = Producer(pconf)
            self.consumer = Consumer(cconf)
        except KafkaException as exc:
            raise translate(exc, self.backend.bootstrap, "create clients for") from exc

    def _metadata(self) -> dict[str, int]:
        """Partition counts of every topic (the full listing: asking for one topic by
        name would create it on brokers with auto-creation on)."""
        assert self.producer is not None
        deadline = time.monotonic() + self.backend.timeout
        while True:
            try:
                md = self.producer.list_topics(
                    timeout=max(min(1.0, deadline - time.monotonic()), 0.1)
                )
                break
            except Exception as exc:
                fatal = self.errors.fatal()
                if fatal is not None or time.monotonic() >= deadline:
                    raise translate(fatal or exc, self.backend.bootstrap) from exc
        self.metadata_checked = time.monotonic()
        return {
            name: len(t.partitions)
            for name, t in md.topics.items()
            if t.error is None or t.partitions
        }

    def _init(self) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        self._clients()
        assert self.producer is not None and self.consumer is not None
        self.topics = self._metadata()
        req = self.request
        if self.topic not in self.topics:
            raise NotFoundError(
                f"topic {self.topic!r} does not exist on kafka at {self.backend.bootstrap}",
                "check the name (`qctl dlq list` or `qctl topology export -b kafka`)",
            )
        count = self.topics[self.topic]
        if req.source.partition is not None:
            if req.source.partition >= count:
                raise NotFoundError(f"topic {self.topic!r} has no partition {req.source.partition}")
            partitions = [req.source.partition]
        else:
            partitions = list(range(count))
        if req.fixed is not None and req.fixed.topic not in self.topics:
            raise NotFoundError(
                f"target topic {req.fixed.topic!r} does not exist on kafka at "
                f"{self.backend.bootstrap}",
                "create it first (e.g. with `qctl topology apply`)",
            )
        try:
            # Fences a killed run of this job and aborts its open transaction, so the
            # committed offsets read next are final.
            producer = self.producer
            wait = self.backend.timeout + transaction_timeout_ms(self.backend.settings) / 1000
            self._call(lambda: producer.init_transactions(wait), wait, "starting transactions")
        except KafkaException as exc:
            raise translate(exc, self.backend.bootstrap, "start a transaction on") from exc
        committed = committed_offsets(self.backend, self.consumer, req, partitions)
        self.positions, self.ends = plan_positions(
            req, partitions, committed, lambda p: watermarks(self.backend, self.consumer, p, req),
            self.report.warnings,
        )  # fmt: skip
        assign = [
            TopicPartition(self.topic, p, start)
            for p, start in self.positions.items()
            if start < self.ends[p]
        ]
        self.report.end_offsets = dict(self.ends)
        self.report.positions = dict(self.positions)
        self.report.remaining = self._remaining(self.positions)
        self.control.started(dict(self.positions), dict(self.ends))
        self.active = {tp.partition for tp in assign}
        if assign:
            self.consumer.assign(assign)

    def _remaining(self, positions: Mapping[int, int]) -> int:
        return sum(max(self.ends[p] - positions.get(p, self.ends[p]), 0) for p in self.ends)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> tuple[CopyReport, str | None]:
        from qctl.gcpause import paused_gc

        started = time.monotonic()
        try:
            self._init()
            with paused_gc() as gc_pause:  # thousands of messages per transaction
                while self.active and not self.control.stopping() and not self.report.limited:
                    gc_pause.tick()
                    self._transaction()
        finally:
            self.report.elapsed = time.monotonic() - started
            self.close()
        self.report.stopped = bool(self.active) and not self.report.limited
        return self.report, None

    def _transaction(self) -> None:
        """One batch in one transaction; on an abortable failure, redo the batch."""
        from confluent_kafka import KafkaException

        attempts = 0
        while True:
            attempts += 1
            batch = BatchTally(dict(self.positions))
            self._begin()
            try:
                self._fill(batch)
                self._commit(batch)
                break
            except _Abort as why:
                self._abort()
                if attempts >= 3:
                    raise QctlError(
                        f"a transaction on {self.topic!r} failed {attempts} times: {why}",
                        "check the cluster's health and the target topics; rerun with "
                        "--resume to continue after the last committed transaction",
                    ) from None
                self._rewind()
            except KafkaException as exc:
                self._abort()
                raise translate(exc, self.backend.bootstrap, "copy transactionally in") from exc
        report = self.report
        batch.add_to(report)
        self.positions = batch.positions
        report.positions = dict(self.positions)
        report.remaining = self._remaining(self.positions)
        report.transactions += 1
        self.control.committed(report)

    def _begin(self) -> None:
        from confluent_kafka import KafkaException

        assert self.producer is not None
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise translate(exc, self.backend.bootstrap, "begin a transaction on") from exc
        self.in_txn = True
        self.delivery_errors.clear()

    def _abort(self) -> None:
        assert self.producer is not None
        if not self.in_txn:
            return
        producer = self.producer
        try:
            timeout = self.backend.timeout
            self._call(lambda: producer.abort_transaction(timeout), timeout, "an abort")
        except Exception as exc:  # a fenced or dead producer: its transaction ends anyway
            log.debug("aborting the transaction failed: %s", exc)
        self.in_txn = False

    def _rewind(self) -> None:
        from confluent_kafka import TopicPartition

        assert self.consumer is not None
        self.topics = self._metadata()
        self.active = {p for p in self.positions if self.positions[p] < self.ends[p]}
        self.consumer.unassign()
        if self.active:
            self.consumer.assign(
                [TopicPartition(self.topic, p, self.positions[p]) for p in sorted(self.active)]
            )

    def _commit(self, batch: BatchTally) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        assert self.producer is not None and self.consumer is not None
        timeout = self.backend.timeout
        changed = [
            TopicPartition(self.topic, p, off)
            for p, off in batch.positions.items()
            if off != self.positions.get(p)
        ]
        try:
            if changed:
                producer = self.producer
                metadata = self.consumer.consumer_group_metadata()
                self._call(
                    lambda: producer.send_offsets_to_transaction(changed, metadata, timeout),
                    timeout,
                    "adding the source offsets to the transaction",
                )
            self._commit_retrying(timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            self.producer.poll(0)  # serve delivery reports: which topics failed
            missing = {
                t for t, code in self.delivery_errors.items() if code in _MISSING_TOPIC_CODES
            }
            if missing:
                self.missing |= missing
            if err is not None and (err.txn_requires_abort() or missing):
                raise _Abort(err.str()) from None
            if err is not None and err.fatal():
                name = err.name()
                if name in ("PRODUCER_FENCED", "_FENCED", "INVALID_PRODUCER_EPOCH"):
                    raise QctlError(
                        "another process took over this job (its producer fenced ours)",
                        "let that process finish; `qctl dlq jobs` shows the job",
                    ) from exc
            raise
        self.in_txn = False

    def _commit_retrying(self, timeout: float) -> None:
        from confluent_kafka import KafkaError, KafkaException

        assert self.producer is not None
        producer = self.producer
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call(lambda: producer.commit_transaction(timeout), timeout, "a commit")
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if err is not None and err.retriable() and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if err is not None and err.code() == KafkaError._TIMED_OUT:
                    raise OperationTimeout(
                        f"committing a transaction on kafka at {self.backend.bootstrap} "
                        f"did not finish in time: {err.str()}",
                        "raise --timeout or check the cluster's health; --resume continues",
                    ) from exc
                raise

    # -- filling one transaction -------------------------------------------------------------
    def _fill(self, batch: BatchTally) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        assert self.consumer is not None and self.producer is not None
        req = self.request
        consumer = self.consumer
        deadline = time.monotonic() + req.txn_seconds
        budget = req.txn_messages
        handle = self._mapped
        # Replays and plain redrives: no Message objects, one tight loop.
        fast = req.fixed is not None or req.raw_mapper is not None
        while self.active and budget > 0:
            limit_left = None
            if req.limit is not None:
                limit_left = req.limit - self.report.routed - batch.routed
            if limit_left is not None and limit_left <= 0:
                self.report.limited = True
                break
            want = min(_FETCH, budget)
            if self.bucket is not None:  # keep each transaction near txn_seconds
                want = min(want, max(1, int(req.rate or 1) // 10))
            try:
                msgs = consumer.consume(num_messages=want, timeout=_POLL)
            except KafkaException as exc:
                raise translate(exc, self.backend.bootstrap, "consume from") from exc
            done_now: list[int] = []
            if fast:
                used, limited = self._fast(msgs, batch, limit_left, done_now)
                budget -= used
                if limited:
                    self.report.limited = True
                msgs = []  # handled
            for m in msgs:
                err = m.error()
                if err is not None:
                    self._event(m, err, batch, done_now)
                    continue
                p = m.partition()
                off = m.offset()
                if p not in self.active or off < batch.positions[p]:
                    continue  # fetched before a pause or a rewind
                if off >= self.ends[p]:
                    self.active.discard(p)
                    done_now.append(p)
                    continue
                routed = handle(m, batch)
                batch.positions[p] = off + 1
                budget -= 1
                if off + 1 >= self.ends[p]:
                    self.active.discard(p)
                    done_now.append(p)
                if routed and limit_left is not None:
                    limit_left -= 1
                    if limit_left <= 0:
                        self.report.limited = True
                        break
            if done_now:
                consumer.pause([TopicPartition(self.topic, p) for p in done_now])
            if self.report.limited or self.control.stopping():
                break
            if time.monotonic() >= deadline:
                break
            fatal = self.errors.fatal()
            if fatal is not None and not done_now and budget > 0 and not self.active:
                raise translate(fatal, self.backend.bootstrap, "copy in")

    def _event(self, m: Any, err: Any, batch: BatchTally, done_now: list[int]) -> None:
        """A consumer event: the end of a partition, or an error."""
        from confluent_kafka import KafkaError

        code = err.code()
        p = m.partition()
        if code == KafkaError._PARTITION_EOF:
            if p in self.active and m.offset() >= batch.positions.get(p, 0):
                # Nothing more to read (also past trailing commit markers).
                end = min(m.offset(), self.ends[p])
                batch.positions[p] = max(batch.positions[p], end)
                self.active.discard(p)
                done_now.append(p)
            return
        if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
            raise NotFoundError(f"topic {self.topic!r} no longer exists")
        if err.fatal():
            raise translate(err, self.backend.bootstrap, "consume from")
        log.debug("consumer error: %s", err)

    def _fast(
        self, msgs: list[Any], batch: BatchTally, limit_left: int | None, done_now: list[int]
    ) -> tuple[int, bool]:
        """``_fill``'s loop for a fixed route, with everything per message kept local:
        at hundreds of thousands of messages a second, each attribute lookup counts.
        Returns how many messages were taken and whether the limit was reached."""

        if self.request.raw_mapper is not None:
            return self._fast_raw(msgs, batch, limit_left, done_now)
        fixed = self.request.fixed
        assert fixed is not None and self.producer is not None
        produce = self.producer.produce
        poll = self.producer.poll
        active = self.active
        ends = self.ends
        positions = batch.positions
        target = fixed.topic
        name = fixed.position_header
        count = self.topics.get(target, 0)
        partition_of: dict[int, int] = {}
        for p in ends:
            if fixed.partition is not None:
                partition_of[p] = fixed.partition
            elif fixed.keep_partition:
                partition_of[p] = p if p < count else self._partition_warning(target, p)
            else:
                partition_of[p] = -1
        prefix = {p: f"kafka:{self.topic}/{p}@" for p in ends}
        bucket = self.bucket
        taken = 0
        limited = False
        for m in msgs:
            if m.error() is not None:
                self._event(m, m.error(), batch, done_now)
                continue
            p = m.partition()
            off = m.offset()
            if p not in active or off < positions[p]:
                continue
            end = ends[p]
            if off >= end:
                active.discard(p)
                done_now.append(p)
                continue
            headers = m.headers()
            if name is not None:
                position = (prefix[p] + str(off)).encode()
                if headers is None:
                    headers = [(name, position)]
                else:
                    headers.append((name, position))
            ts_type, ts = m.timestamp()
            if bucket is not None:
                bucket.acquire()
            produce_retrying(
                produce, poll, target, m.value(), m.key(), partition_of[p], ts if ts_type else 0,
                headers,
            )  # fmt: skip
            positions[p] = off + 1
            taken += 1
            if off + 1 >= end:
                active.discard(p)
                done_now.append(p)
            if limit_left is not None and taken >= limit_left:
                limited = True
                break
        poll(0)
        batch.routed += taken
        batch.per_target[target] = batch.per_target.get(target, 0) + taken
        return taken, limited

    def _produce(
        self, topic: str, value: Any, key: Any, partition: int, ts: int, headers: Any
    ) -> None:
        assert self.producer is not None
        producer = self.producer
        produce_retrying(producer.produce, producer.poll, topic, value, key, partition, ts, headers)

    def _fast_raw(
        self, msgs: list[Any], batch: BatchTally, limit_left: int | None, done_now: list[int]
    ) -> tuple[int, bool]:
        """``_fast`` for a raw mapper: decisions from raw headers, records otherwise
        copied as they are."""
        req = self.request
        raw = req.raw_mapper
        assert raw is not None and self.producer is not None
        produce = self.producer.produce
        poll = self.producer.poll
        active = self.active
        ends = self.ends
        positions = batch.positions
        source = self.topic
        topics = self.topics
        per_target = batch.per_target
        bucket = self.bucket
        taken = routed = 0
        limited = False
        for m in msgs:
            err = m.error()
            if err is not None:
                self._event(m, err, batch, done_now)
                continue
            p = m.partition()
            off = m.offset()
            if p not in active or off < positions[p]:
                continue
            end = ends[p]
            if off >= end:
                active.discard(p)
                done_now.append(p)
                continue
            headers = m.headers() or []
            decision = raw(headers, p, off)  # mutates headers only when it routes
            ts_type, ts = m.timestamp()
            if type(decision) is RawRoute:
                topic = decision.topic
                if topic not in topics and not self._exists(topic):
                    if req.on_missing_topic != "keep":
                        raise no_target(topic, self.backend.bootstrap)
                    reason = missing_topic(topic)
                    batch.rejected[reason] = batch.rejected.get(reason, 0) + 1
                    decision = KEEP
            elif type(decision) is Rejected:
                batch.rejected[decision.reason] = batch.rejected.get(decision.reason, 0) + 1
                decision = KEEP
            if type(decision) is RawRoute:
                partition = -1 if decision.partition is None else decision.partition
                if partition >= 0 and partition >= topics.get(decision.topic, 0):
                    partition = self._partition_warning(decision.topic, partition)
                topic = decision.topic
                if bucket is not None:
                    bucket.acquire()
                produce_retrying(
                    produce, poll, topic, m.value(), m.key(), partition,
                    ts if ts_type else 0,
                    headers if decision.headers is None else decision.headers,
                )  # fmt: skip
                routed += 1
                per_target[topic] = per_target.get(topic, 0) + 1
            elif decision == SKIP:
                batch.skipped += 1
            else:  # KEEP: back to the end of its own partition, unchanged
                produce_retrying(
                    produce, poll, source, m.value(), m.key(), p, ts if ts_type else 0,
                    headers or None,
                )  # fmt: skip
                batch.kept += 1
            positions[p] = off + 1
            taken += 1
            if off + 1 >= end:
                active.discard(p)
                done_now.append(p)
            if limit_left is not None and routed >= limit_left:
                limited = True
                break
        poll(0)
        batch.routed += routed
        return taken, limited

    def _mapped(self, m: Any, batch: BatchTally) -> bool:
        req = self.request
        assert req.mapper is not None
        decision = req.mapper(to_message(m))
        if decision == SKIP:
            batch.skipped += 1
            return False
        if isinstance(decision, Rejected):
            batch.rejected[decision.reason] = batch.rejected.get(decision.reason, 0) + 1
            decision = KEEP
        if isinstance(decision, CopyRoute) and not self._exists(decision.topic):
            if req.on_missing_topic != "keep":
                raise no_target(decision.topic, self.backend.bootstrap)
            reason = missing_topic(decision.topic)
            batch.rejected[reason] = batch.rejected.get(reason, 0) + 1
            decision = KEEP
        if decision == KEEP or not isinstance(decision, CopyRoute):
            ts_type, ts = m.timestamp()
            self._produce(
                self.topic, m.value(), m.key(), m.partition(), ts if ts_type else 0, m.headers()
            )
            batch.kept += 1
            return False
        out = decision.message
        partition = -1 if decision.partition is None else decision.partition
        if partition >= self.topics.get(decision.topic, 0):
            partition = self._partition_warning(decision.topic, partition)
        headers = [(k, kafka_header_bytes(v)) for k, v in out.headers] if out.headers else None
        ts = out.timestamp if out.timestamp is not None and out.timestamp > 0 else 0
        if self.bucket is not None:
            self.bucket.acquire()
        self._produce(decision.topic, out.value, out.key, partition, ts, headers)
        batch.routed += 1
        batch.per_target[decision.topic] = batch.per_target.get(decision.topic, 0) + 1
        return True

    def _exists(self, topic: str) -> bool:
        if topic in self.missing:
            return False
        if topic in self.topics:
            return True
        if time.monotonic() - self.metadata_checked > 1.0:
            self.topics = self._metadata()
        if topic in self.topics:
            return True
        self.missing.add(topic)
        return False

    def _partition_warning(self, topic: str, partition: int) -> int:
        if topic not in self.warned_partitions:
            self.warned_partitions.add(topic)
            self.report.warnings.append(
                f"topic {topic!r} has no partition {partition}; such messages are "
                "partitioned by key instead"
            )
        return -1

    def _call(self, call: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return _bounded(call, (self.producer, self.consumer), timeout, what)
        except _Stuck:
            self.stuck = True
            raise

    # -- cleanup ---------------------------------------------------------------------------
    def close(self) -> None:
        if self.stuck:
            return  # librdkafka still works on the clients: leave them alone
        if self.in_txn:
            self._abort()
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception:  # closing must not mask the result
                log.debug("closing the consumer failed", exc_info=True)
        if self.producer is not None:
            try:
                self.producer.purge()
                self.producer.poll(0)
            except Exception:
                log.debug("purging the producer failed", exc_info=True)


def produce_retrying(
    produce: Callable[..., None],
    poll: Callable[[float], Any],
    topic: str,
    value: Any,
    key: Any,
    partition: int,
    timestamp: int,
    headers: Any,
) -> None:
    """One ``produce`` into librdkafka's queue, waiting while the queue is full (its
    delivery reports are served meanwhile); librdkafka's refusal aborts the
    transaction. Called for every message: nothing is imported unless it fails."""
    while True:
        try:
            produce(topic, value, key, partition, timestamp=timestamp, headers=headers)
            return
        except BufferError:
            poll(0.05)
        except Exception as exc:
            from confluent_kafka import KafkaException

            if isinstance(exc, KafkaException):
                raise _Abort(str(exc)) from None
            raise
