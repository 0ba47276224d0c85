"""`qctl replay` arguments and errors (no broker needed)."""

from __future__ import annotations

import pytest

from tests.cli.test_dlq_cli import NOWHERE, one_line_error
from tests.cli.test_root import run_qctl


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["replay", "kafka:a"], 2, "--to"),
        (["replay", "kafka:a", "--to", "kafka:b", "--from", "yesterday-ish"], 2, "not a position"),
        (
            ["replay", "kafka:a", "--to", "rabbitmq:queue/b", "--keep-partition"],
            2,
            "--keep-partition",
        ),
        (
            ["replay", "kafka:a", "--to", "rabbitmq:queue/b", "--routing-key", "k"],
            2,
            "--routing-key",
        ),
        (["replay", "rabbitmq:queue/s", "--to", "rabbitmq:queue/s"], 2, "into itself"),
        (["replay", "rabbitmq:exchange/s", "--to", "kafka:x"], 2, "stream queue"),
        (["replay", "kafka:a", "--to", "kafka:b", "--where", "key =="], 2, "--where"),
        (["replay", "--resume", "replay-19990101-000000-0000"], 1, "no job"),
        (["replay", "kafka:a", "--to", "kafka:b", "--timeout", "2"], 3, "unreachable"),
    ],
)
def test_errors(args: list[str], code: int, fragment: str) -> None:
    one_line_error(run_qctl(*args, env=NOWHERE), code, fragment)


def test_list_jobs_empty() -> None:
    proc = run_qctl("replay", "--list-jobs", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
