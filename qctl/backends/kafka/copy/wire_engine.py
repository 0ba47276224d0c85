"""Exactly-once replays over the wire: record batches in, record batches out.

A replay with a fixed route (no ``--where``) copies every
record unchanged but for one added header. Through the client library each record
becomes a Python message and a produce call, which caps a copy at about 100k records a
second on a core. This copier speaks the protocol itself: one Fetch per source leader
brings megabytes of record batches; ``batches`` re-encodes their records as bytes into
one batch per target partition; Produce requests carry them, marked as one transaction
of the job's transactional producer, together with the job group's new offsets.

The guarantees are the library engine's (``library_engine``), by the same protocol steps:
InitProducerId fences a killed run of the job and aborts its open transaction before
the committed offsets are read; each transaction adds its partitions and the group
first, and commits the records and the offsets at once with EndTxn.

Anything off the plain path hands the copy over to the library copier: another
compression codec or an old message format in the source, a moved leader, a deleted
topic, a broken connection, an error answer. The open transaction is aborted (or left
to the library copier's ``init_transactions``, which aborts it by fencing this
producer), so the library copier resumes from the last committed position, exactly as
a resumed job would. Only a fenced producer (another process took the job over) is an
error here.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from qctl.backends.capabilities.messaging import Partitioner
from qctl.backends.capabilities.transactions import (
    KEEP,
    SKIP,
    CopyControl,
    CopyReport,
    CopyRequest,
    RawRoute,
    Rejected,
)
from qctl.backends.kafka.copy.batches import (
    KeyPartitioner,
    OutBatch,
    RecordTaker,
    Unsupported,
    append,
    copy_partition,
    fixed_route,
    header_spec,
    new_builder,
    records_of,
    seal,
)
from qctl.backends.kafka.copy.common import (
    BatchTally,
    InDoubt,
    committed_offsets,
    missing_topic,
    no_target,
    partitioner_of,
    plan_positions,
    transaction_timeout_ms,
    watermarks,
)
from qctl.backends.kafka.wire import txn as tw
from qctl.backends.kafka.wire.admin import (
    FIND_COORDINATOR,
    decode_find_coordinator_response,
    encode_find_coordinator_request,
)
from qctl.backends.kafka.wire.codec import WireError, error_name
from qctl.backends.kafka.wire.connection import Connection
from qctl.backends.kafka.wire.fetch import FETCH, decode_fetch_response, encode_fetch_request
from qctl.backends.kafka.wire.fetch import VERSION as FETCH_VERSION
from qctl.errors import QctlError

if TYPE_CHECKING:
    from qctl.backends.kafka.core import KafkaCore
    from qctl.backends.kafka.wire.config import WireConfig
    from qctl.ratelimit import TokenBucket

log = logging.getLogger(__name__)

#: Set to 0 to copy through the client library only.
ENV_SWITCH = "QCTL_KAFKA_WIRE_COPY"
#: Bytes asked per Fetch, and per partition.
FETCH_BYTES = 32 * 1024 * 1024
PARTITION_FETCH_BYTES = 8 * 1024 * 1024
_RETRY_PAUSE = 0.02
#: The version of each request this engine sends (``_check_versions``).
SPOKEN = {
    **tw.VERSIONS,
    FETCH: FETCH_VERSION,
    FIND_COORDINATOR: 1,
}
API_NAMES = {
    tw.PRODUCE: "Produce",
    FETCH: "Fetch",
    FIND_COORDINATOR: "FindCoordinator",
    tw.INIT_PRODUCER_ID: "InitProducerId",
    tw.ADD_PARTITIONS_TO_TXN: "AddPartitionsToTxn",
    tw.ADD_OFFSETS_TO_TXN: "AddOffsetsToTxn",
    tw.END_TXN: "EndTxn",
    tw.TXN_OFFSET_COMMIT: "TxnOffsetCommit",
}


class _Again(Exception):
    """The transaction must be aborted and done again."""


class _TimedOut(_Again):
    """The coordinator aborted the transaction for outliving its timeout; this producer
    has a new epoch and does it again."""


class Handover(Exception):
    """The copy leaves the plain path: the library copier continues from the last
    committed transaction."""


def eligible(backend: KafkaCore, request: CopyRequest) -> WireConfig | None:
    """How to connect, when this copier can take ``request`` (else None)."""
    from qctl.backends.kafka.wire.config import wire_config

    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    if request.fixed is None and request.raw_mapper is None:
        return None  # a mapper of Message objects: librdkafka's messages are needed
    if partitioner_of(request, backend.settings) is None:
        return None  # a partitioner only librdkafka has
    return wire_config(backend.settings)


class _Target:
    """A topic the copy writes to: its partitions' leaders, a batch being filled per
    partition, and whether the open transaction has it yet."""

    def __init__(self, name: str, leaders: list[tuple[str, int]], partitioner: Partitioner) -> None:
        self.name = name
        self.leaders = leaders
        self.outs = [OutBatch() for _ in leaders]
        self.by_key = KeyPartitioner(len(leaders), partitioner)
        #: Partitions the open transaction has (and will write a marker to).
        self.added: set[int] = set()


class WireCopier:
    """One run of a copy with a fixed route or a raw mapper; ``run`` returns the report
    and why it handed over (None when it finished)."""

    def __init__(
        self,
        backend: KafkaCore,
        request: CopyRequest,
        control: CopyControl,
        security: WireConfig,
    ) -> None:
        self.backend = backend
        self.request = request
        self.control = control
        self.security = security
        self.timeout = backend.timeout
        self.topic = request.source.name
        self.read_committed = request.isolation == "read_committed"
        self.report = CopyReport()
        self.positions: dict[int, int] = {}
        self.ends: dict[int, int] = {}
        self.active: set[int] = set()
        self.connections: dict[tuple[str, tuple[str, int]], Connection] = {}
        self.source_leaders: dict[int, tuple[str, int]] = {}
        self.targets: dict[str, _Target] = {}
        self.topics: dict[str, Any] = {}
        self.missing: set[str] = set()
        self.warned: set[str] = set()
        self.consumer: Any = None
        self.metadata_read = 0.0
        self.producer_id = -1
        self.epoch = -1
        self.sequences: dict[tuple[str, int], int] = defaultdict(int)
        self.in_txn = False
        self.txn_timeout_ms = transaction_timeout_ms(backend.settings)
        self.partitioner = partitioner_of(request, backend.settings) or Partitioner.MURMUR2
        #: Transactions whose commit went unanswered when the copy handed over.
        self.in_doubt: list[InDoubt] = []
        #: Produce requests sent and not yet answered: (connection, correlation id).
        self.pending: list[tuple[Connection, int]] = []
        self.tally = BatchTally({})
        # The record codec loads in the background, while the setup waits for the
        # brokers.
        self.codec_import = threading.Thread(target=_import_codec, name="qctl-import", daemon=True)
        self.codec_import.start()
        self.bucket: TokenBucket | None = None
        if request.rate:
            from qctl.ratelimit import TokenBucket

            self.bucket = TokenBucket(request.rate, burst=max(1.0, request.rate / 10))

    # -- connections -----------------------------------------------------------------------
    def _connection(self, role: str, address: tuple[str, int]) -> Connection:
        conn = self.connections.get((role, address))
        if conn is None:
            host, port = address
            conn = Connection(host, port, self.timeout, self.security)
            self.connections[(role, address)] = conn
            self._check_versions(conn, address)
        conn.renew(self.timeout)
        return conn

    def _check_versions(self, conn: Connection, address: tuple[str, int]) -> None:
        """Every request version this engine sends must be one the broker speaks;
        else the library engine takes the copy (librdkafka picks versions itself)."""
        for api, version in SPOKEN.items():
            if not conn.supports(api, version, version):
                self._drop(conn)
                raise Handover(
                    f"{address[0]}:{address[1]} does not speak {API_NAMES[api]} v{version}"
                )

    def _drop(self, conn: Connection) -> None:
        """Close ``conn`` and forget it: the next request there connects anew."""
        for key, known in list(self.connections.items()):
            if known is conn:
                del self.connections[key]
        conn.sock.close()

    def _call(self, role: str, address: tuple[str, int], make: Callable[[int], bytes]) -> bytes:
        """One request and its answer. A connection that fails is dropped, and the
        ``WireError`` raised: the caller decides whether to ask again."""
        conn = self._connection(role, address)
        try:
            return conn.receive(conn.send(make))
        except WireError:
            self._drop(conn)
            raise

    def _brokers(self) -> list[tuple[str, int]]:
        """Every broker this copy knows of, the source's leaders first."""
        known = list(dict.fromkeys(self.source_leaders.values()))
        for target in self.targets.values():
            known.extend(a for a in target.leaders if a not in known)
        return known

    def _coordinator(self, key: str, key_type: int) -> tuple[str, int]:
        """The coordinator of a transactional id (``key_type`` 1) or a group (0), asked
        of the known brokers in turn until one names it or the timeout passes."""
        deadline = time.monotonic() + self.timeout
        last = "no broker answered"
        while True:
            for broker in self._brokers():
                try:
                    answer = self._call(
                        "meta",
                        broker,
                        partial(
                            encode_find_coordinator_request,
                            group_id=key,
                            version=1,
                            key_type=key_type,
                        ),
                    )
                except WireError as exc:
                    last = f"{broker[0]}:{broker[1]}: {exc}"
                    continue
                found = decode_find_coordinator_response(answer, 1)
                if found.error_code == 0:
                    return found.host, found.port
                last = error_name(found.error_code)
                if found.error_code not in tw.RETRY:
                    raise Handover(f"FindCoordinator: {last}")
                break  # the coordinator is loading or moving: wait, then ask again
            if time.monotonic() >= deadline:
                raise Handover(f"FindCoordinator: {last}")
            time.sleep(_RETRY_PAUSE)

    # -- metadata --------------------------------------------------------------------------
    def _read_metadata(self) -> dict[str, Any]:
        """Every topic's partitions and their leaders' addresses (the full listing:
        asking for a topic by name would create it where auto-creation is on)."""
        metadata = self.consumer.list_topics(timeout=self.timeout)
        self.metadata_read = time.monotonic()
        brokers = {b.id: (b.host, b.port) for b in metadata.brokers.values()}
        out: dict[str, Any] = {}
        for name, topic in metadata.topics.items():
            if topic.error is not None and not topic.partitions:
                continue
            leaders = [brokers.get(topic.partitions[p].leader) for p in sorted(topic.partitions)]
            out[name] = leaders
        return out

    def target_named(self, name: str) -> _Target | None:
        """The target ``name``, or None when the topic does not exist."""
        found = self.targets.get(name)
        if found is not None or name in self.missing:
            return found
        stale = time.monotonic() - self.metadata_read > 1.0 or not self.targets
        if stale and self.consumer is not None:  # a worker keeps the parent's listing
            self.topics = self._read_metadata()
        leaders = self.topics.get(name)
        if leaders is None:
            self.missing.add(name)
            return None
        if any(address is None for address in leaders):
            raise Handover(f"a partition of {name!r} has no leader")
        found = self.targets[name] = _Target(name, leaders, self.partitioner)
        return found

    # -- setup -----------------------------------------------------------------------------
    def _setup(self) -> None:
        from confluent_kafka import Consumer

        from qctl.backends.kafka.messaging import CONSUMER_DEFAULTS

        req = self.request
        self.consumer = consumer = Consumer(
            {
                **CONSUMER_DEFAULTS,
                **self.backend.client_config(
                    **{
                        "group.id": req.group,
                        "enable.auto.commit": False,
                        "isolation.level": req.isolation,
                    }
                ),
            }
        )
        self.topics = self._read_metadata()
        source = self.topics.get(self.topic)
        if source is None:
            raise Handover("the source topic is missing")  # the library copier says so
        if any(address is None for address in source):
            raise Handover("a partition has no leader")
        self.source_leaders = dict(enumerate(source))
        partitions = sorted(self.source_leaders)
        if req.source.partition is not None:
            if req.source.partition not in self.source_leaders:
                raise Handover("no such partition")
            partitions = [req.source.partition]
        self.takers = self._takers(partitions)
        if not req.first_run:
            self._fence_workers()
        self.txn_coordinator = self._coordinator(req.transactional_id, 1)
        self._init_producer()
        committed = committed_offsets(self.backend, consumer, req, partitions)
        self.positions, self.ends = plan_positions(
            req,
            partitions,
            committed,
            lambda p: watermarks(self.backend, consumer, p, req),
            self.report.warnings,
        )
        self.group_coordinator = self._coordinator(req.group, 0)
        self.report.end_offsets = dict(self.ends)
        self.report.positions = dict(self.positions)
        self.report.remaining = self._remaining()
        self.active = {p for p, start in self.positions.items() if start < self.ends[p]}
        self.control.started(dict(self.positions), dict(self.ends))

    def _takers(self, partitions: list[int]) -> dict[int, RecordTaker]:
        """Each source partition's record taker."""
        req = self.request
        if req.raw_mapper is not None:
            return {p: _RawTaker(self, p) for p in partitions}
        fixed = req.fixed
        assert fixed is not None
        target = self.target_named(fixed.topic)
        if target is None:
            raise Handover("the target topic is missing")
        count = len(target.leaders)
        takers: dict[int, RecordTaker] = {}
        for p in partitions:
            route: int | KeyPartitioner = target.by_key
            if fixed.partition is not None:
                route = fixed.partition
            elif fixed.keep_partition:
                route = p
            if isinstance(route, int) and route >= count:
                raise Handover("no such target partition")  # the library copier warns
            header = None
            if fixed.position_header is not None:
                header = header_spec(fixed.position_header, f"kafka:{self.topic}/{p}@")
            takers[p] = fixed_route(header, route, target.outs, partial(self.send, target))
        return takers

    def _init_producer(self, keep: bool = False) -> None:
        """A new epoch for the job's producer. ``keep``: this run's producer goes on
        (after an abort), so another process that took the id over since is not fenced
        (the coordinator answers PRODUCER_FENCED instead)."""
        expected = (self.producer_id, self.epoch) if keep else None
        self.producer_id, self.epoch, self.txn_coordinator = self._producer_id(
            self.request.transactional_id, self.txn_coordinator, expected
        )
        self.sequences.clear()

    def _producer_id(
        self,
        transactional_id: str,
        coordinator: tuple[str, int],
        expected: tuple[int, int] | None = None,
    ) -> tuple[int, int, tuple[str, int]]:
        """InitProducerId: (producer id, epoch, the coordinator that answered). Without
        ``expected``, fences the id's earlier producers and aborts their open
        transaction. With it (the producer id and epoch this run holds), the
        coordinator gives a new epoch only to the producer it knows, and answers
        PRODUCER_FENCED (``_fenced``) when another one took the id over."""
        deadline = time.monotonic() + self.timeout + self.txn_timeout_ms / 1000
        last = ""
        while True:
            try:
                found = self._ask_producer_id(transactional_id, coordinator, expected)
            except WireError as exc:
                found, last = None, str(exc)
            if found is not None:
                if found.error == 0:
                    return found.producer_id, found.epoch, coordinator
                if found.error in tw.FENCED and expected is not None:
                    raise _fenced()
                last = error_name(found.error)
                if found.error not in tw.RETRY:
                    raise Handover(f"InitProducerId: {last}")
            if time.monotonic() >= deadline:
                raise Handover(f"InitProducerId: {last}")
            if found is None or found.error in tw.MOVED:
                coordinator = self._coordinator(transactional_id, 1)
            time.sleep(_RETRY_PAUSE)

    def _ask_producer_id(
        self, transactional_id: str, coordinator: tuple[str, int], expected: tuple[int, int] | None
    ) -> tw.ProducerId:
        """One InitProducerId, naming the producer id and epoch this run holds
        (``expected``) or none (-1, -1)."""
        producer_id, epoch = expected if expected is not None else (-1, -1)
        make = partial(
            tw.encode_init_producer_id,
            transactional_id=transactional_id,
            timeout_ms=self.txn_timeout_ms,
            producer_id=producer_id,
            epoch=epoch,
        )
        return tw.decode_init_producer_id(self._call("txn", coordinator, make))

    def _epoch_lost(self, what: str) -> NoReturn:
        """A request said this producer's epoch is no longer the transactional id's.
        Either the coordinator aborted the open transaction for lasting longer than
        ``transaction.timeout.ms`` (the producer may go on with a new epoch: the
        transaction is done again, ``_Again``), or another process took the job over
        (``_fenced``): InitProducerId with this producer's id and epoch tells the two
        apart."""
        self.in_txn = False  # aborted by the coordinator, or by the other producer
        self.in_doubt.clear()  # so it did not commit
        self._init_producer(keep=True)
        raise _TimedOut(
            f"{what}: the coordinator aborted the transaction after "
            f"transaction.timeout.ms ({self.txn_timeout_ms} ms)"
        )

    def _fence_workers_retrying(self) -> None:
        """``_fence_workers`` through a broker restart (connections refused for a
        while); a resumable error if the brokers stay away."""
        deadline = time.monotonic() + self.timeout + 30
        while True:
            try:
                self._fence_workers()
                return
            except (Handover, WireError, OSError, struct.error) as exc:
                if time.monotonic() >= deadline:
                    raise QctlError(
                        f"kafka at {self.backend.bootstrap} did not let the copy close "
                        f"its workers' transactions: {exc}",
                        "check that the cluster is up, then resume the job; nothing "
                        "uncommitted is kept",
                    ) from None
                log.debug("fencing the workers: %s; trying again", exc)
                time.sleep(0.5)
            finally:
                self.close()

    def _fence_workers(self) -> None:
        """Fence the producers a run of this job may have had in worker processes, so
        no open transaction of a killed worker holds the group's offsets."""
        from qctl.backends.kafka.copy.workers import MAX_WORKERS, worker_id

        log.debug("fencing the worker ids of %s", self.request.transactional_id)
        for index in range(MAX_WORKERS):
            name = worker_id(self.request.transactional_id, index)
            self._producer_id(name, self._coordinator(name, 1))

    def _remaining(self) -> int:
        return sum(max(self.ends[p] - self.positions.get(p, self.ends[p]), 0) for p in self.ends)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> tuple[CopyReport, str | None]:
        """The copy: the report, and why it handed over (None when it did not)."""
        from qctl.backends.kafka.copy.workers import plan_shares, run_workers

        started = time.monotonic()
        log.debug("copying over the wire from %s", self.topic)
        try:
            self._setup()
        except (Handover, Unsupported, WireError, OSError, struct.error) as why:
            self.close()
            return self._finish(started), str(why)
        except BaseException:
            self.close()
            raise
        # The codec is used from here on, and a fork while another thread imports would
        # leave that module's lock held forever in the child.
        self.codec_import.join()
        left = {p: self.ends[p] - self.positions[p] for p in self.active}
        shares = plan_shares(left, self.request.limit is not None)
        if len(shares) < 2:
            return self.run_transactions(started)
        log.debug("copying in %d worker processes: %s", len(shares), shares)
        outcome = run_workers(self, shares, self.control)
        if outcome.error is not None:
            raise outcome.error
        self.in_doubt.extend(outcome.in_doubt)
        if outcome.handover is not None:
            # A worker whose abort did not reach the broker left its transaction open:
            # librdkafka's copier fences only the job's own id, so fence the workers'.
            self._fence_workers_retrying()
        outcome.report.elapsed = time.monotonic() - started
        return outcome.report, outcome.handover

    def run_transactions(self, started: float | None = None) -> tuple[CopyReport, str | None]:
        """Transactions until the end, the limit or a stop; then as ``run``."""
        started = time.monotonic() if started is None else started
        attempts = 0
        try:
            while self.active and not self.control.stopping() and not self.report.limited:
                try:
                    self._transaction()
                    attempts = 0
                except _Again as why:
                    if isinstance(why, _TimedOut):
                        self._timed_out()
                    attempts += 1
                    if attempts >= 3:
                        raise Handover(str(why)) from None
                    self._redo(attempts)
        except (Handover, Unsupported, WireError, OSError, struct.error) as why:
            self._abort()
            return self._finish(started), str(why)
        except BaseException:
            self._abort()
            raise
        finally:
            self.close()
        report = self._finish(started)
        report.stopped = bool(self.active) and not report.limited
        return report, None

    def _timed_out(self) -> None:
        warning = (
            f"a transaction stayed open longer than transaction.timeout.ms "
            f"({self.txn_timeout_ms} ms); the coordinator aborted it and it was done again"
        )
        if warning not in self.report.warnings:
            self.report.warnings.append(warning)

    def _redo(self, attempt: int) -> None:
        """After a refused Produce a broker may accept again soon (a leader not ready
        yet, too few replicas for a moment): abort, start a new epoch (sequences from
        0), read the leaders again, and do the transaction again from its start."""
        log.debug("a transaction is done again (attempt %d)", attempt + 1)
        self._abort()
        time.sleep(0.2 * attempt)
        if self.consumer is not None:  # a worker keeps the parent's listing
            self.topics = self._read_metadata()
            for name, target in self.targets.items():
                leaders = self.topics.get(name)
                if leaders is None or len(leaders) != len(target.leaders) or None in leaders:
                    raise Handover(f"the partitions of {name!r} changed")
                target.leaders = leaders
        for target in self.targets.values():
            for out in target.outs:  # emptied in place: the takers hold this list
                out.builder = None
                out.count = 0
            target.added.clear()
        self.active = {p for p, at in self.positions.items() if at < self.ends[p]}
        self._init_producer(keep=True)

    def become_worker(
        self, transactional_id: str, share: set[int], control: CopyControl, workers: int
    ) -> None:
        """In a forked worker: copy ``share`` of the partitions with a producer of its
        own. The plan and the metadata are the parent's; no librdkafka client is used."""
        from qctl.ratelimit import TokenBucket

        self.request = replace(self.request, transactional_id=transactional_id)
        self.control = control
        self.active &= share
        self.positions = {p: o for p, o in self.positions.items() if p in share}
        self.report = CopyReport(
            positions=dict(self.positions),
            end_offsets={p: e for p, e in self.ends.items() if p in share},
        )
        self.ends = dict(self.report.end_offsets)
        self.report.remaining = self._remaining()
        if self.request.rate:
            self.bucket = TokenBucket(self.request.rate / workers)
        self.txn_coordinator = self._coordinator(transactional_id, 1)
        self._init_producer()

    def _finish(self, started: float) -> CopyReport:
        self.report.elapsed = time.monotonic() - started
        return self.report

    def _transaction(self) -> None:
        req = self.request
        self._begin()
        positions = dict(self.positions)
        tally = self.tally = BatchTally(positions)
        counted = 0
        deadline = time.monotonic() + req.txn_seconds
        idle = 0
        blocked: str | None = None
        while self.active and counted < req.txn_messages:
            budget = self._budget(counted)
            if budget <= 0:
                self.report.limited = True
                break
            answers = self._fetch(positions)
            progressed = False
            for p, part in answers.items():
                if p not in self.active or budget <= 0:
                    continue
                if part.error != 0:
                    raise Handover(f"Fetch of partition {p}: {error_name(part.error)}")
                readable = part.last_stable if self.read_committed else part.high_watermark
                if readable < 0:
                    readable = part.high_watermark
                taken = copy_partition(
                    part.records,
                    positions[p],
                    self.ends[p],
                    part.aborted,
                    self.read_committed,
                    self.takers[p],
                    budget,
                    _SENDING_ERRORS,
                )
                if taken.position != positions[p]:
                    progressed = True
                positions[p] = taken.position
                counted += taken.copied
                budget -= taken.copied
                if taken.unsupported is not None:
                    blocked = blocked or taken.unsupported
                    self.active.discard(p)  # left to librdkafka after this commit
                    progressed = True
                elif taken.done or (not part.records and taken.position >= readable):
                    self.active.discard(p)  # the end, or all there is to read now
                    progressed = True
            filled = {
                target.name: [p for p, out in enumerate(target.outs) if out.count]
                for target in self.targets.values()
            }
            self._add_partitions(filled)  # in one request, before the Produce requests
            for target in self.targets.values():
                for partition in filled[target.name]:
                    self.send(target, partition, target.outs[partition])
            if progressed:
                idle = 0
            else:
                idle += 1
                if idle > 50:
                    raise Handover("no progress")
                time.sleep(_RETRY_PAUSE)
            if self.control.stopping() or time.monotonic() >= deadline:
                break
        self._settle()
        if req.fixed is not None and req.raw_mapper is None:
            tally.routed = counted
            tally.per_target[req.fixed.topic] = counted
        # Until EndTxn answers, whether this transaction committed is not known: a
        # handover decides it from the committed offsets (``InDoubt``).
        self.in_doubt.append(InDoubt(dict(positions), tally))
        self._commit(positions)
        self.in_doubt.pop()
        report = self.report
        tally.add_to(report)
        self.positions = positions
        report.positions = dict(positions)
        report.remaining = self._remaining()
        report.transactions += 1
        self.control.committed(report)
        if blocked is not None:
            raise Handover(blocked)

    def _budget(self, counted: int) -> int:
        """Records the next round may count: what ``--limit`` leaves (0: the limit is
        reached), at most what the transaction's ``txn_messages`` leaves, and with
        ``--rate`` a tenth of a second's worth, waited for (each transaction stays near
        ``txn_seconds``, and progress is committed at that pace)."""
        req = self.request
        budget = 1 << 62
        if req.limit is not None:
            budget = req.limit - self.report.routed - counted
        if budget > 0:
            budget = min(budget, req.txn_messages - counted)
        if self.bucket is not None and budget > 0:
            want = min(budget, max(1, int(self.bucket.rate // 10)))
            time.sleep(self.bucket.delay(want))
            while not self.bucket.try_acquire(want):
                time.sleep(self.bucket.delay(want))
            budget = want
        return budget

    def _fetch(self, positions: dict[int, int]) -> dict[int, Any]:
        by_leader: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        for p in sorted(self.active):
            by_leader[self.source_leaders[p]].append((p, positions[p]))
        sent = []
        for address, asks in by_leader.items():
            conn = self._connection("fetch", address)
            make = partial(
                encode_fetch_request,
                topics={self.topic: asks},
                read_committed=self.read_committed,
                max_bytes=FETCH_BYTES,
                partition_max_bytes=PARTITION_FETCH_BYTES,
            )
            sent.append((conn, conn.send(make)))
        out: dict[int, Any] = {}
        for conn, correlation in sent:
            answer = conn.receive_view(correlation)
            for (topic, p), part in decode_fetch_response(answer).items():
                if topic == self.topic:
                    out[p] = part
        return out

    def send(self, target: _Target, partition: int, out: OutBatch) -> None:
        """Seal ``out`` and send it; ``out`` starts empty again."""
        if partition not in target.added:
            self._add_partitions({target.name: [partition]})
        key = (target.name, partition)
        sequence = self.sequences[key]
        self.sequences[key] = sequence + out.count
        batch = seal(out, self.producer_id, self.epoch, sequence)
        conn = self._connection("produce", target.leaders[partition])
        make = partial(
            tw.encode_produce,
            transactional_id=self.request.transactional_id,
            batches={target.name: {partition: batch}},
            timeout_ms=int(self.timeout * 1000),
        )
        self.pending.append((conn, conn.send(make)))
        if len(self.pending) > 200:
            self._settle()

    def _settle(self) -> None:
        """Read the answers of the Produce requests sent; a refusal means the
        transaction is done again (``_Again``) or handed over."""
        refused: list[tuple[str, int, int]] = []
        lost = self._answers(refused)
        if lost is not None:
            # What the broker did with the requests of a broken connection is not known:
            # the transaction is aborted and done again.
            raise _Again(f"Produce: {lost}")
        if not refused:
            return
        topic, p, error = refused[0]
        what = f"Produce to {topic}/{p}: {error_name(error)}"
        if any(e in tw.FENCED for _t, _p, e in refused):
            self._epoch_lost(what)
        if all(e in tw.PRODUCE_AGAIN for _t, _p, e in refused):
            raise _Again(what)
        raise Handover(what)

    def _answers(self, refused: list[tuple[str, int, int]]) -> str | None:
        """Read the answer of every Produce request in flight, adding the partitions
        they refuse to ``refused``; why some could not be read (a connection broke),
        or None. Every answer is read, even after a failure: a connection's answers
        stay in step, and nothing is left in flight."""
        pending, self.pending = self.pending, []
        lost = None
        broken: set[int] = set()
        for conn, correlation in pending:
            if id(conn) in broken:
                continue
            try:
                conn.renew(self.timeout)
                answer = conn.receive(correlation)
            except WireError as exc:
                broken.add(id(conn))
                self._drop(conn)
                lost = lost or str(exc)
                continue
            for (topic, p), error in tw.decode_produce(answer).items():
                if error not in (0, tw.DUPLICATE_SEQUENCE_NUMBER):
                    refused.append((topic, p, error))
        return lost

    # -- raw mappers -----------------------------------------------------------------------
    def write(self, target: _Target, partition: int | None, record: Any, headers: Any) -> None:
        """``record`` with ``headers`` to ``target`` (``partition`` None: by its key)."""
        if partition is None or partition < 0 or partition >= len(target.leaders):
            if partition is not None and partition >= len(target.leaders):
                self._no_partition(target.name, partition)
            key = record.key
            partition = target.by_key.cache.get(key) if key is not None else None
            if partition is None:
                partition = target.by_key(key)
        out = target.outs[partition]
        if not append(out, record, headers):
            self.send(target, partition, out)
            append(out, record, headers)

    def _no_partition(self, topic: str, partition: int) -> None:
        if topic not in self.warned:
            self.warned.add(topic)
            self.report.warnings.append(
                f"topic {topic!r} has no partition {partition}; such messages are "
                "partitioned by key instead"
            )

    # -- transaction steps -----------------------------------------------------------------
    def _in_txn(self, encode: Callable[..., bytes], **fields: Any) -> Callable[[int], bytes]:
        """A request maker of the open transaction: ``encode`` with this producer's
        transactional id, producer id and epoch."""
        return partial(
            encode,
            transactional_id=self.request.transactional_id,
            producer_id=self.producer_id,
            epoch=self.epoch,
            **fields,
        )

    def _txn_request(
        self, what: str, make: Callable[[int], bytes], decode: Callable[[bytes], int]
    ) -> None:
        """A request to the transaction coordinator, as Kafka's producer retries it:
        the same coordinator while it loads or another transaction step finishes, a
        coordinator found anew when it moved or its connection broke (each of these
        requests may be sent again for the same epoch), until the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                error: int | None = decode(self._call("txn", self.txn_coordinator, make))
                last = ""
            except WireError as exc:
                error, last = None, str(exc)
            if error == 0:
                return
            if error is not None:
                last = error_name(error)
                if error in tw.FENCED:
                    self._epoch_lost(what)
                if error not in tw.RETRY:
                    raise Handover(f"{what}: {last}")
            if time.monotonic() >= deadline:
                raise Handover(f"{what}: {last}")
            if error is None or error in tw.MOVED:
                self.txn_coordinator = self._coordinator(self.request.transactional_id, 1)
            time.sleep(_RETRY_PAUSE)

    def _begin(self) -> None:
        req = self.request
        self.in_txn = True
        for target in self.targets.values():
            target.added.clear()
        self._txn_request(
            "AddOffsetsToTxn",
            self._in_txn(
                tw.encode_add_offsets,
                group_id=req.group,
            ),
            tw.decode_error,
        )

    def _add_partitions(self, wanted: dict[str, list[int]]) -> None:
        """The partitions of ``wanted`` the open transaction does not have yet, into it
        (before the first Produce to them). Only partitions written to are added, as
        librdkafka does: the commit writes a marker into each, and a marker with no
        message before it would leave consumers' committed offsets one short of the
        end."""
        missing = {
            name: [p for p in partitions if p not in self.targets[name].added]
            for name, partitions in wanted.items()
        }
        missing = {name: partitions for name, partitions in missing.items() if partitions}
        if not missing:
            return
        self._txn_request(
            "AddPartitionsToTxn",
            self._in_txn(
                tw.encode_add_partitions,
                topics=missing,
            ),
            _worst,
        )
        for name, partitions in missing.items():
            self.targets[name].added.update(partitions)

    def _commit(self, positions: dict[int, int]) -> None:
        changed = {p: off for p, off in positions.items() if off != self.positions.get(p)}
        if changed:
            self._commit_offsets(changed)
        self._end(commit=True)

    def _commit_offsets(self, offsets: dict[int, int]) -> None:
        """TxnOffsetCommit of the group's new offsets, retried as Kafka's producer does:
        the partitions not yet taken, at a coordinator found anew when it moved or its
        connection broke, until the timeout."""
        req = self.request
        left = dict(offsets)
        deadline = time.monotonic() + self.timeout
        while True:
            make = self._in_txn(
                tw.encode_txn_offset_commit, group_id=req.group, offsets={self.topic: left}
            )
            try:
                answer = self._call("group", self.group_coordinator, make)
            except WireError as exc:
                error: int | None = None
                last = str(exc)
            else:
                refused = {
                    p: e for (_t, p), e in tw.decode_partition_errors(answer).items() if e != 0
                }
                if not refused:
                    return
                error = _worst(answer)
                last = error_name(error)
                if error in tw.FENCED:
                    self._epoch_lost("TxnOffsetCommit")
                if error not in tw.OFFSETS_RETRY:
                    raise Handover(f"TxnOffsetCommit: {last}")
                left = {p: off for p, off in left.items() if p in refused}
            if time.monotonic() >= deadline:
                raise Handover(f"TxnOffsetCommit: {last}")
            if error is None or error in tw.MOVED:
                self.group_coordinator = self._coordinator(req.group, 0)
            time.sleep(_RETRY_PAUSE)

    def _end(self, commit: bool) -> None:
        self._txn_request(
            "EndTxn",
            self._in_txn(
                tw.encode_end_txn,
                commit=commit,
            ),
            tw.decode_error,
        )
        self.in_txn = False

    def _abort(self) -> None:
        """Abort the open transaction once every Produce request in flight is answered,
        as Kafka's producer does: a write that reached its partition after the abort
        would open a transaction no marker ever closes (on brokers without KIP-890's
        checks), pinning the partition's last stable offset. If the coordinator does
        not answer, the library engine's ``init_transactions`` (or a resumed job's)
        aborts it."""
        self._answers([])
        if not self.in_txn:
            return
        try:
            self._end(commit=False)
        except (Handover, WireError, QctlError, OSError, struct.error) as exc:
            log.debug("aborting over the wire failed: %s", exc)
        self.in_txn = False

    def close(self) -> None:
        for conn in self.connections.values():
            conn.sock.close()
        self.connections.clear()
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception:  # closing must not mask the result
                log.debug("closing the consumer failed", exc_info=True)
            self.consumer = None


class _RawTaker:
    """The record taker of a raw mapper (a redrive's routing from raw headers): each
    record is routed, skipped, kept (written back to the end of its own partition) or
    rejected (kept, and counted by reason), as the library copier does it."""

    def __init__(self, copier: WireCopier, partition: int) -> None:
        self.copier = copier
        self.partition = partition
        assert copier.request.raw_mapper is not None
        self.decide = copier.request.raw_mapper

    def __call__(
        self, batch: bytes | memoryview, position: int, end: int, limit: int
    ) -> tuple[int, int | None]:
        copier = self.copier
        tally = copier.tally
        decide = self.decide
        p = self.partition
        write = copier.write
        per_target = tally.per_target
        routed = 0
        stopped_at: int | None = None
        #: The route of the last routed record, and what it resolved to: a mapper
        #: returns one object for every record of an origin, so a run of records
        #: with the same route skips all lookups but the key's partition.
        last_route: Any = _NO_ROUTE
        target: Any = None
        topic = ""
        route_headers: Any = None
        route_partition: int | None = None
        outs: list[OutBatch] = []
        by_key: Any = None
        cache: dict[bytes, int] = {}
        #: Routed records of ``topic`` not yet added to ``per_target``.
        count = 0
        for record in records_of(batch):
            offset = record.offset
            if offset < position:
                continue
            if offset >= end:
                break
            if routed >= limit:
                stopped_at = offset
                break
            headers = record.headers
            decision = decide(headers, p, offset)
            if decision is not last_route:
                if type(decision) is not RawRoute or (found := self._resolve(decision)) is None:
                    self._not_routed(decision, record, headers)
                    continue
                if decision.topic != topic:
                    if count:
                        per_target[topic] = per_target.get(topic, 0) + count
                    topic, count = decision.topic, 0
                last_route, target = decision, found
                route_headers, route_partition = decision.headers, decision.partition
                outs, by_key = target.outs, target.by_key
                cache = by_key.cache
            if route_headers is not None:
                headers = route_headers
            if route_partition is None:  # by key, inline: the usual case
                key = record.key
                if key is None:
                    partition = by_key(None)
                else:
                    partition = cache.get(key)
                    if partition is None:
                        partition = by_key.add(key)
                out = outs[partition]
                builder = out.builder
                if builder is None:
                    builder = out.builder = new_builder()
                if builder.append(out.count, record.timestamp, key, record.value, headers) is None:
                    copier.send(target, partition, out)
                    append(out, record, headers)
                else:
                    out.count += 1
            else:
                write(target, route_partition, record, headers)
            routed += 1
            count += 1
        if count:
            per_target[topic] = per_target.get(topic, 0) + count
        tally.routed += routed
        return routed, stopped_at

    def _resolve(self, route: RawRoute) -> _Target | None:
        """The target of ``route``; None when its topic is missing and the request keeps
        such messages (else the copy stops)."""
        copier = self.copier
        target = copier.targets.get(route.topic) or copier.target_named(route.topic)
        if target is None and copier.request.on_missing_topic != "keep":
            raise no_target(route.topic, copier.backend.bootstrap)
        return target

    def _not_routed(self, decision: Any, record: Any, headers: Any) -> None:
        """A record that stays: rejected (counted by reason) or kept, written back to
        the end of its own partition unchanged; or skipped."""
        copier = self.copier
        tally = copier.tally
        if type(decision) is RawRoute:  # to a missing topic
            decision = Rejected(missing_topic(decision.topic))
        if type(decision) is Rejected:
            tally.rejected[decision.reason] = tally.rejected.get(decision.reason, 0) + 1
            decision = KEEP
        if decision == SKIP:
            tally.skipped += 1
        else:
            own = copier.target_named(copier.topic)
            assert own is not None
            copier.write(own, self.partition, record, headers)
            tally.kept += 1


_NO_ROUTE = object()


def _import_codec() -> None:
    """aiokafka's compiled record codec, without the rest of aiokafka; and librdkafka's
    key hash, so that forked workers do not each load it.

    Importing a submodule runs the ``__init__`` of every package above it: aiokafka's
    imports all its asyncio clients, ``aiokafka.record``'s its Python record classes
    (which import asyncio and ``packaging``), and ``_crecords``' every compiled module.
    Together about five times the compiled codec's own cost, paid by every copy. So the
    three packages go into ``sys.modules`` uninitialised, each with a module
    ``__getattr__`` (PEP 562) that runs its ``__init__`` on first use of a name it
    lacks: a later ``from aiokafka import ...`` elsewhere still gets the whole package.
    """
    import importlib.util
    import sys

    from qctl.backends.kafka.copy.batches import (
        CODEC_MODULES,
        codec,
        key_hash,
        readable_codecs,
    )

    if not any(name in sys.modules for name in CODEC_MODULES):
        for name in ("aiokafka", "aiokafka.record", "aiokafka.record._crecords"):
            if name in sys.modules:
                continue  # imported whole already: left as it is
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                break
            _install_bare(name, spec)
    codec()
    readable_codecs()
    for partitioner in (Partitioner.MURMUR2, Partitioner.CRC32):
        key_hash(partitioner)


def _install_bare(name: str, spec: Any) -> None:
    """``name``'s package in ``sys.modules``, its ``__init__`` deferred to first use."""
    import importlib.util
    import sys

    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(attribute: str) -> Any:
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, attribute)

    package.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)


def _worst(payload: bytes) -> int:
    """The error of an AddPartitionsToTxn or TxnOffsetCommit answer: the first
    partition's that is not OPERATION_NOT_ATTEMPTED (which the others get)."""
    errors = [e for e in tw.decode_partition_errors(payload).values() if e != 0]
    return next((e for e in errors if e != tw.OPERATION_NOT_ATTEMPTED), errors[0] if errors else 0)


def _fenced() -> QctlError:
    return QctlError(
        "another process took over this job (its producer fenced ours)",
        "let that process finish; `qctl dlq jobs` shows the job",
    )


#: What a record taker's sink raises on its way out of ``copy_partition``.
_SENDING_ERRORS = (_Again, Handover, WireError, QctlError)
