"""Contexts: selection, ${VAR} expansion, environment overrides, redaction, saving."""

from __future__ import annotations

import stat
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qctl.config import (
    LOCAL_DEFAULTS,
    ConfigFile,
    Context,
    SecretRegistry,
    expand_vars,
    is_secret_key,
    redact_settings,
    redact_url,
)
from qctl.errors import ConfigError, ExitCode, NotFoundError

CONFIG = """\
current_context: staging
contexts:
  staging:
    description: the staging cluster
    kafka:
      bootstrap_servers: kafka-1:9092,kafka-2:9092
      security.protocol: SASL_SSL
      sasl.mechanism: SCRAM-SHA-512
      sasl.username: ops
      sasl.password: ${KAFKA_PASSWORD}
    rabbitmq:
      url: amqps://ops:${RABBIT_PASSWORD}@rabbit:5671/orders
  prod:
    protected: true
    kafka:
      bootstrap_servers: prod:9092
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_no_file_means_the_local_dev_brokers(tmp_path: Path) -> None:
    config = ConfigFile.load(tmp_path / "missing.yaml")
    resolved = config.resolve(environ={})
    assert not config.exists
    assert resolved.name == "local"
    assert resolved.source == "built-in"
    assert resolved.backends == LOCAL_DEFAULTS
    assert config.names() == ["local"]


def test_selection_precedence(tmp_path: Path) -> None:
    config = ConfigFile.load(write(tmp_path, CONFIG))
    env = {"KAFKA_PASSWORD": "k", "RABBIT_PASSWORD": "r"}
    assert config.resolve(environ=env).name == "staging"
    assert config.resolve(environ={**env, "QCTL_CONTEXT": "prod"}).name == "prod"
    assert config.resolve("local", environ={**env, "QCTL_CONTEXT": "prod"}).name == "local"


def test_variables_are_expanded_only_when_resolving(tmp_path: Path) -> None:
    config = ConfigFile.load(write(tmp_path, CONFIG))
    resolved = config.resolve(environ={"KAFKA_PASSWORD": "s3cret-k", "RABBIT_PASSWORD": "pw"})
    assert resolved.backends["kafka"]["sasl.password"] == "s3cret-k"
    assert resolved.backends["rabbitmq"]["url"] == "amqps://ops:pw@rabbit:5671/orders"
    # The file's model still holds the reference, so saving never writes the secret.
    assert config.contexts["staging"].backends["kafka"]["sasl.password"] == "${KAFKA_PASSWORD}"


def test_missing_variable_is_a_config_error_naming_it(tmp_path: Path) -> None:
    config = ConfigFile.load(write(tmp_path, CONFIG))
    with pytest.raises(ConfigError) as caught:
        config.resolve(environ={"RABBIT_PASSWORD": "x"})
    assert "${KAFKA_PASSWORD}" in str(caught.value)
    assert "export KAFKA_PASSWORD" in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE


def test_escaped_variable_stays_literal() -> None:
    assert expand_vars("a$${B}c", "x", {}) == "a${B}c"
    assert expand_vars(["${A}", {"k": "${A}"}], "x", {"A": "1"}) == ["1", {"k": "1"}]


def test_environment_overrides_apply_to_the_selected_context(tmp_path: Path) -> None:
    config = ConfigFile.load(write(tmp_path, CONFIG))
    resolved = config.resolve(
        "prod",
        environ={
            "QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "QCTL_RABBITMQ_URL": "amqp://u:p@h:5672/",
            "QCTL_RABBITMQ_MANAGEMENT_URL": "http://h:15672",
        },
    )
    assert resolved.backends["kafka"]["bootstrap_servers"] == "127.0.0.1:1"
    assert resolved.backends["rabbitmq"] == {
        "url": "amqp://u:p@h:5672/",
        "management_url": "http://h:15672",
    }
    assert resolved.protected
    assert len(resolved.overrides) == 3


def test_unknown_context_lists_the_known_ones(tmp_path: Path) -> None:
    config = ConfigFile.load(write(tmp_path, CONFIG))
    with pytest.raises(NotFoundError) as caught:
        config.resolve("nope", environ={})
    assert "staging" in str(caught.value) and "prod" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("contexts: [a, b]\n", "contexts must be a mapping"),
        ("currentcontext: x\n", "unknown top-level key 'currentcontext'"),
        ("contexts:\n  a:\n    kafka: 3\n", "'kafka' must be a mapping"),
        ("contexts:\n  a:\n    protected: yes-please\n", "protected must be true or false"),
        ("contexts:\n  'bad name':\n    kafka: {}\n", "invalid context name"),
        ("contexts:\n  a: {kafka: {bootstrap_servers: x}\n", "config.yaml:3:1"),
    ],
)
def test_bad_files_give_one_clear_config_error(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ConfigFile.load(write(tmp_path, text))
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_save_round_trips_and_is_private(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    config = ConfigFile.load(path)
    config.contexts["dev"] = Context(name="dev", backends={"kafka": {"bootstrap_servers": "d:1"}})
    config.current_context = "dev"
    config.save()
    again = ConfigFile.load(path)
    assert again.current_context == "dev"
    assert again.contexts["staging"].backends == config.contexts["staging"].backends
    assert again.contexts["prod"].protected
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("sasl.password", True),
        ("ssl.key.password", True),
        ("sasl.oauthbearer.client.secret", True),
        ("sasl.jaas.config", True),
        ("management_password", True),
        ("ssl.key.pem", True),
        ("token", True),
        ("ssl.key.location", False),
        ("password_file", False),
        ("password_command", False),
        ("bootstrap_servers", False),
        ("sasl.username", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redaction_of_settings_and_urls() -> None:
    settings = {
        "bootstrap_servers": "k:9092",
        "sasl.password": "hunter2",
        "nested": {"token": "abc"},
        "url": "amqps://ops:hunter2@rabbit:5671/orders",
    }
    redacted = redact_settings(settings)
    assert redacted == {
        "bootstrap_servers": "k:9092",
        "sasl.password": "***",
        "nested": {"token": "***"},
        "url": "amqps://ops:***@rabbit:5671/orders",
    }
    assert redact_url("amqp://localhost/") == "amqp://localhost/"


def test_secret_registry_scrubs_collected_values() -> None:
    registry = SecretRegistry()
    registry.collect({"sasl.password": "hunter2", "url": "amqp://u:pa55word@h/"})
    text = "failed for amqp://u:pa55word@h/ with hunter2"
    assert registry.scrub(text) == "failed for amqp://u:***@h/ with ***"


@given(
    st.text(
        alphabet=string.ascii_letters + string.digits + "-_.~!$&'()*+,;=", min_size=1, max_size=30
    )
)
def test_redact_url_never_leaks_the_password(password: str) -> None:
    url = f"amqp://user:{password}@host:5672/vhost"
    assert redact_url(url) == "amqp://user:***@host:5672/vhost"
