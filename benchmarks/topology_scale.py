"""Topology at scale: qctl plan/apply beside what people script today, in one run.

A file with 300 Kafka topics (3 partitions, 2 configs each) and 300 RabbitMQ queues
bound to one exchange is planned and applied with qctl, and the same amount of work is
done the usual ways:

- Kafka: a loop of Kafka's own ``kafka-topics --create`` (one JVM per topic). A full loop
  of 300 takes minutes, so by default ``--kafka-loop-sample`` topics are created and the
  per-topic cost is extrapolated to 300 (the output says so); ``--kafka-loop-sample 0``
  runs the whole loop.
- RabbitMQ: a loop of ``rabbitmqadmin declare`` calls (one process per queue and per
  binding; sampled and extrapolated like the Kafka loop, ``--rabbitmq-loop-sample``),
  the same per-object HTTP requests from one keep-alive client (the best case for
  per-object declares), and a definitions import (``rabbitmqadmin import``, i.e.
  ``POST /api/definitions/{vhost}``), the fastest way RabbitMQ offers.

Everything the benchmark creates is deleted afterwards. Targets: qctl apply at least 10x
faster than the kafka-topics loop, within 2x of a definitions import, and a plan of the
full file in at most 3 s.

    .venv/bin/python benchmarks/topology_scale.py [--topics 300] [--queues 300]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml
from common import compile_qctl

REPO = Path(__file__).resolve().parent.parent
KAFKA = os.environ.get("QCTL_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MANAGEMENT = os.environ.get("QCTL_RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
AUTH = ("guest", "guest")
CONFIGS = {"retention.ms": 86400000, "segment.bytes": 104857600}


def qctl(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "qctl", *args],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "QCTL_KAFKA_BOOTSTRAP": KAFKA,
            "QCTL_RABBITMQ_MANAGEMENT_URL": MANAGEMENT,
        },
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"qctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, proc


def topology(run: str, topics: int, queues: int) -> dict[str, Any]:
    return {
        "version": 1,
        "owner": f"bench-{run}",
        "kafka": {
            "topics": [
                {"name": f"bench-{run}-t{i:04d}", "partitions": 3, "configs": dict(CONFIGS)}
                for i in range(topics)
            ]
        },
        "rabbitmq": {
            "exchanges": [{"name": f"bench-{run}-q-events", "type": "topic"}],
            "queues": [{"name": f"bench-{run}-q{i:04d}"} for i in range(queues)],
            "bindings": [
                {
                    "source": f"bench-{run}-q-events",
                    "destination": f"bench-{run}-q{i:04d}",
                    "routing_key": f"orders.{i}.#",
                }
                for i in range(queues)
            ],
        },
    }


def kafka_loop(run: str, count: int) -> float:
    """Wall time of ``count`` kafka-topics --create calls."""
    tool = str(REPO / "dev" / "kafka-tool")
    start = time.perf_counter()
    for i in range(count):
        args = [tool, "topics", "--bootstrap-server", KAFKA, "--create"]
        args += ["--topic", f"bench-{run}-k{i:04d}", "--partitions", "3"]
        for key, value in CONFIGS.items():
            args += ["--config", f"{key}={value}"]
        subprocess.run(args, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def http_declares(api: httpx.Client, run: str, count: int) -> float:
    start = time.perf_counter()
    exchange = f"bench-{run}-h-events"
    api.put(
        f"/exchanges/%2F/{exchange}", json={"type": "topic", "durable": True}
    ).raise_for_status()
    for i in range(count):
        queue = f"bench-{run}-h{i:04d}"
        api.put(f"/queues/%2F/{queue}", json={"durable": True}).raise_for_status()
        api.post(
            f"/bindings/%2F/e/{exchange}/q/{queue}", json={"routing_key": f"orders.{i}.#"}
        ).raise_for_status()
    return time.perf_counter() - start


def definitions_body(run: str, count: int) -> dict[str, Any]:
    exchange = f"bench-{run}-d-events"
    return {
        "exchanges": [
            {
                "name": exchange,
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        ],
        "queues": [
            {
                "name": f"bench-{run}-d{i:04d}",
                "durable": True,
                "auto_delete": False,
                "arguments": {},
            }
            for i in range(count)
        ],
        "bindings": [
            {
                "source": exchange,
                "destination": f"bench-{run}-d{i:04d}",
                "destination_type": "queue",
                "routing_key": f"orders.{i}.#",
                "arguments": {},
            }
            for i in range(count)
        ],
    }


def definitions_import(api: httpx.Client, run: str, count: int) -> tuple[float, str]:
    """A definitions import the way it is scripted: rabbitmqadmin import (or curl)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(definitions_body(run, count), handle)
    admin, curl = shutil.which("rabbitmqadmin"), shutil.which("curl")
    if admin is not None:
        how = "rabbitmqadmin import"
        args = [admin, *admin_options(), "-V", "/", "import", handle.name]
    elif curl is not None:
        how = "curl POST /api/definitions"
        args = [
            curl,
            "-sf",
            "-u",
            ":".join(AUTH),
            "-H",
            "content-type: application/json",
            "-X",
            "POST",
            "--data-binary",
            f"@{handle.name}",
            f"{MANAGEMENT}/api/definitions/%2F",
        ]
    else:
        how = "POST /api/definitions, in-process"
        start = time.perf_counter()
        api.post("/definitions/%2F", json=definitions_body(run, count)).raise_for_status()
        return time.perf_counter() - start, how
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    elapsed = time.perf_counter() - start
    os.unlink(handle.name)
    return elapsed, how


