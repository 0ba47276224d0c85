"""Secret sources through the CLI: shown as given, never run by `context show`, the
config-permission warning, and stdout tightened to 0600 when it is a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qctl.cli import cli
from qctl.messages import make_stdout_private
from tests.cli.runmain import run_main


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_show_and_help_never_run_a_password_command(isolated_config: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    command = f"touch {marker}; echo nope"
    code, _, err = invoke(
        "context", "set", "prod", "--kafka-bootstrap", "k:9092",
        "--kafka-property", f"sasl.password_command={command}",
        "--rabbitmq-url", "amqps://ops@rabbit:5671/",
        "--rabbitmq-property", "password_file=~/.secrets/rabbit",
    )  # fmt: skip
    assert code == 0, err
    assert "literal secret" not in err  # sources are not secrets
    stored = yaml.safe_load(isolated_config.read_text())["contexts"]["prod"]
    assert stored["kafka"]["sasl.password_command"] == command
    assert stored["rabbitmq"]["password_file"] == "~/.secrets/rabbit"
    for args in (("context", "show"), ("context", "list"), ("produce", "--help"), ("--help",)):
        code, out, err = invoke(*args)
        assert code == 0, err
    code, out, _ = invoke("context", "show", "-o", "yaml")
    shown = yaml.safe_load(out)["backends"]
    assert shown["kafka"]["sasl.password_command"] == command
    assert shown["rabbitmq"]["password_file"] == "~/.secrets/rabbit"
    assert not marker.exists()


def test_failing_password_command_is_one_line_exit_2(isolated_config: Path) -> None:
    isolated_config.parent.mkdir(parents=True)
    isolated_config.write_text(
        yaml.safe_dump(
            {
                "current_context": "p",
                "contexts": {
                    "p": {
                        "kafka": {
                            "bootstrap_servers": "127.0.0.1:1",
                            "sasl.password_command": "echo topsecret-out; exit 3",
                        }
                    }
                },
            }
        )
    )
    os.chmod(isolated_config, 0o600)
    run = run_main(["cluster", "info", "--timeout", "1"])
    code, out, err = run.code, run.stdout, run.stderr
    assert code == 2
    assert err.splitlines() == [
        "qctl: error: context 'p' kafka.sasl.password_command failed with exit code 3 — "
        "run the command yourself to see why"
    ]
    assert "topsecret" not in out + err


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o640, True), (0o604, True)])
def test_config_file_accessible_by_others_is_warned_about(
    isolated_config: Path, mode: int, warned: bool
) -> None:
    isolated_config.parent.mkdir(parents=True)
    isolated_config.write_text("contexts: {}\n")
    os.chmod(isolated_config, mode)
    code, _, err = invoke("context", "list", "-q")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("qctl: warning:")]
    if warned:
        assert warnings == [
            f"qctl: warning: config file {isolated_config} is accessible by other users; "
            f"run `chmod 600 {isolated_config}`"
        ]
    else:
        assert warnings == []


def test_no_warning_without_a_config_file(isolated_config: Path) -> None:
    assert not isolated_config.exists()
    code, _, err = invoke("context", "list", "-q")
    assert code == 0 and err == ""


def test_stdout_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.fchmod(fd, 0o664)
    with os.fdopen(fd, "w") as fh:
        assert make_stdout_private(fh)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert not make_stdout_private(fh)  # already private
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:
        assert not make_stdout_private(pipe)
    os.close(read)
