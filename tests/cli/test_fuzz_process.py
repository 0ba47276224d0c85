"""The few fuzz cases where the process matters (real argv bytes, closed stdin, a real
exit status); each runs a fresh interpreter, so they are kept to a handful."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.fuzz_support import NOWHERE_ENV


def qctl_bytes(
    *args: bytes, stdin: int | None = subprocess.DEVNULL, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable.encode(), b"-m", b"qctl", *args],
        stdin=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **NOWHERE_ENV, **(env or {})},
    )


def one_error_line(proc: subprocess.CompletedProcess[bytes], code: int) -> str:
    err = proc.stderr.decode("utf-8")  # must be valid UTF-8 whatever the input was
    assert proc.returncode == code, err
    assert b"Traceback" not in proc.stdout + proc.stderr
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qctl: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        [b"consume", b"kafka:\xff"],
        [b"produce", b"kafka:t", b"\xff\xfe"],
        [b"context", b"show", b"\xc3"],
        [b"dlq", b"drain", b"kafka:x.dlq", b"--to-file", b"\xff.jsonl", b"--yes"],
    ],
)
def test_argv_bytes_that_are_not_utf8(args: list[bytes]) -> None:
    line = one_error_line(qctl_bytes(*args), 2)
    assert "is not valid UTF-8" in line


def test_malformed_config_in_a_real_process(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"contexts:\n  a: {kafka: [\xff\n")
    config.chmod(0o600)
    line = one_error_line(qctl_bytes(b"context", b"show", env={"QCTL_CONFIG": str(config)}), 2)
    assert str(config) in line


def test_closed_stdin_and_a_malformed_reference() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "qctl", "produce", "rabbitmq:queue/", "--format", "jsonl"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **NOWHERE_ENV},
        close_fds=True,
    )
    one_error_line(proc, 2)
