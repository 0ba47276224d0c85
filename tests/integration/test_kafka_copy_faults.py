"""The exactly-once wire copy against the failures a production cluster produces.

Every request of the copy goes through the fault-injecting proxy
(``tests/fixtures/kafka_proxy.py``) in front of the real broker, which answers the nth
request of an API with an error (written by the broker and reported failed, or never
written), holds it back, or cuts its connection. Whatever the fault, the outcome is
checked from the broker's side: every source record is in the target exactly once for a
read_committed reader, the job group's committed offsets are the source's end, and the
copy's counts are right. A fault either is ridden out by the wire copy itself (it retries
as Kafka's producer does, or does the transaction again), or hands the rest of the copy
to librdkafka at the last committed transaction; the tests say which they expect.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from qctl.backends.base import BackendConfig
from qctl.backends.capabilities.transactions import (
    CopyProgress,
    CopyReport,
    CopyRequest,
    FixedRoute,
)
from qctl.backends.kafka import KafkaBackend
from qctl.backends.kafka.copy import wire_engine
from qctl.errors import QctlError
from qctl.refs import parse_ref
from tests.fixtures.kafka_proxy import FaultRule, KafkaProxy
from tests.integration.dlq_support import read_kafka

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

PRODUCE, FETCH, FIND_COORDINATOR = 0, 1, 10
INIT_PRODUCER_ID, ADD_PARTITIONS, ADD_OFFSETS, END_TXN, TXN_OFFSET_COMMIT = 22, 24, 25, 26, 28
#: The versions the wire copy sends (librdkafka's requests, after a handover, differ).
WIRE_VERSIONS = {PRODUCE: 7, FIND_COORDINATOR: 1, ADD_PARTITIONS: 1, ADD_OFFSETS: 1}
HEADER = "qctl-replayed-from"
RECORDS = 2400
#: Records per transaction: a fault at the nth request lands mid-copy.
PER_TRANSACTION = 600
HANDED_OVER = "continues through librdkafka"


class Control:
    def __init__(self) -> None:
        self.commits = 0

    def started(self, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
        pass

    def stopping(self) -> bool:
        return False

    def committed(self, progress: CopyProgress) -> None:
        self.commits += 1


@dataclass
class Job:
    """One copy job through the proxy: its topics, ids and backend."""

    kafka: str
    source: str
    target: str
    partitions: int
    backend: KafkaBackend
    request: CopyRequest

    def run(self) -> CopyReport:
        return self.backend.transactional_copy(self.request, Control())

    def check_exact(self, report: CopyReport | None = None) -> None:
        """Every source record once in the target (read_committed), the group at the
        source's end, and (with ``report``) the copy's counts."""
        copies = Counter(
            dict(headers)[HEADER]
            for _k, _v, headers, _p, _o, _t in read_kafka(self.kafka, self.target)
        )
        expected = {
            f"kafka:{self.source}/{p}@{o}".encode()
            for p in range(self.partitions)
            for o in range(RECORDS // self.partitions)
        }
        doubled = {k: n for k, n in copies.items() if n > 1}
        assert not doubled, f"{len(doubled)} records copied more than once"
        assert set(copies) == expected, f"{len(expected - set(copies))} records missing"
        assert committed(
            self.kafka, self.request.group, self.source, self.partitions
        ) == dict.fromkeys(range(self.partitions), RECORDS // self.partitions)
        if report is not None:
            assert (report.routed, report.remaining) == (RECORDS, 0)


def committed(kafka: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group})
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


@pytest.fixture
def admin(kafka: str) -> Iterator[AdminClient]:
    client = AdminClient({"bootstrap.servers": kafka})
    made: list[str] = []
    client.made = made  # type: ignore[attr-defined]
    yield client
    if made:
        for future in client.delete_topics(made).values():
            future.result(30)


@pytest.fixture(params=[1, 3], ids=["one-partition", "three-partitions"])
def job(
    request: pytest.FixtureRequest,
    kafka: str,
    kafka_proxy: KafkaProxy,
    admin: AdminClient,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Job]:
    monkeypatch.setenv("QCTL_KAFKA_WIRE_COPY", "1")
    monkeypatch.setenv("QCTL_KAFKA_COPY_WORKERS", "1")
    with make_job(kafka, kafka_proxy, admin, unique, request.param) as made:
        yield made


@contextlib.contextmanager
def make_job(
    kafka: str,
    proxy: KafkaProxy,
    admin: AdminClient,
    unique: str,
    partitions: int,
    timeout: float = 20,
    per_transaction: int = PER_TRANSACTION,
    **settings: Any,
) -> Iterator[Job]:
    """A job copying RECORDS records from a new source of ``partitions`` partitions, at
    most ``per_transaction`` in each transaction."""
    source, target = f"{unique}-src", f"{unique}-dst"
    for name, count in ((source, partitions), (target, 3)):
        admin.create_topics([NewTopic(name, count, 1)])[name].result(15)
        admin.made.append(name)  # type: ignore[attr-defined]
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5, "batch.num.messages": 100})
    for i in range(RECORDS):
        key = f"order-{i % 41}".encode() if i % 9 else None
        producer.produce(source, f"value-{i}".encode(), key, partition=i % partitions)
    assert producer.flush(30) == 0
    backend = KafkaBackend.from_config(
        BackendConfig("test", {"bootstrap_servers": proxy.bootstrap, **settings}, timeout)
    )
    job_id = uuid.uuid4().hex[:8]
    request = CopyRequest(
        source=parse_ref(f"kafka:{source}"),
        group=f"qctl-test-faults-{job_id}",
        transactional_id=f"qctl-test-faults-{job_id}",
        fixed=FixedRoute(topic=target, position_header=HEADER),
        txn_messages=per_transaction,
    )
    try:
        yield Job(kafka, source, target, partitions, backend, request)
    finally:
        backend.close()


def wire(api_key: int) -> Any:
    """Matches the wire copy's requests of ``api_key`` (not librdkafka's)."""
    version = WIRE_VERSIONS.get(api_key)
    return None if version is None else (lambda r: r.version == version)


def run_logged(job: Job, caplog: pytest.LogCaptureFixture) -> CopyReport:
    with caplog.at_level(logging.DEBUG, logger="qctl.backends.kafka"):
        return job.run()


class HandoverSeen(logging.Handler, threading.Event):
    """Set once the copy says it continues through librdkafka."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)
        threading.Event.__init__(self)

    def emit(self, record: logging.LogRecord) -> None:
        if HANDED_OVER in record.getMessage():
            self.set()


