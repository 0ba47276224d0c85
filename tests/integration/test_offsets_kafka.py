"""`qctl offsets` against the real broker, with Kafka's own kafka-consumer-groups as oracle.

Each test builds its own topics and groups. Messages carry known timestamps one hour
apart (relative to now, so --by-duration is stable), and retention is simulated with
DeleteRecords so log-start is not 0 and clamping matters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KTP
from confluent_kafka.admin import AdminClient, NewTopic

from qctl.backends.base import BackendConfig
from qctl.backends.kafka import KafkaBackend
from qctl.errors import ExitCode, PartialFailure
from qctl.offsets import strategies as s
from qctl.offsets.executor import Where, execute_plan, raise_for_failures
from qctl.offsets.planner import plan_reset
from qctl.offsets.scope import TopicSpec
from qctl.offsets.snapshots import SnapshotStore
from tests.cli.test_root import run_qctl
from tests.oracles import kafka_tool

HOUR_MS = 3_600_000
MESSAGES = 20
Offsets = dict[tuple[str, int], int]


@dataclass
class World:
    kafka: str
    topic: str
    group: str
    base_ms: int

    def ts(self, partition: int, offset: int) -> int:
        """Timestamp of a message: one hour apart, partitions 10 minutes out of step."""
        return self.base_ms + offset * HOUR_MS + partition * 600_000


def admin(kafka: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka})


def create_topic(kafka: str, name: str, partitions: int = 3) -> None:
    client = admin(kafka)  # the futures need their client alive
    client.create_topics([NewTopic(name, partitions, 1)])[name].result(15)


def delete_topic(kafka: str, name: str) -> None:
    client = admin(kafka)
    with contextlib.suppress(Exception):
        client.delete_topics([name])[name].result(15)


def commit(kafka: str, group: str, offsets: Offsets) -> None:
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False}
    )
    consumer.commit(offsets=[KTP(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    consumer.close()


def fill(world: World, partitions: int = 3) -> None:
    producer = Producer({"bootstrap.servers": world.kafka, "acks": "all", "linger.ms": 5})
    for p in range(partitions):
        for i in range(MESSAGES):
            producer.produce(world.topic, value=b"m%d" % i, partition=p, timestamp=world.ts(p, i))
    assert producer.flush(15) == 0


@pytest.fixture
def world(kafka: str, unique: str) -> Iterator[World]:
    # Anchored to now, not to the hour: --by-duration PT5H30M then always lands 10 minutes
    # from the nearest message of any partition, whatever the minute of the test run.
    now_ms = int(time.time() * 1000)
    w = World(kafka, unique, f"{unique}-g", now_ms - MESSAGES * HOUR_MS)
    create_topic(kafka, w.topic)
    fill(w)
    # Retention stand-in: partition 2 starts at offset 8.
    client = admin(kafka)
    for future in client.delete_records([KTP(w.topic, 2, 8)]).values():
        future.result(15)
    commit(kafka, w.group, {(w.topic, 0): 5, (w.topic, 1): 15})
    yield w
    delete_topic(kafka, w.topic)


def qctl(kafka: str, *args: str) -> tuple[int, str, str]:
    proc = run_qctl(*args, env={"QCTL_KAFKA_BOOTSTRAP": kafka}, timeout=90)
    return proc.returncode, proc.stdout, proc.stderr


def qctl_plan(kafka: str, group: str, *args: str) -> Offsets:
    code, out, err = qctl(kafka, "offsets", "reset", "--group", group, *args, "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["executed"] is False
    return {(p["topic"], p["partition"]): p["new"] for p in data["partitions"]}


def oracle_plan(kafka: str, group: str, *args: str) -> Offsets:
    out = kafka_tool(
        "consumer-groups",
        "--bootstrap-server",
        kafka,
        "--group",
        group,
        "--reset-offsets",
        *args,
        "--dry-run",
    )
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == group and parts[2].isdigit():
            rows[(parts[1], int(parts[2]))] = int(parts[3])
    assert rows, f"no plan in the tool's output: {out}"
    return rows


def oracle_committed(kafka: str, group: str) -> Offsets:
    out = kafka_tool("consumer-groups", "--bootstrap-server", kafka, "--describe", "--group", group)
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == group and parts[2].isdigit() and parts[3].isdigit():
            rows[(parts[1], int(parts[2]))] = int(parts[3])
    return rows


def committed(kafka: str, group: str) -> Offsets:
    """The group's committed offsets read with confluent-kafka directly (not through qctl).

    Cheaper than starting Kafka's tool; the tool is used where the check is the point.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions

    client = admin(kafka)
    future = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in future.result(15).topic_partitions
        if tp.offset >= 0
    }


