"""Run the brokers' own tools (Kafka's CLI from the cached jars, rabbitmqctl) as oracles."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def kafka_tool(*args: str, timeout: float = 120) -> str:
    """Output of Kafka's own command-line tool, e.g. kafka_tool("topics", "--list", ...)."""
    proc = subprocess.run(
        [str(REPO / "dev/kafka-tool"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"dev/kafka-tool {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def rabbitmqctl(*args: str, tool: str = "rabbitmqctl", timeout: float = 120) -> str:
    """Output of rabbitmqctl (or another RabbitMQ CLI tool) against the dev node."""
    proc = subprocess.run(
        [str(REPO / "dev/rabbitmqctl"), "--tool", tool, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout
