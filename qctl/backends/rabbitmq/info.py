"""RabbitMQ cluster info: version, nodes, plugins, feature flags and object counts."""

from __future__ import annotations

from qctl.backends.base import ClusterInfo, Node
from qctl.backends.rabbitmq.core import RabbitCore, decode_text
from qctl.backends.rabbitmq.management import ManagementAPI
from qctl.errors import NotFoundError, QctlError

#: Plugins whose presence changes what qctl can do.
RELEVANT_PLUGINS = (
    "rabbitmq_management",
    "rabbitmq_stream",
    "rabbitmq_prometheus",
    "rabbitmq_shovel",
    "rabbitmq_shovel_management",
)
#: Feature flags whose state changes broker behaviour qctl relies on.
RELEVANT_FLAGS = (
    "quorum_queue",
    "stream_queue",
    "stream_filtering",
    "message_containers",
    "khepri_db",
    "classic_queue_type_delivery_support",
)


class RabbitClusterInfo(RabbitCore):
    """``SupportsClusterInfo`` for RabbitMQ."""

    def cluster_info(self) -> ClusterInfo:
        conn = self.connection()
        server = conn._impl.server_properties or {}
        version = decode_text(server.get("version"))
        api = self.management()
        overview = api.get("/overview")
        nodes = api.get("/nodes")
        vhosts = api.get("/vhosts", params={"columns": "name"})
        queues = api.get("/queues", params={"columns": "name,type"})
        info = ClusterInfo(
            backend=self.name,
            address=self.target(),
            reachable=True,
            version=overview.get("rabbitmq_version") or version,
            cluster_id=overview.get("cluster_name"),
        )
        totals = overview.get("object_totals") or {}
        by_type: dict[str, int] = {}
        for queue in queues:
            qtype = queue.get("type") or "classic"
            by_type[qtype] = by_type.get(qtype, 0) + 1
        info.counts = {
            "nodes": len(nodes),
            "vhosts": len(vhosts),
            "queues": int(totals.get("queues", len(queues))),
            "exchanges": int(totals.get("exchanges", 0)),
            "connections": int(totals.get("connections", 0)),
            "consumers": int(totals.get("consumers", 0)),
        }
        info.counts.update({f"{t}_queues": n for t, n in sorted(by_type.items())})
        listeners = overview.get("listeners") or []
        for node in nodes:
            ports = {
                item.get("protocol"): item.get("port")
                for item in listeners
                if item.get("node") == node.get("name")
            }
            host = str(node.get("name", "")).split("@")[-1]
            info.nodes.append(
                Node(
                    id=str(node.get("name")),
                    host=host,
                    port=ports.get("amqp/ssl") if self.settings.tls else ports.get("amqp"),
                    roles=[str(node.get("type", "disc"))],
                    controller=False,
                    running=bool(node.get("running", False)),
                )
            )
        plugins: set[str] = set()
        for node in nodes:
            plugins.update(node.get("enabled_plugins") or [])
        info.features = {
            "erlang_version": overview.get("erlang_version"),
            "management_version": overview.get("management_version"),
            "plugins": {p: p in plugins for p in RELEVANT_PLUGINS},
            "listeners": sorted(
                {f"{item.get('protocol')}:{item.get('port')}" for item in listeners}
            ),
            "feature_flags": self._feature_flags(api),
        }
        if not plugins.issuperset({"rabbitmq_stream"}):
            info.warnings.append(
                "the rabbitmq_stream plugin is not enabled: stream "
                "protocol features are unavailable"
            )
        return info

    def _feature_flags(self, api: ManagementAPI) -> dict[str, str]:
        try:
            flags = api.get("/feature-flags")
        except (NotFoundError, QctlError):
            return {}
        return {
            flag["name"]: flag.get("state", "unknown")
            for flag in flags
            if flag.get("name") in RELEVANT_FLAGS
        }
