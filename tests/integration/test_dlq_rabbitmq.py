"""`qctl dlq` against the real RabbitMQ node, with dead letters made by the broker itself.

rabbitmqctl is the oracle for what stays in a queue.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.cli.test_root import run_qctl
from tests.integration.dlq_support import (
    RabbitSetup,
    kill_when,
    only_job,
    qctl_process,
    rabbit_ids,
)
from tests.oracles import rabbitmqctl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.rabbitmq,
    pytest.mark.usefixtures("no_stray_qctl"),
]


def depth(name: str) -> int:
    """rabbitmqctl's message count of a queue: the oracle."""
    out = rabbitmqctl("list_queues", "name", "messages", "--no-table-headers", "--quiet")
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] == name:
            return int(cols[1])
    raise AssertionError(f"queue {name} not listed")


def test_list_and_peek_leave_the_dlq_as_it_was(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline()
    rabbit.dead_letter_by_rejection(25)
    proc = run_qctl("dlq", "list", "-b", "rabbitmq", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    row = next(r for r in json.loads(proc.stdout) if r["name"] == names["dlq"])
    assert "dead-letter exchange" in row["why"]
    peek = run_qctl("dlq", "peek", f"rabbitmq:queue/{names['dlq']}", "--max", "5", "-o", "jsonl")
    assert peek.returncode == 0, peek.stderr
    rows = [json.loads(line) for line in peek.stdout.splitlines()]
    assert len(rows) == 5
    assert [r["source"]["properties"]["message_id"] for r in rows] == ["0", "1", "2", "3", "4"]
    prov = rows[0]["provenance"]
    assert prov["convention"] == "rabbitmq-x-death"
    assert prov["origin"] == {
        "exchange": names["exchange"],
        "routing_keys": ["order.created"],
        "queue": names["work"],
    }
    assert prov["deaths"][0]["reason"] == "rejected"
    table = run_qctl("dlq", "peek", f"rabbitmq:queue/{names['dlq']}", "-o", "table")
    assert f"rejected in {names['work']}" in table.stdout
    assert depth(names["dlq"]) == 25


@pytest.mark.parametrize("loop", ["own-amqp-loop", "generic-mover"])
def test_redrive_by_exchange_kill_9_duplicates_at_most_the_window(
    rabbit: RabbitSetup, capsys: pytest.CaptureFixture[str], loop: str
) -> None:
    env = {"QCTL_RABBITMQ_WIRE_MOVE": "0" if loop == "generic-mover" else "1"}
    names = rabbit.pipeline()
    target = rabbit.queue(f"{rabbit.prefix}.target")
    rabbit.dead_letter_by_expiry(10_000)
    assert rabbit.wait_count(names["dlq"], 10_000) == 10_000
    window = 1000
    proc = qctl_process(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"rabbitmq:queue/{target}",
        "--rate",
        "4000",
        "--window",
        str(window),
        "--yes",
        env=env,
    )
    kill_when(proc, lambda: rabbit.count(target) > 0, seed=3)
    job = only_job("redrive")
    resumed = run_qctl("dlq", "redrive", "--resume", job, timeout=180, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert depth(names["dlq"]) == 0
    bodies = rabbit.drain_bodies(target)
    counts = rabbit_ids(bodies)
    assert set(counts) == set(range(10_000))  # nothing lost
    duplicates = len(bodies) - 10_000
    with capsys.disabled():
        print(
            f"\nRabbitMQ redrive ({loop}) killed with -9 and resumed: {duplicates} "
            f"duplicate(s), window {window}"
        )
    assert duplicates <= window


def test_redrive_to_first_death_exchange_with_loop_guard(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline()
    rabbit.dead_letter_by_rejection(30)
    proc = run_qctl("dlq", "redrive", f"rabbitmq:queue/{names['dlq']}", "--yes", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counters"]["moved"] == 30
    assert depth(names["dlq"]) == 0
    bodies = rabbit.drain_bodies(names["work"])
    assert rabbit_ids(bodies) == dict.fromkeys(range(30), 1)
    props, _ = bodies[0]
    assert props.headers["qctl-redrive-count"] == "1"
    assert props.headers["x-death"][0]["queue"] == names["work"]  # provenance kept
    assert props.message_id == "0" and props.content_type == "application/json"


def test_unroutable_messages_stay_and_exit_4(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline()
    rabbit.dead_letter_by_rejection(20)
    proc = run_qctl(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}",
        "--to",
        f"rabbitmq:exchange/{names['exchange']}",
        "--routing-key",
        "nobody.listens",
        "--yes",
    )
    assert proc.returncode == 4, proc.stderr
    assert "unroutable" in proc.stderr and "NO_ROUTE" in proc.stderr
    assert depth(names["dlq"]) == 20
    peek = run_qctl("dlq", "peek", f"rabbitmq:queue/{names['dlq']}", "--max", "20", "-o", "jsonl")
    order = [
        json.loads(line)["source"]["properties"]["message_id"] for line in peek.stdout.splitlines()
    ]
    assert order == [str(i) for i in range(20)]  # back in their places


def test_parking_lot_and_strip_death_headers(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline()
    rabbit.dead_letter_by_rejection(10)
    first = run_qctl("dlq", "redrive", f"rabbitmq:queue/{names['dlq']}", "--yes")
    assert first.returncode == 0, first.stderr
    # The consumer fails them again.
    ch = rabbit.channel()
    for _ in range(10):
        method, _p, _b = ch.basic_get(names["work"])
        ch.basic_reject(method.delivery_tag, requeue=False)
    ch.connection.close()
    assert rabbit.wait_count(names["dlq"], 10) == 10
    second = run_qctl(
        "dlq", "redrive", f"rabbitmq:queue/{names['dlq']}", "--max-redrives", "1", "--yes"
    )
    assert second.returncode == 0, second.stderr
    assert "parked 10" in second.stderr
    assert depth(f"{names['dlq']}.parking") == 10
    third = run_qctl(
        "dlq",
        "redrive",
        f"rabbitmq:queue/{names['dlq']}.parking",
        "--to",
        f"rabbitmq:queue/{names['work']}",
        "--strip-death-headers",
        "--yes",
    )
    assert third.returncode == 0, third.stderr
    props, _ = rabbit.drain_bodies(names["work"])[0]
    assert "x-death" not in props.headers and "x-first-death-queue" not in props.headers
    assert props.headers["qctl-original-queue"] == names["work"]
    assert props.headers["qctl-redrive-count"] == "2"


def test_drain_and_purge_with_selection(rabbit: RabbitSetup, tmp_path: Path) -> None:
    names = rabbit.pipeline()
    rabbit.dead_letter_by_rejection(40)
    archive = tmp_path / "old.jsonl"
    proc = run_qctl(
        "dlq",
        "drain",
        f"rabbitmq:queue/{names['dlq']}",
        "--to-file",
        str(archive),
        "--where",
        "property.message_id < 10",
        "--yes",
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    drained = [json.loads(line) for line in archive.read_text().splitlines()]
    assert sorted(int(d["source"]["properties"]["message_id"]) for d in drained) == list(range(10))
    assert depth(names["dlq"]) == 30
    kept = tmp_path / "purged.jsonl"
    proc = run_qctl(
        "dlq",
        "purge",
        f"rabbitmq:queue/{names['dlq']}",
        "--where",
        "property.message_id >= 30",
        "--archive",
        str(kept),
        "--yes",
    )
    assert proc.returncode == 0, proc.stderr
    assert len(kept.read_text().splitlines()) == 10
    assert depth(names["dlq"]) == 20
    proc = run_qctl("dlq", "purge", f"rabbitmq:queue/{names['dlq']}", "--yes", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["purged"] == 20
    assert depth(names["dlq"]) == 0
    back = run_qctl(
        "dlq", "redrive", f"rabbitmq:queue/{names['dlq']}", "--from-file", str(archive), "--yes"
    )
    assert back.returncode == 0, back.stderr
    assert rabbit_ids(rabbit.drain_bodies(names["work"])) == dict.fromkeys(range(10), 1)


def test_peeking_a_quorum_dlq_warns_about_delivery_attempts(rabbit: RabbitSetup) -> None:
    names = rabbit.pipeline(quorum_dlq=True, delivery_limit=5)
    rabbit.dead_letter_by_rejection(3)
    assert rabbit.wait_count(names["dlq"], 3) == 3
    proc = run_qctl("dlq", "peek", f"rabbitmq:queue/{names['dlq']}", "-o", "jsonl")
    assert proc.returncode == 0, proc.stderr
    assert "delivery attempts" in proc.stderr or "x-delivery-count" in proc.stderr
    assert len(proc.stdout.splitlines()) == 3
