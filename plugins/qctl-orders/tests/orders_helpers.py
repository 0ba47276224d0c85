"""Helpers shared by the qctl-orders tests: running the installed qctl, and the
namespaced pipeline a test runs on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "order-pipeline.yaml"
KAFKA_BOOTSTRAP = os.environ.get("QCTL_TEST_KAFKA", "127.0.0.1:9092")


def qctl(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the installed qctl in a fresh interpreter (the test's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "qctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def qctl_json(*args: str, timeout: float = 240) -> Any:
    proc = qctl(*args, "-o", "json", timeout=timeout)
    assert proc.returncode == 0, f"qctl {' '.join(args)}: {proc.returncode}\n{proc.stderr}"
    return json.loads(proc.stdout)


@dataclass
class Pipeline:
    """A namespaced order pipeline applied on one backend for one test."""

    backend: str
    namespace: str
    topology: Path

    def args(self) -> list[str]:
        return ["-b", self.backend, "-n", self.namespace]

    @property
    def dlq(self) -> str:
        if self.backend == "kafka":
            return f"kafka:{self.namespace}.orders.dlq"
        return f"rabbitmq:queue/{self.namespace}.payment.dlq"
