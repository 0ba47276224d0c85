"""Offset-reset planning for a group on 5 topics x 50 partitions: target <= 2 s.

Creates the topics (with timestamped messages and a committed offset on every
partition), then times side by side, for several strategies:

* the planning engine in-process (what a long-running caller pays),
* the whole `qctl offsets reset ... -o json` command (interpreter start included),
* Kafka's own `kafka-consumer-groups --reset-offsets --dry-run` (JVM start included),

and checks that qctl's plan equals the tool's. Prints seconds and ratios; removes the
topics afterwards.

    python benchmarks/offsets_plan.py [--bootstrap 127.0.0.1:9092] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOPICS = 5
PARTITIONS = 50
MESSAGES = 20
HOUR_MS = 3_600_000
TARGET_SECONDS = 2.0


def setup(bootstrap: str, prefix: str, group: str, base_ms: int) -> list[str]:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka import TopicPartition as KTP
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [f"{prefix}-{i}" for i in range(TOPICS)]
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).values():
        future.result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for t in topics:
        for p in range(PARTITIONS):
            for i in range(MESSAGES):
                producer.produce(t, value=b"x" * 100, partition=p, timestamp=base_ms + i * HOUR_MS)
    producer.flush(60)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    consumer.commit(
        offsets=[KTP(t, p, MESSAGES // 2) for t in topics for p in range(PARTITIONS)],
        asynchronous=False,
    )
    consumer.close()
    return topics


def teardown(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(topics).values():
        try:
            future.result(60)
        except Exception as exc:  # keep going: remove what can be removed
            print(f"warning: {exc}", file=sys.stderr)


def engine_plan(bootstrap: str, group: str, strategy: object) -> tuple[float, int]:
    from qctl.backends.base import BackendConfig
    from qctl.backends.kafka import KafkaBackend
    from qctl.offsets.planner import plan_reset

    backend = KafkaBackend.from_config(BackendConfig("bench", {"bootstrap_servers": bootstrap}, 30))
    backend.admin()  # connecting is not planning
    try:
        start = time.perf_counter()
        plan = plan_reset(backend, group, strategy, target="kafka", all_topics=True)  # type: ignore[arg-type]
        return time.perf_counter() - start, len(plan.partitions)
    finally:
        backend.close()


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=300)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed: {proc.stderr[-1000:]}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from qctl.offsets import strategies as s
    from qctl.timespec import from_millis

    prefix = f"bench-offsets-{uuid.uuid4().hex[:8]}"
    group = f"{prefix}-g"
    base_ms = int(time.time() // 3600 * 3600 * 1000) - MESSAGES * HOUR_MS
    mid_ms = base_ms + 7 * HOUR_MS + 30 * 60_000
    mid = from_millis(mid_ms)
    mid_text = mid.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    cases = [
        ("to-earliest", s.ToEarliest(), ["--to-earliest"]),
        ("shift-by -3", s.ShiftBy(-3), ["--shift-by", "-3"]),
        ("to-datetime", s.ToDatetime(mid), ["--to-datetime", mid_text]),
    ]
    print(f"setting up {TOPICS} topics x {PARTITIONS} partitions on {args.bootstrap} ...")
    topics = setup(args.bootstrap, prefix, group, base_ms)
    env = {**os.environ, "QCTL_KAFKA_BOOTSTRAP": args.bootstrap, "QCTL_TIMEOUT": "30"}
    qctl = [sys.executable, "-m", "qctl", "offsets", "reset", "--group", group, "--all-topics"]
    tool = [str(REPO / "dev/kafka-tool"), "consumer-groups", "--bootstrap-server", args.bootstrap]
    tool += ["--group", group, "--reset-offsets", "--all-topics", "--dry-run"]
    try:
        print(
            f"\n{'strategy':<14}{'engine s':>10}{'qctl cmd s':>12}{'kafka tool s':>14}"
            f"{'tool/qctl':>11}  plan equal"
        )
        worst = 0.0
        for name, strategy, flags in cases:
            engine, cmd, kafka = [], [], []
            equal = True
            for _ in range(args.rounds):
                seconds, count = engine_plan(args.bootstrap, group, strategy)
                assert count == TOPICS * PARTITIONS, count
                engine.append(seconds)
                seconds, out = timed([*qctl, *flags, "-o", "json"], env)
                cmd.append(seconds)
                ours = {
                    (p["topic"], p["partition"]): p["new"] for p in json.loads(out)["partitions"]
                }
                seconds, out = timed([*tool, *flags])
                kafka.append(seconds)
                theirs = {}
                for line in out.splitlines():
                    parts = line.split()
                    if len(parts) == 4 and parts[0] == group and parts[2].isdigit():
                        theirs[(parts[1], int(parts[2]))] = int(parts[3])
                equal = equal and ours == theirs
            e, c, k = (statistics.median(x) for x in (engine, cmd, kafka))
            worst = max(worst, c)
            same = "yes" if equal else "NO"
            print(f"{name:<14}{e:>10.3f}{c:>12.3f}{k:>14.3f}{k / c:>10.1f}x  {same}")
        verdict = "meets" if worst <= TARGET_SECONDS else "MISSES"
        print(
            f"\nslowest whole command: {worst:.3f} s for {TOPICS * PARTITIONS} partitions "
            f"({verdict} the {TARGET_SECONDS:g} s target); medians of {args.rounds} rounds"
        )
    finally:
        teardown(args.bootstrap, topics)


if __name__ == "__main__":
    main()
