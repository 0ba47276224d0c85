"""The plugin as qctl sees it: found through its installed entry point, light to load,
and strict about its arguments (one-line errors, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import qctl_orders
from orders_helpers import qctl

HEAVY = ("confluent_kafka", "pika", "textual", "httpx")


def test_the_entry_point_comes_from_the_installed_distribution() -> None:
    (ep,) = [ep for ep in entry_points(group="qctl.commands") if ep.name == "orders"]
    assert ep.value == "qctl_orders.cli:orders"
    assert ep.dist is not None and ep.dist.metadata["Name"] == "qctl-orders"
    assert ep.dist.version == qctl_orders.__version__


def test_plugins_list_shows_it_loaded_from_its_metadata_not_a_path(tmp_path: Path) -> None:
    # A fresh interpreter in an unrelated directory, with no path hints: only the
    # installed distribution's metadata can make `qctl orders` exist.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "qctl", "plugins", "list", "-o", "json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (orders,) = [p for p in json.loads(proc.stdout) if p["name"] == "orders"]
    assert orders["kind"] == "command" and orders["loaded"] and orders["error"] is None
    assert orders["distribution"] == "qctl-orders"
    assert orders["version"] == qctl_orders.__version__
    helped = subprocess.run(
        [sys.executable, "-m", "qctl", "orders", "--help"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert helped.returncode == 0 and "qctl orders" in helped.stdout


@pytest.mark.parametrize(
    "args",
    [["--help"], ["orders", "--help"], ["orders", "run", "--help"], ["plugins", "list"]],
)
def test_help_imports_no_client_library(args: list[str]) -> None:
    code = textwrap.dedent(f"""
        import sys
        from qctl.cli import main
        try:
            main({args!r})
        except SystemExit:
            pass
        print("MODULES=" + ",".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES=")][-1]
    assert line == "MODULES=", proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--duration", "5s", "--orders", "3"], "give --duration or --orders, not both"),
        (["run", "--crash", "payment"], "--crash 'payment' is not SERVICE:AFTER_N"),
        (["run", "--crash", "shipping:3"], "SERVICE is one of payment, inventory"),
        (["run", "--slow", "analytics:fast"], "--slow 'analytics:fast' is not SERVICE:MS"),
        (["run", "--duration", "soon"], "--duration 'soon' is not a duration"),
        (["run", "--resume", "--orders", "5"], "--resume creates no orders"),
        (["run", "-b", "pulsar"], "runs on kafka or rabbitmq, not 'pulsar'"),
        (["run", "-n", "bad/name"], "namespace 'bad/name' is not usable"),
        (["run", "--poison", "2"], "2.0 is not in the range"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(args: list[str], message: str) -> None:
    proc = qctl("orders", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qctl: error:"), proc.stderr
    assert message in lines[0]


def test_verify_and_heal_without_a_recorded_run_say_how_to_start_one() -> None:
    for command in ("verify", "heal"):
        proc = qctl("orders", command, "-b", "rabbitmq", "-n", "nothing")
        assert proc.returncode == 1
        assert "no recorded run of rabbitmq/nothing" in proc.stderr
        assert "qctl orders run -b rabbitmq --namespace nothing" in proc.stderr


def test_topology_needs_a_namespace_and_an_existing_file(tmp_path: Path) -> None:
    assert qctl("orders", "topology", str(tmp_path / "none.yaml"), "-n", "x").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed\n")
    proc = qctl("orders", "topology", str(bad), "-n", "x")
    assert proc.returncode == 2 and "is not valid YAML" in proc.stderr
