"""What the benchmarks share: qctl's bytecode, progress lines, kcat, RabbitMQ PerfTest,
alternating rounds, scratch Kafka topics."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEV = Path(os.environ.get("QCTL_DEV_DIR", REPO / ".dev"))
PERF_TEST_VERSION = "2.22.1"


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


def ensure_perf_test() -> Path | None:
    """The PerfTest jars (and their dependencies), resolved once with Maven."""
    home = DEV / "perf-test"
    libs = home / "libs"
    if list(libs.glob(f"perf-test-{PERF_TEST_VERSION}.jar")):
        return libs
    if not shutil.which("mvn"):
        say("Maven (mvn) not found: skipping PerfTest")
        return None
    say(f"resolving com.rabbitmq:perf-test:{PERF_TEST_VERSION} with Maven ...")
    home.mkdir(parents=True, exist_ok=True)
    pom = home / "pom.xml"
    pom.write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>local.bench</groupId><artifactId>perf-test-deps</artifactId><version>1</version>"
        "<dependencies><dependency><groupId>com.rabbitmq</groupId><artifactId>perf-test</artifactId>"
        f"<version>{PERF_TEST_VERSION}</version></dependency></dependencies></project>\n"
    )
    proc = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        say(f"Maven could not resolve PerfTest: {proc.stdout[-800:]}{proc.stderr[-800:]}")
        return None
    return libs


def median_rounds(
    rounds: int, runs: dict[str, Callable[[], float]], warm_up: bool = False
) -> dict[str, float]:
    """Run each measurement ROUNDS times, alternating the tools (so both see the same
    machine load); the median msg/s of each.

    ``warm_up``: first run each tool once, not counted. A broker's JVM that just
    started compiles its request paths while the first runs go on (a Kafka redrive right
    after a broker start took about 2.9 s against about 1.8 s a round later), and the
    tool that runs first would pay for it."""
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    if warm_up:
        for name in names:
            say(f"  warm-up: {name}: {runs[name]():,.0f} msg/s (not counted)")
    for r in range(rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            rate = runs[name]()
            results[name].append(rate)
            say(f"  round {r + 1}: {name}: {rate:,.0f} msg/s")
    return {name: statistics.median(rates) for name, rates in results.items()}


class KafkaScratch:
    """One run's Kafka topics (under a unique prefix) and a private qctl state directory,
    with the environment that points qctl at both; ``close`` removes them."""

    def __init__(self, bootstrap: str, kind: str, partitions: int) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.partitions = partitions
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.prefix = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []
        self.state = tempfile.mkdtemp(prefix="qctl-bench-")
        self.env = {
            **os.environ,
            "QCTL_KAFKA_BOOTSTRAP": bootstrap,
            "QCTL_CONFIG": "/nonexistent",
            "QCTL_STATE_DIR": self.state,
        }

    def topic(self, name: str | None = None) -> str:
        """A new topic (``<prefix>-<n>`` unless named)."""
        from confluent_kafka.admin import NewTopic

        name = name or f"{self.prefix}-{len(self.created)}"
        self.admin.create_topics([NewTopic(name, self.partitions, 1)])[name].result(30)
        self.created.append(name)
        return name

    def fill(
        self,
        topic: str,
        count: int,
        message: Callable[[int], tuple[bytes, bytes | None]],
        headers: list[tuple[str, bytes]],
    ) -> None:
        """``count`` messages ``message(i)`` (value, key), all with ``headers``."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 50})
        for i in range(count):
            value, key = message(i)
            while True:
                try:
                    producer.produce(topic, value, key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)

    def close(self) -> None:
        if self.created:
            for future in self.admin.delete_topics(self.created).values():
                with contextlib.suppress(Exception):
                    future.result(30)
        shutil.rmtree(self.state, ignore_errors=True)
