"""Secret sources (``*_file``, ``*_command``, RabbitMQ ``password``) resolved lazily."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from qctl import secrets
from qctl.config import SECRETS, ConfigFile
from qctl.errors import ConfigError, ExitCode
from qctl.secrets import read_secret_file, resolve_sources, run_secret_command, source_of


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("sasl.password_file", ("sasl.password", "_file")),
        ("sasl.password_command", ("sasl.password", "_command")),
        ("management_password_command", ("management_password", "_command")),
        ("key_password_file", ("key_password", "_file")),
        ("password_file", ("password", "_file")),
        ("sasl.oauthbearer.client.secret_command", ("sasl.oauthbearer.client.secret", "_command")),
        ("ca_file", None),
        ("cert_file", None),
        ("key_file", None),
        ("ssl.key.location", None),
        ("bootstrap_servers", None),
    ],
)
def test_which_keys_are_secret_sources(key: str, expected: tuple[str, str] | None) -> None:
    assert source_of(key) == expected


def test_file_source_reads_the_first_line_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret-from-file\nignored\n")
    os.chmod(tmp_path / "pw", 0o600)
    warnings: list[str] = []
    out = resolve_sources(
        {"bootstrap_servers": "b:9092", "sasl.password_file": "pw"},
        "context 'x' kafka",
        base_dir=tmp_path,
        warn=warnings.append,
    )
    assert out == {"bootstrap_servers": "b:9092", "sasl.password": "s3cret-from-file"}
    assert warnings == []
    assert "s3cret-from-file" not in SECRETS.scrub("s3cret-from-file")


def test_file_source_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("another-secret\n")
    os.chmod(path, 0o644)
    warnings: list[str] = []
    assert read_secret_file(str(path), "k", None, warnings.append) == "another-secret"
    assert len(warnings) == 1 and f"chmod 600 {path}" in warnings[0]


@pytest.mark.parametrize(
    ("content", "fragment"), [(None, "cannot read"), ("", "is empty"), ("\n\n", "is empty")]
)
def test_bad_secret_files_name_the_context_and_key(
    tmp_path: Path, content: str | None, fragment: str
) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        resolve_sources({"sasl.password_file": str(path)}, "context 'prod' kafka")
    assert err.value.exit_code == ExitCode.USAGE
    assert "context 'prod' kafka.sasl.password_file" in str(err.value)
    assert fragment in str(err.value)


def test_command_source_takes_the_first_stripped_line() -> None:
    assert run_secret_command("printf '  cmd-secret  \\nsecond\\n'", "k") == "cmd-secret"
    assert run_secret_command(["printf", "%s", "argv-secret"], "k") == "argv-secret"


def test_failing_command_never_shows_its_output() -> None:
    with pytest.raises(ConfigError) as err:
        run_secret_command("echo leaked-out; echo leaked-err >&2; exit 7", "context 'p' kafka.x")
    text = str(err.value)
    assert "exit code 7" in text and "context 'p' kafka.x" in text
    assert "leaked" not in text


@pytest.mark.parametrize("spec", ["", "   ", [], [1, 2], {"a": 1}, 5])
def test_malformed_commands_are_config_errors(spec: object) -> None:
    with pytest.raises(ConfigError, match="must be a command line"):
        run_secret_command(spec, "k")


def test_command_that_prints_nothing_or_is_missing() -> None:
    with pytest.raises(ConfigError, match="printed nothing"):
        run_secret_command("true", "k")
    with pytest.raises(ConfigError, match="exit code 127"):
        run_secret_command("/nonexistent/qctl-helper", "k")
    with pytest.raises(ConfigError, match="could not start"):
        run_secret_command(["/nonexistent/qctl-helper"], "k")


def test_hanging_command_is_killed_with_its_children() -> None:
    """A command that forks (keeping stdout open) still cannot make qctl wait."""
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"did not finish within 0\.5s"):
        run_secret_command("sleep 30 & sleep 30; echo late", "k", timeout=0.5)
    assert time.monotonic() - started < 5


def test_rabbitmq_password_goes_into_the_url_percent_encoded() -> None:
    pw = "p@ss:w/rd%?#"
    out = resolve_sources(
        {"url": "amqps://ops@rabbit:5671/orders", "password_command": ["printf", "%s", pw]},
        "context 'x' rabbitmq",
        url_password=True,
    )
    parts = urlsplit(out["url"])
    assert unquote(parts.password or "") == pw
    assert parts.username == "ops" and parts.hostname == "rabbit" and parts.path == "/orders"
    assert set(out) == {"url"}
    assert SECRETS.scrub(out["url"]) == "amqps://ops:***@rabbit:5671/orders"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (None, "needs a url with a user name"),
        ("amqp://rabbit:5672/", "no user name"),
        ("amqp://ops:already@rabbit/", "already holds a password"),
    ],
)
def test_url_password_needs_a_user_and_no_password(url: str | None, fragment: str) -> None:
    settings = {"password": "pw-value"} | ({"url": url} if url else {})
    with pytest.raises(ConfigError, match=fragment):
        resolve_sources(settings, "context 'x' rabbitmq", url_password=True)


def test_other_backends_keep_a_plain_password_key() -> None:
    out = resolve_sources({"password_command": "printf xyz-1"}, "context 'x' plugin")
    assert out == {"password": "xyz-1"}


def test_a_secret_and_its_source_together_are_an_error() -> None:
    with pytest.raises(ConfigError, match=r"both sasl\.password and sasl\.password_command"):
        resolve_sources(
            {"sasl.password": "a", "sasl.password_command": "printf b"}, "context 'x' kafka"
        )


def test_resolution_is_lazy_and_never_written_back(tmp_path: Path) -> None:
    """Showing a context runs nothing; using it runs the command once; saving keeps the
    source, not the secret."""
    marker = tmp_path / "ran"
    secret = "lazy-secret-4711"
    (tmp_path / "store").write_text(secret)
    command = f"touch {marker}; cat {tmp_path / 'store'}"
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "current_context": "c",
                "contexts": {
                    "c": {
                        "kafka": {"bootstrap_servers": "b:1", "sasl.password_command": command},
                        "rabbitmq": {"url": "amqp://u@h/", "password": "${QCTL_T_PW}"},
                    }
                },
            }
        )
    )
    config = ConfigFile.load(path)
    resolved = config.resolve(environ={"QCTL_T_PW": "env-secret-99"})
    shown = resolved.redacted()
    assert not marker.exists()
    assert shown["backends"]["kafka"]["sasl.password_command"] == command
    assert shown["backends"]["rabbitmq"]["password"] == "***"
    kafka = resolved.settings_for("kafka")
    assert marker.exists()
    assert kafka == {"bootstrap_servers": "b:1", "sasl.password": secret}
    marker.unlink()
    assert resolved.settings_for("kafka") is kafka  # resolved once per run
    assert not marker.exists()
    rabbit = resolved.settings_for("rabbitmq")
    assert rabbit == {"url": "amqp://u:env-secret-99@h/"}
    assert resolved.settings_for("nope") is None
    config.save()
    text = path.read_text()
    assert secret not in text and "env-secret-99" not in text
    assert "sasl.password_command" in text and "${QCTL_T_PW}" in text


def test_default_command_timeout_is_bounded() -> None:
    assert 0 < secrets.COMMAND_TIMEOUT <= 10