def kafka_time(ms: int) -> str:
    """The format Kafka's tool takes: yyyy-MM-dd'T'HH:mm:ss.SSSXXX."""
    when = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def test_every_strategy_equals_kafkas_tool(world: World, tmp_path: Path) -> None:
    t, k = world.topic, world.kafka
    plan_csv = tmp_path / "plan.csv"
    plan_csv.write_text(f"{t},0,3\n{t},1,50\n{t},2,2\n")
    mid = world.base_ms + 7 * HOUR_MS + 15 * 60_000  # between messages of every partition
    fresh = f"{world.group}-new"
    cases = [
        (world.group, ["--topic", t, "--to-earliest"], []),
        (world.group, ["--topic", t, "--to-latest"], []),
        (world.group, ["--topic", t, "--to-current"], []),
        (world.group, ["--topic", t, "--to-offset", "3"], []),
        (world.group, ["--topic", t, "--to-offset", "100"], []),
        (world.group, ["--topic", f"{t}:0,1", "--shift-by", "-7"], []),
        (world.group, ["--topic", t, "--to-datetime", kafka_time(mid)], []),
        (world.group, ["--topic", t, "--to-datetime", "2099-01-01T00:00:00.000Z"], []),
        (world.group, ["--topic", t, "--by-duration", "PT5H30M"], []),
        (world.group, ["--from-file", str(plan_csv)], []),
        (world.group, ["--all-topics", "--to-earliest"], []),
        (fresh, ["--topic", t, "--to-latest"], ["--new-group"]),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        ours = [pool.submit(qctl_plan, k, g, *args, *extra) for g, args, extra in cases]
        theirs = [pool.submit(oracle_plan, k, g, *args) for g, args, _ in cases]
        for (group, args, _), mine, oracle in zip(cases, ours, theirs, strict=True):
            assert mine.result() == oracle.result(), f"{group} {' '.join(args)}"
    # Spot checks that the state really exercises clamping and the time lookups.
    assert ours[3].result()[(t, 2)] == 8  # --to-offset 3 clamped to log-start
    assert ours[7].result() == {(t, p): MESSAGES for p in range(3)}  # past the end: log-end
    assert ours[6].result() == {(t, 0): 8, (t, 1): 8, (t, 2): 8}
    assert ours[10].result() == {(t, 0): 0, (t, 1): 0}  # --all-topics: committed ones
    assert ours[5].result() == {(t, 0): 0, (t, 1): 8}  # shift -7 clamped at log-start


def test_time_zones_offset_and_zone_name_equal_utc(world: World) -> None:
    t, k = world.topic, world.kafka
    mid = world.base_ms + 11 * HOUR_MS + 5 * 60_000
    utc = dt.datetime.fromtimestamp(mid / 1000, tz=dt.UTC)
    plus_two = utc.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    berlin = utc.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S.%f")
    naive_utc = utc.strftime("%Y-%m-%dT%H:%M:%S.%f")
    with ThreadPoolExecutor(max_workers=4) as pool:
        oracle = pool.submit(
            oracle_plan, k, world.group, "--topic", t, "--to-datetime", kafka_time(mid)
        )
        mine = [
            pool.submit(qctl_plan, k, world.group, "--topic", t, "--to-datetime", text)
            for text in (plus_two, f"{berlin} Europe/Berlin", naive_utc)
        ]
        expected = oracle.result()
        assert expected == {(t, 0): 12, (t, 1): 11, (t, 2): 11}
        for result in mine:
            assert result.result() == expected


def test_execute_verifies_and_undo_restores_exactly(world: World) -> None:
    t, k, g = world.topic, world.kafka, world.group
    before = committed(k, g)
    assert before == {(t, 0): 5, (t, 1): 15}
    code, out, err = qctl(k, "offsets", "reset", "-g", g, "-t", t, "--shift-by", "-100")
    assert code == 2 and "cannot shift" in err and f"{t}/2" in err  # p2 has no commit
    code, out, err = qctl(k, "offsets", "reset", "-g", g, "-t", t, "--to-offset", "12", "--execute")
    assert code == 0, err
    assert "3 of 3 partitions written and verified" in err
    assert f"{t}/2: offset 12 is" not in err  # in range everywhere: no clamping warning
    assert committed(k, g) == {(t, 0): 12, (t, 1): 12, (t, 2): 12}

    code, out, _ = qctl(k, "offsets", "history", "-g", g, "-o", "json")
    [snap] = json.loads(out)
    assert snap["action"] == "reset to-offset 12" and snap["partitions"] == 3

    code, out, err = qctl(k, "offsets", "undo", "-g", g, "-o", "json")
    assert code == 0, err
    undo_plan = json.loads(out)
    assert undo_plan["executed"] is False
    assert {(p["topic"], p["partition"]): p["new"] for p in undo_plan["partitions"]} == {
        (t, 0): 5,
        (t, 1): 15,
        (t, 2): None,
    }
    assert committed(k, g) == {(t, 0): 12, (t, 1): 12, (t, 2): 12}  # plan only

    code, out, err = qctl(k, "offsets", "undo", "-g", g, snap["id"], "--execute")
    assert code == 0, err
    assert oracle_committed(k, g) == before  # partition 2 has no commit again
    code, out, _ = qctl(k, "offsets", "history", "-g", g, "-o", "json")
    assert len(json.loads(out)) == 2  # the undo is undoable too


def test_clamping_warns_per_partition_and_writes_the_clamped_value(world: World) -> None:
    t, k, g = world.topic, world.kafka, world.group
    code, out, err = qctl(k, "offsets", "reset", "-g", g, "-t", t, "--to-offset", "4", "--execute")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("qctl: warning:")]
    assert warnings == [f"qctl: warning: {t}/2: offset 4 is before log-start 8; using 8"]
    assert committed(k, g) == {(t, 0): 4, (t, 1): 4, (t, 2): 8}
    code, out, err = qctl(
        k, "offsets", "reset", "-g", g, "-t", f"{t}:0", "--shift-by", "1000", "-o", "json"
    )
    [row] = json.loads(out)["partitions"]
    assert (row["requested"], row["new"], row["clamped"]) == (1004, MESSAGES, "log-end")
    assert f"{t}/0: offset 1004 is past log-end {MESSAGES}; using {MESSAGES}" in err


