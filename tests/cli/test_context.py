"""`qctl context` commands and protected contexts, through click's CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from qctl.cli import cli
from qctl.cli.app import App, pass_app
from qctl.cli.options import yes_option


def invoke(
    *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


def test_set_use_list_show_round_trip(isolated_config: Path) -> None:
    result = invoke(
        "context",
        "set",
        "staging",
        "--kafka-bootstrap",
        "k1:9092,k2:9092",
        "--kafka-property",
        "security.protocol=SASL_SSL",
        "--kafka-property",
        "sasl.password=${KAFKA_PASSWORD}",
        "--rabbitmq-url",
        "amqps://ops:${RABBIT_PW}@rabbit:5671/orders",
        "--description",
        "staging",
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(isolated_config.stat().st_mode) == 0o600
    stored = yaml.safe_load(isolated_config.read_text())
    assert stored["current_context"] == "staging"
    assert stored["contexts"]["staging"]["kafka"]["sasl.password"] == "${KAFKA_PASSWORD}"

    invoke("context", "set", "prod", "--kafka-bootstrap", "prod:9092", "--protected")
    listing = json.loads(invoke("context", "list", "-o", "json").output)
    by_name = {row["name"]: row for row in listing}
    assert set(by_name) == {"staging", "prod", "local"}
    assert by_name["staging"]["current"]
    assert by_name["prod"]["protected"]
    assert by_name["staging"]["rabbitmq"] == "amqps://ops:***@rabbit:5671/orders"

    assert invoke("context", "use", "prod").exit_code == 0
    names = invoke("context", "list", "-q").output.split()
    assert names == ["staging", "prod", "local"]
    shown = json.loads(invoke("-o", "json", "context", "show").output)
    assert shown["name"] == "prod" and shown["protected"]


def test_show_redacts_every_secret(isolated_config: Path) -> None:
    invoke(
        "context",
        "set",
        "s",
        "--kafka-bootstrap",
        "k:9092",
        "--kafka-property",
        "sasl.password=${KPW}",
        "--kafka-property",
        "ssl.key.password=${KEYPW}",
        "--rabbitmq-url",
        "amqp://ops:${RPW}@r:5672/",
        "--rabbitmq-property",
        "management_password=${MPW}",
    )
    env = {
        "KPW": "kafka-secret-1",
        "KEYPW": "key-secret-2",
        "RPW": "rabbit-secret-3",
        "MPW": "mgmt-secret-4",
    }
    for fmt in ("table", "json", "yaml"):
        out = invoke("context", "show", "s", "-o", fmt, env=env).output
        for secret in env.values():
            assert secret not in out
        assert "***" in out
    assert "amqp://ops:***@r:5672/" in invoke("context", "show", "s", env=env).output


def test_literal_secret_on_the_command_line_is_warned_about(isolated_config: Path) -> None:
    result = invoke("context", "set", "s", "--kafka-property", "sasl.password=hunter2")
    assert result.exit_code == 0
    assert "literal secret" in result.output  # CliRunner mixes stderr into output


def test_environment_overrides_show_up(isolated_config: Path) -> None:
    out = json.loads(
        invoke(
            "context", "show", "-o", "json", env={"QCTL_KAFKA_BOOTSTRAP": "10.0.0.1:9092"}
        ).output
    )
    assert out["backends"]["kafka"]["bootstrap_servers"] == "10.0.0.1:9092"
    assert out["overrides"] == ["kafka.bootstrap_servers from $QCTL_KAFKA_BOOTSTRAP"]


def test_use_unknown_context_fails_and_changes_nothing(isolated_config: Path) -> None:
    result = CliRunner().invoke(cli, ["context", "use", "ghost"])
    assert result.exit_code != 0
    assert not isolated_config.exists()


def test_delete_context(isolated_config: Path) -> None:
    invoke("context", "set", "a", "--kafka-bootstrap", "a:1")
    invoke("context", "set", "b", "--kafka-bootstrap", "b:1", "--use")
    assert invoke("context", "delete", "b").exit_code == 0
    stored = yaml.safe_load(isolated_config.read_text())
    assert list(stored["contexts"]) == ["a"]
    assert "current_context" not in stored


@click.command("mutate")
@yes_option
@pass_app
def mutate(app: App, yes: bool) -> None:
    """A stand-in for a mutating command (produce, apply, redrive...)."""
    app.confirm_mutation("change the cluster", yes)
    click.echo("changed")


@pytest.fixture
def with_mutate() -> None:
    cli.add_command(mutate)
    yield
    cli.commands.pop("mutate", None)


def test_protected_context_needs_confirmation(isolated_config: Path, with_mutate: None) -> None:
    invoke("context", "set", "prod", "--kafka-bootstrap", "p:9092", "--protected", "--use")
    # Not a terminal: refuse with a hint, change nothing.
    refused = CliRunner().invoke(cli, ["mutate"])
    assert refused.exception.exit_code == 2
    assert str(refused.exception) == (
        "context 'prod' is protected; refusing to change the cluster without confirmation"
        " — pass --yes, or run in a terminal and type the context name"
    )
    assert "changed" not in refused.output
    # --yes confirms.
    assert invoke("mutate", "--yes").output.strip().endswith("changed")
    # An unprotected context does not ask.
    assert invoke("-C", "local", "mutate").output.strip() == "changed"


def test_protected_context_prompt_on_a_terminal(
    isolated_config: Path, with_mutate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("context", "set", "prod", "--kafka-bootstrap", "p:9092", "--protected", "--use")
    monkeypatch.setattr("qctl.cli.app.stdin_is_tty", lambda: True)
    wrong = CliRunner().invoke(cli, ["mutate"], input="production\n")
    assert wrong.exception.exit_code == 1 and "changed\n" not in wrong.output
    assert "About to change the cluster" in wrong.output
    right = CliRunner().invoke(cli, ["mutate"], input="prod\n")
    assert right.exit_code == 0 and right.output.strip().endswith("changed")
