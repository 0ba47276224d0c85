"""The fault-injecting Kafka proxy itself, against the real broker.

The proxy is what the protocol tests trust to put a fault exactly where they ask, so it
is checked the same way: real clients (librdkafka through confluent-kafka, and a plain
wire client for exact versions) talk to the real broker through it, and the outcome is
read from the broker's side. Every rule a test registers is asserted to have fired, so a
fault that never happened fails the test instead of passing it vacuously. The
``kafka_proxy`` fixture re-encodes every message it decodes and fails the test if one
does not give back its own bytes, so these tests also check the hand-written layouts
against live traffic, at every version the broker accepts.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.fixtures import kafka_protocol as kp
from tests.fixtures.kafka_proxy import KafkaProxy, KafkaRequest
from tests.integration.dlq_support import KafkaTopics, read_kafka

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

NOT_LEADER_OR_FOLLOWER = 6
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
CONCURRENT_TRANSACTIONS = 51


# -- helpers ---------------------------------------------------------------------------------
def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def connections_to(port: int) -> set[int]:
    """Local ports of this process's TCP connections to 127.0.0.1:``port``."""
    mine = _socket_inodes()
    local_ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            remote_ip, remote_port = remote.split(":")
            if inode in mine and int(remote_port, 16) == port and remote_ip.endswith("0100007F"):
                local_ports.add(int(local.split(":")[1], 16))
    return local_ports


def record_batch(*values: bytes) -> bytes:
    """A v2 record batch (the Produce payload) holding ``values``."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


def values_in(bootstrap: str, topic: str) -> Counter[bytes]:
    """How often each value is in ``topic`` (read from the broker, not the proxy)."""
    return Counter(m[1] for m in read_kafka(bootstrap, topic, isolation="read_committed"))


def produce(config: dict[str, Any], topic: str, values: list[bytes]) -> None:
    """Produce ``values`` and wait until every one is acknowledged without error."""
    errors: list[Any] = []
    producer = Producer(config)
    for value in values:
        producer.produce(topic, value, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(60) == 0
    assert errors == [None] * len(values)


def about(topic: str) -> Callable[[KafkaRequest], bool]:
    """A ``when`` matching requests that name ``topic``."""
    return lambda req: topic in req.topics


def broker_versions(bootstrap: str) -> dict[int, tuple[int, int]]:
    """The broker's version range per API (ApiVersions v3)."""
    with kp.WireClient(bootstrap) as client:
        fields = {"client_software_name": "qctl-test", "client_software_version": "1.0"}
        answer = client.request(kp.API_VERSIONS, 3, fields)
    return {e["api_key"]: (e["min_version"], e["max_version"]) for e in answer["api_keys"]}


@pytest.fixture
def topic(topics: KafkaTopics, kafka: str, unique: str) -> str:
    """A 2-partition topic on the real broker, deleted after the test; returned once
    both partitions have a leader (a new topic answers NOT_LEADER_OR_FOLLOWER briefly,
    which a test of injected errors must not mistake for its own)."""
    name = topics.make(unique, 2)
    request = {
        "topics": [
            {"name": name, "partitions": [{"partition_index": p, "timestamp": -1} for p in (0, 1)]}
        ]
    }
    deadline = time.monotonic() + 30
    with kp.WireClient(kafka) as client:
        while True:
            answer = client.request(kp.LIST_OFFSETS, 7, request)
            codes = [p["error_code"] for p in answer["topics"][0]["partitions"]]
            if codes == [0, 0]:
                return name
            assert time.monotonic() < deadline, f"{name} has no leaders: {codes}"
            time.sleep(0.1)