def assert_fired(rule: FaultRule) -> None:
    assert rule.fired >= 1, "the fault never fired: the test proved nothing"


def copied_exactly(
    job: Job,
    caplog: pytest.LogCaptureFixture,
    rule: FaultRule,
    *,
    handed_over: str | None = None,
    redone: bool = False,
) -> CopyReport:
    """Run the copy with ``rule`` in place: the rule fires, the copy hands over to
    librdkafka exactly when ``handed_over`` names why, does a transaction again where
    ``redone``, and leaves the target and the group exact."""
    report = run_logged(job, caplog)
    assert_fired(rule)
    if handed_over is None:
        assert HANDED_OVER not in caplog.text
    else:
        assert f"{HANDED_OVER}: {handed_over}" in caplog.text
    if redone:
        assert "done again" in caplog.text
    job.check_exact(report)
    return report


# -- faults the wire copy rides out itself ------------------------------------------------
@pytest.mark.parametrize("code", [6, 7, 19, 20])
@pytest.mark.parametrize("forward", [False, True], ids=["not-written", "written"])
def test_a_produce_refused_once_is_done_again_and_committed_exactly(
    job: Job,
    kafka_proxy: KafkaProxy,
    caplog: pytest.LogCaptureFixture,
    code: int,
    forward: bool,
) -> None:
    """NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS(_AFTER_APPEND) on one
    Produce, written by the broker or not: the transaction is aborted and done again
    with a new epoch, and commits what it sends (a redone transaction once left the
    records taken after the redo unsent while committing their offsets)."""
    rule = kafka_proxy.fault(PRODUCE, nth=2, error=code, forward=forward, when=wire(PRODUCE))
    copied_exactly(job, caplog, rule, redone=True)


