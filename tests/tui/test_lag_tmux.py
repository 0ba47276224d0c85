"""``qctl lag --watch`` in a real terminal: tmux runs it, sends keys, reads the screen."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KTP
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    proc = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10, check=False)
    return proc.stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_for_screen(session: str, text: str, limit: float = 30) -> str:
    deadline = time.monotonic() + limit
    shown = ""
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{shown}")


def alive(session: str) -> bool:
    return (
        subprocess.run(
            ["tmux", "has-session", "-t", session], capture_output=True, check=False
        ).returncode
        == 0
    )


@pytest.fixture
def group(kafka: str, unique: str) -> Iterator[str]:
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(unique, 1, 1)])[unique].result(15)
    producer = Producer({"bootstrap.servers": kafka})
    for i in range(12):
        producer.produce(unique, b"m%d" % i, partition=0)
    assert producer.flush(10) == 0
    name = f"{unique}-g"
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": name})
    consumer.commit(offsets=[KTP(unique, 0, 4)], asynchronous=False)
    consumer.close()
    yield name
    admin.delete_topics([unique])[unique].result(15)


def test_watch_in_a_real_terminal(kafka: str, group: str, unique: str) -> None:
    session = f"qctl-{unique}"
    env = {
        "QCTL_KAFKA_BOOTSTRAP": kafka,
        "QCTL_CONFIG": os.environ["QCTL_CONFIG"],
        "QCTL_STATE_DIR": os.environ["QCTL_STATE_DIR"],
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
    }
    # The short sleep lets tmux size the pane before the app asks for its size.
    command = "sleep 0.5; exec " + " ".join(
        [
            "env",
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            shlex.quote(sys.executable),
            "-m",
            "qctl",
            "lag",
            "--watch",
            "--interval",
            "1",
            "-b",
            "kafka",
            "-g",
            group,
        ]
    )
    tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "36", "-c", str(REPO), command)
    try:
        shown = wait_for_screen(session, group)
        assert "qctl lag" in shown and "context local" in shown
        row = next(line for line in shown.splitlines() if group in line)
        assert row.split()[0] == "group" and row.split()[3] == "8"  # lag 12 - 4
        assert f"kafka {kafka} ✓" in shown
        wait_for_screen(session, "refreshed")

        tmux("send-keys", "-t", session, "s")
        wait_for_screen(session, "sort time lag")

        tmux("send-keys", "-t", session, "Enter")
        shown = wait_for_screen(session, f"group {group}")
        assert "partitions" in shown and "members" in shown
        tmux("send-keys", "-t", session, "Escape")
        wait_for_screen(session, "backend all")  # the main screen's status bar
        time.sleep(0.5)  # a key right after Escape would read as Alt+key

        tmux("send-keys", "-t", session, "/")
        wait_for_screen(session, "filter by name")  # the input's placeholder
        tmux("send-keys", "-t", session, "-l", "no-such-name")
        wait_for_screen(session, "no-such-name")
        tmux("send-keys", "-t", session, "Enter")
        shown = wait_for_screen(session, "filter no-such-name")
        assert group not in shown

        tmux("send-keys", "-t", session, "p")
        wait_for_screen(session, "PAUSED")

        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 10
        while alive(session) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(session), "q did not quit"
    finally:
        if alive(session):
            tmux("kill-session", "-t", session)
