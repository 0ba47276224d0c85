#!/usr/bin/env python3
"""How fast is `qctl replay` Kafka → Kafka next to a kcat pipe?

A topic of MESSAGES (500,000) messages of SIZE bytes with a key and two headers is
replayed into a fresh topic, ROUNDS times each, alternating:

* ``qctl replay kafka:SRC --to kafka:DST``: exactly-once (a transactional producer; the
  job group's position is committed in the same transactions), keys, headers and
  timestamps kept, a ``qctl-replayed-from`` header added;
* ``kcat -C -e | kcat -P``: a pipe of values only (keys, headers and timestamps are
  lost), not exactly-once.

Wall-clock time of each command, process start included; the median is reported.
Each tool first runs once uncounted, so neither pays for a broker JVM that is still
compiling its request paths.
Target: qctl >= 0.5x the pipe. kcat comes from Debian (installed with apt-get when
missing and run as root). Topics are deleted afterwards.

    .venv/bin/python benchmarks/replay.py [--messages 500000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KafkaScratch, compile_qctl, ensure_kcat, median_rounds, say
from redrive import payload, run

QCTL = [sys.executable, "-m", "qctl"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=500_000)
    p.add_argument("--size", type=int, default=100, help="bytes per value")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--bootstrap", default=os.environ.get("QCTL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    return p.parse_args()


def main() -> None:
    args = parse_args()
    compile_qctl()
    kcat = ensure_kcat()
    if kcat is None:
        raise SystemExit("kcat is not installed and could not be installed")
    scratch = KafkaScratch(args.bootstrap, "replay", args.partitions)
    n = args.messages
    source = scratch.topic()
    say(f"filling {source} with {n:,} messages of {args.size} B ...")
    headers = [("event-type", b"OrderCreated"), ("trace-id", b"0123456789abcdef")]
    scratch.fill(
        source, n, lambda i: (payload(i, args.size), f"order-{i % 5000}".encode()), headers
    )
    time.sleep(1)

    def qctl_replay() -> float:
        target = scratch.topic()
        command = [*QCTL, "replay", f"kafka:{source}", "--to", f"kafka:{target}"]
        return n / run(command, env=scratch.env)

    def kcat_pipe() -> float:
        target = scratch.topic()
        b = args.bootstrap
        pipe = (
            f"{kcat} -C -b {b} -t {source} -o beginning -e -q -f '%s\\n' | "
            f"{kcat} -P -b {b} -t {target}"
        )
        return n / run(pipe, shell=True)

    say(f"kafka: replay {n:,} messages ({args.partitions} partitions)")
    try:
        rates = median_rounds(
            args.rounds, {"qctl": qctl_replay, "kcat pipe": kcat_pipe}, warm_up=True
        )
    finally:
        scratch.close()
    ratio = rates["qctl"] / rates["kcat pipe"]
    print()
    print(f"{'measurement':<34} {'qctl msg/s':>11} {'kcat pipe msg/s':>16} {'ratio':>7}  target")
    ok = ratio >= 0.5
    print(
        f"{'kafka replay (exactly-once)':<34} {rates['qctl']:>11,.0f} {rates['kcat pipe']:>16,.0f} "
        f"{ratio:>6.2f}x  >= 0.5x {'ok' if ok else 'MISSED'}"
    )
    print(f"(median of {args.rounds} rounds; every round is on stderr)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
