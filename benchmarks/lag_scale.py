#!/usr/bin/env python3
"""How fast is ``qctl lag`` on a cluster with many groups, next to Kafka's own tool?

Builds GROUPS consumer groups x TOPICS topics x PARTITIONS partitions (by default 100 x
2 x 25, 5,000 group-partitions with committed offsets and lag) in two layouts: every
group on its own two topics (5,000 partitions), and all groups on the same two topics
(50 partitions). For each it times, in the same run and against the same cluster:

* ``qctl lag -o json --backend kafka`` (all groups: lag, time lag, states, members), and
* ``kafka-consumer-groups --describe --all-groups`` (Kafka's tool; lag only).

Both read every group of the cluster. Targets: qctl <= 2 s and >= 3x faster than Kafka's
tool. Everything the benchmark creates is deleted afterwards.

    .venv/bin/python benchmarks/lag_scale.py [--groups 100] [--topics 2] [--partitions 25]
        [--layout own|shared|both] [--runs 3] [--bootstrap 127.0.0.1:9092]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import compile_qctl
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KTP
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--groups", type=int, default=100)
    p.add_argument("--topics", type=int, default=2, help="topics per group")
    p.add_argument("--partitions", type=int, default=25)
    p.add_argument("--messages", type=int, default=20, help="messages per partition")
    p.add_argument(
        "--layout",
        choices=("own", "shared", "both"),
        default="both",
        help="own: every group on its own TOPICS topics (GROUPS x TOPICS x PARTITIONS "
        "partitions); shared: all groups on the same TOPICS topics (same rows, fewer "
        "partitions); both (default): one after the other",
    )
    p.add_argument("--runs", type=int, default=3, help="timed runs of each tool (median)")
    p.add_argument("--bootstrap", default=os.environ.get("QCTL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    return p.parse_args()


def build(
    args: argparse.Namespace, prefix: str, shared_topics: bool
) -> tuple[list[str], dict[str, list[str]]]:
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    groups = [f"{prefix}-g{i:03d}" for i in range(args.groups)]
    if shared_topics:
        shared = [f"{prefix}-t{j}" for j in range(args.topics)]
        topics_of = dict.fromkeys(groups, shared)
    else:
        topics_of = {g: [f"{g}-t{j}" for j in range(args.topics)] for g in groups}
    topics = sorted({t for ts in topics_of.values() for t in ts})
    started = time.monotonic()
    futures = admin.create_topics([NewTopic(t, args.partitions, 1) for t in topics])
    for future in futures.values():
        future.result(120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=30).topics
        if all(
            t in meta
            and len(meta[t].partitions) == args.partitions
            and all(p.leader >= 0 for p in meta[t].partitions.values())
            for t in topics
        ):
            break
        time.sleep(0.5)
    print(
        f"created {len(topics)} topics x {args.partitions} partitions in "
        f"{time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )

    started = time.monotonic()
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 20, "acks": 1})
    now_ms = int(time.time() * 1000)
    for t in topics:
        for p in range(args.partitions):
            for i in range(args.messages):
                producer.produce(
                    t, b"x" * 64, partition=p, timestamp=now_ms - (args.messages - i) * 1000
                )
            producer.poll(0)
    producer.flush(120)
    print(
        f"produced {len(topics) * args.partitions * args.messages} messages in "
        f"{time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )

    def commit(index_group: tuple[int, str]) -> None:
        index, group = index_group
        consumer = Consumer(
            {"bootstrap.servers": args.bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        offsets = [
            KTP(t, p, (index + p) % (args.messages + 1))
            for t in topics_of[group]
            for p in range(args.partitions)
        ]
        consumer.commit(offsets=offsets, asynchronous=False)
        consumer.close()

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(commit, enumerate(groups)))
    print(
        f"committed offsets for {len(groups)} groups in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    return groups, topics_of


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    return elapsed, proc.stdout


def kafka_tool_lags(text: str, groups: set[str]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] in groups and parts[5].lstrip("-").isdigit():
            totals[parts[0]] = totals.get(parts[0], 0) + int(parts[5])
    return totals


def _runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main() -> None:
    args = parse_args()
    compile_qctl()
    layouts = ["own", "shared"] if args.layout == "both" else [args.layout]
    for layout in layouts:
        run_layout(args, shared_topics=layout == "shared")


def run_layout(args: argparse.Namespace, shared_topics: bool) -> None:
    prefix = f"lagbench-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    groups: list[str] = []
    topics: set[str] = set()
    try:
        groups, topics_of = build(args, prefix, shared_topics)
        topics = {t for ts in topics_of.values() for t in ts}
        with tempfile.TemporaryDirectory() as state:
            env = {
                **os.environ,
                "QCTL_KAFKA_BOOTSTRAP": args.bootstrap,
                "QCTL_STATE_DIR": state,
                "QCTL_CONFIG": str(Path(state) / "none.yaml"),
            }
            qctl_cmd = [sys.executable, "-m", "qctl", "lag", "-o", "json", "--backend", "kafka"]
            tool_cmd = [
                str(REPO / "dev/kafka-tool"),
                "consumer-groups",
                "--bootstrap-server",
                args.bootstrap,
                "--describe",
                "--all-groups",
            ]
            qctl_times, tool_times = [], []
            qctl_out = tool_out = ""
            for _ in range(args.runs):  # interleaved, so both see the same machine load
                elapsed, qctl_out = timed(qctl_cmd, env)
                qctl_times.append(elapsed)
                elapsed, tool_out = timed(tool_cmd, env)
                tool_times.append(elapsed)

        ours = {g["group"]: g for g in json.loads(qctl_out)["groups"] if g["group"] in groups}
        theirs = kafka_tool_lags(tool_out, set(groups))
        mismatched = [g for g in groups if ours.get(g, {}).get("lag") != theirs.get(g)]
        rows = sum(len(g["partitions"]) for g in ours.values())
        timed_lags = sum(
            1 for g in ours.values() for p in g["partitions"] if p["time_lag_source"] == "message"
        )
        q, k = statistics.median(qctl_times), statistics.median(tool_times)
        print()
        print(
            f"cluster: {len(groups)} groups x {args.topics} topics x {args.partitions} partitions"
            f" ({'shared' if shared_topics else 'own'} topics: {len(topics) * args.partitions} "
            f"partitions), {rows} group-partitions"
        )
        print(f"qctl lag -o json          median {q:6.2f}s  runs {_runs(qctl_times)}")
        print(f"kafka-consumer-groups     median {k:6.2f}s  runs {_runs(tool_times)}")
        print(f"ratio (kafka tool / qctl) {k / q:6.1f}x")
        print(
            f"lag totals agree for {len(groups) - len(mismatched)}/{len(groups)} groups; "
            f"{timed_lags} partitions with time lag read from the message"
        )
        print(f"target <= 2 s:   {'met' if q <= 2 else 'MISSED'}")
        print(f"target >= 3x:    {'met' if k / q >= 3 else 'MISSED'}")
        if mismatched:
            print(f"mismatched groups (first 5): {mismatched[:5]}", file=sys.stderr)
    finally:
        if groups:
            for future in admin.delete_consumer_groups(groups, request_timeout=60).values():
                try:
                    future.result(60)
                except Exception as exc:  # a group that was never created
                    print(f"cleanup: {exc}", file=sys.stderr)
        if topics:
            for future in admin.delete_topics(sorted(topics)).values():
                future.result(120)
        print("cleaned up", file=sys.stderr)


if __name__ == "__main__":
    main()
