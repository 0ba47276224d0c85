"""librdkafka configuration and error translation for the Kafka backend.

The context's ``kafka`` section is ``bootstrap_servers`` plus any librdkafka property,
passed through untouched, so everything kcat users know (``security.protocol``,
``sasl.*``, ``ssl.*``) works the same here. librdkafka's own log lines go to the
``qctl.librdkafka`` logger (shown with ``-vv``) instead of littering stderr, and its
errors become qctl errors with exit codes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

from qctl import security
from qctl.errors import (
    AuthenticationError,
    ConfigError,
    OperationTimeout,
    QctlError,
    UnreachableError,
)

#: Context keys that are qctl's own, not librdkafka properties.
QCTL_KEYS = {"bootstrap_servers", "dlq_patterns", "insecure", "dlq_group"}

LIBRDKAFKA_LOG = logging.getLogger("qctl.librdkafka")

#: The settings behind each bootstrap address in use, so ``translate`` (called from
#: many places with only the address) can name the user and diagnose TLS failures.
_SETTINGS_BY_TARGET: dict[str, Mapping[str, Any]] = {}


def bootstrap_of(settings: Mapping[str, Any]) -> str:
    value = settings.get("bootstrap_servers") or settings.get("bootstrap.servers")
    if not value:
        raise ConfigError(
            "the kafka settings have no bootstrap_servers",
            "set one with `qctl context set NAME --kafka-bootstrap host:9092`",
        )
    return ",".join(value) if isinstance(value, list) else str(value)


def client_config(settings: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """librdkafka configuration from a context section, with every wait bounded."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap_of(settings)}
    for key, value in settings.items():
        if key in QCTL_KEYS or key == "bootstrap.servers":
            continue
        conf[key] = str(value).lower() if isinstance(value, bool) else value
    security.apply_kafka_verification(conf, settings)
    _SETTINGS_BY_TARGET[conf["bootstrap.servers"]] = settings
    timeout_ms = max(int(timeout * 1000), 1000)
    conf.setdefault("socket.timeout.ms", timeout_ms)
    conf.setdefault("socket.connection.setup.timeout.ms", timeout_ms)
    conf.setdefault("client.id", "qctl")
    # librdkafka drops its bootstrap connection once the first metadata names the real
    # brokers, and a request in flight on it is retried only after half this backoff
    # (its "sparse connect" interval): 50 ms on every short-lived client with the
    # default of 100. Later reconnects still back off exponentially, up to
    # reconnect.backoff.max.ms.
    conf.setdefault("reconnect.backoff.ms", 20)
    conf["logger"] = LIBRDKAFKA_LOG
    return conf


