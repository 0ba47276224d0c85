"""qctl's Kafka group and offset readers, driven through every error branch by the
fault-injecting proxy (``kafka_proxy``) in front of the real broker.

The readers are ``wire.coordinators`` (FindCoordinator and the retry loop),
``wire.committed`` (OffsetFetch), ``wire.group_reads`` (Metadata, ListGroups,
DescribeGroups, ConsumerGroupDescribe), ``wire.end_offsets`` (ListOffsets),
``wire.timestamps`` (Fetch) and the OffsetDelete loop of ``kafka.offsets``. Each test puts
one fault on a request (an error code in the answer, a cut connection, a delay past the
timeout), runs what a user runs (``qctl lag``, ``qctl lag -g``, ``qctl offsets show``,
``qctl offsets delete``) or the backend method behind it, and checks the outcome from
both sides: qctl's answer against the group's real offsets and message timestamps as
the broker reports them without the proxy, and qctl's exit code and one error line
against the documented ones. Every rule is asserted to have fired, so a fault that
never happened fails the test instead of passing it vacuously.

The group's topic has ``WIRE_FROM`` partitions or more, so log ends and message
timestamps are read over the wire (and fall back to librdkafka where the wire answer
does not settle a partition); the tests check that the wire was used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka import TopicPartition as KTP
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from qctl.backends.base import BackendConfig
from qctl.backends.capabilities.groups import Position, TopicPartition
from qctl.backends.kafka import KafkaBackend
from qctl.backends.kafka.groups import WIRE_FROM
from qctl.backends.kafka.wire import end_offsets, timestamps
from qctl.backends.kafka.wire.group_reads import GroupsWire
from qctl.backends.kafka.wire.groups import Broker
from qctl.errors import AuthenticationError, ExitCode, QctlError, UnreachableError
from tests.cli.test_root import run_qctl
from tests.conftest import KAFKA_BOOTSTRAP
from tests.fixtures import kafka_protocol as kp
from tests.fixtures.kafka_proxy import FaultRule, KafkaProxy, KafkaRequest

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

UNKNOWN_SERVER_ERROR = -1
UNKNOWN_TOPIC_OR_PARTITION = 3
NOT_LEADER_OR_FOLLOWER = 6
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
GROUP_AUTHORIZATION_FAILED = 30
INVALID_REQUEST = 42
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
GROUP_SUBSCRIBED_TO_TOPIC = 86
#: The coordinator errors after which Kafka's clients find the coordinator again.
RETRIABLE = [COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR]

#: Enough partitions for the readers to ask log ends and timestamps over the wire.
PARTITIONS = WIRE_FROM + 20
#: Messages per partition, and the offset every test group commits.
MESSAGES = 3
COMMITTED = 1
#: Message ``o`` of partition ``p`` carries the timestamp ``BASE_MS + 1000 * p + o``: an
#: hour ago, well inside the broker's retention (older messages are deleted under the test).
BASE_MS = (int(time.time()) - 3600) * 1000
#: ``--timeout`` of the runs whose fault outlasts it; a run must end within it plus this.
SHORT = 2.0
SLACK = 4.0
#: A retry loop stops once less than one pause (0.2 s) is left before its deadline: a
#: command that kept asking until its timeout lasts at least this long.
KEPT_ASKING = SHORT - 0.25


# -- the data: one wide topic, a group per test ------------------------------------------------
def _broker_or_skip() -> None:
    host, port = KAFKA_BOOTSTRAP.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        message = f"Kafka is not running on {KAFKA_BOOTSTRAP} (start it with `dev/brokers up`)"
        if os.environ.get("QCTL_REQUIRE_BROKERS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def message_ms(partition: int, offset: int) -> int:
    return BASE_MS + 1000 * partition + offset


@pytest.fixture(scope="module")
def wide() -> Iterator[str]:
    """A topic of ``PARTITIONS`` partitions with ``MESSAGES`` timestamped messages each,
    shared by the module's tests (they only read it) and deleted after them."""
    _broker_or_skip()
    name = f"qctl-test-readers-{os.urandom(5).hex()}"
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    producer = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "linger.ms": 20})
    deadline = time.monotonic() + 30
    while True:  # a new topic's partitions get their leaders a moment after creation
        topic = admin.list_topics(name, timeout=10).topics[name]
        if len(topic.partitions) == PARTITIONS and all(
            p.leader >= 0 for p in topic.partitions.values()
        ):
            break
        assert time.monotonic() < deadline, f"{name} has no leaders"
        time.sleep(0.2)
    for p in range(PARTITIONS):
        for o in range(MESSAGES):
            producer.produce(name, f"{p}-{o}".encode(), partition=p, timestamp=message_ms(p, o))
    assert producer.flush(30) == 0
    yield name
    admin.delete_topics([name])[name].result(30)


def commit(group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit ``offsets`` for ``group`` at the real broker (a simple group: no members)."""
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    request = ConsumerGroupTopicPartitions(
        group, [KTP(t, p, o) for (t, p), o in sorted(offsets.items())]
    )
    result = admin.alter_consumer_group_offsets([request])[group].result(30)
    assert all(tp.error is None for tp in result.topic_partitions)


def committed_at_broker(group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets as the broker reports them, not through the proxy."""
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(
        30
    )
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []}


def ends_at_broker(topic: str) -> dict[int, tuple[int, int]]:
    """(log-start, log-end) of every partition, from the broker without the proxy."""
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    out: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
        futures = admin.list_offsets({KTP(topic, p): spec for p in range(PARTITIONS)})
        for ktp, future in futures.items():
            out[ktp.partition].append(future.result(30).offset)
    return {p: (start, end) for p, (start, end) in out.items()}


@pytest.fixture
def group(wide: str, unique: str) -> Iterator[str]:
    """A group that committed ``COMMITTED`` on every partition of ``wide``."""
    commit(unique, {(wide, p): COMMITTED for p in range(PARTITIONS)})
    yield unique
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    admin.delete_consumer_groups([unique])[unique].result(30)


@pytest.fixture
def other_group(wide: str, unique: str) -> Iterator[str]:
    """A second group (so that the readers take their many-group, pipelined paths)."""
    name = f"{unique}-other"
    commit(name, {(wide, 0): 2})
    yield name
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    admin.delete_consumer_groups([name])[name].result(30)


