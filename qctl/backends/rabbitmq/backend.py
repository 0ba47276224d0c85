"""The RabbitMQ backend: pika for AMQP 0-9-1, the management HTTP API for the rest.

pika and httpx are imported inside methods so that loading the class stays cheap.
Every connection attempt and HTTP request is bounded by the context's timeout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from qctl.backends.base import BackendConfig, ClusterInfo, Node
from qctl.backends.rabbitmq.management import ManagementAPI
from qctl.backends.rabbitmq.settings import RabbitSettings, parse_settings
from qctl.config import SECRETS
from qctl.errors import AuthenticationError, NotFoundError, QctlError, UnreachableError

if TYPE_CHECKING:
    import pika

log = logging.getLogger(__name__)

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


class RabbitMQBackend:
    """RabbitMQ through AMQP 0-9-1 (pika) and the management HTTP API (httpx)."""

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

    @classmethod
    def from_config(cls, config: BackendConfig) -> RabbitMQBackend:
        return cls(config)

    def target(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def close(self) -> None:
        if self._mgmt is not None:
            self._mgmt.close()
            self._mgmt = None
        if self._connection is not None:
            try:
                if self._connection.is_open:
                    self._connection.close()
            except Exception:  # a dead connection cannot be closed cleanly; drop it
                log.debug("closing the AMQP connection failed", exc_info=True)
            self._connection = None

    # -- clients ---------------------------------------------------------------------------
    def management(self) -> ManagementAPI:
        if self._mgmt is None:
            s = self.settings
            verify: Any = s.ssl_context() if s.management_url.startswith("https") else True
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
        if s.tls and s.cert_file and not s.password:
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

        try:
            return pika.BlockingConnection(self.connection_parameters())
        except (pe.ProbableAuthenticationError, pe.AuthenticationError) as exc:
            raise AuthenticationError(
                f"RabbitMQ at {self.target()} refused the credentials of user "
                f"{self.settings.username!r}",
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
        except pe.AMQPConnectionError as exc:
            raise UnreachableError(
                f"RabbitMQ at {self.target()} is unreachable: {_root_cause(exc)}",
                "check the rabbitmq url (`qctl context show`) and that the node is running",
            ) from exc

    def connection(self) -> pika.BlockingConnection:
        """The shared AMQP connection of this backend, opened on first use."""
        if self._connection is None or not self._connection.is_open:
            self._connection = self.connect()
        return self._connection

    # -- cluster info ----------------------------------------------------------------------
    def cluster_info(self) -> ClusterInfo:
        conn = self.connection()
        server = conn._impl.server_properties or {}
        version = _text(server.get("version"))
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


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


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
