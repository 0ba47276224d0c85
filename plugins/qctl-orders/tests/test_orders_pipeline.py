"""The order pipeline against the real brokers, on Kafka and on RabbitMQ.

Each test runs on its own namespaced copy of the example topology (see ``conftest``),
through the installed ``qctl``, with a high rate and short back-offs so it takes
seconds, not minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from orders_helpers import Pipeline, qctl, qctl_json

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULTS = ("--payment-failure", "0.05", "--out-of-stock", "0.02", "--poison", "0.01")
FAST = ("--rate", "1000", "--retry-backoff", "0.1s", "--no-progress")
FINAL = ("completed", "payment_failed", "refunded")


def run(pipeline: Pipeline, *args: str) -> dict[str, Any]:
    summary: dict[str, Any] = qctl_json("orders", "run", *pipeline.args(), *FAULTS, *FAST, *args)
    return summary


def verify(pipeline: Pipeline, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = qctl("orders", "verify", *pipeline.args(), "-o", "json", *args)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def checks(verdict: dict[str, Any]) -> dict[str, bool]:
    return {c["name"]: c["ok"] for c in verdict["checks"]}


def test_2000_orders_pass_verify_and_a_heal_and_redrive_completes_every_order(
    pipeline: Pipeline,
) -> None:
    summary = run(pipeline, "--orders", "2000", "--seed", "8")
    assert summary["orders_created"] == 2000 and summary["settled"]
    orders = summary["orders"]
    assert sum(orders.values()) == 2000
    poison = summary["dead_lettered"]
    assert poison > 0 and orders["dead_lettered"] == poison
    assert summary["retries"] == 3 * poison  # each poison message tried 3 more times
    assert orders["payment_failed"] > 0 and orders["refunded"] > 0
    events = summary["events"]
    assert events["PaymentRefunded"] == events["OutOfStock"] == orders["refunded"]
    assert events["OrderCreated"] == 2000

    code, verdict, err = verify(pipeline)
    assert code == 0, err
    assert verdict["ok"] and all(checks(verdict).values())
    assert verdict["orders"] == 2000 and verdict["poison"] == poison
    assert verdict["states"] == {k: v for k, v in orders.items() if v}
    assert sum(verdict["dlq"].values()) == poison

    # qctl's own DLQ tooling sees the same dead letters, with qctl's provenance.
    inspected = qctl_json("dlq", "inspect", pipeline.dlq)
    assert inspected["total"] == poison

    # Not yet all final: the poison orders wait in the DLQ.
    code, verdict, _ = verify(pipeline, "--all-terminal")
    assert code == 1 and not checks(verdict)["every order final"]

    healed = qctl_json("orders", "heal", *pipeline.args())
    assert len(healed["runs"]) == 1
    redriven = qctl("dlq", "redrive", pipeline.dlq, "--yes")
    assert redriven.returncode == 0, redriven.stderr
    resumed = qctl_json(
        "orders", "run", "--resume", "--idle", "2s", "--no-progress", *pipeline.args()
    )
    assert resumed["healed"] == poison
    assert resumed["orders"].get("dead_lettered", 0) == 0

    code, verdict, err = verify(pipeline, "--all-terminal")
    assert code == 0, err
    assert sum(verdict["states"].get(s, 0) for s in FINAL) == 2000
    assert "dead_lettered" not in verdict["states"]
    assert verdict["dlq"] == {}
    assert qctl_json("dlq", "inspect", pipeline.dlq)["total"] == 0


def test_a_payment_crash_redelivers_without_charging_twice(pipeline: Pipeline) -> None:
    summary = run(pipeline, "--orders", "2000", "--crash", "payment:500")
    assert summary["crashes"] == {"payment": 1}
    # What the killed consumer had handled was not committed: it came again ...
    assert summary["uncommitted_at_crash"]["payment"] >= 1
    assert summary["settled"] and sum(summary["orders"].values()) == 2000
    # ... and the invariants still hold: at-least-once plus idempotent handlers.
    code, verdict, err = verify(pipeline)
    assert code == 0, err
    assert checks(verdict)["no order charged twice"]
    assert verdict["orders"] == 2000


def _lag(pipeline: Pipeline) -> tuple[int, str] | None:
    """The analytics service's lag and trend; None before its group exists."""
    if pipeline.backend == "kafka":
        args = ["-b", "kafka", "-g", f"{pipeline.namespace}.analytics-service"]
    else:
        args = ["-b", "rabbitmq", "-q", f"{pipeline.namespace}.analytics.work"]
    proc = qctl("lag", *args, "-o", "json")
    if proc.returncode == 1 and "no consumer group" in proc.stderr:
        return None
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    if pipeline.backend == "kafka":
        group = data["groups"][0]
        return int(group["lag"]), str(group["evaluation"]["trend"])
    queue = data["queues"][0]
    return int(queue["ready"]) + int(queue["unacked"]), str(queue["evaluation"]["trend"])


