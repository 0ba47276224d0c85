"""Producing and consuming Kafka messages (``SupportsProduce``, ``SupportsConsume``).

Producer: ``acks=all`` with idempotence (no duplicates or reordering on retries),
Java's murmur2 partitioner (a key lands on the same partition as with Java clients —
librdkafka's own default would not), and large batches with a short linger for
throughput. Without a per-message callback only failed deliveries are reported
(``delivery.report.only.error``), which keeps the Python work per message to one call.
Every delivery report is awaited before ``produce`` returns; the wait ends when no
report has arrived for the timeout, and what is still unconfirmed counts as failed.

Consumer: the batch API, positions resolved up front (offsets, ``offsets_for_times``,
watermarks) and clamped to the log so an out-of-range start never silently resets to
the beginning. Without a group nothing is committed (a throwaway group id and
``assign``); with one, offsets are committed after each batch was handed back as
handled (at-least-once) or before handing it out (at-most-once).
"""

from __future__ import annotations

import collections
import itertools
import logging
import operator
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qctl.backends.capabilities.messaging import (
    OK,
    ConsumeRequest,
    MessageBatch,
    Outcome,
    OutcomeCallback,
    Position,
    ProduceItem,
    ProduceOptions,
    ProduceReport,
    ValueBatch,
    expand,
)
from qctl.backends.kafka.client import ErrorWatch, translate
from qctl.backends.kafka.core import KafkaCore
from qctl.errors import NotFoundError, OperationTimeout, QctlError, UsageError
from qctl.messages import Message, kafka_header_bytes, kafka_header_value, kafka_source
from qctl.refs import Ref
from qctl.timespec import to_millis

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer

log = logging.getLogger(__name__)

#: Producer settings qctl chooses; a context's own librdkafka properties override them.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
}
#: Consumer settings qctl chooses. librdkafka ≥ 2.x backs a partition's fetcher off for
#: a full second whenever its local queue is above the thresholds
#: (``fetch.queue.backoff.ms``), which halves the throughput of a fast reader.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "fetch.queue.backoff.ms": 1,
    "max.partition.fetch.bytes": 10_485_760,
    "fetch.max.bytes": 104_857_600,
    "queued.max.messages.kbytes": 131_072,
    "auto.offset.reset": "earliest",
}
#: For reads that stop at the end: a fetch that finds no new data for its partitions is
#: answered after this wait, not librdkafka's 500 ms, so reaching the ends is not held up
#: by a partition that already has nothing left. (Reads that follow keep the default:
#: fewer idle fetches.)
BOUNDED_READ: dict[str, Any] = {"fetch.wait.max.ms": 100}
_TIMESTAMP_TYPES = {1: "create", 2: "log_append"}
_POLL = 0.05
_BATCH_MAX = 20_000


