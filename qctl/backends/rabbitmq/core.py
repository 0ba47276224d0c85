"""The RabbitMQ backend's core: settings, AMQP connections, the management API client.

Each capability is a mixin in its own module built on ``RabbitCore``; ``backend.py``
composes them. pika and httpx are imported inside methods so that loading the class
stays cheap. Every connection attempt and HTTP request is bounded by the timeout.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self

from qctl.backends.base import BackendConfig
from qctl.backends.rabbitmq.management import ManagementAPI
from qctl.backends.rabbitmq.settings import RabbitSettings, parse_settings
from qctl.config import SECRETS
from qctl.errors import AuthenticationError, QctlError, UnreachableError

if TYPE_CHECKING:
    import pika

log = logging.getLogger(__name__)


def close_within(close: Callable[[], None], timeout: float, what: str) -> None:
    """Run ``close`` (a pika close handshake, which waits for the broker's answer as long
    as it takes) for at most ``timeout`` seconds. A broker that stopped answering must
    not hold qctl at its end: the socket then goes with the process, and the broker
    requeues whatever the connection held unacknowledged."""

    def run() -> None:
        try:
            close()
        except Exception:  # a dead connection cannot be closed cleanly; drop it
            log.debug("closing %s failed", what, exc_info=True)

    closer = threading.Thread(target=run, name=f"qctl-close-{what}", daemon=True)
    closer.start()
    closer.join(timeout)
    if closer.is_alive():
        log.debug("closing %s took longer than %gs; left to the process's end", what, timeout)


class RabbitCore:
    """State and helpers every RabbitMQ capability mixin shares."""

    name: ClassVar[str] = "rabbitmq"
    description: ClassVar[str] = "RabbitMQ through pika (AMQP 0-9-1) and the management API"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.timeout = config.timeout
        self.settings: RabbitSettings = parse_settings(config.settings)
        SECRETS.add(self.settings.password)
        SECRETS.add(self.settings.management_password)
        self._mgmt: ManagementAPI | None = None
        self._connection: pika.BlockingConnection | None = None
        #: Cleanups registered by mixins for what they open (extra connections, ...).
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def from_config(cls, config: BackendConfig) -> Self:
        return cls(config)

    def target(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:  # one failing cleanup must not skip the others
                log.debug("a rabbitmq cleanup failed", exc_info=True)
        if self._mgmt is not None:
            self._mgmt.close()
            self._mgmt = None
        if self._connection is not None:
            conn = self._connection
            if conn.is_open:
                close_within(conn.close, self.timeout, "the AMQP connection")
            self._connection = None

    # -- clients ---------------------------------------------------------------------------
    def management(self) -> ManagementAPI:
        if self._mgmt is None:
            s = self.settings
            # Plain http needs no TLS context; building httpx's default one costs ~0.2 s.
            verify: Any = s.ssl_context() if s.management_url.startswith("https") else False
            self._mgmt = ManagementAPI(
                s.management_url, s.management_username, s.management_password, self.timeout, verify
            )
        return self._mgmt

    def connection_parameters(self) -> pika.ConnectionParameters:
        import pika

        s = self.settings
        ssl_options = None
        if s.tls:
            ssl_options = pika.SSLOptions(s.ssl_context(), server_hostname=s.host)
        credentials: Any
        if s.external:
            credentials = pika.credentials.ExternalCredentials()
        else:
            credentials = pika.PlainCredentials(s.username, s.password)
        return pika.ConnectionParameters(
            host=s.host,
            port=s.port,
            virtual_host=s.vhost,
            credentials=credentials,
            ssl_options=ssl_options,
            connection_attempts=1,
            retry_delay=0,
            socket_timeout=self.timeout,
            stack_timeout=self.timeout,
            blocked_connection_timeout=self.timeout,
            heartbeat=60,
            client_properties={"connection_name": f"qctl ({self.config.context})"},
        )

    def connect(self) -> pika.BlockingConnection:
        """A new AMQP connection; failures become exit-code-3 errors naming the address."""
        import pika
        import pika.exceptions as pe
        from pika.adapters.utils.connection_workflow import AMQPConnectorException

        try:
            return pika.BlockingConnection(self.connection_parameters())
        except (pe.ProbableAuthenticationError, pe.AuthenticationError) as exc:
            if self.settings.external:
                raise AuthenticationError(
                    f"RabbitMQ at {self.target()} refused the client certificate login "
                    "(EXTERNAL, ACCESS_REFUSED)",
                    "check that a user named like the certificate's CN exists and that the "
                    "rabbitmq_auth_mechanism_ssl plugin is enabled",
                ) from exc
            raise AuthenticationError(
                f"RabbitMQ at {self.target()} refused the credentials of user "
                f"{self.settings.username!r} (wrong user name or password, ACCESS_REFUSED)",
                "check the user name and password in the rabbitmq url",
            ) from exc
        except pe.ProbableAccessDeniedError as exc:
            raise AuthenticationError(
                f"RabbitMQ at {self.target()} denied user {self.settings.username!r} access "
                f"to vhost {self.settings.vhost!r}",
                "check that the vhost exists and the user has permissions on it",
            ) from exc
        except pe.ConnectionClosedByBroker as exc:
            raise AuthenticationError(
                f"RabbitMQ at {self.target()} closed the connection: {exc.reply_code} "
                f"{exc.reply_text}",
                "check the vhost and the user's permissions",
            ) from exc
        except AMQPConnectorException as exc:
            # Raised as it is when the handshake times out (a broker that accepts the
            # connection but does not answer).
            raise UnreachableError(
                f"RabbitMQ at {self.target()} did not answer: {exc}",
                "check that the node is running and not overloaded",
            ) from exc
        except (pe.AMQPConnectionError, ssl.SSLError) as exc:
            # pika raises a failed certificate check as it is, other failures wrapped.
            cause = None
            if self.settings.tls:
                cause = _tls_cause(exc, self.settings.host) or self._diagnose_tls()
            if cause is not None:
                raise AuthenticationError(
                    f"TLS handshake with RabbitMQ at {self.target()} failed: {cause[0]}",
                    cause[1],
                ) from exc
            if not isinstance(exc, pe.AMQPConnectionError):
                raise AuthenticationError(
                    f"TLS handshake with RabbitMQ at {self.target()} failed: {exc}",
                    "check ca_file, cert_file and key_file",
                ) from exc
            raise UnreachableError(
                f"RabbitMQ at {self.target()} is unreachable: {_root_cause(exc)}",
                "check the rabbitmq url (`qctl context show`) and that the node is running",
            ) from exc

    def _diagnose_tls(self) -> tuple[str, str] | None:
        """Why the TLS connection failed, from a fresh handshake (pika often only sees EOF)."""
        from qctl.security import diagnose

        s = self.settings
        try:
            return diagnose(s.host, s.port, s.ssl_context(), timeout=min(self.timeout, 5.0))
        except (OSError, ValueError):
            return None

    def connection(self) -> pika.BlockingConnection:
        """The shared AMQP connection of this backend, opened on first use."""
        if self._connection is None or not self._connection.is_open:
            self._connection = self.connect()
        return self._connection


def channel_refusal(exc: Any, action: str, target: str) -> QctlError:
    """A channel closed by the broker (``ChannelClosedByBroker``) as a qctl error.

    403 ACCESS_REFUSED means the user lacks a permission (configure to declare or
    delete, write to publish, read to consume): exit 3 with the cause named.
    """
    code, text = getattr(exc, "reply_code", None), str(getattr(exc, "reply_text", exc))
    if code == 403:
        return AuthenticationError(
            f"RabbitMQ at {target} refused to {action}: ACCESS_REFUSED (missing permission): "
            f"{text}",
            "grant the user configure/write/read permissions on the vhost "
            "(rabbitmqctl set_permissions)",
        )
    return QctlError(f"RabbitMQ at {target} refused to {action}: {code} {text}")


def decode_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _tls_cause(exc: BaseException, host: str) -> tuple[str, str] | None:
    """(cause, fix) when a TLS failure is somewhere inside pika's wrapped exceptions."""
    from qctl.security import explain

    current: Any = exc
    for _ in range(6):
        if isinstance(current, BaseException):
            found = explain(current, host)
            if found is not None:
                return found
        inner = getattr(current, "exception", None)
        items = getattr(current, "exceptions", None)
        if items:
            inner = items[-1]
        if inner is None and getattr(current, "args", None):
            candidate = current.args[0]
            inner = candidate if isinstance(candidate, BaseException) else None
        if inner is None:
            return None
        current = inner
    return None


def _root_cause(exc: BaseException) -> str:
    """pika wraps the socket error several levels deep; show the innermost message."""
    seen = 0
    current: Any = exc
    while seen < 6:
        seen += 1
        inner = getattr(current, "exception", None)
        items = getattr(current, "exceptions", None)
        if items:
            inner = items[-1]
        if inner is None and getattr(current, "args", None):
            candidate = current.args[0]
            if isinstance(candidate, BaseException):
                inner = candidate
        if inner is None:
            break
        current = inner
    text = str(current) or type(current).__name__
    return " ".join(text.split())