def admin_options() -> list[str]:
    url = httpx.URL(MANAGEMENT)
    return ["-H", url.host, "-P", str(url.port or 15672), "-u", AUTH[0], "-p", AUTH[1]]


def rabbitmqadmin_loop(run: str, calls: int) -> float | None:
    """``calls`` rabbitmqadmin declares (queue, binding, queue, ...): one process each."""
    admin = shutil.which("rabbitmqadmin")
    if admin is None:
        return None
    base = [admin, *admin_options(), "-V", "/"]
    exchange = f"bench-{run}-a-events"
    subprocess.run(
        [*base, "declare", "exchange", f"name={exchange}", "type=topic"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    start = time.perf_counter()
    for n in range(calls):
        i = n // 2
        if n % 2 == 0:
            args = ["declare", "queue", f"name=bench-{run}-a{i:04d}", "durable=true"]
        else:
            args = [
                "declare",
                "binding",
                f"source={exchange}",
                f"destination=bench-{run}-a{i:04d}",
                f"routing_key=orders.{i}.#",
            ]
        subprocess.run([*base, *args], check=True, capture_output=True, timeout=60)
    return time.perf_counter() - start


def cleanup(run: str, api: httpx.Client, qctl_file: Path | None, brokers: bool = True) -> None:
    """Remove everything under ``bench-<run>-`` (and qctl's ownership record);
    ``brokers=False``: only destroy what ``qctl_file`` declares."""
    if qctl_file is not None:
        with contextlib.suppress(SystemExit):
            qctl(
                "topology",
                "destroy",
                str(qctl_file),
                "--yes",
                "--max-deletes",
                "100000",
                "--force-delete-nonempty",
            )
    if not brokers:
        return
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(f"bench-{run}-")]
    if names:
        for future in admin.delete_topics(names, operation_timeout=60).values():
            with contextlib.suppress(Exception):
                future.result(timeout=120)
    for kind in ("queues", "exchanges"):
        for item in api.get(f"/{kind}/%2F", params={"columns": "name"}).json():
            if item["name"].startswith(f"bench-{run}-"):
                api.delete(f"/{kind}/%2F/{quote(item['name'], safe='')}")


@contextlib.contextmanager
def step(label: str) -> Iterator[None]:
    print(f"  {label} ...", file=sys.stderr, flush=True)
    yield


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=300)
    parser.add_argument("--queues", type=int, default=300)
    parser.add_argument(
        "--rabbitmq-loop-sample",
        type=int,
        default=60,
        metavar="N",
        help="time N rabbitmqadmin declares and extrapolate to every object (0: run them all)",
    )
    parser.add_argument(
        "--kafka-loop-sample",
        type=int,
        default=10,
        metavar="N",
        help="time N kafka-topics calls and extrapolate to --topics (0: run them all)",
    )
    parser.add_argument(
        "--rabbitmq-rounds",
        type=int,
        default=5,
        metavar="N",
        help="rounds of qctl apply and definitions import on RabbitMQ (median of each; the "
        "server's import time varies by 20%% from one call to the next)",
    )
    args = parser.parse_args()
    compile_qctl()
    run = uuid.uuid4().hex[:6]
    api = httpx.Client(base_url=MANAGEMENT + "/api", auth=AUTH, timeout=120)
    results: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="qctl-bench-"))
    path = tmp / "scale.yaml"
    path.write_text(yaml.safe_dump(topology(run, args.topics, args.queues), sort_keys=False))
    sample = args.kafka_loop_sample if 0 < args.kafka_loop_sample < args.topics else args.topics
    extrapolated = sample < args.topics
    extra_files: list[Path] = []
    try:
        print(
            f"benchmark run bench-{run}: {args.topics} topics, {args.queues} queues",
            file=sys.stderr,
        )
        with step("qctl plan (everything to create)"):
            results["qctl plan, empty cluster"] = qctl("topology", "plan", str(path))[0]
        with step("qctl apply -b kafka"):
            results["qctl apply kafka"] = qctl(
                "topology", "apply", str(path), "-b", "kafka", "--yes"
            )[0]
        with step("qctl apply -b rabbitmq"):
            results["qctl apply rabbitmq"] = qctl(
                "topology", "apply", str(path), "-b", "rabbitmq", "--yes"
            )[0]
        with step("qctl plan (no changes)"):
            elapsed, proc = qctl("topology", "plan", str(path), "--detailed-exitcode")
            assert "No changes." in proc.stdout, proc.stdout[-500:]
            results["qctl plan, applied"] = elapsed
        with step(f"kafka-topics --create loop ({sample} calls)"):
            loop = kafka_loop(run, sample)
            results["kafka-topics loop"] = loop / sample * args.topics
        objects = 2 * args.queues + 1
        admin_calls = (
            args.rabbitmq_loop_sample if 0 < args.rabbitmq_loop_sample < objects else objects
        )
        with step(f"rabbitmqadmin declare loop ({admin_calls} calls)"):
            loop_time = rabbitmqadmin_loop(run, admin_calls)
            if loop_time is not None:
                results["rabbitmqadmin loop"] = loop_time / admin_calls * objects
        with step("per-object HTTP declares"):
            results["http declares"] = http_declares(api, run, args.queues)
        with step("definitions import"):
            results["definitions import"], import_how = definitions_import(api, run, args.queues)
        applies, imports = [results["qctl apply rabbitmq"]], [results["definitions import"]]
        for k in range(1, args.rabbitmq_rounds):
            with step(f"round {k + 1} of {args.rabbitmq_rounds}: qctl apply, definitions import"):
                doc = topology(f"{run}-r{k}", 0, args.queues)
                del doc["kafka"]
                extra = tmp / f"round-{k}.yaml"
                extra.write_text(yaml.safe_dump(doc, sort_keys=False))
                extra_files.append(extra)
                applies.append(qctl("topology", "apply", str(extra), "--yes")[0])
                imports.append(definitions_import(api, f"{run}-r{k}", args.queues)[0])
        results["qctl apply rabbitmq"] = statistics.median(applies)
        results["definitions import"] = statistics.median(imports)
        rounds = (applies, imports)
    finally:
        with step("cleaning up"):
            for extra in extra_files:
                cleanup(run, api, extra, brokers=False)
            cleanup(run, api, path)
            api.close()
    report(results, args, sample, extrapolated, admin_calls, import_how, rounds)
    return 0


