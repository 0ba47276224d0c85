"""kill -9 of one broker of a 3-node cluster while qctl works (the ``kafka_cluster`` fixture).

Every topic has replication factor 3 and ``min.insync.replicas=2``, so one dead broker
leaves a quorum and an ISR of two: qctl must ride the failover out and, once the broker is
back, have lost nothing and duplicated nothing — produce (idempotent, acks=all), dlq
redrive and replay (transactions, read_committed), and the lag TUI (keeps running, shows
the error, recovers).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.kafka_cluster import KafkaCluster, started_cluster
from tests.integration.dlq_support import (
    fill_kafka,
    ids,
    kafka_end,
    kill_leftovers,
    only_job,
    qctl_dead_letter,
    qctl_process,
    read_kafka,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.disruptive]

PRODUCED = 100_000
REDRIVEN = 30_000
REPLAYED = 30_000


@pytest.fixture(autouse=True)
def _no_stray_qctl() -> Iterator[None]:
    """A failed test must not leave a background qctl running."""
    yield
    kill_leftovers()


def start_qctl(cluster: KafkaCluster, *args: str) -> subprocess.Popen[str]:
    return qctl_process(*args, env=cluster.qctl_env())


def finish(proc: subprocess.Popen[str], within: float = 180) -> tuple[int, str, str]:
    """Exit code and output of ``proc``; killed (and its output kept) if not done ``within``."""
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        err += f"\n[killed: still running after {within:.0f}s]"
    return proc.returncode, out, err


def kill_and_restart(
    cluster: KafkaCluster, victim: int, proc: subprocess.Popen[str], progressed: object
) -> float:
    """Once ``progressed()`` holds, kill -9 ``victim`` and start it again; seconds it was down."""
    deadline = time.monotonic() + 120
    while not progressed():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # let it say where it was
            rc, out, err = finish(proc, within=15)
            raise AssertionError(
                f"qctl made no progress before the kill (exit {rc}): {out[-1000:]} {err[-3000:]}"
            )
        time.sleep(0.1)
    assert proc.poll() is None, "qctl finished before the kill; slow it down with --rate"
    down = time.monotonic()
    cluster.kill(victim)
    time.sleep(3)  # past the broker session timeout: the node is fenced, leaders move
    cluster.start(victim)
    return time.monotonic() - down


#: Committed offsets of ``sys.argv[2]`` from qctl's Kafka backend at ``sys.argv[1]``, as
#: JSON; run in a child process so that a crash of the client library is seen as one.
COMMITTED = """
import json, sys
from qctl.backends.base import BackendConfig
from qctl.backends.kafka import KafkaBackend
from qctl.errors import QctlError
backend = KafkaBackend.from_config(BackendConfig("t", {"bootstrap_servers": sys.argv[1]}, 15.0))
try:
    got = backend.committed_offsets([sys.argv[2]])[sys.argv[2]]
    print(json.dumps({f"{tp.topic}/{tp.partition}": o for tp, o in got.items()}))
