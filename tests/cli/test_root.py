"""The root command: lazy loading, version, exit codes, one-line errors, plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qctl import __version__

HEAVY = ("confluent_kafka", "pika", "textual", "httpx")


def run_qctl(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "qctl", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def imported_modules(*args: str) -> set[str]:
    """Run qctl in a fresh interpreter and report which heavy modules it imported."""
    code = textwrap.dedent(f"""
        import sys
        from qctl.cli import main
        try:
            main({list(args)!r})
        except SystemExit:
            pass
        print("MODULES=" + ",".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES=")][-1]
    return {m for m in line.removeprefix("MODULES=").split(",") if m}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["cluster", "--help"],
        ["cluster", "info", "--help"],
        ["context", "--help"],
        ["lag", "--help"],
        ["context", "list"],
        ["offsets", "--help"],
        ["offsets", "reset", "--help"],
        ["plugins", "--help"],
        ["plugins", "list"],
        ["produce", "--help"],
        ["produce", "--list-templates"],
        ["consume", "--help"],
        ["dlq", "--help"],
        ["dlq", "redrive", "--help"],
        ["dlq", "jobs"],
        ["replay", "--help"],
        ["topology", "--help"],
        ["topology", "apply", "--help"],
        ["topology", "validate", "examples/order-pipeline.yaml"],
        ["--version"],
    ],
)
def test_help_and_light_commands_import_no_heavy_library(args: list[str]) -> None:
    assert imported_modules(*args) == set()


def test_version() -> None:
    proc = run_qctl("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"qctl {__version__}"


def test_unknown_command_is_a_one_line_usage_error() -> None:
    proc = run_qctl("frobnicate")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("qctl: error: No such command 'frobnicate'")
    assert "--help" in lines[0]


def test_bad_option_value_is_exit_2() -> None:
    proc = run_qctl("-o", "xml", "context", "list")
    assert proc.returncode == 2
    assert "'xml' is not one of" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_errors_are_exit_2_without_traceback_unless_verbose(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("contexts:\n  a: {kafka: [1, 2]}\n")
    proc = run_qctl("--config", str(bad), "context", "show", "a")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("qctl: error: ")
    assert "Traceback" not in proc.stderr
    verbose = run_qctl("-v", "--config", str(bad), "context", "show", "a")
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr


def test_unknown_context_is_an_error_listing_known_ones() -> None:
    proc = run_qctl("--context", "nope", "context", "show")
    assert proc.returncode == 1
    assert "no context named 'nope'" in proc.stderr
    assert "local" in proc.stderr


def write_plugin_dist(root: Path) -> None:
    """A fake installed distribution with good and broken plugins, found via its metadata."""
    (root / "good_plugin.py").write_text(
        textwrap.dedent("""
        import click

        @click.command()
        def hello():
            "Say hello from a plugin."
            click.echo("hello from a plugin")

        NOT_A_COMMAND = 42
    """)
    )
    (root / "broken_plugin.py").write_text("raise ImportError('boom: missing dependency')\n")
    dist = root / "qctl_test_plugins-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: qctl-test-plugins\nVersion: 1.2.3\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""
        [qctl.commands]
        hello = good_plugin:hello
        broken = broken_plugin:cmd
        notacommand = good_plugin:NOT_A_COMMAND
        context = good_plugin:hello

        [qctl.backends]
        fakemq = broken_plugin:Backend
    """)
    )


def test_broken_plugins_are_reported_and_never_break_other_commands(tmp_path: Path) -> None:
    write_plugin_dist(tmp_path)
    env = {"PYTHONPATH": str(tmp_path)}
    listing = run_qctl("plugins", "list", "-o", "json", env=env)
    assert listing.returncode == 0, listing.stderr
    plugins = {(p["kind"], p["name"]): p for p in json.loads(listing.stdout)}
    assert plugins[("backend", "kafka")]["loaded"]
    assert plugins[("backend", "rabbitmq")]["loaded"]
    assert plugins[("backend", "kafka")]["version"] == __version__
    hello = plugins[("command", "hello")]
    assert hello["loaded"] and hello["version"] == "1.2.3"
    assert hello["distribution"] == "qctl-test-plugins"
    assert "boom: missing dependency" in plugins[("command", "broken")]["error"]
    assert "boom" in plugins[("backend", "fakemq")]["error"]
    assert "not a click command" in plugins[("command", "notacommand")]["error"]
    assert "shadowed by the built-in" in plugins[("command", "context")]["error"]

    ran = run_qctl("hello", env=env)
    assert ran.returncode == 0 and ran.stdout.strip() == "hello from a plugin"

    helped = run_qctl("--help", env=env)
    assert helped.returncode == 0
    assert "hello" in helped.stdout and "cluster" in helped.stdout
    assert helped.stderr.count("qctl: warning:") == 2  # broken + notacommand, once each

    broken = run_qctl("broken", env=env)
    assert broken.returncode == 2
    assert "boom" in broken.stderr

    contexts = run_qctl("context", "list", "-q", env=env)
    assert contexts.returncode == 0 and contexts.stdout.strip() == "local"


def test_plugins_list_table(tmp_path: Path) -> None:
    proc = run_qctl("plugins", "list")
    assert proc.returncode == 0
    header, *rows = proc.stdout.strip().splitlines()
    assert header.split()[:4] == ["NAME", "KIND", "VERSION", "DISTRIBUTION"]
    names = {row.split()[0] for row in rows}
    assert {"kafka", "rabbitmq"} <= names