@pytest.mark.parametrize(
    ("api_key", "code"),
    [
        (FIND_COORDINATOR, 14),
        (FIND_COORDINATOR, 15),
        (INIT_PRODUCER_ID, 14),
        (INIT_PRODUCER_ID, 15),
        (INIT_PRODUCER_ID, 16),
        (INIT_PRODUCER_ID, 51),
        (ADD_PARTITIONS, 14),
        (ADD_PARTITIONS, 15),
        (ADD_PARTITIONS, 16),
        (ADD_PARTITIONS, 51),
        (ADD_OFFSETS, 14),
        (ADD_OFFSETS, 15),
        (ADD_OFFSETS, 16),
        (ADD_OFFSETS, 51),
        (TXN_OFFSET_COMMIT, 7),
        (TXN_OFFSET_COMMIT, 14),
        (TXN_OFFSET_COMMIT, 15),
        (TXN_OFFSET_COMMIT, 16),
        (END_TXN, 14),
        (END_TXN, 15),
        (END_TXN, 16),
        (END_TXN, 51),
    ],
)
def test_a_coordinator_error_is_retried_as_kafkas_producer_retries_it(
    job: Job,
    kafka_proxy: KafkaProxy,
    caplog: pytest.LogCaptureFixture,
    api_key: int,
    code: int,
) -> None:
    """COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
    CONCURRENT_TRANSACTIONS (and a timed-out TxnOffsetCommit) answered twice, the broker
    having done nothing: the request is sent again (to a coordinator found anew where it
    moved) and the copy goes on."""
    rule = kafka_proxy.fault(api_key, nth=2, times=2, error=code, forward=False, when=wire(api_key))
    copied_exactly(job, caplog, rule)


@pytest.mark.parametrize("api_key", [PRODUCE, TXN_OFFSET_COMMIT, END_TXN])
@pytest.mark.parametrize("code", [47, 90])
def test_an_epoch_error_without_a_new_owner_does_the_transaction_again(
    job: Job,
    kafka_proxy: KafkaProxy,
    caplog: pytest.LogCaptureFixture,
    api_key: int,
    code: int,
) -> None:
    """INVALID_PRODUCER_EPOCH or PRODUCER_FENCED where no other producer took the id:
    InitProducerId v4 with the producer's own id and epoch tells the coordinator's own
    abort apart from a fence, and the transaction is done again."""
    rule = kafka_proxy.fault(api_key, nth=2, error=code, forward=False, when=wire(api_key))
    copied_exactly(job, caplog, rule, redone=True)


@pytest.mark.parametrize("api_key", [PRODUCE, ADD_PARTITIONS, TXN_OFFSET_COMMIT, END_TXN])
@pytest.mark.parametrize("cut", ["request", "response"])
def test_a_connection_cut_mid_request_is_ridden_out(
    job: Job,
    kafka_proxy: KafkaProxy,
    caplog: pytest.LogCaptureFixture,
    api_key: int,
    cut: str,
) -> None:
    """A connection cut before the broker saw the request, or after it did the work
    but before its answer: a coordinator request is sent again on a new connection (a
    commit sent twice commits once), a Produce's transaction is done again."""
    rule = kafka_proxy.fault(api_key, nth=2, cut=cut, when=wire(api_key))  # type: ignore[arg-type]
    copied_exactly(job, caplog, rule)


