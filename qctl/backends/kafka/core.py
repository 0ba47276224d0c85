"""The Kafka backend's core: configuration, the shared AdminClient, bounded waits.

Each capability of the backend is a mixin in its own module (``info.py``,
``topology.py``, ...) built on ``KafkaCore``; ``backend.py`` composes them. Clients are
created on first use and every blocking call is bounded by the context's timeout.
``confluent_kafka`` is imported inside methods so that loading the class stays cheap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from qctl.backends.base import BackendConfig
from qctl.backends.kafka.client import ErrorWatch, bootstrap_of, client_config, translate
from qctl.errors import AuthenticationError, OperationTimeout, QctlError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)


class KafkaCore:
    """State and helpers every Kafka capability mixin shares."""

    name: ClassVar[str] = "kafka"
    description: ClassVar[str] = "Apache Kafka through confluent-kafka (librdkafka)"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.settings: Mapping[str, Any] = config.settings
        self.timeout = config.timeout
        self.bootstrap = bootstrap_of(self.settings)
        # Refuse a bad configuration (e.g. verification off without insecure: true)
        # before any client exists, as a usage error rather than a connection failure.
        client_config(self.settings, self.timeout)
        self._admin: AdminClient | None = None
        self._admin_errors = ErrorWatch()
        #: Cleanups registered by mixins for the clients they create (producers, ...).
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def from_config(cls, config: BackendConfig) -> Self:
        return cls(config)

    def target(self) -> str:
        return self.bootstrap

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:  # one failing cleanup must not skip the others
                log.debug("closing a kafka client failed", exc_info=True)
        # AdminClient has no close(); dropping the last reference destroys the handle.
        self._admin = None

    # -- clients ---------------------------------------------------------------------------
    def client_config(self, **overrides: Any) -> dict[str, Any]:
        conf = client_config(self.settings, self.timeout)
        conf.update(overrides)
        return conf

    def admin(self) -> AdminClient:
        """The AdminClient, after checking (fast) that the cluster answers."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            try:
                admin = AdminClient(self.client_config(error_cb=self._admin_errors))
            except Exception as exc:
                raise translate(exc, self.bootstrap, "configure a client for") from exc
            self._admin = admin
            try:
                self.wait_for_metadata()
            except QctlError:
                # Keep no half-checked client: a later call must fail the same way instead
                # of using it and meeting a raw KafkaException.
                self._admin = None
                raise
        return self._admin

    def wait_for_metadata(self, topic: str | None = None) -> Any:
        """Cluster metadata within the timeout, failing fast on refused or failed auth.

        librdkafka retries a dead bootstrap server silently until the deadline; the error
        callback tells us sooner that no broker is up or that SASL/TLS failed.
        """
        assert self._admin is not None
        self._admin_errors.reset()
        deadline = time.monotonic() + self.timeout
        last_exc: Exception | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                err = self._admin_errors.last() or last_exc
                if err is not None:
                    raise translate(err, self.bootstrap)
                raise OperationTimeout(
                    f"kafka at {self.bootstrap} did not answer within {self.timeout:g}s",
                    "raise --timeout or check that the cluster is running",
                )
            try:
                return self._admin.list_topics(topic=topic, timeout=min(0.5, remaining))
            except Exception as exc:
                last_exc = exc
            self._admin.poll(0)  # serves error_cb
            fatal = self._admin_errors.fatal()
            if fatal is not None:
                raise translate(fatal, self.bootstrap)

    def topic_access_error(self, topic: str) -> QctlError | None:
        """Why ``topic`` is missing from the metadata, when the reason is the ACLs.

        A full metadata request silently leaves out topics the user may not describe,
        so "does not exist" would be a lie on a cluster with an authorizer. Asking for
        the topic by name (DescribeTopicPartitions, never auto-creates) tells us.
        Only on secured connections: without authentication there are no ACLs to blame.
        """
        if "SASL" not in str(self.settings.get("security.protocol", "")).upper():
            return None
        from confluent_kafka import KafkaError, KafkaException, TopicCollection

        try:
            futures = self.admin().describe_topics(
                TopicCollection([topic]), request_timeout=self.timeout
            )
            futures[topic].result(timeout=self.timeout + 1)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                user = self.settings.get("sasl.username")
                return AuthenticationError(
                    f"kafka at {self.bootstrap}: user {user!r} is not authorized for topic "
                    f"{topic!r} (topic authorization failed; Kafka does not say whether "
                    "it exists)",
                    "grant the user ACLs on the topic (kafka-acls --add ...) or use another user",
                )
        except Exception:  # only a diagnosis: the caller reports "not found" then
            log.debug("describing topic %s failed", topic, exc_info=True)
        return None

    def _result(self, future: Any, what: str) -> Any:
        """Wait for an admin future within the timeout; errors become qctl errors."""
        import concurrent.futures

        try:
            return future.result(timeout=self.timeout + 1)
        except concurrent.futures.TimeoutError as exc:
            raise OperationTimeout(
                f"kafka at {self.bootstrap} did not finish {what} within {self.timeout:g}s",
                "raise --timeout or check the cluster's health",
            ) from exc
        except QctlError:
            raise
        except Exception as exc:
            raise translate(exc, self.bootstrap, what) from exc