# -- what qctl should say ----------------------------------------------------------------------
def expected_show(wide: str, group: str) -> list[dict[str, Any]]:
    """``offsets show`` rows as the broker's own answers make them."""
    committed = committed_at_broker(group)
    assert committed == {(wide, p): COMMITTED for p in range(PARTITIONS)}
    rows = []
    for p, (start, end) in sorted(ends_at_broker(wide).items()):
        offset = committed[(wide, p)]
        rows.append(
            {
                "topic": wide,
                "partition": p,
                "committed": offset,
                "log_start": start,
                "log_end": end,
                "last_stable": end,
                "lag": end - offset,
                "committed_ms": message_ms(p, offset),
            }
        )
    return rows


def shown(stdout: str) -> list[dict[str, Any]]:
    """The rows of ``offsets show -o json``, with the message time in milliseconds."""
    rows = []
    for row in json.loads(stdout)["partitions"]:
        stamp = row["committed_timestamp"]
        when = dt.datetime.fromisoformat(stamp) if stamp else None
        rows.append(
            {
                "topic": row["topic"],
                "partition": row["partition"],
                "committed": row["committed"],
                "log_start": row["log_start"],
                "log_end": row["log_end"],
                "last_stable": row["last_stable"],
                "lag": row["lag"],
                "committed_ms": round(when.timestamp() * 1000) if when else None,
            }
        )
    return rows


def assert_lag_right(stdout: str, wide: str, group: str) -> None:
    """``lag -o json`` of ``group`` against the broker: every partition, its lag, and a
    lag in time read from the message at the committed offset."""
    [found] = [g for g in json.loads(stdout)["groups"] if g["group"] == group]
    ends = ends_at_broker(wide)
    committed = committed_at_broker(group)
    rows = {(r["topic"], r["partition"]): r for r in found["partitions"]}
    assert set(rows) == set(committed)
    for (topic, p), row in rows.items():
        assert (row["committed"], row["log_end"], row["lag"]) == (
            committed[(topic, p)],
            ends[p][1],
            ends[p][1] - committed[(topic, p)],
        ), row
        assert row["time_lag_source"] == "message" and row["time_lag_exact"], row
    assert found["lag"] == sum(end - COMMITTED for _, end in ends.values())
    assert found["state"] == "Empty"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("qctl: error:")]


