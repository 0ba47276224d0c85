"""Secrets never leave qctl: every line of verbose runs is grepped for them.

RabbitMQ: a user of our own with a random password (created through the management
API, removed afterwards), given to qctl through ${VAR}, password_file and
password_command. Kafka: the dev broker has no authentication, so a SASL password is
pointed at an unreachable port and at the plaintext listener, where it must fail
without appearing in any message or -v/-vv log.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pika
import pytest
import yaml

from tests.cli.test_root import run_qctl
from tests.conftest import KAFKA_BOOTSTRAP, RABBITMQ_MANAGEMENT

pytestmark = [pytest.mark.integration]

MGMT_AUTH = ("guest", "guest")


@pytest.fixture
def rabbit_user(rabbitmq: str, unique: str) -> Iterator[tuple[str, str]]:
    """A RabbitMQ user with a fresh random password and full rights on vhost /."""
    user = f"{unique}-user"
    password = "Pw" + secrets.token_urlsafe(18) + "!:@/"
    with httpx.Client(base_url=RABBITMQ_MANAGEMENT, auth=MGMT_AUTH, timeout=10) as http:
        http.put(f"/api/users/{user}", json={"password": password, "tags": "monitoring"})
        http.put(
            f"/api/permissions/%2F/{user}", json={"configure": ".*", "write": ".*", "read": ".*"}
        ).raise_for_status()
        try:
            yield user, password
        finally:
            http.delete(f"/api/users/{user}")


def write_config(path: Path, contexts: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"current_context": next(iter(contexts)), "contexts": contexts}))
    os.chmod(path, 0o600)


def qctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_qctl(*args, env=env, timeout=90)


def assert_never_shown(secret: str, runs: list[subprocess.CompletedProcess[str]]) -> None:
    encoded = quote(secret, safe="")
    for run in runs:
        everything = run.stdout + run.stderr
        assert secret not in everything, run.args
        assert encoded not in everything, run.args
        verbose = any(str(a) in ("-v", "-vv") for a in run.args)
        assert verbose or "Traceback" not in everything, run.args


def test_rabbitmq_password_from_env_file_and_command_is_used_and_never_shown(
    rabbit_user: tuple[str, str], unique: str, isolated_config: Path, tmp_path: Path
) -> None:
    user, password = rabbit_user
    store = tmp_path / "store" / "rabbit.pw"
    store.parent.mkdir()
    store.write_text(password + "\n")
    os.chmod(store, 0o600)
    base = {"url": f"amqp://{user}@127.0.0.1:5672/", "management_url": RABBITMQ_MANAGEMENT}
    write_config(
        isolated_config,
        {
            "by-command": {"rabbitmq": base | {"password_command": f"cat {store}"}},
            "by-file": {"rabbitmq": base | {"password_file": str(store)}},
            "by-env": {"rabbitmq": base | {"password": "${QCTL_TEST_RABBIT_PW}"}},
            "by-env-url": {
                "rabbitmq": {
                    # In a URL the password must be percent-encoded; `password:` is not.
                    "url": f"amqp://{user}:${{QCTL_TEST_RABBIT_PW_URL}}@127.0.0.1:5672/",
                    "management_url": RABBITMQ_MANAGEMENT,
                }
            },
            "wrong": {"rabbitmq": base | {"password": "${QCTL_TEST_WRONG_PW}"}},
        },
    )
    queue = f"{unique}.q"
    with pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/")) as c:
        ch = c.channel()
        ch.queue_declare(queue, durable=True)
        ch.basic_publish("", queue, b'{"n": 1}')
    wrong = "Wr0ng" + secrets.token_hex(8)
    env = {
        "QCTL_TEST_RABBIT_PW": password,
        "QCTL_TEST_RABBIT_PW_URL": quote(password, safe=""),
        "QCTL_TEST_WRONG_PW": wrong,
    }
    runs: list[subprocess.CompletedProcess[str]] = []
    try:
        for name in ("by-command", "by-file", "by-env", "by-env-url"):
            info = qctl("-v", "-C", name, "cluster", "info", "-o", "json", env=env)
            runs.append(info)
            assert info.returncode == 0, info.stderr
            assert '"reachable": true' in info.stdout
            peek = qctl(
                "-vv", "-C", name, "consume", f"rabbitmq:queue/{queue}", "-n", "1", "-o", "jsonl",
                env=env,
            )  # fmt: skip
            runs.append(peek)
            assert peek.returncode == 0, peek.stderr
            assert json.loads(peek.stdout)["value"] == '{"n": 1}'
            missing = qctl(
                "-v", "-C", name, "consume", f"rabbitmq:queue/{unique}.missing", "-n", "1",
                "--timeout", "5", env=env,
            )  # fmt: skip
            runs.append(missing)
            assert missing.returncode != 0 and "qctl: error:" in missing.stderr
            shown = qctl("-v", "-C", name, "context", "show", "-o", "yaml", env=env)
            runs.append(shown)
            assert shown.returncode == 0, shown.stderr
        shown = qctl("context", "show", "by-command", env=env)
        assert f"cat {store}" in shown.stdout  # the source is shown as given
        denied = qctl("-v", "-C", "wrong", "cluster", "info", "--timeout", "5", env=env)
        assert denied.returncode == 3, denied.stderr
        assert wrong not in denied.stdout + denied.stderr
        runs.append(denied)
        # A later `context set` writes back what the user gave, never a resolved value.
        changed = qctl("context", "set", "by-env", "--description", "after a run", env=env)
        assert changed.returncode == 0, changed.stderr
        stored = isolated_config.read_text()
        assert password not in stored and quote(password, safe="") not in stored
        assert "password_command" in stored and "${QCTL_TEST_RABBIT_PW}" in stored
    finally:
        with pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/")) as c:
            c.channel().queue_delete(queue)
    assert_never_shown(password, runs)


@pytest.mark.parametrize(
    "bootstrap", ["127.0.0.1:1", KAFKA_BOOTSTRAP], ids=["unreachable", "plaintext-listener"]
)
def test_kafka_sasl_password_never_shown_in_errors_or_logs(
    kafka: str, isolated_config: Path, tmp_path: Path, bootstrap: str
) -> None:
    password = "Ks" + secrets.token_hex(12)
    store = tmp_path / "kafka.pw"
    store.write_text(password)
    os.chmod(store, 0o600)
    sasl = {
        "bootstrap_servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "alice",
    }
    write_config(
        isolated_config,
        {
            "literal": {"kafka": sasl | {"sasl.password": password}},
            "command": {"kafka": sasl | {"sasl.password_command": ["cat", str(store)]}},
            "file": {"kafka": sasl | {"sasl.password_file": str(store)}},
        },
    )
    runs = []
    cases = [
        ("literal", ("-v", "produce", "kafka:qctl-secret-never-created", "--timeout", "2")),
        ("literal", ("-v", "context", "list", "-o", "json")),
        ("command", ("-vv", "cluster", "info", "--timeout", "2")),
        ("command", ("-v", "context", "show")),
        ("file", ("-vv", "cluster", "info", "--timeout", "2")),
    ]
    for name, args in cases:
        run = subprocess.run(
            [sys.executable, "-m", "qctl", "-C", name, *args],
            input="a-value\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        runs.append(run)
        if args[1] in ("cluster", "produce"):
            assert run.returncode in (1, 3), run.stderr
            assert "qctl: error:" in run.stderr
        else:
            assert run.returncode == 0, run.stderr
    assert_never_shown(password, runs)


def test_consume_into_a_file_and_drain_archives_are_private(
    rabbitmq: str, unique: str, tmp_path: Path
) -> None:
    """`consume -o jsonl > f` tightens f to 0600 even with a permissive umask; a drain
    archive is created 0600 from the start."""
    queue = f"{unique}.dlq"
    with pika.BlockingConnection(pika.URLParameters(rabbitmq)) as c:
        ch = c.channel()
        ch.queue_declare(queue, durable=True)
        for i in range(3):
            ch.basic_publish("", queue, f'{{"id": {i}}}'.encode())
    out = tmp_path / "out.jsonl"
    archive = tmp_path / "drained.jsonl"
    python = sys.executable
    try:
        script = (
            f"umask 000; {python} -m qctl consume rabbitmq:queue/{queue} -n 3 -o jsonl > {out}"
            f" && {python} -m qctl dlq drain rabbitmq:queue/{queue} --to-file {archive} --yes"
        )
        proc = subprocess.run(
            ["sh", "-c", script], capture_output=True, text=True, timeout=90, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert len(out.read_text().splitlines()) == 3
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
        assert len(archive.read_text().splitlines()) == 3
    finally:
        with pika.BlockingConnection(pika.URLParameters(rabbitmq)) as c:
            c.channel().queue_delete(queue)
