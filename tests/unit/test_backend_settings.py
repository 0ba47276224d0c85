"""Backend settings parsing and error translation, without a network."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from qctl.backends.base import BackendConfig, SupportsClusterInfo, require
from qctl.backends.kafka.client import client_config, translate
from qctl.backends.rabbitmq.settings import parse_settings
from qctl.errors import (
    AuthenticationError,
    ConfigError,
    ExitCode,
    OperationTimeout,
    UnreachableError,
    UnsupportedCapability,
)


def test_librdkafka_properties_pass_through_and_waits_are_bounded() -> None:
    conf = client_config(
        {
            "bootstrap_servers": "a:1,b:2",
            "security.protocol": "SASL_SSL",
            "sasl.password": "x",
            "enable.idempotence": True,
            "dlq_patterns": ["*.dlq"],
        },
        timeout=3,
    )
    assert conf["bootstrap.servers"] == "a:1,b:2"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["enable.idempotence"] == "true"
    assert conf["socket.timeout.ms"] == 3000
    assert conf["socket.connection.setup.timeout.ms"] == 3000
    assert "dlq_patterns" not in conf and "bootstrap_servers" not in conf


def test_missing_bootstrap_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no bootstrap_servers"):
        client_config({"security.protocol": "SSL"}, timeout=1)


@pytest.mark.parametrize(
    ("code", "kind", "code_out"),
    [
        (KafkaError._TRANSPORT, UnreachableError, ExitCode.UNREACHABLE),
        (KafkaError._ALL_BROKERS_DOWN, UnreachableError, ExitCode.UNREACHABLE),
        (KafkaError.SASL_AUTHENTICATION_FAILED, AuthenticationError, ExitCode.UNREACHABLE),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, AuthenticationError, ExitCode.UNREACHABLE),
        (KafkaError._TIMED_OUT, OperationTimeout, ExitCode.UNREACHABLE),
    ],
)
def test_kafka_errors_translate_to_exit_codes(code: int, kind: type, code_out: int) -> None:
    err = translate(
        KafkaError(
            code,
            "localhost:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 "
            "failed: Connection refused (after 0ms in state CONNECT)",
        ),
        "localhost:9092",
    )
    assert isinstance(err, kind)
    assert err.exit_code == code_out
    assert "localhost:9092" in str(err)
    assert "(after 0ms" not in str(err)


def test_rabbitmq_url_parsing() -> None:
    s = parse_settings(
        {"url": "amqps://ops:p%40ss@rabbit.example:5671/orders%2Fv1", "ca_file": "/etc/ca.pem"}
    )
    assert (s.host, s.port, s.tls) == ("rabbit.example", 5671, True)
    assert (s.username, s.password, s.vhost) == ("ops", "p@ss", "orders/v1")
    assert s.management_url == "https://rabbit.example:15671"
    assert s.management_username == "ops" and s.management_password == "p@ss"
    assert s.verify
    assert s.safe_url == "amqps://ops:***@rabbit.example:5671/orders%2Fv1"


def test_rabbitmq_defaults_and_root_vhost() -> None:
    s = parse_settings({})
    assert (s.host, s.port, s.vhost, s.tls) == ("localhost", 5672, "/", False)
    assert s.management_url == "http://localhost:15672"
    assert parse_settings({"url": "amqp://h/"}).vhost == "/"
    assert parse_settings({"url": "amqp://h/%2F"}).vhost == "/"


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"url": "http://x"}, "must start with amqp://"),
        ({"url": "amqp://h:notaport/"}, "invalid rabbitmq url"),
        ({"uri": "amqp://h/"}, "unknown rabbitmq setting 'uri'"),
    ],
)
def test_rabbitmq_bad_settings(settings: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_settings(settings)


def test_require_names_backend_and_capability() -> None:
    class Minimal:
        name = "minimal"

        @classmethod
        def from_config(cls, config: BackendConfig) -> Minimal:
            return cls()

        def target(self) -> str:
            return "nowhere"

        def close(self) -> None:
            pass

    with pytest.raises(UnsupportedCapability) as caught:
        require(Minimal(), SupportsClusterInfo, "cluster info")  # type: ignore[arg-type]
    assert str(caught.value).startswith("backend 'minimal' does not support cluster info")
    assert caught.value.exit_code == ExitCode.USAGE