def qctl(proxy: KafkaProxy, *args: str, timeout: float = 5.0) -> Run:
    """``qctl ARGS --timeout T`` against the proxy, in a process of its own."""
    started = time.monotonic()
    proc = run_qctl(
        *args, "--timeout", f"{timeout:g}", env={"QCTL_KAFKA_BOOTSTRAP": proxy.bootstrap}
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def one_error(run: Run, code: ExitCode, *fragments: str) -> None:
    """The run failed with ``code`` and one ``qctl: error:`` line holding ``fragments``,
    and no traceback."""
    assert run.returncode == code, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    [line] = run.error_lines
    for fragment in fragments:
        assert fragment in line, line


def about_group(group: str) -> Callable[[KafkaRequest], bool]:
    """A ``when`` matching the group requests (FindCoordinator, OffsetFetch,
    DescribeGroups, ConsumerGroupDescribe, OffsetDelete) that name ``group``."""

    def match(req: KafkaRequest) -> bool:
        fields = req.fields or {}
        if group in req.keys or fields.get("group_id") == group:
            return True
        for key in ("groups", "group_ids"):
            for entry in fields.get(key) or []:
                if entry == group or (isinstance(entry, dict) and entry.get("group_id") == group):
                    return True
        return False

    return match


def fired(*rules: FaultRule) -> None:
    for rule in rules:
        assert rule.wait_fired(timeout=5), f"the fault on API {rule.api_key} never fired"


@pytest.fixture
def backend_at(kafka_proxy: KafkaProxy) -> Iterator[Callable[..., KafkaBackend]]:
    """Kafka backends talking through the proxy, closed after the test."""
    made: list[KafkaBackend] = []

    def make(timeout: float = 5.0) -> KafkaBackend:
        backend = KafkaBackend.from_config(
            BackendConfig("test", {"bootstrap_servers": kafka_proxy.bootstrap}, timeout)
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


# -- without a fault: the readers use the wire, and their answer is the broker's ---------------
def test_through_the_proxy_without_faults_the_answers_are_the_brokers(
    kafka_proxy: KafkaProxy, wide: str, group: str
) -> None:
    watch = kafka_proxy.fault(kp.OFFSET_FETCH, delay=0.01, when=about_group(group))
    show = qctl(kafka_proxy, "offsets", "show", "--group", group, "-o", "json")
    assert show.returncode == 0, show.stderr
    assert shown(show.stdout) == expected_show(wide, group)
    lag = qctl(kafka_proxy, "lag", "-b", "kafka", "-g", group, "-o", "json")
    assert lag.returncode == 0, lag.stderr
    assert_lag_right(lag.stdout, wide, group)
    fired(watch)
    for api_key in (kp.FIND_COORDINATOR, kp.DESCRIBE_GROUPS, kp.LIST_OFFSETS, kp.FETCH):
        assert kafka_proxy.seen(api_key) > 0, api_key


# -- FindCoordinator (coordinators: _find, coordinators; offsets: _find_coordinator) -----------
@pytest.mark.parametrize("code", RETRIABLE)
def test_lag_of_a_group_rides_out_a_coordinator_error_on_find_coordinator(
    kafka_proxy: KafkaProxy, wide: str, group: str, code: int
) -> None:
    """Both lookups (the description's and the offsets') are told the coordinator is
    loading, not available or moved, once: each finds it again and asks."""
    rule = kafka_proxy.fault(
        kp.FIND_COORDINATOR, times=2, error=code, forward=False, when=about_group(group)
    )
    run = qctl(kafka_proxy, "lag", "-b", "kafka", "-g", group, "-o", "json")
    assert run.returncode == 0, run.stderr
    assert_lag_right(run.stdout, wide, group)
    fired(rule)
    assert rule.fired == 2 and rule.matched >= 4
    assert kafka_proxy.seen(kp.OFFSET_FETCH) > 0 and kafka_proxy.seen(kp.DESCRIBE_GROUPS) > 0


def test_offsets_show_rides_out_a_coordinator_error_on_find_coordinator(
    kafka_proxy: KafkaProxy, wide: str, group: str
) -> None:
    rule = kafka_proxy.fault(
        kp.FIND_COORDINATOR,
        times=2,
        error=COORDINATOR_NOT_AVAILABLE,
        forward=False,
        when=about_group(group),
    )
    run = qctl(kafka_proxy, "offsets", "show", "--group", group, "-o", "json")
    assert run.returncode == 0, run.stderr
    assert shown(run.stdout) == expected_show(wide, group)
    fired(rule)
    assert rule.matched >= 4


def test_many_groups_a_failed_pipelined_lookup_goes_the_one_group_way(
    kafka_proxy: KafkaProxy, backend_at: Callable[..., KafkaBackend], group: str, other_group: str
) -> None:
    """With several groups, one pipelined FindCoordinator round trip serves them all; a
    group whose lookup failed there is looked up again on its own, with retries."""
    backend = backend_at()
    rule = kafka_proxy.fault(
        kp.FIND_COORDINATOR, error=NOT_COORDINATOR, forward=False, when=about_group(group)
    )
    committed = backend.committed_offsets([group, other_group])
    assert to_pairs(committed[group]) == committed_at_broker(group)
    assert to_pairs(committed[other_group]) == committed_at_broker(other_group)
    fired(rule)
    assert rule.matched == 2  # the pipelined lookup, then the group's own

    kafka_proxy.clear()
    rule = kafka_proxy.fault(
        kp.FIND_COORDINATOR, error=NOT_COORDINATOR, forward=False, when=about_group(group)
    )
    described = backend.describe_groups([group, other_group])
    assert described[group].state == described[other_group].state == "Empty"
    fired(rule)
    assert rule.matched == 2
    assert backend._admin is None  # the wire answered it all: librdkafka was never asked


@pytest.mark.parametrize("cut", ["request", "response"])
def test_many_groups_a_cut_pipelined_lookup_sends_every_group_the_one_group_way(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    group: str,
    other_group: str,
    cut: Any,
) -> None:
    """The pipelined round trip's connection is cut (no broker answered it): every group
    is looked up again on its own."""
    backend = backend_at()
    rule = kafka_proxy.fault(kp.FIND_COORDINATOR, cut=cut)
    committed = backend.committed_offsets([group, other_group])
    assert to_pairs(committed[group]) == committed_at_broker(group)
    assert to_pairs(committed[other_group]) == committed_at_broker(other_group)
    fired(rule)
    assert rule.matched >= 3  # the pipelined lookups, then one per group


def to_pairs(offsets: dict[TopicPartition, int | None]) -> dict[tuple[str, int], int | None]:
    return {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}


@pytest.mark.parametrize(
    ("command", "code", "exit_code", "says"),
    [
        ("lag", GROUP_AUTHORIZATION_FAILED, ExitCode.UNREACHABLE, "refused access to group"),
        ("show", GROUP_AUTHORIZATION_FAILED, ExitCode.UNREACHABLE, "refused access to group"),
        ("lag", INVALID_REQUEST, ExitCode.FAILED, "INVALID_REQUEST"),
        ("show", INVALID_REQUEST, ExitCode.FAILED, "INVALID_REQUEST"),
    ],
)
def test_a_final_find_coordinator_error_is_one_error_line(
    kafka_proxy: KafkaProxy, group: str, command: str, code: int, exit_code: ExitCode, says: str
) -> None:
    rule = kafka_proxy.fault(
        kp.FIND_COORDINATOR, times=None, error=code, forward=False, when=about_group(group)
    )
    args = ("lag", "-b", "kafka", "-g", group) if command == "lag" else ("offsets", "show")
    run = qctl(kafka_proxy, *args, *(("--group", group) if command == "show" else ()))
    one_error(run, exit_code, says, repr(group))
    fired(rule)
    assert rule.matched <= 2  # final: each lookup (description, offsets) asked once


@pytest.mark.parametrize("command", ["lag", "show"])
def test_a_coordinator_that_stays_unavailable_ends_at_the_timeout(
    kafka_proxy: KafkaProxy, group: str, command: str
) -> None:
    rule = kafka_proxy.fault(
        kp.FIND_COORDINATOR,
        times=None,
        error=COORDINATOR_NOT_AVAILABLE,
        forward=False,
        when=about_group(group),
    )
    args = ("lag", "-b", "kafka", "-g", group) if command == "lag" else ("offsets", "show")
    run = qctl(
        kafka_proxy, *args, *(("--group", group) if command == "show" else ()), timeout=SHORT
    )
    one_error(run, ExitCode.UNREACHABLE, f"within {SHORT:g}s", "COORDINATOR_NOT_AVAILABLE")
    fired(rule)
    assert rule.matched > 2  # asked again and again until the deadline
    assert KEPT_ASKING <= run.seconds < SHORT + SLACK


@pytest.mark.parametrize("cut", ["request", "response"])
def test_a_cut_find_coordinator_is_asked_again(
    kafka_proxy: KafkaProxy, wide: str, group: str, cut: Any
) -> None:
    rule = kafka_proxy.fault(kp.FIND_COORDINATOR, times=2, cut=cut, when=about_group(group))
    run = qctl(kafka_proxy, "lag", "-b", "kafka", "-g", group, "-o", "json")
    assert run.returncode == 0, run.stderr
    assert_lag_right(run.stdout, wide, group)
    fired(rule)
    assert rule.fired == 2 and rule.matched >= 4


def test_a_cluster_that_never_answers_find_coordinator_is_unreachable(
    kafka_proxy: KafkaProxy, group: str
) -> None:
    rule = kafka_proxy.fault(kp.FIND_COORDINATOR, times=None, cut="request")
    run = qctl(kafka_proxy, "offsets", "show", "--group", group, timeout=SHORT)
    one_error(run, ExitCode.UNREACHABLE, "is unreachable", "check bootstrap_servers")
    fired(rule)
    assert KEPT_ASKING <= run.seconds < SHORT + SLACK


# -- OffsetFetch, DescribeGroups, ConsumerGroupDescribe at the coordinator (per_group) ---------
#: (API, command) pairs: each request, and the command whose answer shows it.
AT_COORDINATOR = [
    pytest.param(kp.OFFSET_FETCH, "lag", id="OffsetFetch-lag"),
    pytest.param(kp.OFFSET_FETCH, "show", id="OffsetFetch-show"),
    pytest.param(kp.DESCRIBE_GROUPS, "lag", id="DescribeGroups-lag"),
    pytest.param(kp.DESCRIBE_GROUPS, "show", id="DescribeGroups-show"),
]


def check_answer(run: Run, command: str, wide: str, group: str) -> None:
    assert run.returncode == 0, run.stderr
    if command == "lag":
        assert_lag_right(run.stdout, wide, group)
    else:
        assert shown(run.stdout) == expected_show(wide, group)


def group_command(command: str, group: str) -> tuple[str, ...]:
    if command == "lag":
        return ("lag", "-b", "kafka", "-g", group, "-o", "json")
    return ("offsets", "show", "--group", group, "-o", "json")


@pytest.mark.parametrize("code", RETRIABLE)
@pytest.mark.parametrize(("api_key", "command"), AT_COORDINATOR)
def test_a_coordinator_error_once_is_retried(
    kafka_proxy: KafkaProxy, wide: str, group: str, api_key: int, command: str, code: int
) -> None:
    """The coordinator answers with a coordinator error (the broker did the work, the
    answer says otherwise): qctl finds the coordinator again and asks again."""
    rule = kafka_proxy.fault(api_key, error=code, top_level=True, when=about_group(group))
    run = qctl(kafka_proxy, *group_command(command, group))
    check_answer(run, command, wide, group)
    fired(rule)
    assert rule.matched == 2


@pytest.mark.parametrize("cut", ["request", "response"])
@pytest.mark.parametrize(("api_key", "command"), AT_COORDINATOR)
def test_a_cut_connection_to_the_coordinator_is_retried(
    kafka_proxy: KafkaProxy, wide: str, group: str, api_key: int, command: str, cut: Any
) -> None:
    rule = kafka_proxy.fault(api_key, cut=cut, when=about_group(group))
    run = qctl(kafka_proxy, *group_command(command, group))
    check_answer(run, command, wide, group)
    fired(rule)
    assert rule.matched == 2


@pytest.mark.parametrize(
    ("api_key", "code", "exit_code", "says"),
    [
        (kp.OFFSET_FETCH, GROUP_AUTHORIZATION_FAILED, ExitCode.UNREACHABLE, "refused access"),
        (kp.OFFSET_FETCH, UNKNOWN_SERVER_ERROR, ExitCode.FAILED, "UNKNOWN_SERVER_ERROR"),
        (kp.DESCRIBE_GROUPS, GROUP_AUTHORIZATION_FAILED, ExitCode.UNREACHABLE, "refused access"),
        (kp.DESCRIBE_GROUPS, UNKNOWN_SERVER_ERROR, ExitCode.FAILED, "UNKNOWN_SERVER_ERROR"),
    ],
)
@pytest.mark.parametrize("command", ["lag", "show"])
def test_a_final_coordinator_error_is_one_error_line(
    kafka_proxy: KafkaProxy,
    group: str,
    api_key: int,
    code: int,
    exit_code: ExitCode,
    says: str,
    command: str,
) -> None:
    rule = kafka_proxy.fault(
        api_key, times=None, error=code, top_level=True, when=about_group(group)
    )
    run = qctl(kafka_proxy, *group_command(command, group))
    one_error(run, exit_code, says, repr(group))
    fired(rule)
    assert rule.matched == 1  # final: not asked again


@pytest.mark.parametrize(("api_key", "command"), AT_COORDINATOR)
def test_a_coordinator_slower_than_the_timeout_ends_the_command_at_the_timeout(
    kafka_proxy: KafkaProxy, group: str, api_key: int, command: str
) -> None:
    rule = kafka_proxy.fault(api_key, times=None, delay=SHORT + 3, when=about_group(group))
    run = qctl(kafka_proxy, *group_command(command, group), timeout=SHORT)
    one_error(run, ExitCode.UNREACHABLE, f"within {SHORT:g}s", "timed out", repr(group))
    fired(rule)
    assert KEPT_ASKING <= run.seconds < SHORT + SLACK


def test_many_groups_an_error_in_a_pipelined_answer_goes_the_one_group_way(
    kafka_proxy: KafkaProxy, backend_at: Callable[..., KafkaBackend], group: str, other_group: str
) -> None:
    """OffsetFetch and DescribeGroups for several groups go out pipelined per
    coordinator; a group answered with an error there is asked again on its own."""
    backend = backend_at()
    rules = [
        kafka_proxy.fault(
            kp.OFFSET_FETCH, error=NOT_COORDINATOR, top_level=True, when=about_group(group)
        ),
        kafka_proxy.fault(
            kp.DESCRIBE_GROUPS, error=COORDINATOR_LOAD_IN_PROGRESS, when=about_group(group)
        ),
    ]
    committed = backend.committed_offsets([group, other_group])
    described = backend.describe_groups([group, other_group])
    assert to_pairs(committed[group]) == committed_at_broker(group)
    assert to_pairs(committed[other_group]) == committed_at_broker(other_group)
    assert described[group].state == described[other_group].state == "Empty"
    fired(*rules)
    assert [r.matched for r in rules] == [2, 2]
    assert backend._admin is None


@pytest.mark.parametrize("cut", ["request", "response"])
def test_many_groups_a_cut_pipelined_connection_goes_the_one_group_way(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    group: str,
    other_group: str,
    cut: Any,
) -> None:
    backend = backend_at()
    rules = [
        kafka_proxy.fault(kp.OFFSET_FETCH, cut=cut, when=about_group(group)),
        kafka_proxy.fault(kp.DESCRIBE_GROUPS, cut=cut, when=about_group(group)),
    ]
    committed = backend.committed_offsets([group, other_group])
    described = backend.describe_groups([group, other_group])
    assert to_pairs(committed[group]) == committed_at_broker(group)
    assert to_pairs(committed[other_group]) == committed_at_broker(other_group)
    assert described[group].state == described[other_group].state == "Empty"
    fired(*rules)
    assert backend._admin is None


# -- ConsumerGroupDescribe: groups of the new consumer protocol (KIP-848) ----------------------
@pytest.fixture(scope="module")
def new_protocol_group(wide: str) -> Iterator[str]:
    """A group of the new consumer protocol that committed ``COMMITTED`` everywhere and
    has no members left: DescribeGroups calls it Dead, ConsumerGroupDescribe knows it."""
    from confluent_kafka import Consumer

    name = f"qctl-test-kip848-{os.urandom(5).hex()}"
    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA_BOOTSTRAP,
            "group.id": name,
            "group.protocol": "consumer",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([wide])
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        assert time.monotonic() < deadline, "the new-protocol consumer got no assignment"
        consumer.poll(0.2)
    consumer.commit(
        offsets=[KTP(wide, p, COMMITTED) for p in range(PARTITIONS)], asynchronous=False
    )
    consumer.close()
    yield name
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    admin.delete_consumer_groups([name])[name].result(30)


@pytest.mark.parametrize("code", RETRIABLE)
def test_consumer_group_describe_error_once_is_retried(
    kafka_proxy: KafkaProxy, wide: str, new_protocol_group: str, code: int
) -> None:
    group = new_protocol_group
    rule = kafka_proxy.fault(kp.CONSUMER_GROUP_DESCRIBE, error=code, when=about_group(group))
    run = qctl(kafka_proxy, *group_command("lag", group))
    check_answer(run, "lag", wide, group)
    fired(rule)
    assert rule.matched == 2
    assert kafka_proxy.seen(kp.DESCRIBE_GROUPS) > 0  # Dead there: then asked this way


def test_consumer_group_describe_cut_is_retried(
    kafka_proxy: KafkaProxy, wide: str, new_protocol_group: str
) -> None:
    group = new_protocol_group
    rule = kafka_proxy.fault(kp.CONSUMER_GROUP_DESCRIBE, cut="response", when=about_group(group))
    run = qctl(kafka_proxy, *group_command("show", group))
    assert run.returncode == 0, run.stderr
    rows = shown(run.stdout)
    assert [(r["partition"], r["committed"]) for r in rows] == [
        (p, COMMITTED) for p in range(PARTITIONS)
    ]
    assert json.loads(run.stdout)["state"] == "Empty"
    fired(rule)
    assert rule.matched == 2


@pytest.mark.parametrize(
    ("code", "exit_code", "says"),
    [
        (GROUP_AUTHORIZATION_FAILED, ExitCode.UNREACHABLE, "refused access"),
        (UNKNOWN_SERVER_ERROR, ExitCode.FAILED, "UNKNOWN_SERVER_ERROR"),
    ],
)
def test_a_final_consumer_group_describe_error_is_one_error_line(
    kafka_proxy: KafkaProxy, new_protocol_group: str, code: int, exit_code: ExitCode, says: str
) -> None:
    group = new_protocol_group
    rule = kafka_proxy.fault(
        kp.CONSUMER_GROUP_DESCRIBE, times=None, error=code, when=about_group(group)
    )
    run = qctl(kafka_proxy, *group_command("lag", group))
    one_error(run, exit_code, says, repr(group))
    fired(rule)
    assert rule.matched == 1


def test_many_groups_a_consumer_group_describe_error_goes_the_one_group_way(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    group: str,
    new_protocol_group: str,
) -> None:
    backend = backend_at()
    rule = kafka_proxy.fault(
        kp.CONSUMER_GROUP_DESCRIBE, error=NOT_COORDINATOR, when=about_group(new_protocol_group)
    )
    described = backend.describe_groups([group, new_protocol_group])
    assert (described[group].state, described[group].type) == ("Empty", "classic")
    assert (described[new_protocol_group].state, described[new_protocol_group].type) == (
        "Empty",
        "consumer",
    )
    fired(rule)
    assert rule.matched == 2
    assert backend._admin is None


def test_a_group_no_protocol_knows_is_reported_missing(
    kafka_proxy: KafkaProxy, group: str, unique: str
) -> None:
    """DescribeGroups calls a missing group Dead, ConsumerGroupDescribe answers
    GROUP_ID_NOT_FOUND: Dead it is, and the commands say the group does not exist."""
    missing = f"{unique}-missing"
    watch = kafka_proxy.fault(kp.CONSUMER_GROUP_DESCRIBE, delay=0.01, when=about_group(missing))
    one_error(
        qctl(kafka_proxy, "offsets", "show", "--group", missing),
        ExitCode.USAGE,
        "does not exist",
        repr(missing),
    )
    one_error(
        qctl(kafka_proxy, "lag", "-b", "kafka", "-g", missing),
        ExitCode.FAILED,
        "no consumer group named",
        repr(missing),
    )
    fired(watch)


# -- Metadata and ListGroups: every group of the cluster (qctl lag) ----------------------------
def listed_by_lag(run: Run) -> set[str]:
    assert run.returncode == 0, run.stderr
    return {g["group"] for g in json.loads(run.stdout)["groups"]}


@pytest.mark.parametrize("code", [COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE])
def test_list_groups_error_once_is_retried(
    kafka_proxy: KafkaProxy, backend_at: Callable[..., KafkaBackend], group: str, code: int
) -> None:
    """A broker still loading its groups, or not yet coordinating, lists none: qctl asks
    it again rather than report a cluster without groups."""
    rule = kafka_proxy.fault(kp.LIST_GROUPS, error=code, forward=False)
    assert group in listed_by_lag(qctl(kafka_proxy, "lag", "-b", "kafka", "-o", "json"))
    fired(rule)
    assert rule.matched == 2

    kafka_proxy.clear()
    rule = kafka_proxy.fault(kp.LIST_GROUPS, error=code, forward=False)
    backend = backend_at()
    assert group in {g.group_id for g in backend.list_groups()}
    fired(rule)
    assert backend._admin is None


@pytest.mark.parametrize("cut", ["request", "response"])
@pytest.mark.parametrize("api_key", [kp.METADATA, kp.LIST_GROUPS], ids=["Metadata", "ListGroups"])
def test_a_cut_listing_is_asked_again(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    group: str,
    api_key: int,
    cut: Any,
) -> None:
    """Metadata (for the brokers) and ListGroups (to each): a cut connection is not a
    cluster without groups. On a fresh backend the wire's requests are the first ones."""
    backend = backend_at()
    rule = kafka_proxy.fault(api_key, cut=cut)
    assert group in {g.group_id for g in backend.list_groups()}
    fired(rule)
    assert rule.matched == 2
    assert backend._admin is None

    kafka_proxy.clear()
    rule = kafka_proxy.fault(api_key, cut=cut)
    assert group in listed_by_lag(qctl(kafka_proxy, "lag", "-b", "kafka", "-o", "json"))
    fired(rule)


def test_one_broker_failing_list_groups_leaves_the_listing_incomplete_with_a_warning(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    group: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every broker lists only the groups it coordinates. The dev cluster has one
    broker, so two proxies in front of it stand for two brokers (the broker list the
    Metadata answer would give is replaced): one refuses, the other lists."""
    with KafkaProxy(KAFKA_BOOTSTRAP, check_codec=True) as second:
        brokers = [
            Broker(1, *address(kafka_proxy.bootstrap)),
            Broker(2, *address(second.bootstrap)),
        ]
        monkeypatch.setattr(GroupsWire, "_brokers", lambda self: brokers)
        rule = kafka_proxy.fault(kp.LIST_GROUPS, times=None, error=UNKNOWN_SERVER_ERROR)
        with caplog.at_level(logging.WARNING, logger="qctl"):
            listed = backend_at().list_groups()
        assert second.seen(kp.LIST_GROUPS) == 1
        assert not second.problems
    assert group in {g.group_id for g in listed}
    assert [r.getMessage() for r in caplog.records] == [
        "listing consumer groups was incomplete: broker 1: UNKNOWN_SERVER_ERROR"
    ]
    fired(rule)
    assert rule.matched == 1  # a final error: not asked again


def address(bootstrap: str) -> tuple[str, int]:
    host, port = bootstrap.rsplit(":", 1)
    return host, int(port)


def test_a_broker_that_keeps_failing_list_groups_is_an_error_not_an_empty_cluster(
    kafka_proxy: KafkaProxy, group: str
) -> None:
    rule = kafka_proxy.fault(
        kp.LIST_GROUPS, times=None, error=COORDINATOR_NOT_AVAILABLE, forward=False
    )
    run = qctl(kafka_proxy, "lag", "-b", "kafka", "-o", "json", timeout=SHORT)
    one_error(
        run,
        ExitCode.UNREACHABLE,
        "did not list its consumer groups",
        "COORDINATOR_NOT_AVAILABLE",
    )
    assert run.stdout.strip() == "" or json.loads(run.stdout)["groups"] == []
    fired(rule)
    assert rule.matched > 2
    assert KEPT_ASKING <= run.seconds < SHORT + SLACK


def test_a_final_list_groups_error_is_an_error_not_an_empty_cluster(
    kafka_proxy: KafkaProxy, group: str
) -> None:
    rule = kafka_proxy.fault(kp.LIST_GROUPS, times=None, error=UNKNOWN_SERVER_ERROR, forward=False)
    run = qctl(kafka_proxy, "lag", "-b", "kafka", "-o", "json", timeout=SHORT)
    one_error(run, ExitCode.UNREACHABLE, "did not list its consumer groups", "UNKNOWN_SERVER_ERROR")
    fired(rule)
    assert rule.matched == 1
    assert run.seconds < SHORT + SLACK


@pytest.mark.parametrize("api_key", [kp.METADATA, kp.LIST_GROUPS], ids=["Metadata", "ListGroups"])
def test_a_listing_slower_than_the_timeout_ends_at_the_timeout(
    kafka_proxy: KafkaProxy, group: str, api_key: int
) -> None:
    rule = kafka_proxy.fault(api_key, times=None, delay=SHORT + 3)
    run = qctl(kafka_proxy, "lag", "-b", "kafka", "-o", "json", timeout=SHORT)
    one_error(run, ExitCode.UNREACHABLE, "timed out")
    fired(rule)
    assert KEPT_ASKING <= run.seconds < SHORT + SLACK


def test_a_cluster_that_never_answers_metadata_is_unreachable(
    kafka_proxy: KafkaProxy, group: str
) -> None:
    rule = kafka_proxy.fault(kp.METADATA, times=None, cut="request")
    run = qctl(kafka_proxy, "lag", "-b", "kafka", "-o", "json", timeout=SHORT)
    one_error(run, ExitCode.UNREACHABLE, "is unreachable")
    fired(rule)
    assert run.seconds < SHORT + SLACK


# -- ListOffsets (end_offsets) and Fetch (timestamps): the wire, then librdkafka ---------------
#: Two partitions whose wire answer carries an error (the rest is settled over the wire).
REFUSED = (7, 50)


@dataclass
class WireAnswers:
    """What ``list_ends`` and ``read_positions`` returned, call by call."""

    ends: list[dict[tuple[str, int], Any]]
    positions: list[dict[tuple[str, int, int], Any]]


@pytest.fixture
def wire_answers(monkeypatch: pytest.MonkeyPatch) -> WireAnswers:
    seen = WireAnswers([], [])
    list_ends, read_positions = end_offsets.list_ends, timestamps.read_positions

    def spy_ends(*args: Any, **kwargs: Any) -> Any:
        seen.ends.append(list_ends(*args, **kwargs))
        return seen.ends[-1]

    def spy_positions(*args: Any, **kwargs: Any) -> Any:
        seen.positions.append(read_positions(*args, **kwargs))
        return seen.positions[-1]

    monkeypatch.setattr(end_offsets, "list_ends", spy_ends)
    monkeypatch.setattr(timestamps, "read_positions", spy_positions)
    return seen


def every_partition(wide: str) -> list[TopicPartition]:
    return [TopicPartition(wide, p) for p in range(PARTITIONS)]


def assert_ends_right(wide: str, got: dict[TopicPartition, Any]) -> None:
    truth = ends_at_broker(wide)
    assert {tp.partition: (o.log_start, o.log_end, o.last_stable) for tp, o in got.items()} == {
        p: (start, end, end) for p, (start, end) in truth.items()
    }


def assert_timestamps_right(wide: str, got: dict[Position, Any]) -> None:
    assert {
        (pos.tp.partition, pos.offset): (m.timestamp, m.offset, m.exact) for pos, m in got.items()
    } == {(p, COMMITTED): (message_ms(p, COMMITTED), COMMITTED, True) for p in range(PARTITIONS)}


def sizes_of(topic: str, sizes: list[int]) -> Callable[[KafkaRequest], bool]:
    """A ``when`` that matches every request and records how many partitions of
    ``topic`` it names (the wire asks all of a leader's at once; librdkafka's fallback
    only those the wire did not settle)."""

    def record(req: KafkaRequest) -> bool:
        sizes.append(len(req.topics.get(topic, [])))
        return True

    return record


def test_list_offsets_partition_errors_are_asked_of_librdkafka(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    wire_answers: WireAnswers,
) -> None:
    refused = {(wide, p) for p in REFUSED}
    rule = kafka_proxy.fault(kp.LIST_OFFSETS, error=NOT_LEADER_OR_FOLLOWER, partitions=refused)
    got = every_partition_offsets(backend_at(), wide)
    assert_ends_right(wide, got)
    fired(rule)
    [wire] = wire_answers.ends
    assert set(wire) == {(wide, p) for p in range(PARTITIONS)} - refused


def every_partition_offsets(backend: KafkaBackend, wide: str) -> dict[TopicPartition, Any]:
    return backend.partition_offsets(every_partition(wide))


@pytest.mark.parametrize("cut", ["request", "response"])
def test_a_cut_list_offsets_leaves_the_leader_to_librdkafka(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    wire_answers: WireAnswers,
    cut: Any,
) -> None:
    """One of the three questions to the leader (log-start, high watermark, last-stable
    offset) is cut off: none of its partitions is settled over the wire."""
    rule = kafka_proxy.fault(kp.LIST_OFFSETS, cut=cut)
    assert_ends_right(wide, every_partition_offsets(backend_at(), wide))
    fired(rule)
    assert wire_answers.ends == [{}]


def test_list_offsets_slower_than_the_timeout_is_left_to_librdkafka_in_time(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    wire_answers: WireAnswers,
) -> None:
    rule = kafka_proxy.fault(kp.LIST_OFFSETS, delay=SHORT + 3)
    started = time.monotonic()
    assert_ends_right(wide, every_partition_offsets(backend_at(SHORT), wide))
    assert time.monotonic() - started < SHORT + SLACK
    fired(rule)
    assert wire_answers.ends == [{}]


def committed_positions(wide: str) -> list[Position]:
    return [Position(TopicPartition(wide, p), COMMITTED) for p in range(PARTITIONS)]


def test_fetch_partition_errors_are_read_by_the_consumer(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    wire_answers: WireAnswers,
) -> None:
    refused = {(wide, p) for p in REFUSED}
    sizes: list[int] = []
    rule = kafka_proxy.fault(
        kp.FETCH, error=NOT_LEADER_OR_FOLLOWER, partitions=refused, when=sizes_of(wide, sizes)
    )
    got = backend_at().message_timestamps(committed_positions(wide))
    assert_timestamps_right(wide, got)
    fired(rule)
    [wire] = wire_answers.positions
    assert {(t, p) for t, p, _ in wire} == {(wide, p) for p in range(PARTITIONS)} - refused
    assert sizes[0] == PARTITIONS and set(sizes[1:]) <= {0, 1, 2}  # then the consumer's


@pytest.mark.parametrize("cut", ["request", "response"])
def test_a_cut_fetch_is_left_to_the_consumer(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    wire_answers: WireAnswers,
    cut: Any,
) -> None:
    rule = kafka_proxy.fault(kp.FETCH, cut=cut)
    assert_timestamps_right(wide, backend_at().message_timestamps(committed_positions(wide)))
    fired(rule)
    assert wire_answers.positions == [{}]


def test_fetch_slower_than_the_timeout_is_left_to_the_consumer_in_time(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    wire_answers: WireAnswers,
) -> None:
    """The wire waits out the timeout, then the consumer gets a timeout of its own."""
    rule = kafka_proxy.fault(kp.FETCH, delay=SHORT + 3)
    started = time.monotonic()
    got = backend_at(SHORT).message_timestamps(committed_positions(wide))
    assert time.monotonic() - started < 2 * SHORT + SLACK
    assert_timestamps_right(wide, got)
    fired(rule)
    assert wire_answers.positions == [{}]


@pytest.mark.parametrize("command", ["lag", "show"])
@pytest.mark.parametrize("api_key", [kp.LIST_OFFSETS, kp.FETCH], ids=["ListOffsets", "Fetch"])
def test_wire_partition_errors_leave_the_answer_right(
    kafka_proxy: KafkaProxy, wide: str, group: str, api_key: int, command: str
) -> None:
    """Through the commands: the partitions the wire answer refused are read with
    librdkafka, which asks for those only, and the answer is the broker's."""
    sizes: list[int] = []
    rule = kafka_proxy.fault(
        api_key,
        error=NOT_LEADER_OR_FOLLOWER,
        partitions={(wide, p) for p in REFUSED},
        when=sizes_of(wide, sizes),
    )
    run = qctl(kafka_proxy, *group_command(command, group))
    check_answer(run, command, wide, group)
    fired(rule)
    assert sizes[0] == PARTITIONS  # the wire's request: every partition of the leader
    assert len(sizes) > (3 if api_key == kp.LIST_OFFSETS else 1)
    assert set(sizes[3 if api_key == kp.LIST_OFFSETS else 1 :]) <= {0, 1, 2}


@pytest.mark.parametrize("fault", ["cut", "delay"])
@pytest.mark.parametrize("api_key", [kp.LIST_OFFSETS, kp.FETCH], ids=["ListOffsets", "Fetch"])
def test_a_wire_read_cut_or_too_slow_leaves_the_answer_right(
    kafka_proxy: KafkaProxy, wide: str, group: str, api_key: int, fault: str
) -> None:
    if fault == "cut":
        rule = kafka_proxy.fault(api_key, cut="response")
    else:
        rule = kafka_proxy.fault(api_key, delay=SHORT + 3)
    run = qctl(kafka_proxy, *group_command("show", group), timeout=SHORT)
    check_answer(run, "show", wide, group)
    fired(rule)
    assert run.seconds < 2 * SHORT + SLACK


# -- OffsetDelete (offsets delete): its own FindCoordinator loop, then the coordinator ---------
def delete_command(wide: str, group: str) -> tuple[str, ...]:
    return ("offsets", "delete", "--group", group, "--topic", wide, "--execute", "--yes")


def assert_untouched(wide: str, group: str) -> None:
    assert committed_at_broker(group) == {(wide, p): COMMITTED for p in range(PARTITIONS)}


@pytest.mark.parametrize("forward", [False, True], ids=["refused", "lost-ack"])
@pytest.mark.parametrize("code", RETRIABLE)
def test_offset_delete_coordinator_error_once_is_retried(
    kafka_proxy: KafkaProxy, wide: str, group: str, code: int, forward: bool
) -> None:
    """Refused (the broker did nothing) or a lost answer (it deleted, and was told
    otherwise): asked again, the offsets are gone either way."""
    rule = kafka_proxy.fault(
        kp.OFFSET_DELETE, error=code, forward=forward, top_level=True, when=about_group(group)
    )
    run = qctl(kafka_proxy, *delete_command(wide, group))
    assert run.returncode == 0, run.stderr
    assert f"{PARTITIONS} of {PARTITIONS} partitions deleted and verified" in run.stderr
    assert committed_at_broker(group) == {}
    fired(rule)
    assert rule.matched == 2


@pytest.mark.parametrize(
    ("code", "exit_code", "says"),
    [
        (GROUP_ID_NOT_FOUND, ExitCode.USAGE, "does not exist"),
        (GROUP_AUTHORIZATION_FAILED, ExitCode.UNREACHABLE, "refused access to group"),
        (NON_EMPTY_GROUP, ExitCode.FAILED, "has active members"),
        (UNKNOWN_SERVER_ERROR, ExitCode.FAILED, "refused to delete offsets"),
    ],
)
def test_a_final_offset_delete_error_is_one_error_line(
    kafka_proxy: KafkaProxy, wide: str, group: str, code: int, exit_code: ExitCode, says: str
) -> None:
    rule = kafka_proxy.fault(
        kp.OFFSET_DELETE, times=None, error=code, forward=False, top_level=True
    )
    run = qctl(kafka_proxy, *delete_command(wide, group))
    one_error(run, exit_code, says, repr(group))
    assert_untouched(wide, group)
    fired(rule)
    assert rule.matched == 1


def test_offset_delete_answer_without_the_partitions_is_no_answer_for_them(
    kafka_proxy: KafkaProxy, wide: str, group: str
) -> None:
    """A top-level error Kafka reports per partition as well (UNKNOWN_TOPIC_OR_PARTITION)
    in an answer that names no partition: each partition has no answer, and nothing is
    taken for deleted."""
    rule = kafka_proxy.fault(
        kp.OFFSET_DELETE, error=UNKNOWN_TOPIC_OR_PARTITION, forward=False, top_level=True
    )
    run = qctl(kafka_proxy, *delete_command(wide, group))
    one_error(run, ExitCode.FAILED, "failed on every partition", "the broker did not answer for it")
    assert_untouched(wide, group)
    fired(rule)


def test_offset_delete_at_a_coordinator_that_stays_unavailable_ends_at_the_timeout(
    kafka_proxy: KafkaProxy, wide: str, group: str
) -> None:
    rule = kafka_proxy.fault(
        kp.OFFSET_DELETE, times=None, error=NOT_COORDINATOR, forward=False, top_level=True
    )
    run = qctl(kafka_proxy, *delete_command(wide, group), timeout=SHORT)
    one_error(
        run,
        ExitCode.UNREACHABLE,
        f"did not answer the offset delete of group {group!r} within {SHORT:g}s",
        "NOT_COORDINATOR",
    )
    assert_untouched(wide, group)
    fired(rule)
    assert rule.matched > 2
    assert run.seconds < SHORT * 4 + SLACK  # the plan's reads, then the delete's own timeout


def test_offset_delete_refused_for_one_partition_is_a_partial_failure(
    kafka_proxy: KafkaProxy, wide: str, group: str
) -> None:
    """The broker deleted every partition but says partition 1 was refused (its
    answer, rewritten): qctl reports partition 1 as not taken (exit 4, named), the others
    as deleted and verified."""
    rule = kafka_proxy.fault(
        kp.OFFSET_DELETE, error=GROUP_SUBSCRIBED_TO_TOPIC, partitions={(wide, 1)}
    )
    run = qctl(kafka_proxy, *delete_command(wide, group), "-o", "json")
    one_error(
        run,
        ExitCode.PARTIAL,
        f"1 of {PARTITIONS} partitions did not take",
        f"{wide}/1 (the group's active members subscribe to this topic",
    )
    statuses = {c["partition"]: c["status"] for c in json.loads(run.stdout)["partitions"]}
    assert statuses == {p: "failed" if p == 1 else "ok" for p in range(PARTITIONS)}
    assert committed_at_broker(group) == {}  # what the broker did, whatever it answered
    fired(rule)


def test_offset_delete_refused_for_every_partition_changes_nothing(
    kafka_proxy: KafkaProxy, wide: str, group: str
) -> None:
    rule = kafka_proxy.fault(kp.OFFSET_DELETE, error=GROUP_SUBSCRIBED_TO_TOPIC, forward=False)
    run = qctl(kafka_proxy, *delete_command(wide, group))
    one_error(
        run,
        ExitCode.FAILED,
        "failed on every partition",
        f"{wide}/0 (the group's active members subscribe to this topic",
    )
    assert_untouched(wide, group)
    fired(rule)


@pytest.mark.parametrize("cut", ["request", "response"])
def test_a_cut_offset_delete_is_sent_again(
    kafka_proxy: KafkaProxy, wide: str, group: str, cut: Any
) -> None:
    """Cut before the broker saw it, or after it deleted: deleting is idempotent, so the
    request is sent again and the command succeeds."""
    rule = kafka_proxy.fault(kp.OFFSET_DELETE, cut=cut)
    run = qctl(kafka_proxy, *delete_command(wide, group))
    assert run.returncode == 0, run.stderr
    assert committed_at_broker(group) == {}
    fired(rule)
    assert rule.matched == 2


def test_offset_delete_slower_than_the_timeout_ends_at_the_timeout(
    kafka_proxy: KafkaProxy, wide: str, group: str
) -> None:
    rule = kafka_proxy.fault(kp.OFFSET_DELETE, times=None, delay=SHORT + 3)
    run = qctl(kafka_proxy, *delete_command(wide, group), timeout=SHORT)
    one_error(run, ExitCode.UNREACHABLE, repr(group))
    fired(rule)
    assert run.seconds < SHORT * 4 + SLACK


@pytest.mark.parametrize("code", RETRIABLE)
def test_delete_offsets_rides_out_a_coordinator_error_on_its_lookup(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    group: str,
    code: int,
) -> None:
    rule = kafka_proxy.fault(kp.FIND_COORDINATOR, error=code, forward=False)
    assert backend_at().delete_offsets(group, every_partition(wide)) == []
    assert committed_at_broker(group) == {}
    fired(rule)
    assert rule.matched == 2


@pytest.mark.parametrize("cut", ["request", "response"])
def test_delete_offsets_looks_the_coordinator_up_again_after_a_cut(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    group: str,
    cut: Any,
) -> None:
    rule = kafka_proxy.fault(kp.FIND_COORDINATOR, cut=cut)
    assert backend_at().delete_offsets(group, every_partition(wide)) == []
    assert committed_at_broker(group) == {}
    fired(rule)
    assert rule.matched == 2


@pytest.mark.parametrize(
    ("error", "error_type", "says"),
    [
        (GROUP_AUTHORIZATION_FAILED, AuthenticationError, "refused access to group"),
        (INVALID_REQUEST, QctlError, "refused the coordinator of group"),
        (COORDINATOR_NOT_AVAILABLE, UnreachableError, "COORDINATOR_NOT_AVAILABLE"),
        (None, UnreachableError, "connection closed"),
    ],
    ids=["30", "42", "15-always", "cut-always"],
)
def test_delete_offsets_lookup_that_fails_for_good(
    kafka_proxy: KafkaProxy,
    backend_at: Callable[..., KafkaBackend],
    wide: str,
    group: str,
    error: int | None,
    error_type: type[QctlError],
    says: str,
) -> None:
    if error is None:
        rule = kafka_proxy.fault(kp.FIND_COORDINATOR, times=None, cut="request")
    else:
        rule = kafka_proxy.fault(kp.FIND_COORDINATOR, times=None, error=error, forward=False)
    started = time.monotonic()
    with pytest.raises(error_type, match=says) as raised:
        backend_at(SHORT).delete_offsets(group, every_partition(wide))
    assert time.monotonic() - started < SHORT + 1
    assert raised.value.exit_code == (
        ExitCode.FAILED if error_type is QctlError else ExitCode.UNREACHABLE
    )
    assert_untouched(wide, group)
    fired(rule)
