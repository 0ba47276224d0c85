"""`qctl cluster info` against the real brokers, checked with the brokers' own tools."""

from __future__ import annotations

import json
import re
import time

import pika
import pytest

from tests.cli.test_root import run_qctl
from tests.oracles import kafka_tool, rabbitmqctl


def info_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[dict], str]:
    proc = run_qctl("cluster", "info", "-o", "json", *args, env=env)
    return proc.returncode, json.loads(proc.stdout or "[]"), proc.stderr


def test_both_backends_reachable_with_versions(kafka: str, rabbitmq: str) -> None:
    code, infos, stderr = info_json()
    assert code == 0, stderr
    by_backend = {i["backend"]: i for i in infos}
    assert set(by_backend) == {"kafka", "rabbitmq"}
    assert all(i["reachable"] for i in infos)

    k = by_backend["kafka"]
    tool_version = kafka_tool("topics", "--version").strip().splitlines()[-1]
    assert tool_version.startswith(k["version"] + ".")  # "4.1" of "4.1.1"
    quorum = kafka_tool("metadata-quorum", "--bootstrap-server", kafka, "describe", "--status")
    leader = int(re.search(r"LeaderId:\s+(\d+)", quorum).group(1))
    cluster_id = re.search(r"ClusterId:\s+(\S+)", quorum).group(1)
    assert k["cluster_id"] == cluster_id
    controllers = [n for n in k["nodes"] if n["controller"]]
    assert [int(n["id"]) for n in controllers] == [leader]
    assert {"broker", "controller"} <= set(controllers[0]["roles"])
    assert controllers[0]["port"] == 9092

    r = by_backend["rabbitmq"]
    assert r["version"] == rabbitmqctl("version").strip().splitlines()[-1]
    assert r["features"]["plugins"]["rabbitmq_management"]
    assert r["features"]["plugins"]["rabbitmq_stream"]
    assert r["nodes"] and r["nodes"][0]["running"]
    assert r["counts"]["exchanges"] >= 7  # the amq.* defaults and the default exchange


def test_counts_follow_the_cluster(kafka: str, rabbitmq: str, unique: str) -> None:
    """Creating a topic and a queue shows up in the counts (checked with the tools)."""
    before = {i["backend"]: i for i in info_json()[1]}
    kafka_tool(
        "topics", "--bootstrap-server", kafka, "--create", "--topic", unique, "--partitions", "3"
    )
    with pika.BlockingConnection(pika.URLParameters(rabbitmq)) as conn:
        conn.channel().queue_declare(unique, durable=True)
    try:
        after = {i["backend"]: i for i in info_json()[1]}
        listed = kafka_tool("topics", "--bootstrap-server", kafka, "--list").split()
        assert unique in listed
        assert after["kafka"]["counts"]["topics"] >= 1
        assert after["kafka"]["counts"]["partitions"] >= before["kafka"]["counts"]["partitions"]
        queues = rabbitmqctl("list_queues", "name", "--quiet", "--no-table-headers").split()
        assert unique in queues
        assert after["rabbitmq"]["counts"]["queues"] >= 1
    finally:
        kafka_tool("topics", "--bootstrap-server", kafka, "--delete", "--topic", unique)
        rabbitmqctl("delete_queue", unique)


def test_unreachable_kafka_is_exit_3_quickly_with_one_line(rabbitmq: str) -> None:
    start = time.monotonic()
    proc = run_qctl(
        "cluster", "info", "--timeout", "3", env={"QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 3
    assert elapsed < 6
    errors = [line for line in proc.stderr.splitlines() if line.startswith("qctl: error:")]
    assert len(errors) == 1
    assert "127.0.0.1:1" in errors[0]
    assert "Traceback" not in proc.stderr
    # The reachable backend is still reported.
    assert "rabbitmq" in proc.stdout and "reachable" in proc.stdout


def test_blackholed_address_is_bounded_by_the_timeout() -> None:
    """A host that never answers (TEST-NET-1) still returns within the bound."""
    start = time.monotonic()
    proc = run_qctl(
        "cluster",
        "info",
        "-b",
        "kafka",
        "-b",
        "rabbitmq",
        "--timeout",
        "2",
        env={
            "QCTL_KAFKA_BOOTSTRAP": "192.0.2.1:9092",
            "QCTL_RABBITMQ_URL": "amqp://guest:guest@192.0.2.1:5672/",
            "QCTL_RABBITMQ_MANAGEMENT_URL": "http://192.0.2.1:15672",
        },
    )
    assert proc.returncode == 3
    assert time.monotonic() - start < 6
    assert "192.0.2.1" in proc.stderr


def test_wrong_rabbitmq_password_is_an_authentication_error(rabbitmq: str) -> None:
    proc = run_qctl(
        "cluster",
        "info",
        "-b",
        "rabbitmq",
        "--timeout",
        "5",
        env={"QCTL_RABBITMQ_URL": "amqp://guest:not-the-password@127.0.0.1:5672/"},
    )
    assert proc.returncode == 3
    assert "refused the credentials of user 'guest'" in proc.stderr
    assert "not-the-password" not in proc.stderr + proc.stdout
    assert proc.stderr.count("qctl: error:") == 1


def test_unknown_vhost_is_an_access_error(rabbitmq: str) -> None:
    proc = run_qctl(
        "cluster",
        "info",
        "-b",
        "rabbitmq",
        "--timeout",
        "5",
        env={"QCTL_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/no-such-vhost"},
    )
    assert proc.returncode == 3
    assert "no-such-vhost" in proc.stderr


@pytest.mark.parametrize("fmt", ["table", "yaml"])
def test_other_formats(kafka: str, rabbitmq: str, fmt: str) -> None:
    proc = run_qctl("cluster", "info", "-o", fmt)
    assert proc.returncode == 0, proc.stderr
    assert "kafka" in proc.stdout and "rabbitmq" in proc.stdout
