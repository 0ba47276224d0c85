"""The Kafka backend: confluent-kafka's AdminClient, Producer and Consumer.

Clients are created on first use and every blocking call is bounded by the context's
timeout. ``confluent_kafka`` is imported inside methods so that merely loading the
backend class (``qctl plugins list``, ``--help``) stays cheap.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from qctl.backends.base import BackendConfig, ClusterInfo, Node
from qctl.backends.kafka.client import ErrorWatch, bootstrap_of, client_config, translate
from qctl.errors import OperationTimeout, QctlError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)


class KafkaBackend:
    """Apache Kafka (and compatible brokers) through librdkafka."""

    name: ClassVar[str] = "kafka"
    description: ClassVar[str] = "Apache Kafka through confluent-kafka (librdkafka)"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.settings: Mapping[str, Any] = config.settings
        self.timeout = config.timeout
        self.bootstrap = bootstrap_of(self.settings)
        self._admin: AdminClient | None = None
        self._admin_errors = ErrorWatch()

    @classmethod
    def from_config(cls, config: BackendConfig) -> KafkaBackend:
        return cls(config)

    def target(self) -> str:
        return self.bootstrap

    def close(self) -> None:
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
            self.wait_for_metadata()
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

    # -- cluster info ----------------------------------------------------------------------
    def cluster_info(self) -> ClusterInfo:
        admin = self.admin()
        metadata = self.wait_for_metadata()
        described = self._result(
            admin.describe_cluster(request_timeout=self.timeout), "describe the cluster"
        )
        groups = self._result(
            admin.list_consumer_groups(request_timeout=self.timeout), "list consumer groups"
        )
        topics = list(metadata.topics)
        internal = [t for t in topics if t.startswith("__")]
        info = ClusterInfo(
            backend=self.name,
            address=self.bootstrap,
            reachable=True,
            cluster_id=described.cluster_id or metadata.cluster_id,
            counts={
                "brokers": len(described.nodes),
                "topics": len(topics) - len(internal),
                "internal_topics": len(internal),
                "partitions": sum(
                    len(t.partitions) for n, t in metadata.topics.items() if not n.startswith("__")
                ),
                "consumer_groups": len(groups.valid),
            },
        )
        brokers = {node.id: node for node in described.nodes}
        quorum, versions = self._probe(described.nodes, info)
        voters = set(quorum.voters) if quorum else set()
        for node_id, node in sorted(brokers.items()):
            roles = ["broker"] + (["controller"] if node_id in voters else [])
            info.nodes.append(
                Node(
                    id=str(node_id),
                    host=node.host,
                    port=node.port,
                    roles=roles,
                    controller=bool(quorum and quorum.leader_id == node_id),
                )
            )
        for voter in sorted(voters - set(brokers)):
            info.nodes.append(
                Node(
                    id=str(voter),
                    host="",
                    port=None,
                    roles=["controller"],
                    controller=bool(quorum and quorum.leader_id == voter),
                )
            )
        if versions is not None:
            self._describe_versions(versions, info)
        if quorum is not None:
            info.features["kraft"] = True
            info.features["active_controller"] = quorum.leader_id
        return info

    def _probe(self, nodes: list[Any], info: ClusterInfo) -> tuple[Any, Any]:
        """Version and quorum from the wire probe; missing pieces become warnings."""
        from qctl.backends.kafka.wire import Probe, WireError

        protocol = str(self.settings.get("security.protocol", "PLAINTEXT")).upper()
        ssl_context = self._ssl_context() if protocol in ("SSL", "SASL_SSL") else None
        quorum = versions = None
        for node in nodes:
            try:
                with Probe(node.host, node.port, self.timeout, ssl_context) as probe:
                    versions = probe.api_versions()
                    if not protocol.startswith("SASL"):
                        try:
                            quorum = probe.describe_quorum()
                        except WireError as exc:
                            info.warnings.append(f"controller quorum not available: {exc}")
                return quorum, versions
            except WireError as exc:
                log.debug("probe of broker %s failed: %s", node.id, exc)
                continue
        info.warnings.append("could not read the broker version (ApiVersions probe failed)")
        return quorum, versions

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.settings.get("ssl.ca.location"))
        cert = self.settings.get("ssl.certificate.location")
        if cert:
            ctx.load_cert_chain(
                cert, self.settings.get("ssl.key.location"), self.settings.get("ssl.key.password")
            )
        algorithm = str(self.settings.get("ssl.endpoint.identification.algorithm", "https"))
        if algorithm.lower() == "none":
            ctx.check_hostname = False
        if str(self.settings.get("enable.ssl.certificate.verification", "true")).lower() in (
            "false",
            "0",
        ):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    @staticmethod
    def _describe_versions(versions: Any, info: ClusterInfo) -> None:
        from qctl.backends.kafka.metadata_version import describe_level

        supported = versions.supported_features.get("metadata.version")
        finalized = versions.finalized_features.get("metadata.version")
        if supported:
            info.version = describe_level(supported[1], release_only=True)
        if finalized:
            info.features["metadata_version"] = describe_level(finalized[1])
        info.features["finalized_features"] = {
            name: level[1] for name, level in sorted(versions.finalized_features.items())
        }