# -- faults that hand the copy to librdkafka ---------------------------------------------
def test_a_fetch_error_hands_the_rest_to_librdkafka_exactly(
    job: Job, kafka_proxy: KafkaProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A Fetch answered with NOT_LEADER_OR_FOLLOWER mid-copy: the wire copy commits
    nothing more and librdkafka continues from the last committed transaction."""
    rule = kafka_proxy.fault(FETCH, nth=2, error=6, when=lambda r: r.version == 4)
    copied_exactly(job, caplog, rule, handed_over="Fetch of partition")


def test_a_commit_never_answered_is_counted_from_the_committed_offsets(
    job: Job, kafka_proxy: KafkaProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The first commit reaches the broker, but neither its answer nor any answer to
    its repetitions comes back before the timeout: the wire copy hands over with that
    transaction in doubt, and the counts still come out right, because the handover
    reads that the group's offsets are that transaction's end."""
    job.backend.timeout = 4
    handed_over = HandoverSeen()
    logging.getLogger("qctl.backends.kafka").addHandler(handed_over)

    def wire_end(request: Any) -> bool:  # librdkafka's EndTxn, after the handover, passes
        return bool(request.version == 1 and not handed_over.is_set())

    done = kafka_proxy.fault(END_TXN, nth=1, cut="response", when=wire_end)
    kafka_proxy.fault(END_TXN, nth=2, times=None, cut="request", when=wire_end)
    try:
        report = run_logged(job, caplog)
    finally:
        logging.getLogger("qctl.backends.kafka").removeHandler(handed_over)
    assert_fired(done)
    assert f"{HANDED_OVER}: EndTxn" in caplog.text
    job.check_exact(report)


# -- faults that stop the copy -----------------------------------------------------------
def test_another_owner_of_the_job_stops_the_copy_resumably(
    job: Job, kafka_proxy: KafkaProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A second producer with the job's transactional id (another process took the job
    over) while a Produce is in flight: the copy stops with one clear error, nothing
    uncommitted is kept, and a resumed run copies the rest exactly once."""
    held = kafka_proxy.fault(PRODUCE, nth=2, delay=3, when=wire(PRODUCE))

    def take_over() -> None:
        assert held.wait_fired(timeout=30)
        other = Producer(
            {"bootstrap.servers": job.kafka, "transactional.id": job.request.transactional_id}
        )
        other.init_transactions(20)

    thief = threading.Thread(target=take_over)
    thief.start()
    with pytest.raises(QctlError, match="another process took over this job"):
        run_logged(job, caplog)
    thief.join(30)
    kafka_proxy.clear()
    rest = replace(job.request, first_run=False)
    job.request = rest
    job.run()
    job.check_exact()


def test_a_transaction_the_coordinator_timed_out_is_done_again(
    kafka: str,
    kafka_proxy: KafkaProxy,
    admin: AdminClient,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """transaction.timeout.ms of 2 s and a commit held back 6 s: the coordinator aborts
    the transaction (the dev broker checks every second) and bumps the epoch; the late
    EndTxn is refused
    with INVALID_PRODUCER_EPOCH; InitProducerId v4 says this producer may go on, and the
    transaction is done again with a warning, not reported as a takeover."""
    monkeypatch.setenv("QCTL_KAFKA_WIRE_COPY", "1")
    settings = {"transaction.timeout.ms": 2000}
    with make_job(kafka, kafka_proxy, admin, unique, 3, timeout=30, **settings) as job:
        held = kafka_proxy.fault(END_TXN, nth=1, delay=6, when=lambda r: r.version == 1)
        started = time.monotonic()
        report = run_logged(job, caplog)
        assert_fired(held)
        assert time.monotonic() - started < 60
        assert any("transaction.timeout.ms (2000 ms)" in w for w in report.warnings)
        assert HANDED_OVER not in caplog.text
        job.check_exact(report)


def test_an_abort_waits_for_the_produce_requests_in_flight(
    kafka: str,
    kafka_proxy: KafkaProxy,
    admin: AdminClient,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Produce is still in flight (held 2 s) when the transaction must be aborted (the
    next Fetch fails, and the copy hands over): EndTxn(abort) goes out only after the
    Produce was answered, as Kafka's producer does. A write that reached its partition
    after the abort marker would open a transaction no marker closes on brokers without
    KIP-890's checks, and stall every read_committed reader of the partition."""
    monkeypatch.setenv("QCTL_KAFKA_WIRE_COPY", "1")
    # Small Fetch answers: one transaction reads the source in several rounds.
    monkeypatch.setattr(wire_engine, "PARTITION_FETCH_BYTES", 16384)
    produce_at: list[float] = []
    abort_at: list[float] = []

    def held_produce(request: Any) -> bool:
        if request.version == 7 and not produce_at:
            produce_at.append(time.monotonic())
            return True
        return False

    def abort(request: Any) -> bool:
        if request.version == 1 and not (request.fields or {}).get("committed", True):
            abort_at.append(time.monotonic())
        return False  # watches, never acts

    with make_job(kafka, kafka_proxy, admin, unique, 1, per_transaction=RECORDS) as job:
        kafka_proxy.fault(END_TXN, delay=0.01, when=abort)
        held = kafka_proxy.fault(PRODUCE, delay=2, when=held_produce)
        failing = kafka_proxy.fault(FETCH, nth=2, error=6, when=lambda r: r.version == 4)
        report = run_logged(job, caplog)
        assert_fired(held)
        assert_fired(failing)
        assert f"{HANDED_OVER}: Fetch of partition" in caplog.text
        assert abort_at, "the transaction was never aborted"
        assert abort_at[0] >= produce_at[0] + 2, "the abort went out with a Produce in flight"
        job.check_exact(report)
