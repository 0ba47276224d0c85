"""kill -9 of one broker of a 3-node cluster while qctl works (the ``kafka_cluster`` fixture).

Every topic has replication factor 3 and ``min.insync.replicas=2``, so one dead broker
leaves a quorum and an ISR of two: qctl must ride the failover out and, once the broker is
back, have lost nothing and duplicated nothing — produce (idempotent, acks=all), dlq
redrive and replay (transactions, read_committed), and the lag TUI (keeps running, shows
the error, recovers).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.kafka_cluster import KafkaCluster
from tests.integration.dlq_support import kafka_end, kill_leftovers, read_kafka, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.disruptive]

PRODUCED = 100_000


@pytest.fixture(autouse=True)
def _no_stray_qctl() -> Iterator[None]:
    """A failed test must not leave a background qctl running."""
    yield
    kill_leftovers()


def start_qctl(cluster: KafkaCluster, *args: str) -> subprocess.Popen[str]:
    from tests.integration.dlq_support import qctl_process

    return qctl_process(*args, env=cluster.qctl_env())


def finish(proc: subprocess.Popen[str], within: float = 180) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=within)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, out, err


def kill_and_restart(
    cluster: KafkaCluster, victim: int, proc: subprocess.Popen[str], progressed: object
) -> float:
    """Once ``progressed()`` holds, kill -9 ``victim`` and start it again; seconds it was down."""
    wait_for(progressed, within=120)  # type: ignore[arg-type]
    assert proc.poll() is None, "qctl finished before the kill; slow it down with --rate"
    down = time.monotonic()
    cluster.kill(victim)
    time.sleep(3)  # past the broker session timeout: the node is fenced, leaders move
    cluster.start(victim)
    return time.monotonic() - down


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
    kill_and_restart(
        cluster, victim, proc, lambda: kafka_end(cluster.bootstrap, topic) >= 15_000
    )
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
