"""`qctl produce` arguments, dry runs and bad input (no broker needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_root import imported_modules, run_qctl


def one_line_error(proc: object, code: int, *fragments: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, proc.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("qctl: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_help_stays_light() -> None:
    assert imported_modules("produce", "--help") == set()
    assert imported_modules("produce", "--list-templates") == set()


def test_list_templates() -> None:
    proc = run_qctl("produce", "--list-templates", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    names = {t["name"] for t in json.loads(proc.stdout)}
    assert {
        "order-created",
        "payment-completed",
        "payment-failed",
        "inventory-reserved",
        "out-of-stock",
        "notification",
        "order-flow",
    } <= names


def test_template_dry_run_is_reproducible_with_a_seed() -> None:
    args = (
        "produce",
        "kafka:orders",
        "--template",
        "order-flow",
        "--count",
        "12",
        "--seed",
        "5",
        "--dry-run",
    )
    first, second = run_qctl(*args), run_qctl(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    lines = first.stdout.splitlines()
    assert len(lines) == 12
    for line in lines:
        message = json.loads(line)
        body = json.loads(message["value"])
        assert message["key"] == body["order_id"]
    assert "12 messages would be sent to kafka:orders" in first.stderr


def test_dry_run_applies_key_headers_and_properties() -> None:
    proc = run_qctl(
        "produce",
        "rabbitmq:exchange/orders",
        "hello",
        "--count",
        "2",
        "--key",
        "k",
        "--header",
        "a=1",
        "--header",
        "a=2",
        "--property",
        "delivery_mode=persistent",
        "--property",
        "timestamp=2026-01-01T00:00:00Z",
        "--dry-run",
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2
    assert lines[0]["key"] == "k"
    assert lines[0]["headers"] == [["a", "1"], ["a", "2"]]
    assert lines[0]["source"]["properties"] == {"delivery_mode": 2, "timestamp": 1767225600}


def test_raw_file_with_key_separator(tmp_path: Path) -> None:
    data = tmp_path / "lines.txt"
    data.write_bytes(b"k1:v1\nv2-no-key\nk3:v:3")
    proc = run_qctl("produce", "kafka:t", "--file", str(data), "-K", ":", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    got = [(m["key"], m["value"]) for m in map(json.loads, proc.stdout.splitlines())]
    assert got == [("k1", "v1"), (None, "v2-no-key"), ("k3", "v:3")]


def test_jsonl_is_the_default_for_jsonl_files(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"key": "a", "value": {"b64": "/w=="}, "headers": [["h", 1]]}\n')
    proc = run_qctl("produce", "kafka:t", "--file", str(data), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "key": "a",
        "value": {"b64": "/w=="},
        "headers": [["h", 1]],
        "timestamp": None,
    }


def test_malformed_jsonl_names_its_line(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"value": "1"}\n{"value": "2"}\n{"value": oops}\n')
    proc = run_qctl("produce", "kafka:t", "--file", str(data), "--dry-run")
    assert proc.returncode == 2
    summary, error = proc.stderr.strip().splitlines()
    assert summary == "dry run: 2 messages would be sent to kafka:t"
    assert error.startswith(f"qctl: error: {data} line 3: not valid JSON")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["kafka:t", "--template", "order-exploded"],
            ["unknown template 'order-exploded'", "order-created"],
        ),
        (["kafka:t", "x", "--routing-key", "rk"], ["--routing-key applies to RabbitMQ"]),
        (["kafka:t", "x", "--property", "priority=1"], ["--property sets RabbitMQ"]),
        (["rabbitmq:queue/q", "x", "--routing-key", "rk"], ["applies to exchange targets"]),
        (["rabbitmq:queue/q", "x", "--property", "colour=red"], ["unknown property 'colour'"]),
        (["rabbitmq:queue/q", "x", "--property", "priority=high"], ["priority 'high'"]),
        (["rabbitmq:queue/q", "x", "--property", "timestamp=tuesday"], ["not a date"]),
        (["kafka:t", "x", "--header", "novalue"], ["--header 'novalue' is not NAME=VALUE"]),
        (["kafka:t", "x", "--template", "order-created"], ["give only one of VALUE and"]),
        (["kafka:t", "x", "--seed", "1"], ["--seed applies to --template"]),
        (["kafka:bad topic!", "x"], ["not a valid Kafka topic name"]),
        (["mysql:table/x", "x"], ["has no mysql settings"]),
        ([], ["missing TARGET"]),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(args: list[str], fragments: list[str]) -> None:
    dry = [] if args and args[0].startswith("mysql") else ["--dry-run"]
    one_line_error(run_qctl("produce", *args, *dry), 2, *fragments)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_qctl("produce", "kafka:t", "--file", str(tmp_path / "nope.txt"), "--dry-run")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr or "cannot read" in proc.stderr
