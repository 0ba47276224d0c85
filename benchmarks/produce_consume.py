#!/usr/bin/env python3
"""How fast are ``qctl produce`` and ``qctl consume`` next to kcat and RabbitMQ PerfTest?

In one run, against the same brokers:

* Kafka: produce MESSAGES (1,000,000) lines of 100 bytes from a file with
  ``qctl produce --file`` and with ``kcat -P -l``; consume them to /dev/null with
  ``qctl consume -o raw`` and ``kcat -C -e``. Wall-clock time of each command (process
  start included, for both). qctl produces with acks=all and idempotence; kcat with its
  defaults (acks=all, no idempotence).
* RabbitMQ: publish RABBIT_MESSAGES (200,000) messages of 100 bytes with publisher
  confirms, WINDOW (1,000) unconfirmed at most, with ``qctl produce`` and with
  PerfTest (``-c WINDOW``); consume them with ``qctl consume --ack -o raw`` and with a
  PerfTest consumer (prefetch WINDOW, multi-ack). PerfTest's own average rates are
  used (the JVM's start-up is not counted); for qctl, the publish rate it reports
  (connection set-up not counted) and the consume command's wall-clock time.

Each measurement runs ROUNDS times, alternating the tools; the median is reported.
Targets: qctl >= 0.5x kcat (produce and consume) and >= 0.5x PerfTest
(publish with confirms).

kcat comes from Debian (``apt-get install -y kcat`` is run when it is missing and we
are root); PerfTest (``com.rabbitmq:perf-test``) is resolved from Maven Central with
Maven into ``.dev/perf-test`` once. What the benchmark creates is deleted afterwards.

    .venv/bin/python benchmarks/produce_consume.py [--messages 1000000]
        [--rabbit-messages 200000] [--window 1000] [--rounds 3] [--skip-kafka]
        [--skip-rabbitmq]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import re
import shutil
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import DEV, compile_qctl, ensure_kcat, ensure_perf_test, median_rounds, say

REPO = Path(__file__).resolve().parent.parent
QCTL = [sys.executable, "-m", "qctl"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=1_000_000, help="Kafka messages")
    p.add_argument("--rabbit-messages", type=int, default=200_000, help="RabbitMQ messages")
    p.add_argument("--size", type=int, default=100, help="bytes per message")
    p.add_argument("--window", type=int, default=1000, help="RabbitMQ confirm window/prefetch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--skip-kafka", action="store_true")
    p.add_argument("--skip-rabbitmq", action="store_true")
    p.add_argument("--bootstrap", default=os.environ.get("QCTL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("QCTL_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    return p.parse_args()


# -- helpers ---------------------------------------------------------------------------------
def timed(
    cmd: list[str], stdout: int | None = subprocess.DEVNULL, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}... failed: {proc.stderr.decode()[-1500:]}")
    return elapsed, proc


def data_file(lines: int, size: int) -> Path:
    """LINES random printable lines of SIZE bytes (cached: generating takes a while)."""
    path = DEV / "bench" / f"lines-{lines}x{size}.txt"
    if path.exists() and path.stat().st_size == lines * (size + 1):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    alphabet = (string.ascii_letters + string.digits).encode()
    block = bytes(rng.choice(alphabet) for _ in range(1 << 16))
    with path.open("wb") as out:
        for i in range(lines):
            start = (i * 7919) % (len(block) - size)
            out.write(block[start : start + size] + b"\n")
    return path


# -- Kafka -----------------------------------------------------------------------------------
def bench_kafka(args: argparse.Namespace, kcat: str) -> list[tuple[str, float, str, float, float]]:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    prefix = f"bench-pc-{uuid.uuid4().hex[:6]}"
    created: list[str] = []
    data = data_file(args.messages, args.size)
    n = args.messages
    env = {**os.environ, "QCTL_KAFKA_BOOTSTRAP": args.bootstrap, "QCTL_CONFIG": "/nonexistent"}

    def topic() -> str:
        name = f"{prefix}-{len(created)}"
        admin.create_topics([NewTopic(name, args.partitions, 1)])[name].result(30)
        created.append(name)
        return name

    def qctl_produce() -> float:
        t = topic()
        elapsed, _ = timed([*QCTL, "produce", f"kafka:{t}", "--file", str(data)], env=env)
        return n / elapsed

    def kcat_produce() -> float:
        t = topic()
        elapsed, _ = timed([kcat, "-P", "-b", args.bootstrap, "-t", t, "-l", str(data)])
        return n / elapsed

    say(f"kafka: produce {n:,} x {args.size} B from a file ({args.partitions} partitions)")
    produce = median_rounds(args.rounds, {"qctl": qctl_produce, "kcat": kcat_produce})
    full = created[0]  # a topic holding all messages, written by qctl

    def qctl_consume() -> float:
        elapsed, _ = timed([*QCTL, "consume", f"kafka:{full}", "-o", "raw"], env=env)
        return n / elapsed

    def kcat_consume() -> float:
        elapsed, _ = timed(
            [kcat, "-C", "-b", args.bootstrap, "-t", full, "-o", "beginning", "-e", "-q"]
        )
        return n / elapsed

    say(f"kafka: consume {n:,} messages to /dev/null")
    consume = median_rounds(args.rounds, {"qctl": qctl_consume, "kcat": kcat_consume})
    for future in admin.delete_topics(created).values():
        with contextlib.suppress(Exception):
            future.result(30)
    return [
        ("kafka produce", produce["qctl"], "kcat", produce["kcat"], 0.5),
        ("kafka consume", consume["qctl"], "kcat", consume["kcat"], 0.5),
    ]


# -- RabbitMQ --------------------------------------------------------------------------------
def bench_rabbitmq(
    args: argparse.Namespace, libs: Path | None
) -> list[tuple[str, float, str, float, float]]:
    import pika

    n = args.rabbit_messages
    data = data_file(n, args.size)
    prefix = f"bench-pc-{uuid.uuid4().hex[:6]}"
    queues: list[str] = []

    def admin(action: Callable[[Any], object]) -> None:
        # A short connection per call: a long idle one would miss heartbeats while the
        # tools run and be closed by the broker.
        conn = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
        try:
            action(conn.channel())
        finally:
            conn.close()

    env = {**os.environ, "QCTL_RABBITMQ_URL": args.amqp_url, "QCTL_CONFIG": "/nonexistent"}

    def fresh_queue() -> str:
        name = f"{prefix}-{len(queues)}"
        admin(lambda ch: ch.queue_declare(name, durable=True))
        queues.append(name)
        return name

    java = [shutil.which("java") or "java", "-cp", f"{libs}/*", "com.rabbitmq.perf.PerfTest"]
    uri = args.amqp_url.rstrip("/")

    def perf_test(extra: list[str], field: str) -> float:
        _, proc = timed([*java, "-h", uri, *extra], stdout=subprocess.PIPE)
        text = proc.stdout.decode()
        match = re.search(rf"{field} rate avg: (\d+) msg/s", text)
        if not match:
            raise SystemExit(f"PerfTest printed no {field} rate:\n{text[-1500:]}")
        return float(match.group(1))

    full: list[str] = []

    def qctl_publish() -> float:
        q = fresh_queue()
        _, proc = timed(
            [
                *QCTL,
                "produce",
                f"rabbitmq:queue/{q}",
                "--file",
                str(data),
                "--window",
                str(args.window),
            ],
            env=env,
        )
        match = re.search(
            r"sent (\d+), failed (\d+) in [\d.]+s \(([\d,]+) msg/s\)", proc.stderr.decode()
        )
        if not match or int(match.group(1)) != n:
            raise SystemExit(f"qctl produce did not send {n}: {proc.stderr.decode()}")
        full.append(q)
        return float(match.group(3).replace(",", ""))

    def perf_publish() -> float:
        q = fresh_queue()
        return perf_test(
            [
                "-x",
                "1",
                "-y",
                "0",
                "-u",
                q,
                "-p",
                "-s",
                str(args.size),
                "-C",
                str(n),
                "-c",
                str(args.window),
            ],
            "sending",
        )

    say(f"rabbitmq: publish {n:,} x {args.size} B with confirms (window {args.window})")
    runs: dict[str, Callable[[], float]] = {"qctl": qctl_publish}
    if libs is not None:
        runs["perf-test"] = perf_publish
    publish = median_rounds(args.rounds, runs)

    filled = [q for q in queues if q not in full]

    def qctl_consume() -> float:
        q = full.pop()
        elapsed, _ = timed(
            [
                *QCTL,
                "consume",
                f"rabbitmq:queue/{q}",
                "--ack",
                "-o",
                "raw",
                "--prefetch",
                str(args.window),
            ],
            env=env,
        )
        return n / elapsed

    def perf_consume() -> float:
        q = filled.pop()
        return perf_test(
            [
                "-x",
                "0",
                "-y",
                "1",
                "-u",
                q,
                "-p",
                "-D",
                str(n),
                "-q",
                str(args.window),
                "-A",
                str(max(1, args.window // 2)),
            ],
            "receiving",
        )

    say(f"rabbitmq: consume {n:,} messages (acknowledged) to /dev/null")
    rounds = min(args.rounds, len(full), len(filled) if libs else len(full))
    runs = {"qctl": qctl_consume}
    if libs is not None:
        runs["perf-test"] = perf_consume
    consume = median_rounds(max(rounds, 1), runs)
    admin(lambda ch: [ch.queue_delete(q) for q in queues])
    return [
        (
            f"rabbitmq publish (confirms, window {args.window})",
            publish["qctl"],
            "PerfTest",
            publish.get("perf-test", float("nan")),
            0.5,
        ),
        (
            "rabbitmq consume (ack)",
            consume["qctl"],
            "PerfTest",
            consume.get("perf-test", float("nan")),
            0.0,
        ),
    ]


def main() -> None:
    args = parse_args()
    compile_qctl()
    rows: list[tuple[str, float, str, float, float]] = []
    if not args.skip_kafka:
        kcat = ensure_kcat()
        if kcat is None:
            say("kcat is not installed and could not be installed: skipping Kafka")
        else:
            rows += bench_kafka(args, kcat)
    if not args.skip_rabbitmq:
        rows += bench_rabbitmq(args, ensure_perf_test())
    print()
    print(
        f"{'measurement':<40} {'qctl msg/s':>12} {'peer':>9} {'peer msg/s':>12} {'ratio':>7}"
        f"  target"
    )
    failed = False
    for what, mine, peer, theirs, target in rows:
        ratio = mine / theirs if not math.isnan(theirs) and theirs > 0 else float("nan")
        verdict = ""
        if target:
            ok = ratio >= target
            failed |= not ok
            verdict = f">= {target}x {'ok' if ok else 'MISSED'}"
        print(f"{what:<40} {mine:>12,.0f} {peer:>9} {theirs:>12,.0f} {ratio:>7.2f}  {verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
