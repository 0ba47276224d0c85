"""TLS policy (verified unless insecure: true) and naming the cause of a TLS failure."""

from __future__ import annotations

import ssl

import pytest

from qctl import security
from qctl.backends.kafka.client import client_config, ssl_settings
from qctl.backends.rabbitmq.settings import parse_settings
from qctl.errors import ConfigError

KAFKA = {"bootstrap_servers": "h:9094", "security.protocol": "SASL_SSL"}


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (verify_error(10, "certificate has expired"), "has expired"),
        (verify_error(20, "unable to get local issuer certificate"), "unknown CA"),
        (verify_error(19, "self-signed certificate in certificate chain"), "unknown CA"),
        (verify_error(62, "hostname mismatch"), "(hostname mismatch)"),
        (verify_error(64, "IP address mismatch"), "(hostname mismatch)"),
        (ssl.SSLError(1, "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired"),
         "client certificate: it has expired"),
        (ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca"),
         "client certificate: signed by a CA"),
    ],
)  # fmt: skip
def test_each_tls_failure_gets_its_own_cause(exc: BaseException, cause: str) -> None:
    found = security.explain(exc, "broker.example")
    assert found is not None
    assert cause in found[0]


def test_an_unrelated_error_is_not_explained() -> None:
    assert security.explain(ConnectionRefusedError(111, "refused"), "h") is None


def test_kafka_verification_stays_on_by_default() -> None:
    conf = client_config({**KAFKA, "ssl.ca.location": "/ca.pem"}, 5)
    assert "enable.ssl.certificate.verification" not in conf
    assert ssl_settings(KAFKA) == {}


@pytest.mark.parametrize(
    "off",
    [
        {"enable.ssl.certificate.verification": False},
        {"enable.ssl.certificate.verification": "false"},
        # librdkafka also reads f and 0 as false, and enum values in any case.
        {"enable.ssl.certificate.verification": "0"},
        {"enable.ssl.certificate.verification": "F"},
        {"ssl.endpoint.identification.algorithm": "none"},
        {"ssl.endpoint.identification.algorithm": "NONE"},
    ],
)
def test_kafka_verification_off_needs_insecure(off: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="insecure: true"):
        client_config({**KAFKA, **off}, 5)
    conf = client_config({**KAFKA, **off, "insecure": True}, 5)
    assert conf["enable.ssl.certificate.verification"] == "false"
    assert conf["ssl.endpoint.identification.algorithm"] == "none"
    assert "insecure" not in conf


@pytest.mark.parametrize("value", [True, "true", "yes"])
def test_kafka_insecure_turns_both_checks_off(value: object) -> None:
    ctx_settings = ssl_settings({**KAFKA, "insecure": value})
    assert ctx_settings["enable.ssl.certificate.verification"] == "false"


def test_insecure_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="must be true or false"):
        client_config({**KAFKA, "insecure": "sometimes"}, 5)


def test_rabbitmq_verify_false_needs_insecure() -> None:
    url = {"url": "amqps://u:p@h:5671/"}
    assert parse_settings(url).verify is True
    with pytest.raises(ConfigError, match="insecure: true"):
        parse_settings({**url, "verify": False})
    assert parse_settings({**url, "verify": "false", "insecure": "true"}).verify is False
    assert parse_settings({**url, "insecure": True}).verify is False
    ctx = parse_settings({**url, "insecure": True}).ssl_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_rabbitmq_client_certificate_without_password_is_external() -> None:
    cert = {"cert_file": "/c.pem", "key_file": "/c.key"}
    assert parse_settings({"url": "amqps://qctl-cert@h:5671/", **cert}).external
    assert not parse_settings({"url": "amqps://u:p@h:5671/", **cert}).external
    assert not parse_settings({"url": "amqps://h:5671/"}).external
    # Plain AMQP keeps the guest default.
    assert parse_settings({"url": "amqp://h:5672/", **cert}).password == "guest"


def test_rabbitmq_channel_access_refused_is_an_authorisation_error() -> None:
    import pika.exceptions as pe

    from qctl.backends.rabbitmq.core import channel_refusal
    from qctl.errors import AuthenticationError, ExitCode

    text = "ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for user 'u'"
    err = channel_refusal(pe.ChannelClosedByBroker(403, text), "declare queue 'q'", "h:5671")
    assert isinstance(err, AuthenticationError) and err.exit_code == ExitCode.UNREACHABLE
    assert "refused to declare queue 'q': ACCESS_REFUSED (missing permission)" in str(err)
    other = channel_refusal(pe.ChannelClosedByBroker(406, "PRECONDITION_FAILED"), "x", "h")
    assert not isinstance(other, AuthenticationError)