def test_lag_shows_a_slow_analytics_service_falling_behind_and_catching_up(
    pipeline: Pipeline,
) -> None:
    orders = "800" if pipeline.backend == "kafka" else "1000"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qctl", "orders", "run", *pipeline.args(), "--orders", orders,
         "--rate", "200", "--slow", "analytics:5", "--no-progress", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    samples: list[tuple[int, str, bool]] = []  # lag, trend, whether the run was still going
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = proc.poll() is None
            found = _lag(pipeline)
            if found is None:  # the service has not joined yet
                time.sleep(0.2)
                continue
            lag, trend = found
            samples.append((lag, trend, running))
            if not running and lag == 0:
                break
            time.sleep(1.05)  # qctl lag keeps samples at least a second apart
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out)["settled"]
    lags = [lag for lag, _, _ in samples]
    peak = lags.index(max(lags))
    assert max(lags) >= 300, samples
    # Falling behind: the lag grows while orders arrive faster than analytics handles them.
    assert any(t == "increasing" and lag > 0 for lag, t, _ in samples[: peak + 1]), samples
    # Catching up: it shrinks to nothing once the order service has stopped.
    assert samples[-1][0] == 0, samples
    if pipeline.backend == "kafka":
        # RabbitMQ's depth comes from statistics refreshed every 5 s: too coarse a
        # series for a trend within seconds; Kafka's offsets are exact.
        assert any(t == "decreasing" for _, t, _ in samples[peak:]), samples


def test_a_missing_topology_is_one_error_with_the_fix(backend: str) -> None:
    proc = qctl("orders", "run", "-b", backend, "-n", "nosuchns", "--orders", "1")
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("qctl: error: the order pipeline's")
    assert "qctl orders topology" in line and "Traceback" not in proc.stderr


def test_back_pressure_reaches_the_producers(pipeline: Pipeline, tmp_path: Path) -> None:
    """Kafka: the order service pauses while the payment group's lag is above --max-lag.
    RabbitMQ: a full queue with ``reject-publish`` nacks the payment service's events,
    which it sends again after a pause; nothing is lost, duplicates are dropped."""
    ns = pipeline.namespace
    if pipeline.backend == "kafka":
        summary = run(pipeline, "--orders", "1000", "--rate", "400", "--slow", "payment:1",
                      "--max-lag", "200")  # fmt: skip
        assert summary["backpressure"]["throttles"] >= 1
        assert summary["backpressure"]["throttled_seconds"] > 0
    else:
        small = tmp_path / "small-inventory.yaml"
        small.write_text(
            f"owner: {ns}-small\n"
            "rabbitmq:\n"
            "  policies:\n"
            f"    - name: {ns}.small-inventory\n"
            f"      pattern: ^{ns}\\.inventory\\.work$\n"
            "      apply_to: queues\n"
            "      priority: 5\n"
            "      definition: {max-length: 20, overflow: reject-publish}\n"
        )
        applied = qctl("topology", "apply", str(small), "-b", "rabbitmq", "--yes")
        assert applied.returncode == 0, applied.stderr
        try:
            summary = run(pipeline, "--orders", "1000", "--rate", "0", "--slow", "inventory:3")
        finally:
            qctl("topology", "destroy", str(small), "-b", "rabbitmq", "--yes")
        assert summary["backpressure"]["refused_publishes"] > 0
        assert summary["duplicates_suppressed"] > 0  # copies other queues had taken
    assert summary["settled"] and summary["orders_created"] == 1000
    code, verdict, err = verify(pipeline)
    assert code == 0 and verdict["ok"], err
