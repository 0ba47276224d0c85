#!/usr/bin/env python3
"""How fast is `qctl dlq redrive` next to the ways people move dead letters today?

In one run, against the same brokers:

* Kafka: a DLQ topic of MESSAGES (200,000) messages of SIZE bytes carrying qctl's
  provenance headers. ``qctl dlq redrive`` (exactly-once: a transactional producer
  writes the messages to their origin topic and advances the DLQ group in the same
  transactions) versus ``kcat -C -e | kcat -P`` (a pipe: values only, no headers, no
  keys, nothing committed — it loses or duplicates on any failure). Wall-clock time of
  each, process start included. Target: qctl >= 0.5x the pipe.
* RabbitMQ: a DLQ of RABBIT_MESSAGES (200,000) messages dead-lettered by the broker
  itself (they expired in a queue with a dead-letter exchange, so each carries
  ``x-death`` and ``x-first-death-*``; ``--plain`` uses messages without them).
  ``qctl dlq redrive --to rabbitmq:queue/T`` (at-least-once: confirms, mandatory,
  ack after confirm) versus a naive loop with pika (basic.get → publish → wait for the
  confirm → ack; NAIVE_MESSAGES of them, it is slow) and versus a dynamic Shovel
  (``ack-mode: on-confirm``, ``src-delete-after: queue-length``: what the management
  UI's "move messages" does; the ``rabbitmq_shovel`` plugin is enabled when missing).
  Targets: qctl >= 2x the naive loop and >= 10,000 msg/s. For scale, the broker's own
  ceiling: RabbitMQ PerfTest (resolved from Maven Central with Maven) publishing as
  many persistent messages with confirms into a durable queue nobody reads, half of
  the broker's work in a move. ``--same-body`` gives every RabbitMQ message the same
  body: what qctl's exact-return rule costs (copies with the same exchange, routing key
  and body go one confirm round trip at a time).

Each measurement runs ROUNDS times, alternating the tools; the median is reported.
On Kafka each tool first runs once uncounted, so neither pays for a broker JVM that
is still compiling its request paths.
kcat comes from Debian (installed with apt-get when missing and run as root). What the
benchmark creates is deleted afterwards.

    .venv/bin/python benchmarks/redrive.py [--messages 200000] [--rabbit-messages 200000]
        [--naive-messages 20000] [--rounds 3] [--plain] [--same-body] [--skip-kafka]
        [--skip-rabbitmq]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import KafkaScratch, compile_qctl, ensure_kcat, ensure_perf_test, median_rounds, say

REPO = Path(__file__).resolve().parent.parent
QCTL = [sys.executable, "-m", "qctl"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=200_000, help="Kafka messages")
    p.add_argument("--rabbit-messages", type=int, default=200_000, help="RabbitMQ messages")
    p.add_argument("--naive-messages", type=int, default=20_000, help="for the naive pika loop")
    p.add_argument("--size", type=int, default=100, help="bytes per message")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--plain", action="store_true", help="RabbitMQ messages without x-death")
    p.add_argument("--same-body", action="store_true", help="every RabbitMQ message alike")
    p.add_argument("--skip-kafka", action="store_true")
    p.add_argument("--skip-rabbitmq", action="store_true")
    p.add_argument("--bootstrap", default=os.environ.get("QCTL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("QCTL_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    p.add_argument(
        "--management-url",
        default=os.environ.get("QCTL_RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672"),
    )
    return p.parse_args()


def run(cmd: list[str] | str, env: dict[str, str] | None = None, shell: bool = False) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"{cmd if shell else ' '.join(cmd[:6])} failed: {proc.stderr.decode()[-1500:]}"
        )
    return elapsed


def payload(i: int, size: int) -> bytes:
    body = json.dumps({"id": i}).encode()
    return body + b" " * max(size - len(body), 0)


# -- Kafka -----------------------------------------------------------------------------------
def bench_kafka(args: argparse.Namespace, kcat: str) -> list[tuple[str, float, str, float, float]]:
    scratch = KafkaScratch(args.bootstrap, "redrive", args.partitions)
    n = args.messages

    def dlq() -> tuple[str, str]:
        """A fresh DLQ full of dead letters whose origin is a fresh topic."""
        origin = scratch.topic()
        source = scratch.topic(f"{origin}.dlq")
        headers = [
            ("qctl-original-topic", origin.encode()),
            ("qctl-error-class", b"org.example.PaymentException"),
            ("qctl-failed-at", str(int(time.time() * 1000)).encode()),
        ]
        scratch.fill(source, n, lambda i: (payload(i, args.size), f"k{i}".encode()), headers)
        return origin, source

    def qctl_redrive() -> float:
        _origin, source = dlq()
        return n / run([*QCTL, "dlq", "redrive", f"kafka:{source}", "--yes"], env=scratch.env)

    def kcat_pipe() -> float:
        origin, source = dlq()
        b = args.bootstrap
        pipe = (
            f"{kcat} -C -b {b} -t {source} -o beginning -e -q -f '%s\\n' | "
            f"{kcat} -P -b {b} -t {origin}"
        )
        return n / run(pipe, shell=True)

    say(f"kafka: redrive {n:,} x {args.size} B ({args.partitions} partitions)")
    try:
        rates = median_rounds(
            args.rounds, {"qctl": qctl_redrive, "kcat pipe": kcat_pipe}, warm_up=True
        )
    finally:
        scratch.close()
    return [
        (
            "kafka redrive (exactly-once)",
            rates["qctl"],
            "kcat -C | kcat -P",
            rates["kcat pipe"],
            0.5,
        )
    ]


# -- RabbitMQ --------------------------------------------------------------------------------
class Rabbit:
    def __init__(self, args: argparse.Namespace) -> None:
        import pika

        self.pika = pika
        self.args = args
        self.params = pika.URLParameters(args.amqp_url)
        self.prefix = f"bench-redrive-{uuid.uuid4().hex[:6]}"
        self.queues: list[str] = []
        self.exchanges: list[str] = []
        self.made = 0

    def admin(self, action: Callable[[Any], object]) -> Any:
        conn = self.pika.BlockingConnection(self.params)
        try:
            return action(conn.channel())
        finally:
            conn.close()

    def queue(self, name: str, **arguments: Any) -> str:
        self.admin(lambda ch: ch.queue_declare(name, durable=True, arguments=arguments or None))
        self.queues.append(name)
        return name

    def count(self, name: str) -> int:
        return int(self.admin(lambda ch: ch.queue_declare(name, passive=True)).method.message_count)

    def fill_dlq(self, n: int) -> str:
        """A DLQ of ``n`` messages, dead-lettered by the broker (or plain ones)."""
        from qctl.backends.rabbitmq.amqp.publisher import ConfirmingPublisher, Publication

        self.made += 1
        k = self.made
        dlq = self.queue(f"{self.prefix}-{k}.dlq")
        props = self.pika.BasicProperties(delivery_mode=2, content_type="application/json")
        if self.args.plain:
            into = dlq
        else:
            dlx = f"{self.prefix}-{k}.dlx"
            self.admin(lambda ch: ch.exchange_declare(dlx, "fanout", durable=True))
            self.exchanges.append(dlx)
            self.admin(lambda ch: ch.queue_bind(dlq, dlx, ""))
            into = self.queue(
                f"{self.prefix}-{k}.work", **{"x-dead-letter-exchange": dlx, "x-message-ttl": 0}
            )
        size = self.args.size
        same = self.args.same_body
        pubs = (Publication("", into, payload(0 if same else i, size), props) for i in range(n))
        # Not mandatory: the queue exists, and identical bodies need not wait for returns.
        stats = ConfirmingPublisher(self.params, window=2000, mandatory=False).run(pubs)
        assert stats.confirmed == n, stats
        deadline = time.monotonic() + 120
        while self.count(dlq) < n:
            if time.monotonic() > deadline:
                raise SystemExit("the DLQ did not fill up")
            time.sleep(0.2)
        return dlq

    def drop_all(self) -> None:
        """Delete what the last measurement made: the broker keeps a full queue's
        messages in memory, which would slow every later round."""
        self.cleanup()
        self.queues.clear()
        self.exchanges.clear()

    def cleanup(self) -> None:
        def drop(ch: Any) -> None:
            for q in self.queues:
                ch.queue_delete(q)
            for e in self.exchanges:
                ch.exchange_delete(e)

        self.admin(drop)


def naive_loop(params: Any, source: str, target: str) -> int:
    """The popular script: get, publish with a confirm, ack; one message at a time."""
    import pika

    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    moved = 0
    while True:
        method, props, body = ch.basic_get(source)
        if method is None:
            break
        ch.basic_publish("", target, body, props, mandatory=True)
        ch.basic_ack(method.delivery_tag)
        moved += 1
    conn.close()
    return moved


def management(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    import httpx

    parts = urllib.parse.urlsplit(args.amqp_url)
    auth = (
        urllib.parse.unquote(parts.username or "guest"),
        urllib.parse.unquote(parts.password or "guest"),
    )
    resp = httpx.request(
        method, args.management_url + "/api" + path, auth=auth, json=body, timeout=30
    )
    if resp.status_code >= 400 and resp.status_code != 404:
        raise SystemExit(f"management API {method} {path}: {resp.status_code} {resp.text[:300]}")
    return resp


def ensure_shovel(args: argparse.Namespace) -> bool:
    if management(args, "GET", "/shovels").status_code != 404:
        return True
    say("enabling the rabbitmq_shovel plugins (online) ...")
    subprocess.run(
        [
            str(REPO / "dev" / "rabbitmqctl"),
            "--tool",
            "rabbitmq-plugins",
            "enable",
            "rabbitmq_shovel",
            "rabbitmq_shovel_management",
        ],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(50):
        if management(args, "GET", "/shovels").status_code != 404:
            return True
        time.sleep(0.2)
    say("the Shovel plugin is not available: skipping the Shovel comparison")
    return False


def bench_rabbitmq(args: argparse.Namespace) -> list[tuple[str, float, str, float, float]]:
    rabbit = Rabbit(args)
    n = args.rabbit_messages
    state = tempfile.mkdtemp(prefix="qctl-bench-")
    env = {
        **os.environ,
        "QCTL_RABBITMQ_URL": args.amqp_url,
        "QCTL_RABBITMQ_MANAGEMENT_URL": args.management_url,
        "QCTL_CONFIG": "/nonexistent",
        "QCTL_STATE_DIR": state,
    }
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(args.amqp_url).path[1:]) or "/"

    def qctl_redrive() -> float:
        dlq = rabbit.fill_dlq(n)
        target = rabbit.queue(dlq + ".target")
        elapsed = run(
            [
                *QCTL,
                "dlq",
                "redrive",
                f"rabbitmq:queue/{dlq}",
                "--to",
                f"rabbitmq:queue/{target}",
                "--yes",
            ],
            env=env,
        )
        assert rabbit.count(target) >= n and rabbit.count(dlq) == 0
        rabbit.drop_all()
        return n / elapsed

    def naive() -> float:
        m = min(args.naive_messages, n)
        dlq = rabbit.fill_dlq(m)
        target = rabbit.queue(dlq + ".target")
        start = time.perf_counter()
        moved = naive_loop(rabbit.params, dlq, target)
        rate = moved / (time.perf_counter() - start)
        rabbit.drop_all()
        return rate

    def shovel() -> float:
        dlq = rabbit.fill_dlq(n)
        target = rabbit.queue(dlq + ".target")
        name = f"{dlq}-move"
        quoted = urllib.parse.quote(vhost, safe="")
        body = {
            "value": {
                "src-protocol": "amqp091",
                "src-uri": "amqp://",
                "src-queue": dlq,
                "dest-protocol": "amqp091",
                "dest-uri": "amqp://",
                "dest-queue": target,
                "ack-mode": "on-confirm",
                "src-delete-after": "queue-length",
            }
        }
        start = time.perf_counter()
        management(
            args, "PUT", f"/parameters/shovel/{quoted}/{urllib.parse.quote(name, safe='')}", body
        )
        deadline = time.monotonic() + 600
        while rabbit.count(target) < n:
            if time.monotonic() > deadline:
                raise SystemExit("the Shovel did not finish")
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        management(
            args, "DELETE", f"/parameters/shovel/{quoted}/{urllib.parse.quote(name, safe='')}"
        )
        rabbit.drop_all()
        return n / elapsed

    libs = ensure_perf_test()

    def publish_ceiling() -> float:
        """What the broker takes at most: PerfTest publishing the same number of
        persistent messages with confirms into a durable queue nobody reads (half of
        a move's work for the broker)."""
        assert libs is not None
        rabbit.made += 1
        q = rabbit.queue(f"{rabbit.prefix}-{rabbit.made}.ceiling")
        java = [shutil.which("java") or "java", "-cp", f"{libs}/*", "com.rabbitmq.perf.PerfTest"]
        flags = ["-x", "1", "-y", "0", "-u", q, "-p", "-f", "persistent", "-c", "1000"]
        proc = subprocess.run(
            [*java, "-h", args.amqp_url.rstrip("/"), *flags, "-s", str(args.size), "-C", str(n)],
            capture_output=True,
            text=True,
            check=False,
        )
        rabbit.drop_all()
        match = re.search(r"sending rate avg: (\d+) msg/s", proc.stdout)
        if not match:
            raise SystemExit(f"PerfTest printed no rate:\n{proc.stdout[-1500:]}{proc.stderr}")
        return float(match.group(1))

    kind = "plain" if args.plain else "dead-lettered (x-death)"
    if args.same_body:
        kind += ", one body"
    say(
        f"rabbitmq: redrive {n:,} {kind} messages of {args.size} B "
        f"(naive loop: {min(args.naive_messages, n):,})"
    )
    runs: dict[str, Callable[[], float]] = {"qctl": qctl_redrive, "naive": naive}
    if ensure_shovel(args):
        runs["shovel"] = shovel
    if libs is not None:
        runs["ceiling"] = publish_ceiling
    try:
        rates = median_rounds(args.rounds, runs)
    finally:
        rabbit.cleanup()
        shutil.rmtree(state, ignore_errors=True)
    rows = [
        (f"rabbitmq redrive, {kind}", rates["qctl"], "naive get/publish/ack", rates["naive"], 2.0),
    ]
    if "shovel" in rates:
        rows.append(
            (
                f"rabbitmq redrive, {kind}",
                rates["qctl"],
                "Shovel (on-confirm)",
                rates["shovel"],
                0.0,
            )
        )
    if "ceiling" in rates:
        rows.append(
            (
                f"rabbitmq redrive, {kind}",
                rates["qctl"],
                "PerfTest publish only",
                rates["ceiling"],
                0.0,
            )
        )
    return rows


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
        rows += bench_rabbitmq(args)
    print()
    print(
        f"{'measurement':<42} {'qctl msg/s':>11} {'peer':>22} {'peer msg/s':>11} "
        f"{'ratio':>7}  target"
    )
    failed = False
    for what, mine, peer, theirs, target in rows:
        ratio = mine / theirs if theirs > 0 else float("nan")
        verdict = ""
        if target:
            ok = not math.isnan(ratio) and ratio >= target
            failed |= not ok
            verdict = f">= {target}x {'ok' if ok else 'MISSED'}"
        print(f"{what:<42} {mine:>11,.0f} {peer:>22} {theirs:>11,.0f} {ratio:>6.2f}x  {verdict}")
    rabbit = [mine for what, mine, *_ in rows if what.startswith("rabbitmq")]
    if rabbit:
        ok = rabbit[0] >= 10_000
        failed |= not ok
        print(
            f"{'rabbitmq redrive absolute':<42} {rabbit[0]:>11,.0f} {'':>22} {'':>11} {'':>7}  "
            f">= 10,000 msg/s {'ok' if ok else 'MISSED'}"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