def report(
    results: dict[str, float],
    args: argparse.Namespace,
    sample: int,
    extrapolated: bool,
    admin_calls: int,
    import_how: str,
    rounds: tuple[list[float], list[float]],
) -> None:
    kafka_apply = results["qctl apply kafka"]
    rabbit_apply = results["qctl apply rabbitmq"]
    objects = 2 * args.queues + 1
    everything = args.topics + objects
    rows: list[tuple[str, float, int, str]] = [
        ("qctl topology plan (all creates)", results["qctl plan, empty cluster"], everything, ""),
        ("qctl topology plan (no changes)", results["qctl plan, applied"], everything, ""),
        ("qctl topology apply -b kafka", kafka_apply, args.topics, ""),
        (
            "kafka-topics --create loop" + (" (extrapolated)" if extrapolated else ""),
            results["kafka-topics loop"],
            args.topics,
            f"{results['kafka-topics loop'] / kafka_apply:.1f}x qctl's time",
        ),
        ("qctl topology apply -b rabbitmq", rabbit_apply, objects, ""),
    ]
    if "rabbitmqadmin loop" in results:
        label = "rabbitmqadmin declare loop"
        label += " (extrapolated)" if admin_calls < objects else ""
        loop = results["rabbitmqadmin loop"]
        rows.append((label, loop, objects, f"{loop / rabbit_apply:.1f}x qctl's time"))
    rows.append(
        (
            "HTTP declares, one keep-alive client",
            results["http declares"],
            objects,
            f"{results['http declares'] / rabbit_apply:.1f}x qctl's time",
        )
    )
    rows.append(
        (
            f"definitions import ({import_how})",
            results["definitions import"],
            objects,
            f"qctl takes {rabbit_apply / results['definitions import']:.1f}x its time",
        )
    )
    print(f"{'step':<52} {'seconds':>8} {'objects':>8} {'rate':>9}  comparison")
    for label, seconds, count, note in rows:
        rate = f"{count / seconds:,.0f}/s" if seconds else "-"
        print(f"{label:<52} {seconds:>8.2f} {count:>8} {rate:>9}  {note}")
    notes = []
    if extrapolated:
        per = results["kafka-topics loop"] / args.topics
        notes.append(
            f"The kafka-topics loop was EXTRAPOLATED: {sample} calls were timed "
            f"({per:.2f} s per topic) and scaled to {args.topics} topics "
            "(--kafka-loop-sample 0 runs the full loop)."
        )
    if "rabbitmqadmin loop" in results and admin_calls < objects:
        per = results["rabbitmqadmin loop"] / objects
        notes.append(
            f"The rabbitmqadmin loop was EXTRAPOLATED: {admin_calls} calls were timed "
            f"({per:.3f} s per object) and scaled to {objects} objects "
            "(--rabbitmq-loop-sample 0 runs the full loop)."
        )
    if len(rounds[0]) > 1:
        notes.append(
            f"RabbitMQ: median of {len(rounds[0])} rounds, each on new names; qctl apply "
            f"{', '.join(f'{t:.2f}' for t in rounds[0])} s, definitions import "
            f"{', '.join(f'{t:.2f}' for t in rounds[1])} s."
        )
    notes.append(
        "qctl's times include starting the process, reading the cluster, applying, "
        "recording ownership and re-reading to verify."
    )
    print()
    for note in notes:
        print(note)
    speedup = results["kafka-topics loop"] / kafka_apply
    ratio = rabbit_apply / results["definitions import"]
    plan_time = results["qctl plan, applied"]
    print("\nTargets:")
    print(
        f"  qctl apply >= 10x faster than the kafka-topics loop: {speedup:.1f}x "
        f"{'OK' if speedup >= 10 else 'MISSED'}"
    )
    print(
        f"  qctl apply within 2x of a definitions import: {ratio:.2f}x "
        f"{'OK' if ratio <= 2 else 'MISSED'}"
    )
    print(
        f"  plan of the full file <= 3 s: {plan_time:.2f} s {'OK' if plan_time <= 3 else 'MISSED'}"
    )


if __name__ == "__main__":
    sys.exit(main())