except QctlError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def committed_in_child(bootstrap: str, group: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", COMMITTED, bootstrap, group],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_group_offsets_on_a_fresh_cluster_do_not_crash(kafka_cluster: KafkaCluster) -> None:
    """Regression: librdkafka's ListConsumerGroupOffsets segfaulted on coordinator errors.

    On a cluster without ``__consumer_offsets`` yet (what the coordinator also says during
    a failover), the first OffsetFetch is answered with a coordinator error; librdkafka
    2.16 crashed the process with SIGSEGV there (its issue #5040). qctl now fetches
    committed offsets itself and retries on those errors.
    """
    # The session's cluster is fresh when this runs first (it is the file's first test);
    # otherwise a one-node cluster of its own.
    fresh_cluster: contextlib.AbstractContextManager[KafkaCluster]
    if "__consumer_offsets" in kafka_cluster.admin().list_topics(timeout=10).topics:
        fresh_cluster = started_cluster(nodes=1, graceful=False)
    else:
        fresh_cluster = contextlib.nullcontext(kafka_cluster)
    with fresh_cluster as fresh:
        proc = committed_in_child(fresh.bootstrap, "qctl-fresh-group")
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
        assert json.loads(proc.stdout) == {}


@pytest.mark.parametrize("victim_role", ["partition-leader", "active-controller"])
def test_produce_survives_a_killed_broker(
    cluster: KafkaCluster, unique: str, tmp_path: Path, victim_role: str
) -> None:
    topic = cluster.create_topic(unique, partitions=6)
    source = tmp_path / "ids.txt"
    source.write_text("".join(f"id-{i:06d}\n" for i in range(PRODUCED)))
    if victim_role == "partition-leader":
        victim = cluster.busiest_leader(topic)
    else:
        victim = cluster.active_controller()
    leaders_before = cluster.leaders(topic)
    proc = start_qctl(
        cluster,
        "produce",
        f"kafka:{topic}",
        "--file",
        str(source),
        "--rate",
        "10000",
        "--timeout",
        "30",
        "-o",
        "json",
    )
    kill_and_restart(cluster, victim, proc, lambda: kafka_end(cluster.bootstrap, topic) >= 15_000)
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert "Traceback" not in err
    summary = json.loads(out)
    print(f"produce with {victim_role} node {victim} killed: {summary}")
    assert (summary["sent"], summary["failed"]) == (PRODUCED, 0), summary
    got = Counter(m[1].decode() for m in read_kafka(cluster.bootstrap, topic, timeout=60))
    assert len(got) == PRODUCED
    assert set(got) == {f"id-{i:06d}" for i in range(PRODUCED)}
    assert max(got.values()) == 1, [v for v, n in got.items() if n > 1][:10]
    if victim_role == "partition-leader":
        assert victim in leaders_before.values()


def finish_job(
    cluster: KafkaCluster, proc: subprocess.Popen[str], kind: str, command: list[str]
) -> None:
    """The disturbed run ended done (0) or resumable (1); resume it then, to completion."""
    rc, _out, err = finish(proc)
    print(f"{kind} with a broker killed: exit {rc}; {err.strip()[-300:]}")
    assert "Traceback" not in err
    assert rc in (0, 1), err
    if rc == 1:
        assert "--resume" in err, err
        resumed = subprocess.run(
            [sys.executable, "-m", "qctl", *command, "--resume", only_job(kind), "--timeout", "30"],
            capture_output=True,
            text=True,
            env={**os.environ, **cluster.qctl_env()},
            timeout=240,
            check=False,
        )
        assert resumed.returncode == 0, resumed.stderr


def committed(cluster: KafkaCluster, group: str, topic: str) -> int:
    """Sum of ``group``'s committed offsets on ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=20)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def test_dlq_redrive_survives_a_killed_broker(cluster: KafkaCluster, unique: str) -> None:
    bootstrap = cluster.bootstrap
    origin = cluster.create_topic(unique, partitions=3)
    dlq = cluster.create_topic(f"{unique}.dlq", partitions=3)
    fill_kafka(bootstrap, dlq, REDRIVEN, lambda i: qctl_dead_letter(origin, i))
    victim = cluster.busiest_leader(origin)
    proc = start_qctl(
        cluster,
        "dlq",
        "redrive",
        f"kafka:{dlq}",
        "--rate",
        "5000",
        "--yes",
        "--timeout",
        "30",
    )
    kill_and_restart(cluster, victim, proc, lambda: kafka_end(bootstrap, origin) > 3_000)
    finish_job(cluster, proc, "redrive", ["dlq", "redrive"])
    got = ids(read_kafka(bootstrap, origin, timeout=60))
    assert got == dict.fromkeys(range(REDRIVEN), 1)  # nothing lost, nothing twice
    # The DLQ's position moved past everything, and only past what was written.
    assert committed(cluster, f"qctl.dlq.{dlq}", dlq) == kafka_end(bootstrap, dlq) == REDRIVEN


def test_replay_survives_a_killed_broker(cluster: KafkaCluster, unique: str) -> None:
    bootstrap = cluster.bootstrap
    source = cluster.create_topic(unique, partitions=3)
    target = cluster.create_topic(f"{unique}-copy", partitions=3)
    fill_kafka(bootstrap, source, REPLAYED, lambda i: [("seq", str(i).encode())])
    victim = cluster.busiest_leader(target)
    command = ["replay", f"kafka:{source}", "--to", f"kafka:{target}"]
    proc = start_qctl(cluster, *command, "--rate", "5000", "--yes", "--timeout", "30")
    kill_and_restart(cluster, victim, proc, lambda: kafka_end(bootstrap, target) > 3_000)
    finish_job(cluster, proc, "replay", ["replay"])
    copies = read_kafka(bootstrap, target, timeout=60)  # read_committed
    assert ids(copies) == dict.fromkeys(range(REPLAYED), 1)


def test_lag_watch_keeps_running_and_recovers(cluster: KafkaCluster, unique: str) -> None:
    """The live view rides out a kill of the busiest leader (fresh lag during and after), and
    a whole-cluster outage (error shown, last rows dimmed, recovery once it is back)."""
    import asyncio

    from confluent_kafka import Consumer, Producer, TopicPartition

    from qctl.backends.base import BackendConfig
    from qctl.backends.kafka import KafkaBackend
    from qctl.lag.collect import LagCollector, Selection
    from qctl.tui.app import LagApp
    from qctl.tui.widgets.lag_table import LagTable
    from qctl.tui.widgets.status_bar import StatusBar

    topic = cluster.create_topic(unique, partitions=3)
    group = f"{unique}-g"

    def produce(per_partition: int) -> None:
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
        for p in range(3):
            for _ in range(per_partition):
                producer.produce(topic, b"m", partition=p)
        assert producer.flush(60) == 0

    produce(10)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, p, 3) for p in range(3)], asynchronous=False)
    consumer.close()
    settings = {"bootstrap_servers": cluster.bootstrap}
    source = LagCollector(
        context="test",
        backends={"kafka": lambda: KafkaBackend.from_config(BackendConfig("test", settings, 3.0))},
        targets={"kafka": cluster.bootstrap},
        selection=Selection(groups=(group,)),
        timeout=3.0,
    )
    app = LagApp(source, interval=0.5)
    key = f"kafka:{group}"
    victim = cluster.busiest_leader(topic)
    timings: dict[str, float] = {}

    def lag() -> str:
        table = app.query_one(LagTable)
        return str(table.get_cell(key, "lag")) if key in table.row_keys else ""

    async def until(check: object, what: str, limit: float = 60) -> float:
        start = time.monotonic()
        while not check():  # type: ignore[operator]
            assert app.is_running, f"the app stopped while waiting for {what}"
            assert time.monotonic() - start < limit, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)
        return time.monotonic() - start

    async def scenario() -> None:
        async with app.run_test(size=(160, 40)):
            await until(lambda: lag() == "21", "the first lag")
            await asyncio.to_thread(cluster.kill, victim)
            killed = time.monotonic()
            await asyncio.to_thread(produce, 3)  # lands on the surviving ISR of two
            # Fresh data while the node is dead: the new lag, from a refresh after the kill.
            refreshes = app.refresh_count
            await until(
                lambda: lag() == "30" and app.refresh_count > refreshes + 1 and not app.errors,
                "fresh lag with a node down",
            )
            timings["fresh_after_kill"] = time.monotonic() - killed
            await asyncio.to_thread(cluster.start, victim)
            started = time.monotonic()
            await asyncio.to_thread(produce, 2)
            await until(lambda: lag() == "36" and not app.errors, "fresh lag after the restart")
            timings["fresh_after_restart"] = time.monotonic() - started
            # The whole cluster down: the view keeps running, says so, keeps the row dimmed.
            for node in range(1, cluster.nodes + 1):
                await asyncio.to_thread(cluster.kill, node)
            down = time.monotonic()
            await until(lambda: "kafka" in app.errors, "the error with every node down")
            timings["error_shown"] = time.monotonic() - down
            assert app.query_one(LagTable).get_cell(key, "name").style == "dim"
            assert "kafka:" in str(app.query_one(StatusBar).content)
            up = time.monotonic()
            await asyncio.to_thread(cluster.run, "up")
            timings["cluster_up"] = time.monotonic() - up
            await until(lambda: "kafka" not in app.errors and lag() == "36", "recovery")
            timings["recovered_after_up_began"] = time.monotonic() - up
            assert app.query_one(LagTable).get_cell(key, "name").style != "dim"
            assert app.is_running

    try:
        asyncio.run(scenario())
    finally:
        # The live view's clients must not outlive the test in this process: librdkafka
        # handles left running would go on talking to the shared cluster.
        source.close()
    print(f"lag --watch, node {victim} killed: {timings}")