def ssl_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ssl.*`` properties as librdkafka will use them (``insecure`` applied)."""
    conf = {k: v for k, v in settings.items() if str(k).startswith("ssl.")}
    security.apply_kafka_verification(conf, settings)
    return conf


def _diagnose_tls(target: str) -> tuple[str, str] | None:
    """Why the TLS handshake with the first bootstrap server fails, in plain words (with
    the TLS context qctl's own client builds from the same properties)."""
    from qctl.backends.kafka.wire.config import WireUnsupportedSettings, tls_context

    settings = _SETTINGS_BY_TARGET.get(target)
    if settings is None:
        return None
    host, _, port = target.split(",", maxsplit=1)[0].strip().rpartition(":")
    try:
        ctx = tls_context(settings)
        return security.diagnose(host.strip("[]"), int(port), ctx, timeout=5.0)
    except (ValueError, OSError, QctlError, WireUnsupportedSettings):
        return None


def _uses_tls(target: str) -> bool:
    settings = _SETTINGS_BY_TARGET.get(target) or {}
    return "SSL" in str(settings.get("security.protocol", "")).upper()


def _user(target: str) -> str:
    settings = _SETTINGS_BY_TARGET.get(target) or {}
    user = settings.get("sasl.username")
    return f"user {user!r}" if user else "this client"


class ErrorWatch:
    """Collects librdkafka's asynchronous errors (``error_cb``) so calls can fail fast.

    A refused connection or a failed SASL handshake is reported only through
    ``error_cb``; the blocking call itself would just wait for its full timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors: list[Any] = []

    def __call__(self, err: Any) -> None:
        with self._lock:
            self.errors.append(err)
            del self.errors[:-20]

    def reset(self) -> None:
        """Forget earlier errors before a new wait, so a healed outage does not fail it."""
        with self._lock:
            self.errors.clear()

    def fatal(self) -> Any | None:
        """The most recent error that waiting longer will not cure."""
        from confluent_kafka import KafkaError

        fatal_codes = {
            KafkaError._AUTHENTICATION,
            KafkaError.SASL_AUTHENTICATION_FAILED,
            KafkaError._SSL,
            KafkaError._RESOLVE,
            KafkaError._ALL_BROKERS_DOWN,
        }
        with self._lock:
            # A failed SASL or TLS handshake is followed by "all brokers down": name the cause.
            for err in reversed(self.errors):
                if err.code() in (
                    KafkaError._AUTHENTICATION,
                    KafkaError.SASL_AUTHENTICATION_FAILED,
                    KafkaError._SSL,
                ):
                    return err
            for err in reversed(self.errors):
                if err.code() == KafkaError._ALL_BROKERS_DOWN:
                    # "1/1 brokers are down" says less than the connect error before it.
                    return self._last_with(KafkaError._TRANSPORT) or err
                if err.code() in fatal_codes or err.fatal():
                    return err
        return None

    def _last_with(self, code: int) -> Any | None:
        for err in reversed(self.errors):
            if err.code() == code:
                return err
        return None

    def last(self) -> Any | None:
        with self._lock:
            return self.errors[-1] if self.errors else None


def translate(err: Any, target: str, action: str = "connect to") -> QctlError:
    """A KafkaError (or KafkaException) as the qctl error with the right exit code."""
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(err, KafkaException):
        err = err.args[0] if err.args else None
    if not isinstance(err, KafkaError):
        return UnreachableError(f"cannot {action} kafka at {target}: {err}")
    code = err.code()
    text = _clean(err.str())
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        if "SSL" in text and "handshake" in text:
            code = KafkaError._SSL  # librdkafka files some TLS failures under auth
        else:
            return AuthenticationError(
                f"kafka at {target} rejected the SASL credentials of {_user(target)} "
                f"(authentication failed): {text}",
                "check sasl.username, sasl.password and sasl.mechanism",
            )
    authz = {
        KafkaError.TOPIC_AUTHORIZATION_FAILED: ("topic", "the topic"),
        KafkaError.GROUP_AUTHORIZATION_FAILED: ("group", "the consumer group"),
        KafkaError.CLUSTER_AUTHORIZATION_FAILED: ("cluster", "the cluster"),
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: (
            "transactional id",
            "the transactional id",
        ),
    }
    if code in authz:
        kind, what = authz[code]
        return AuthenticationError(
            f"kafka at {target}: {_user(target)} is not authorized for {what} "
            f"({kind} authorization failed): {text}",
            f"grant the user ACLs on the {kind} (kafka-acls --add ...) or use another user",
        )
    if code == KafkaError._SSL:
        cause = _diagnose_tls(target)
        if cause is not None:
            return AuthenticationError(
                f"TLS handshake with kafka at {target} failed: {cause[0]}", cause[1]
            )
        return AuthenticationError(
            f"TLS handshake with kafka at {target} failed: {text}",
            "check ssl.ca.location and the broker certificate",
        )
    if code == KafkaError._RESOLVE:
        return UnreachableError(
            f"cannot resolve kafka at {target}: {text}", "check the bootstrap host names"
        )
    if code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
        if _uses_tls(target):
            # A failed handshake often surfaces only as "transport failure": look closer.
            cause = _diagnose_tls(target)
            if cause is not None:
                return AuthenticationError(
                    f"TLS handshake with kafka at {target} failed: {cause[0]}", cause[1]
                )
        return UnreachableError(
            f"kafka at {target} is unreachable: {text}",
            "check bootstrap_servers (`qctl context show`) and that the cluster is running",
        )
    if code in (KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT):
        return OperationTimeout(
            f"kafka at {target} did not answer in time: {text}",
            "raise --timeout or check the cluster's health",
        )
    if code in (KafkaError._INVALID_ARG,):
        return ConfigError(f"invalid kafka setting: {text}", "fix the context's kafka section")
    return QctlError(f"kafka at {target}: {text}")


_BROKER_PREFIX = re.compile(r"^\S+/(?:bootstrap|\d+): ")
_STATE_SUFFIX = re.compile(
    r" \(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)"
)


def _clean(text: str) -> str:
    """librdkafka messages repeat the broker name and end with state noise; keep the gist."""
    return _STATE_SUFFIX.sub("", _BROKER_PREFIX.sub("", " ".join(text.split())))
