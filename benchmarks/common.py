"""What the benchmarks share: qctl's bytecode, progress lines, kcat, alternating rounds."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def compile_qctl() -> None:
    """Compile qctl's modules to bytecode, as ``pip install`` does for its users.

    An editable install never writes bytecode when PYTHONDONTWRITEBYTECODE is set; every
    qctl process would then compile its modules again, a cost no installed copy has.
    """
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "qctl")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_kcat() -> str | None:
    """kcat (or kafkacat) on PATH; installed from Debian when missing and we are root."""
    found = shutil.which("kcat") or shutil.which("kafkacat")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("installing kcat (Debian package) ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "install", "-y", "-qq", "kcat"],
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "kcat"],
        ):
            if shutil.which("kcat"):
                break
            subprocess.run(
                cmd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
    return shutil.which("kcat")


def median_rounds(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run each measurement ROUNDS times, alternating the tools (so both see the same
    machine load); the median msg/s of each."""
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            rate = runs[name]()
            results[name].append(rate)
            say(f"  round {r + 1}: {name}: {rate:,.0f} msg/s")
    return {name: statistics.median(rates) for name, rates in results.items()}