def test_plan_shows_counts_and_time_span(world: World) -> None:
    t, k, g = world.topic, world.kafka, world.group
    code, out, err = qctl(
        k, "offsets", "reset", "-g", g, "-t", f"{t}:0,1", "--to-offset", "10", "-o", "json"
    )
    assert code == 0, err
    rows = {p["partition"]: p for p in json.loads(out)["partitions"]}
    assert (rows[0]["skip"], rows[0]["replay"]) == (5, 0)
    assert rows[0]["span_start"] == _iso(world.ts(0, 5))
    assert rows[0]["span_end"] == _iso(world.ts(0, 9))
    assert rows[0]["span_seconds"] == 4 * 3600
    assert (rows[1]["replay"], rows[1]["skip"]) == (5, 0)
    assert rows[1]["span_start"] == _iso(world.ts(1, 10))
    assert "Plan only, nothing changed" in err
    code, table_out, _ = qctl(k, "offsets", "reset", "-g", g, "-t", f"{t}:1", "--to-offset", "10")
    header = table_out.splitlines()[0].split()
    assert header[:6] == ["TOPIC", "PARTITION", "CURRENT", "NEW", "LOG-START", "LOG-END"]
    assert "replay 5" in table_out and "(4h)" in table_out


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()


def test_show_agrees_with_kafkas_describe(world: World) -> None:
    code, out, err = qctl(world.kafka, "offsets", "show", "-g", world.group, "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["state"] == "Empty" and data["members"] == []
    rows = {(p["topic"], p["partition"]): p for p in data["partitions"]}
    assert {tp: r["committed"] for tp, r in rows.items()} == oracle_committed(
        world.kafka, world.group
    )
    r0 = rows[(world.topic, 0)]
    assert (r0["log_start"], r0["log_end"], r0["last_stable"], r0["lag"]) == (0, 20, 20, 15)
    assert r0["committed_timestamp"] == _iso(world.ts(0, 5))
    code, out, _ = qctl(
        world.kafka, "offsets", "show", "-g", world.group, "-t", world.topic, "-o", "json"
    )
    assert code == 0
    [_p0, _p1, p2] = json.loads(out)["partitions"]
    assert (p2["partition"], p2["committed"], p2["lag"]) == (2, None, None)
    assert p2["note"] == "no committed offset" and p2["log_start"] == 8
    code, out, _ = qctl(world.kafka, "offsets", "show", "-g", world.group)
    assert code == 0 and "total lag" in out and "COMMITTED MESSAGE AT (UTC)" in out


def test_active_group_is_refused_naming_its_member(world: World, unique: str) -> None:
    client_id = f"{unique}-client"
    consumer = Consumer(
        {"bootstrap.servers": world.kafka, "group.id": world.group, "client.id": client_id}
    )
    consumer.subscribe([world.topic])
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not consumer.assignment():
            consumer.poll(0.2)
        assert consumer.assignment(), "the consumer never joined"
        k, g, t = world.kafka, world.group, world.topic
        code, out, err = qctl(k, "offsets", "reset", "-g", g, "-t", t, "--to-earliest", "--execute")
        assert code == 1, err
        assert out == ""
        line = err.strip().splitlines()[-1]
        assert line.startswith("qctl: error: refusing to reset its offsets")
        assert client_id in line and "no --force" in line
        # The plan alone is allowed, with a warning that --execute will refuse.
        code, out, err = qctl(k, "offsets", "reset", "-g", g, "-t", t, "--to-earliest")
        assert code == 0 and client_id in err and "--execute will refuse" in err
        code, out, err = qctl(k, "offsets", "show", "-g", g, "-o", "json")
        assert [m["client_id"] for m in json.loads(out)["members"]] == [client_id]
        # Brokers refuse deleting offsets of a topic the live group subscribes to.
        code, out, err = qctl(k, "offsets", "delete", "-g", g, "-t", t, "--execute")
        assert code == 1, err
        assert "subscribe to this topic" in err
        assert SnapshotStore().history(g) == []  # nothing changed: no snapshot kept
    finally:
        consumer.close()


def test_delete_offsets_and_undo_it(world: World, unique: str) -> None:
    k, g, t = world.kafka, world.group, world.topic
    other = f"{unique}-other"
    create_topic(k, other, 2)
    try:
        commit(k, g, {(other, 0): 0, (other, 1): 0})
        code, out, err = qctl(k, "offsets", "delete", "-g", g, "-t", t)
        assert code == 0 and "Plan only" in err
        assert committed(k, g)[(t, 0)] == 5
        code, out, err = qctl(k, "offsets", "delete", "-g", g, "-t", t, "--execute", "-o", "json")
        assert code == 0, err
        assert [p["status"] for p in json.loads(out)["partitions"]] == ["ok", "ok"]
        assert committed(k, g) == {(other, 0): 0, (other, 1): 0}
        code, out, err = qctl(k, "offsets", "delete", "-g", g, "-t", t)
        assert code == 0 and "nothing to delete" in err
        code, _, err = qctl(k, "offsets", "undo", "-g", g, "--execute")
        assert code == 0, err
        assert oracle_committed(k, g) == {(t, 0): 5, (t, 1): 15, (other, 0): 0, (other, 1): 0}
    finally:
        delete_topic(k, other)


def wait_topic_gone(backend: KafkaBackend, topic: str) -> None:
    deadline = time.monotonic() + 20
    while topic in backend.topic_partitions([topic]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topic not in backend.topic_partitions([topic])


def test_topic_deleted_between_plan_and_write_is_a_partial_failure(
    world: World, unique: str, tmp_path: Path
) -> None:
    doomed = f"{unique}-doomed"
    create_topic(world.kafka, doomed, 2)
    backend = KafkaBackend.from_config(BackendConfig("t", {"bootstrap_servers": world.kafka}, 10))
    try:
        plan = plan_reset(
            backend,
            world.group,
            s.ToEarliest(),
            target="kafka",
            specs=[TopicSpec(world.topic), TopicSpec(doomed)],
        )
        assert len(plan.partitions) == 5
        delete_topic(world.kafka, doomed)
        wait_topic_gone(backend, doomed)
        execute_plan(
            backend, backend, plan, SnapshotStore(tmp_path), Where("t", "kafka", "k"), "reset"
        )
        with pytest.raises(PartialFailure) as caught:
            raise_for_failures(plan)
        message = str(caught.value)
        assert caught.value.exit_code == ExitCode.PARTIAL
        assert "2 of 5 partitions did not take" in message
        assert f"{doomed}/0 (" in message and f"{doomed}/1 (" in message
        assert "does not exist" in message
        assert committed(world.kafka, world.group) == {
            (world.topic, 0): 0,
            (world.topic, 1): 0,
            (world.topic, 2): 8,
        }
    finally:
        backend.close()
        delete_topic(world.kafka, doomed)


def test_undo_after_a_topic_was_deleted_is_exit_4_listing_it(world: World, unique: str) -> None:
    k, g, t = world.kafka, world.group, world.topic
    doomed = f"{unique}-doomed"
    create_topic(k, doomed, 1)
    try:
        commit(k, g, {(doomed, 0): 0})
        code, _, err = qctl(
            k, "offsets", "reset", "-g", g, "--all-topics", "--to-latest", "--execute"
        )
        assert code == 0, err
        delete_topic(k, doomed)
        backend = KafkaBackend.from_config(BackendConfig("t", {"bootstrap_servers": k}, 10))
        wait_topic_gone(backend, doomed)
        backend.close()
        code, _, err = qctl(k, "offsets", "undo", "-g", g, "--execute")
        assert code == 4, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("qctl: error: undo of group")
        assert (
            f"1 of 3 partitions did not take: {doomed}/0 (the topic or partition no longer exists)"
            in last
        )
        assert committed(k, g) == {(t, 0): 5, (t, 1): 15}
    finally:
        delete_topic(k, doomed)


def test_unknown_group_is_one_line_exit_2(world: World) -> None:
    ghost = f"{world.group}-ghost"
    for args in (
        ["offsets", "show", "-g", ghost],
        ["offsets", "reset", "-g", ghost, "-t", world.topic, "--to-earliest"],
        ["offsets", "delete", "-g", ghost, "-t", world.topic],
        ["offsets", "reset", "-g", world.group, "-t", world.topic, "--to-group", ghost],
    ):
        code, _out, err = qctl(world.kafka, *args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"consumer group '{ghost}' does not exist" in lines[0]
    code, _, err = qctl(
        world.kafka, "offsets", "reset", "-g", world.group, "-t", "no-such-topic-x", "--to-earliest"
    )
    assert code == 2 and "topic 'no-such-topic-x' does not exist" in err


def test_to_group_copies_the_other_groups_offsets(world: World) -> None:
    k, t = world.kafka, world.topic
    source = f"{world.group}-source"
    commit(k, source, {(t, 0): 12, (t, 2): 9})
    mine = qctl_plan(k, world.group, "--all-topics", "--to-group", source)
    assert mine == committed(k, source) == {(t, 0): 12, (t, 2): 9}


def test_protected_context_needs_yes(world: World, isolated_config: Path) -> None:
    isolated_config.parent.mkdir(parents=True, exist_ok=True)
    isolated_config.write_text(
        "current_context: prod\n"
        f"contexts:\n  prod:\n    protected: true\n    kafka:\n"
        f"      bootstrap_servers: {world.kafka}\n"
    )
    isolated_config.chmod(0o600)
    args = ["offsets", "reset", "-g", world.group, "-t", world.topic, "--to-latest", "--execute"]
    proc = run_qctl(*args)
    assert proc.returncode == 2, proc.stderr
    assert "context 'prod' is protected" in proc.stderr and "--yes" in proc.stderr
    assert committed(world.kafka, world.group) == {(world.topic, 0): 5, (world.topic, 1): 15}
    assert "LOG-END" in proc.stderr  # the plan was shown before asking
    proc = run_qctl(*args, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert committed(world.kafka, world.group) == {(world.topic, p): MESSAGES for p in range(3)}