# -- every connection goes through the proxy ---------------------------------------------------
def test_clients_only_ever_connect_through_the_proxy(
    kafka_proxy: KafkaProxy, kafka: str, topic: str, unique: str
) -> None:
    real_port = int(kafka.rsplit(":", 1)[1])
    gc.collect()  # librdkafka clients of earlier tests close their sockets when collected
    before = connections_to(real_port)
    proxy_addresses = set(kafka_proxy.listeners.values())

    admin = AdminClient({"bootstrap.servers": kafka_proxy.bootstrap})
    brokers = admin.list_topics(timeout=10).brokers
    assert {f"{b.host}:{b.port}" for b in brokers.values()} <= proxy_addresses
    cluster = admin.describe_cluster().result(20)
    assert {f"{n.host}:{n.port}" for n in cluster.nodes} <= proxy_addresses

    stats: list[dict[str, Any]] = []
    values = [f"m{i}".encode() for i in range(20)]
    producer = Producer(
        {
            "bootstrap.servers": kafka_proxy.bootstrap,
            "statistics.interval.ms": 100,
            "stats_cb": lambda raw: stats.append(json.loads(raw)),
        }
    )
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 10
    while not stats and time.monotonic() < deadline:
        producer.poll(0.1)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_proxy.bootstrap,
            "group.id": unique,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < len(values) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            got.append(message.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    admin.delete_consumer_groups([unique])[unique].result(20)

    assert sorted(got) == sorted(values)
    # librdkafka's own view: every broker it knows is a proxy listener.
    nodenames = {b["nodename"] for s in stats for b in s["brokers"].values() if b["nodename"]}
    assert nodenames and nodenames <= set(kafka_proxy.listeners.values())
    # The kernel's view: every new connection to the real port is one the proxy opened.
    new = connections_to(real_port) - before
    assert new and new <= kafka_proxy.upstream_ports
    assert kafka_proxy.connections >= 3
    for api_key in (kp.METADATA, kp.PRODUCE, kp.FETCH, kp.FIND_COORDINATOR, kp.OFFSET_FETCH):
        assert kafka_proxy.seen(api_key) > 0, api_key


def test_a_broker_known_by_another_name_gets_its_own_listener(kafka: str, topic: str) -> None:
    """Bootstrapped as "localhost", the broker advertises itself as 127.0.0.1: a second
    upstream address, which gets a listener before the answer naming it goes out."""
    port = kafka.rsplit(":", 1)[1]
    with KafkaProxy(f"localhost:{port}", check_codec=True) as proxy:
        produce({"bootstrap.servers": proxy.bootstrap}, topic, [b"via-the-second-listener"])
        listeners = proxy.listeners
        by_listener = proxy.connections_by_listener
        problems = proxy.problems
    assert set(listeners) == {f"localhost:{port}", kafka}
    assert by_listener[listeners[kafka]] >= 1  # the producer followed the rewritten address
    assert problems == []
    assert values_in(kafka, topic) == Counter({b"via-the-second-listener": 1})


@pytest.mark.parametrize("version", range(14))
def test_metadata_names_only_proxy_listeners_at_every_version(
    kafka_proxy: KafkaProxy, topic: str, version: int
) -> None:
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        answer = client.request(kp.METADATA, version, {"topics": [{"name": topic}]})
    brokers = {f"{b['host']}:{b['port']}" for b in answer["brokers"]}
    assert brokers and brokers <= set(kafka_proxy.listeners.values())
    (entry,) = answer["topics"]
    assert entry["name"] == topic
    assert sorted(p["partition_index"] for p in entry["partitions"]) == [0, 1]


@pytest.mark.parametrize("version", range(7))
def test_find_coordinator_names_a_proxy_listener_at_every_version(
    kafka_proxy: KafkaProxy, unique: str, version: int
) -> None:
    fields = {"key": unique, "key_type": 0, "coordinator_keys": [unique]}
    deadline = time.monotonic() + 30
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        while True:
            answer = client.request(kp.FIND_COORDINATOR, version, fields)
            entry = answer["coordinators"][0] if version >= 4 else answer
            if entry["error_code"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the offsets topic may still be loading
    assert entry["error_code"] == 0
    assert f"{entry['host']}:{entry['port']}" in kafka_proxy.listeners.values()


@pytest.mark.parametrize("version", range(3))
def test_describe_cluster_names_only_proxy_listeners_at_every_version(
    kafka_proxy: KafkaProxy, version: int
) -> None:
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        answer = client.request(kp.DESCRIBE_CLUSTER, version, {})
    brokers = {f"{b['host']}:{b['port']}" for b in answer["brokers"]}
    assert brokers and brokers <= set(kafka_proxy.listeners.values())


def test_api_versions_are_capped_to_what_the_proxy_reads() -> None:
    api = kp.APIS[kp.API_VERSIONS]
    keys = [
        {"api_key": kp.METADATA, "min_version": 0, "max_version": 99},
        {"api_key": kp.FETCH, "min_version": 0, "max_version": 18},
        {"api_key": 1000, "min_version": 0, "max_version": 7},  # unknown to the proxy
    ]
    body = api.encode_response({"api_keys": keys, "finalized_features_epoch": 5}, 3)
    capped = api.decode_response(kp.cap_api_versions(body, 3), 3)
    ranges = {e["api_key"]: (e["min_version"], e["max_version"]) for e in capped["api_keys"]}
    assert ranges == {kp.METADATA: (0, 13), kp.FETCH: (4, 18), 1000: (0, 7)}
    assert capped["finalized_features_epoch"] == 5
    failed = api.encode_response({"error_code": kp.UNSUPPORTED_VERSION, "api_keys": keys}, 0)
    assert kp.cap_api_versions(failed, 3) is failed


# -- error codes at every version, both modes --------------------------------------------------
#: (API, error code to inject, whether the proxy can answer it itself).
ERROR_CASES = [
    (kp.PRODUCE, NOT_LEADER_OR_FOLLOWER, True),
    (kp.FETCH, NOT_LEADER_OR_FOLLOWER, True),
    (kp.LIST_OFFSETS, NOT_LEADER_OR_FOLLOWER, True),
    (kp.METADATA, 5, False),  # LEADER_NOT_AVAILABLE; rewrite only
    (kp.OFFSET_FETCH, NOT_COORDINATOR, True),
    (kp.FIND_COORDINATOR, COORDINATOR_NOT_AVAILABLE, True),
    (kp.DESCRIBE_GROUPS, NOT_COORDINATOR, True),
    (kp.LIST_GROUPS, COORDINATOR_NOT_AVAILABLE, True),
    (kp.INIT_PRODUCER_ID, COORDINATOR_NOT_AVAILABLE, True),
    (kp.ADD_PARTITIONS_TO_TXN, CONCURRENT_TRANSACTIONS, True),
    (kp.ADD_OFFSETS_TO_TXN, CONCURRENT_TRANSACTIONS, True),
    (kp.END_TXN, CONCURRENT_TRANSACTIONS, True),
    (kp.TXN_OFFSET_COMMIT, NOT_COORDINATOR, True),
    (kp.OFFSET_DELETE, NOT_COORDINATOR, True),
    (kp.DESCRIBE_CLUSTER, 7, True),  # REQUEST_TIMED_OUT
    (kp.CONSUMER_GROUP_DESCRIBE, NOT_COORDINATOR, True),
]


def minimal_request(
    api_key: int, version: int, topic: str, topic_id: bytes, group: str
) -> dict[str, Any]:
    """A request the broker accepts, about partition 0 of ``topic`` and group ``group``
    (transactional ones name a transaction that does not exist: they change nothing)."""
    txn = f"{group}-txn"
    one_topic = [{"name": topic, "partition_indexes": [0], "topic_id": topic_id}]
    requests: dict[int, dict[str, Any]] = {
        kp.PRODUCE: {
            "acks": -1,
            "timeout_ms": 10_000,
            "topic_data": [
                {
                    "name": topic,
                    "topic_id": topic_id,
                    "partition_data": [{"index": 0, "records": record_batch(b"v")}],
                }
            ],
        },
        kp.FETCH: {
            "max_wait_ms": 0,
            "min_bytes": 0,
            "max_bytes": 1 << 20,
            "topics": [
                {
                    "topic": topic,
                    "topic_id": topic_id,
                    "partitions": [
                        {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
                    ],
                }
            ],
        },
        kp.LIST_OFFSETS: {
            "topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}],
            "timeout_ms": 10_000,
        },
        kp.METADATA: {"topics": [{"name": topic}]},
        kp.OFFSET_FETCH: {
            "group_id": group,
            "topics": one_topic,
            "groups": [{"group_id": group, "topics": one_topic}],
        },
        kp.FIND_COORDINATOR: {"key": group, "coordinator_keys": [group]},
        kp.DESCRIBE_GROUPS: {"groups": [group]},
        kp.LIST_GROUPS: {},
        kp.INIT_PRODUCER_ID: {"transaction_timeout_ms": 60_000},
        kp.ADD_PARTITIONS_TO_TXN: {
            "v3_and_below_transactional_id": txn,
            "v3_and_below_topics": [{"name": topic, "partitions": [0]}],
            "transactions": [
                {
                    "transactional_id": txn,
                    "verify_only": True,
                    "topics": [{"name": topic, "partitions": [0]}],
                }
            ],
        },
        kp.ADD_OFFSETS_TO_TXN: {"transactional_id": txn, "group_id": group},
        kp.END_TXN: {"transactional_id": txn},
        kp.TXN_OFFSET_COMMIT: {
            "transactional_id": txn,
            "group_id": group,
            "topics": [{"name": topic, "partitions": [{"partition_index": 0}]}],
        },
        kp.OFFSET_DELETE: {
            "group_id": group,
            "topics": [{"name": topic, "partitions": [{"partition_index": 0}]}],
        },
        kp.DESCRIBE_CLUSTER: {},
        kp.CONSUMER_GROUP_DESCRIBE: {"group_ids": [group]},
    }
    return requests[api_key]


def accepted_versions(api_key: int, broker: dict[int, tuple[int, int]]) -> range:
    low, high = broker[api_key]
    if api_key == kp.PRODUCE:
        # Kafka 4 advertises Produce from v0 for old librdkafka versions' sake but closes
        # the connection on v0-v2.
        low = max(low, 3)
    api = kp.APIS[api_key]
    return range(max(low, api.versions.low), min(high, api.versions.high) + 1)


def end_offset(bootstrap: str, topic: str) -> int:
    with kp.WireClient(bootstrap) as client:
        answer = client.request(
            kp.LIST_OFFSETS,
            1,
            {"topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}]},
        )
    return int(answer["topics"][0]["partitions"][0]["offset"])


@pytest.mark.parametrize("forward", [True, False], ids=["rewrite", "synthesize"])
@pytest.mark.parametrize(
    ("api_key", "code", "can_answer"),
    ERROR_CASES,
    ids=[kp.APIS[k].name for k, _, _ in ERROR_CASES],
)
def test_error_reaches_the_client_at_every_version(
    kafka_proxy: KafkaProxy,
    kafka: str,
    topic: str,
    unique: str,
    api_key: int,
    code: int,
    can_answer: bool,
    forward: bool,
) -> None:
    api = kp.APIS[api_key]
    if not forward and not can_answer:
        with pytest.raises(ValueError, match="cannot answer"):
            kafka_proxy.fault(api_key, error=code, forward=False)
        return
    with kp.WireClient(kafka) as client:
        meta = client.request(kp.METADATA, 12, {"topics": [{"name": topic}]})
    topic_id = meta["topics"][0]["topic_id"]
    versions = accepted_versions(api_key, broker_versions(kafka))
    assert len(versions) > 0
    rule = kafka_proxy.fault(api_key, times=None, error=code, forward=forward)
    for version in versions:
        fired = rule.fired
        before = end_offset(kafka, topic) if api_key == kp.PRODUCE else 0
        fields = minimal_request(api_key, version, topic, topic_id, unique)
        with kp.WireClient(kafka_proxy.bootstrap) as client:
            answer = client.request(api_key, version, fields)
        codes = kp.error_codes(api, answer, version)
        assert codes and set(codes) == {code}, (version, answer)
        assert rule.fired == fired + 1, version
        if api_key == kp.PRODUCE:
            # Rewritten: the broker stored the batch. Answered by the proxy: it did not.
            assert end_offset(kafka, topic) == before + (1 if forward else 0), version
        if api_key == kp.FETCH:
            partitions = [p for t in answer["responses"] for p in t["partitions"]]
            assert all(p["records"] == b"" and p["high_watermark"] == -1 for p in partitions)


def test_partitions_filter_puts_the_error_on_those_partitions_only(
    kafka_proxy: KafkaProxy, kafka: str, topic: str
) -> None:
    rule = kafka_proxy.fault(kp.PRODUCE, error=NOT_LEADER_OR_FOLLOWER, partitions={(topic, 1)})
    request = {
        "acks": -1,
        "timeout_ms": 10_000,
        "topic_data": [
            {
                "name": topic,
                "partition_data": [
                    {"index": 0, "records": record_batch(b"a")},
                    {"index": 1, "records": record_batch(b"b")},
                ],
            }
        ],
    }
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        answer = client.request(kp.PRODUCE, 9, request)
    errors = {p["index"]: p["error_code"] for p in answer["responses"][0]["partition_responses"]}
    assert errors == {0: 0, 1: NOT_LEADER_OR_FOLLOWER}
    assert rule.fired == 1
    assert values_in(kafka, topic) == Counter({b"a": 1, b"b": 1})  # both stored: forwarded


def test_top_level_error_on_a_partitioned_answer(kafka_proxy: KafkaProxy, unique: str) -> None:
    rule = kafka_proxy.fault(kp.OFFSET_FETCH, error=NOT_COORDINATOR, top_level=True)
    fields = {"groups": [{"group_id": unique, "topics": None}]}
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        answer = client.request(kp.OFFSET_FETCH, 9, fields)
    assert answer["groups"] == [{"group_id": unique, "topics": [], "error_code": NOT_COORDINATOR}]
    assert rule.fired == 1


def test_nth_and_times_pick_which_requests(kafka_proxy: KafkaProxy) -> None:
    window = kafka_proxy.fault(kp.LIST_GROUPS, nth=2, times=2, error=COORDINATOR_NOT_AVAILABLE)
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        codes = [client.request(kp.LIST_GROUPS, 4, {})["error_code"] for _ in range(5)]
    assert codes == [0, 15, 15, 0, 0]
    assert (window.matched, window.fired) == (5, 2)

    kafka_proxy.clear()
    from_third_on = kafka_proxy.fault(kp.LIST_GROUPS, nth=3, times=None, error=16)
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        codes = [client.request(kp.LIST_GROUPS, 4, {})["error_code"] for _ in range(5)]
    assert codes == [0, 0, 16, 16, 16]
    assert from_third_on.fired == 3
    assert window.fired == 2  # cleared: no longer counted


def test_when_sees_the_parsed_request(kafka_proxy: KafkaProxy, kafka: str, topic: str) -> None:
    seen: list[KafkaRequest] = []

    def batch_with_b(req: KafkaRequest) -> bool:
        seen.append(req)
        return "b" in req.keys

    rule = kafka_proxy.fault(
        kp.FIND_COORDINATOR, error=COORDINATOR_NOT_AVAILABLE, forward=False, when=batch_with_b
    )
    with kp.WireClient(kafka_proxy.bootstrap, client_id="who-asks") as client:
        only_a = client.request(kp.FIND_COORDINATOR, 4, {"key_type": 0, "coordinator_keys": ["a"]})
        both = client.request(
            kp.FIND_COORDINATOR, 6, {"key_type": 1, "coordinator_keys": ["a", "b"]}
        )
    assert only_a["coordinators"][0]["error_code"] in (0, COORDINATOR_NOT_AVAILABLE)
    assert [(c["key"], c["error_code"], c["port"]) for c in both["coordinators"]] == [
        ("a", 15, -1),
        ("b", 15, -1),
    ]
    assert rule.fired == 1
    first, second = seen
    assert (first.api_key, first.version, first.client_id) == (kp.FIND_COORDINATOR, 4, "who-asks")
    assert (second.version, second.correlation_id, second.keys, second.key_type) == (
        6,
        2,
        ["a", "b"],
        1,
    )
    assert kp.APIS[kp.FIND_COORDINATOR].decode_request(second.body, 6)["coordinator_keys"] == [
        "a",
        "b",
    ]

    produced: list[KafkaRequest] = []

    def record(req: KafkaRequest) -> bool:
        produced.append(req)
        return True

    watch = kafka_proxy.fault(kp.PRODUCE, delay=0.01, when=record)
    producer = Producer(
        {"bootstrap.servers": kafka_proxy.bootstrap, "transactional.id": f"{topic}-txn"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"x", partition=1)
    producer.commit_transaction(30)
    assert watch.fired >= 1
    assert produced[0].transactional_id == f"{topic}-txn"
    assert produced[0].topics == {topic: [1]}
    assert produced[0].partitions == frozenset({(topic, 1)})


# -- faults observed by a real client ----------------------------------------------------------
def test_find_coordinator_error_then_success(
    kafka_proxy: KafkaProxy, kafka: str, topic: str, unique: str
) -> None:
    produce({"bootstrap.servers": kafka}, topic, [b"hello"])
    rule = kafka_proxy.fault(
        kp.FIND_COORDINATOR,
        error=COORDINATOR_NOT_AVAILABLE,
        forward=False,
        when=lambda req: unique in req.keys,
    )
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_proxy.bootstrap,
            "group.id": unique,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got = None
    deadline = time.monotonic() + 60
    while got is None and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            got = message.value()
    consumer.close()
    admin = AdminClient({"bootstrap.servers": kafka})  # kept: its futures need it alive
    admin.delete_consumer_groups([unique])[unique].result(20)
    assert got == b"hello"
    assert rule.fired == 1
    assert rule.matched >= 2  # asked again after the error, and answered by the broker


@pytest.mark.parametrize(
    ("idempotent", "forward", "copies"),
    [
        (True, True, 1),  # the broker stored it; the retry is a duplicate it drops
        (True, False, 1),
        (False, True, 2),  # the broker stored it and stores the retry too: a lost ack
        (False, False, 1),  # the broker never saw the first try
    ],
    ids=["idempotent-rewrite", "idempotent-synthesize", "plain-rewrite", "plain-synthesize"],
)
def test_produce_answered_with_not_leader_then_accepted(
    kafka_proxy: KafkaProxy,
    kafka: str,
    topic: str,
    idempotent: bool,
    forward: bool,
    copies: int,
) -> None:
    rule = kafka_proxy.fault(
        kp.PRODUCE, error=NOT_LEADER_OR_FOLLOWER, forward=forward, when=about(topic)
    )
    config = {
        "bootstrap.servers": kafka_proxy.bootstrap,
        "enable.idempotence": idempotent,
        "acks": "all",
        "retry.backoff.ms": 50,
    }
    produce(config, topic, [b"once"])
    assert rule.fired == 1
    assert kafka_proxy.seen(kp.PRODUCE) >= 2
    assert values_in(kafka, topic) == Counter({b"once": copies})


@pytest.mark.parametrize(("idempotent", "copies"), [(True, 1), (False, 2)])
def test_cut_instead_of_the_produce_answer(
    kafka_proxy: KafkaProxy, kafka: str, topic: str, idempotent: bool, copies: int
) -> None:
    """The broker stored the batch; the client lost the connection before the answer and
    sends the batch again: an idempotent producer's retry is dropped as a duplicate."""
    rule = kafka_proxy.fault(kp.PRODUCE, cut="response", when=about(topic))
    config = {
        "bootstrap.servers": kafka_proxy.bootstrap,
        "enable.idempotence": idempotent,
        "acks": "all",
        "retry.backoff.ms": 50,
    }
    produce(config, topic, [b"stored"])
    assert rule.fired == 1
    assert kafka_proxy.connections >= 2  # the client came back on a new connection
    assert values_in(kafka, topic) == Counter({b"stored": copies})


def test_cut_on_the_produce_request(kafka_proxy: KafkaProxy, kafka: str, topic: str) -> None:
    rule = kafka_proxy.fault(kp.PRODUCE, cut="request", when=about(topic))
    config = {"bootstrap.servers": kafka_proxy.bootstrap, "enable.idempotence": False}
    produce(config, topic, [b"sent-twice-stored-once"])
    assert rule.fired == 1
    assert values_in(kafka, topic) == Counter({b"sent-twice-stored-once": 1})


def test_delay_holds_the_request_and_those_behind_it(kafka_proxy: KafkaProxy, topic: str) -> None:
    rule = kafka_proxy.fault(kp.METADATA, delay=1.0)
    list_offsets = {
        "topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}]
    }
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        start = time.monotonic()
        first = client.send(kp.METADATA, 12, {"topics": [{"name": topic}]})
        second = client.send(kp.LIST_OFFSETS, 7, list_offsets)
        metadata = client.receive(kp.METADATA, 12, first)
        offsets = client.receive(kp.LIST_OFFSETS, 7, second)  # in order, after the delay
        elapsed = time.monotonic() - start
    assert elapsed >= 1.0
    assert metadata["topics"][0]["name"] == topic
    assert offsets["topics"][0]["partitions"][0]["error_code"] == 0
    assert rule.fired == 1

    kafka_proxy.fault(kp.PRODUCE, delay=1.5, when=about(topic))
    start = time.monotonic()
    produce({"bootstrap.servers": kafka_proxy.bootstrap}, topic, [b"late"])
    assert time.monotonic() - start >= 1.5


def test_answers_keep_request_order(kafka_proxy: KafkaProxy, topic: str) -> None:
    """An answer the proxy makes itself waits for the broker's answers to earlier
    requests on the connection (a long-poll Fetch here), as a broker's would."""
    rule = kafka_proxy.fault(kp.LIST_GROUPS, error=COORDINATOR_NOT_AVAILABLE, forward=False)
    fetch = {
        "max_wait_ms": 800,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "topics": [
            {
                "topic": topic,
                "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}],
            }
        ],
    }
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        start = time.monotonic()
        first = client.send(kp.FETCH, 12, fetch)  # empty topic: the broker waits 800 ms
        second = client.send(kp.LIST_GROUPS, 4, {})
        client.receive(kp.FETCH, 12, first)  # raises if the ListGroups answer came first
        listed = client.receive(kp.LIST_GROUPS, 4, second)
        elapsed = time.monotonic() - start
    assert listed["error_code"] == COORDINATOR_NOT_AVAILABLE
    assert rule.fired == 1
    assert elapsed >= 0.7


def test_fetch_errors_drop_records_and_the_consumer_fetches_again(
    kafka_proxy: KafkaProxy, kafka: str, topic: str
) -> None:
    values = [f"r{i}".encode() for i in range(10)]
    produce({"bootstrap.servers": kafka}, topic, values)
    rule = kafka_proxy.fault(kp.FETCH, times=2, error=NOT_LEADER_OR_FOLLOWER, when=about(topic))
    consumer = Consumer({"bootstrap.servers": kafka_proxy.bootstrap, "group.id": "unused"})
    consumer.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < len(values) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            got.append(message.value())
    consumer.close()
    assert sorted(got) == sorted(values)
    assert rule.wait_fired(2, timeout=5) and rule.fired == 2


def test_transactional_producer_rides_out_injected_errors(
    kafka_proxy: KafkaProxy, kafka: str, topic: str
) -> None:
    """Coordinator errors the broker never saw, and a lost EndTxn ack (the broker
    committed; the client is told to retry and the retry finds the commit done)."""
    rules = [
        kafka_proxy.fault(kp.INIT_PRODUCER_ID, error=COORDINATOR_NOT_AVAILABLE, forward=False),
        kafka_proxy.fault(kp.ADD_PARTITIONS_TO_TXN, error=CONCURRENT_TRANSACTIONS, forward=False),
        kafka_proxy.fault(kp.END_TXN, error=CONCURRENT_TRANSACTIONS, forward=True),
    ]
    producer = Producer(
        {"bootstrap.servers": kafka_proxy.bootstrap, "transactional.id": f"{topic}-txn"}
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, f"t{i}".encode(), partition=i % 2)
    producer.commit_transaction(60)
    assert [r.fired for r in rules] == [1, 1, 1]
    assert values_in(kafka, topic) == Counter({f"t{i}".encode(): 1 for i in range(5)})


# -- the proxy's own life cycle ----------------------------------------------------------------
def test_stop_leaves_no_thread_listener_or_socket(kafka: str) -> None:
    gc.collect()
    sockets_before = len(_socket_inodes())
    proxy = KafkaProxy(kafka).start()
    thread = proxy.thread
    assert thread is not None and thread.is_alive()
    client = kp.WireClient(proxy.bootstrap)
    client.request(kp.METADATA, 12, {"topics": []})
    assert proxy.open_connections == 1
    port = int(proxy.bootstrap.rsplit(":", 1)[1])
    proxy.stop()
    assert not thread.is_alive()
    assert not proxy.running
    assert "kafka-proxy" not in {t.name for t in threading.enumerate()}
    with pytest.raises(ConnectionError):
        client.request(kp.METADATA, 12, {"topics": []})
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert len(_socket_inodes()) <= sockets_before
    proxy.stop()  # stopping twice is harmless


def test_cut_all_closes_live_connections(kafka_proxy: KafkaProxy) -> None:
    with kp.WireClient(kafka_proxy.bootstrap) as client:
        client.request(kp.LIST_GROUPS, 4, {})
        kafka_proxy.cut_all()
        with pytest.raises((ConnectionError, OSError)):
            client.request(kp.LIST_GROUPS, 4, {})
    deadline = time.monotonic() + 5
    while kafka_proxy.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kafka_proxy.open_connections == 0


def test_fault_rejects_what_it_cannot_do(kafka_proxy: KafkaProxy) -> None:
    with pytest.raises(ValueError, match="cannot answer Metadata"):
        kafka_proxy.fault(kp.METADATA, error=5, forward=False)
    with pytest.raises(ValueError, match="cannot put errors"):
        kafka_proxy.fault(11, error=16)  # JoinGroup: no layout
    with pytest.raises(ValueError, match="exclude"):
        kafka_proxy.fault(kp.PRODUCE, error=6, cut="request")
    with pytest.raises(ValueError, match="needs an error"):
        kafka_proxy.fault(kp.PRODUCE, forward=False)
    with pytest.raises(ValueError, match="cut must be"):
        kafka_proxy.fault(kp.PRODUCE, cut="later")  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_leftover_proxy_threads() -> Iterator[None]:
    yield
    assert not [t for t in threading.enumerate() if t.name == "kafka-proxy" and t.is_alive()]