class KafkaMessaging(KafkaCore):
    """``SupportsProduce`` and ``SupportsConsume`` for Kafka."""

    # -- metadata --------------------------------------------------------------------------
    def _msg_partitions(self, ref: Ref, client: Any, errors: ErrorWatch) -> list[int]:
        """The partitions of ``ref`` (one when it names a partition); NotFoundError if absent.

        Asks the producer or consumer itself (no extra admin client to start), within
        the timeout, failing fast when its error callback reports a refused connection
        or failed authentication. Reads the full metadata rather than asking for the
        topic by name: a by-name request would create the topic on brokers with
        auto-creation on.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                metadata = client.list_topics(timeout=max(min(0.5, remaining), 0.05))
                break
            except Exception as exc:
                # Serves error_cb (safe: called before any assign/subscribe, so a
                # consumer has nothing to return yet).
                client.poll(0)
                fatal = errors.fatal()
                if fatal is not None:
                    raise translate(fatal, self.bootstrap) from exc
                if remaining <= 0:
                    err = errors.last() or exc
                    raise translate(err, self.bootstrap) from exc
        topic = metadata.topics.get(ref.name)
        if topic is None or (topic.error is not None and not topic.partitions):
            denied = self.topic_access_error(ref.name)
            if denied is not None:
                raise denied
            raise NotFoundError(
                f"topic {ref.name!r} does not exist on kafka at {self.bootstrap}",
                "check the name (`qctl topology export -b kafka` lists topics) or create it",
            )
        partitions = sorted(topic.partitions)
        if ref.partition is not None:
            if ref.partition not in topic.partitions:
                raise NotFoundError(
                    f"topic {ref.name!r} has no partition {ref.partition} "
                    f"(partitions 0-{len(partitions) - 1})",
                    f"use kafka:{ref.name} or a partition below {len(partitions)}",
                )
            return [ref.partition]
        return partitions

    # -- produce ---------------------------------------------------------------------------
    def produce(
        self,
        target: Ref,
        messages: Iterable[ProduceItem],
        options: ProduceOptions,
        on_outcome: OutcomeCallback | None = None,
    ) -> ProduceReport:
        from confluent_kafka import KafkaException, Producer

        report = ProduceReport()
        errors = ErrorWatch()

        def failed_only(err: Any, _msg: Any) -> None:
            if err is not None:
                report.fail(_reason(err))

        conf: dict[str, Any] = dict(PRODUCER_DEFAULTS)
        conf.update(self.client_config(error_cb=errors))
        if options.partitioner is not None:
            conf["partitioner"] = options.partitioner.librdkafka
        if on_outcome is None:
            conf["delivery.report.only.error"] = True
            conf["on_delivery"] = failed_only
        try:
            producer = Producer(conf)
        except KafkaException as exc:
            raise translate(exc, self.bootstrap, "create a producer for") from exc
        self._closers.append(lambda: producer.purge() if len(producer) else None)
        self._msg_partitions(target, producer, errors)

        topic = target.name
        partition = -1 if target.partition is None else target.partition
        keep_ts = options.keep_timestamps
        produce = producer.produce
        poll = producer.poll
        produced = 0
        start = time.monotonic()

        def outcome_callback(message: Message) -> Any:
            assert on_outcome is not None

            def delivered(err: Any, _msg: Any) -> None:
                if err is None:
                    report.sent += 1
                    on_outcome(message, OK)
                else:
                    reason = _reason(err)
                    report.fail(reason)
                    on_outcome(message, Outcome(ok=False, error=reason))

            return delivered

        try:
            plain = on_outcome is None
            for m in messages if plain else expand(messages):
                if m is None:
                    poll(0.005)
                    continue
                if type(m) is ValueBatch:
                    produced += self._msg_values(producer, topic, partition, m.values, report)
                    self._msg_check_fatal(errors)
                    continue
                assert isinstance(m, Message)
                if plain and not m.headers and (m.timestamp is None or not keep_ts):
                    # The common case (raw lines, templates without headers), kept lean:
                    # this loop runs once per message at hundreds of thousands a second.
                    try:
                        produce(topic, m.value, m.key, partition)
                        produced += 1
                        if not produced & 0x3FF:
                            poll(0)
                        continue
                    except (BufferError, KafkaException):
                        pass  # the general path below waits or records the failure
                kwargs: dict[str, Any] = {}
                if m.headers:
                    kwargs["headers"] = [(k, kafka_header_bytes(v)) for k, v in m.headers]
                if keep_ts and m.timestamp is not None and m.timestamp > 0:
                    kwargs["timestamp"] = m.timestamp
                if on_outcome is not None:
                    kwargs["on_delivery"] = outcome_callback(m)
                while True:
                    try:
                        produce(topic, m.value, m.key, partition, **kwargs)
                        break
                    except BufferError:
                        poll(0.05)
                        self._msg_check_fatal(errors)
                    except KafkaException as exc:
                        reason = _reason(exc.args[0] if exc.args else exc)
                        report.fail(reason)
                        if on_outcome is not None:
                            on_outcome(m, Outcome(ok=False, error=reason))
                        break
                produced += 1
                if not produced & 0x3FF:
                    poll(0)
                    if not produced & 0xFFFF:
                        self._msg_check_fatal(errors)
            undelivered = self._msg_drain(producer, errors)
        finally:
            report.elapsed = time.monotonic() - start
        if undelivered:
            report.fail(
                f"no delivery report within {self.timeout:g}s (may or may not be written)",
                undelivered,
            )
            producer.purge()
            producer.poll(0)
        if on_outcome is None:
            report.sent = produced - report.failed
        report.elapsed = time.monotonic() - start
        return report

    def _msg_values(
        self, producer: Producer, topic: str, partition: int, values: list[bytes], report: Any
    ) -> int:
        """Send bare values as fast as the client allows; how many were handed over.

        ``map`` drives the C ``produce`` without a Python loop step per message; when
        the local queue is full (BufferError) or one message is refused, the position is
        recovered from the iterator's remaining length and sending resumes after a poll.
        """
        from confluent_kafka import KafkaException

        produce = producer.produce
        total = len(values)
        done = 0
        while done < total:
            rest = iter(values[done:]) if done else iter(values)
            try:
                if partition < 0:
                    collections.deque(map(produce, itertools.repeat(topic), rest), maxlen=0)
                else:
                    collections.deque(
                        map(
                            produce,
                            itertools.repeat(topic),
                            rest,
                            itertools.repeat(None),
                            itertools.repeat(partition),
                        ),
                        maxlen=0,
                    )
                done = total
            except BufferError:
                done = total - operator.length_hint(rest) - 1  # retry the refused one
                producer.poll(0.05)
            except KafkaException as exc:
                report.fail(_reason(exc.args[0] if exc.args else exc))
                done = total - operator.length_hint(rest)  # skip the refused one
        producer.poll(0)
        return total

    def _msg_check_fatal(self, errors: ErrorWatch) -> None:
        fatal = errors.fatal()
        if fatal is not None:
            raise translate(fatal, self.bootstrap, "produce to")

    def _msg_drain(self, producer: Producer, errors: ErrorWatch) -> int:
        """Wait for every delivery report while they keep coming; the unconfirmed count."""
        remaining = len(producer)
        last_progress = time.monotonic()
        while remaining:
            producer.flush(0.2)
            now_remaining = len(producer)
            now = time.monotonic()
            if now_remaining < remaining:
                last_progress = now
            elif now - last_progress > self.timeout:
                break
            remaining = now_remaining
            if remaining and errors.fatal() is not None and now - last_progress > 1:
                break
        return len(producer)

    # -- consume ---------------------------------------------------------------------------
    def open_consumer(self, source: Ref, request: ConsumeRequest) -> KafkaSession:
        if request.isolation not in ("read_committed", "read_uncommitted"):
            raise UsageError(
                f"unknown isolation level {request.isolation!r}",
                "use read_committed or read_uncommitted",
            )
        if request.start is not None and request.start.kind == "stored" and not request.group:
            raise UsageError("--from stored needs --group", "name the group whose offsets to use")
        if request.ack:
            raise UsageError(
                "--ack applies to RabbitMQ queues",
                "Kafka reads never remove messages; use --group to commit offsets",
            )
        if request.commit_before and not request.group:
            raise UsageError(
                "--commit-before needs --group", "without a group nothing is committed"
            )
        return KafkaSession(self, source, request)


@dataclass
class _PartitionState:
    end: int | None = None
    done: bool = False


class KafkaBatch:
    """Raw confluent-kafka messages; converted to ``Message`` objects only when asked."""

    __slots__ = ("_messages", "raw")

    def __init__(self, raw: list[Any]) -> None:
        self.raw = raw
        self._messages: list[Message] | None = None

    def __len__(self) -> int:
        return len(self.raw)

    def values(self) -> list[bytes | None]:
        from confluent_kafka import Message as RawMessage

        return list(map(RawMessage.value, self.raw))  # no Python step per message

    def messages(self) -> list[Message]:
        if self._messages is None:
            self._messages = [to_message(m) for m in self.raw]
        return self._messages


def to_message(m: Any) -> Message:
    """A confluent-kafka message in the neutral model."""
    ts_type, ts = m.timestamp()
    raw_headers = m.headers()
    return Message(
        value=m.value(),
        key=m.key(),
        headers=[(k, kafka_header_value(v)) for k, v in raw_headers] if raw_headers else [],
        timestamp=ts if ts_type else None,
        source=kafka_source(m.topic(), m.partition(), m.offset(), _TIMESTAMP_TYPES.get(ts_type)),
    )


class KafkaSession:
    """An open Kafka consumer (see ``ConsumeSession``)."""

    def __init__(self, backend: KafkaMessaging, source: Ref, request: ConsumeRequest) -> None:
        from confluent_kafka import Consumer, KafkaException

        self.backend = backend
        self.topic = source.name
        self.request = request
        self.warnings: list[str] = []
        self.errors = ErrorWatch()
        self.state: dict[int, _PartitionState] = {}
        self._assigned: set[int] = set()
        self._paused: set[int] = set()
        group = request.group or f"qctl-consume-{uuid.uuid4().hex[:12]}"
        conf: dict[str, Any] = dict(CONSUMER_DEFAULTS)
        if not request.follow:
            conf.update(BOUNDED_READ)
        conf.update(
            backend.client_config(
                error_cb=self.errors,
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "isolation.level": request.isolation,
                },
            )
        )
        try:
            self.consumer: Consumer = Consumer(conf)
        except KafkaException as exc:
            raise translate(exc, backend.bootstrap, "create a consumer for") from exc
        try:
            partitions = backend._msg_partitions(source, self.consumer, self.errors)
            if request.group and source.partition is None and request.start_offsets is None:
                self.consumer.subscribe(
                    [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
                )
            else:
                tps = self._positions(partitions)
                self._assigned = set(partitions)
                self.consumer.assign(tps)
        except QctlError:
            self.consumer.close()
            raise

    # -- positions -------------------------------------------------------------------------
    def _watermarks(self, partition: int) -> tuple[int, int]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=self.backend.timeout, cached=False
            )
        except KafkaException as exc:
            raise translate(exc, self.backend.bootstrap, "read the offsets of") from exc
        return int(low), int(high)

    def _for_time(self, partition: int, millis: int, high: int) -> int:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            found = self.consumer.offsets_for_times(
                [TopicPartition(self.topic, partition, millis)], timeout=self.backend.timeout
            )
        except KafkaException as exc:
            raise translate(exc, self.backend.bootstrap, "look up offsets by time in") from exc
        offset = int(found[0].offset)
        return high if offset < 0 else offset

    def _resolve(self, pos: Position, partition: int, low: int, high: int) -> int:
        kind = pos.kind
        if kind in ("earliest", "first"):
            return low
        if kind in ("latest", "last", "next"):
            return high
        if kind == "offset":
            value = int(pos.value or 0)
            if value < low or value > high:
                self.warnings.append(
                    f"partition {partition}: offset {value} is outside {low}-{high}; "
                    f"using {min(max(value, low), high)}"
                )
            return min(max(value, low), high)
        if kind == "relative":
            return max(low, high - int(pos.value or 0))
        if kind == "timestamp" and pos.instant is not None:
            return max(low, self._for_time(partition, to_millis(pos.instant), high))
        raise UsageError(f"position {pos} is not supported for kafka")

    def _positions(self, partitions: Iterable[int]) -> list[Any]:
        from confluent_kafka import OFFSET_STORED, TopicPartition

        req = self.request
        tps = []
        for p in partitions:
            if p in self.state and req.group:
                # Assigned again after a rebalance: continue from the committed offset
                # instead of going back to --from.
                tps.append(TopicPartition(self.topic, p, OFFSET_STORED))
                continue
            low, high = self._watermarks(p)
            state = _PartitionState()
            if req.end_offsets is not None:
                # A job's fixed window; a partition it does not name has nothing to read.
                state.end = req.end_offsets.get(p, low)
            elif req.end is not None:
                state.end = self._resolve(req.end, p, low, high)
            elif not req.follow:
                state.end = high
            if req.start_offsets is not None and p in req.start_offsets:
                offset = min(max(req.start_offsets[p], low), high)
            elif req.start is None or req.start.kind == "stored":
                offset = OFFSET_STORED if req.group else low
            else:
                offset = self._resolve(req.start, p, low, high)
            if state.end is not None and offset != OFFSET_STORED and offset >= state.end:
                state.done = True
            self.state[p] = state
            tps.append(TopicPartition(self.topic, p, offset))
        return tps

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = self._positions([tp.partition for tp in partitions])
        self._assigned = {tp.partition for tp in tps}
        self._paused.clear()
        consumer.assign(tps)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._assigned.discard(tp.partition)
        consumer.unassign()

    # -- reading ---------------------------------------------------------------------------
    def _finished(self) -> bool:
        if not self._assigned:
            return False
        return all(self.state[p].done for p in self._assigned if p in self.state)

    def next_batch(self, limit: int) -> MessageBatch | None:
        from confluent_kafka import KafkaException, TopicPartition
        from confluent_kafka import Message as RawMessage

        if self._finished():
            return None
        try:
            raw = self.consumer.consume(num_messages=max(1, min(limit, _BATCH_MAX)), timeout=_POLL)
        except KafkaException as exc:
            raise translate(exc, self.backend.bootstrap, "consume from") from exc
        # One cheap pass drops events (EOF, errors); offsets are looked at only for
        # partitions whose last message in the batch reaches their end: per-message
        # Python work is what limits a Python consumer's throughput.
        # C-level passes (see _last_per_partition). Not errors.count(None): KafkaError's
        # comparison with None leaves an exception set; any() only asks truthiness.
        errors = list(map(RawMessage.error, raw))
        if not any(errors):
            kept = raw
        else:
            kept = [m for m, err in zip(raw, errors, strict=True) if err is None]
        if kept and self._bounded:
            kept = self._trim(kept)
        if len(kept) != len(raw):
            self._events([m for m in raw if m.error() is not None])
        fatal = self.errors.fatal()
        if fatal is not None and not kept:
            raise translate(fatal, self.backend.bootstrap, "consume from")
        state = self.state
        newly_done = [
            p for p in self._assigned if p in state and state[p].done and p not in self._paused
        ]
        if newly_done:
            self.consumer.pause([TopicPartition(self.topic, p) for p in newly_done])
            self._paused.update(newly_done)
        batch = KafkaBatch(kept)
        if kept and self.request.group and self.request.commit_before:
            self._commit(kept)
        return batch

    def _events(self, events: list[Any]) -> None:
        from confluent_kafka import KafkaError

        for m in events:
            err = m.error()
            code = err.code()
            if code == KafkaError._PARTITION_EOF:
                st = self.state.get(m.partition())
                if st is not None and not self.request.follow:
                    st.done = True  # also past trailing transaction markers
                continue
            if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
                raise NotFoundError(f"topic {self.topic!r} no longer exists")
            if err.fatal() or code in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.GROUP_AUTHORIZATION_FAILED,
            ):
                raise translate(err, self.backend.bootstrap, "consume from")
            log.debug("consumer error: %s", err)

    @property
    def _bounded(self) -> bool:
        return not self.request.follow or self.request.end is not None

    def _last_per_partition(self, msgs: list[Any]) -> dict[int, Any]:
        """The last message of each partition in ``msgs``.

        Done with C-level passes (``map`` over the method, ``list.index`` on the reversed
        partitions) rather than a Python loop: per-message Python steps are what limits a
        Python consumer, and a batch often lacks some assigned partition, so a loop
        from the end would walk all of it.
        """
        from confluent_kafka import Message as RawMessage

        parts = list(map(RawMessage.partition, msgs))
        backwards = parts[::-1]
        last_index = len(parts) - 1
        return {p: msgs[last_index - backwards.index(p)] for p in set(parts)}

    def _before_ends(self) -> bool:
        """Whether every message handed out so far lies before its partition's end.

        The consumer's position (the offset after the last message it returned) answers
        for the whole batch with one call per partition instead of a look at every
        message; near the ends, and once a partition is done, ``_trim`` looks closer.
        """
        from confluent_kafka import TopicPartition

        state = self.state
        if any(p not in state or state[p].done for p in self._assigned):
            return False
        try:
            positions = self.consumer.position(
                [TopicPartition(self.topic, p) for p in self._assigned]
            )
        except Exception:  # the closer look gives the same answer, only slower
            return False
        for tp in positions:
            end = state[tp.partition].end
            if end is not None and tp.offset >= end:
                return False
        return True

    def _trim(self, kept: list[Any]) -> list[Any]:
        """Drop messages at or past each partition's end, marking partitions done."""
        state = self.state
        if self._before_ends():
            return kept
        crossing = set()
        for p, m in self._last_per_partition(kept).items():
            st = state.get(p)
            if st is None or st.done or (st.end is not None and m.offset() + 1 >= st.end):
                crossing.add(p)
        if not crossing:
            return kept
        out = []
        for m in kept:
            p = m.partition()
            if p in crossing:
                st = state.get(p)
                if st is None or st.done:
                    continue
                if st.end is not None:
                    offset = m.offset()
                    if offset >= st.end:
                        st.done = True
                        continue
                    if offset + 1 >= st.end:
                        st.done = True
            out.append(m)
        return out

    def commit(self, batch: MessageBatch, count: int, skipped: Sequence[int] = ()) -> None:
        if not self.request.group or self.request.commit_before or count <= 0:
            return
        assert isinstance(batch, KafkaBatch)
        self._commit(batch.raw[:count])

    def _commit(self, raw: list[Any]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        last = self._last_per_partition(raw)
        offsets = [TopicPartition(self.topic, p, m.offset() + 1) for p, m in last.items()]
        deadline = time.monotonic() + self.backend.timeout
        while True:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if (
                    err is not None
                    and getattr(err, "retriable", lambda: False)()
                    and (time.monotonic() < deadline)
                ):
                    time.sleep(0.1)
                    continue
                if time.monotonic() >= deadline:
                    raise OperationTimeout(
                        f"committing offsets of group {self.request.group!r} did not succeed "
                        f"within {self.backend.timeout:g}s"
                    ) from exc
                raise translate(exc, self.backend.bootstrap, "commit offsets to") from exc

    def close(self) -> None:
        try:
            self.consumer.close()
        except Exception:  # closing must not mask the command's result
            log.debug("closing the consumer failed", exc_info=True)

    def __enter__(self) -> KafkaSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(err: Any) -> str:
    """A delivery error as one short line."""
    text = err.str() if hasattr(err, "str") else str(err)
    name = err.name() if hasattr(err, "name") else ""
    return f"{text} ({name})" if name and name not in text else text
