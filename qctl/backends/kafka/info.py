"""Kafka cluster info: brokers, the active KRaft controller, version and counts."""

from __future__ import annotations

import logging
from typing import Any

from qctl.backends.base import ClusterInfo, Node
from qctl.backends.kafka.core import KafkaCore

log = logging.getLogger(__name__)


class KafkaClusterInfo(KafkaCore):
    """``SupportsClusterInfo`` for Kafka."""

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
        from qctl.backends.kafka.wire.codec import WireError
        from qctl.backends.kafka.wire.config import Handover, decide
        from qctl.backends.kafka.wire.connection import Connection

        config = decide(self.settings)
        quorum = versions = None
        if isinstance(config, Handover):
            # librdkafka has no call that reads the brokers' feature levels.
            info.warnings.append(
                f"the broker version and the controller quorum are not read: qctl's own "
                f"client leaves this context to librdkafka ({config}), which cannot read "
                "them (see docs/security.md)"
            )
            return quorum, versions
        for node in nodes:
            try:
                with Connection(node.host, node.port, self.timeout, config) as probe:
                    versions = probe.api_versions()
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
