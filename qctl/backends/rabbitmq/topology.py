"""``SupportsTopology`` and queue migration for RabbitMQ, over the management API.

Live state comes from one management API listing per object kind (exchanges, queues,
bindings, policies; bindings per source exchange when a plan needs only a few
exchanges' bindings): a passive redeclare cannot detect drift, because RabbitMQ accepts
several differing arguments silently. Large batches of new objects are declared with
one definitions import (``POST /api/definitions/{vhost}``); small ones, and anything a
definitions import would not report per object, go through one request per object.
Queue deletes use ``if-empty`` unless forced, so a queue that received messages after
the plan is never deleted by surprise.

Ownership records are global parameters named ``qctl.topology.owner:<vhost>:<owner>``.
Message moves for ``--allow-recreate`` are in ``topology_mover``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from qctl.backends.capabilities.topology import (
    RABBIT_OWNER_PARAMETER_PREFIX,
    BindingSpec,
    ChangeResult,
    ExchangeSpec,
    LiveQueue,
    LiveTopology,
    OwnerRecord,
    PolicySpec,
    Progress,
    QueueDepth,
    QueueSpec,
    TopologyChange,
    TopologyQuery,
)
from qctl.backends.rabbitmq.core import RabbitCore, channel_refusal
from qctl.backends.rabbitmq.management import ManagementAPI, quote_segment
from qctl.errors import AuthenticationError, NotFoundError, QctlError

log = logging.getLogger(__name__)

#: From this many new objects on, declare them with one definitions import.
BULK_THRESHOLD = 20
#: Up to this many source exchanges, bindings are read per exchange, not for the vhost.
MAX_BINDING_SOURCES = 16

_QUEUE_COLUMNS = (
    "name,type,durable,auto_delete,exclusive,arguments,messages,"
    "messages_unacknowledged,consumers,policy"
)
#: The queue listing without per-queue statistics (message totals kept): half the
#: server's time on a vhost with many queues. Servers that predate these parameters
#: ignore them and send the statistics, which the columns filter anyway. (Consumer
#: counts are not in it; what needs them asks the broker per queue.)
_QUEUE_LISTING = {"columns": _QUEUE_COLUMNS, "disable_stats": "true", "enable_queue_totals": "true"}
_EXCHANGE_COLUMNS = "name,type,durable,auto_delete,internal,arguments"


class RabbitTopologyAdmin(RabbitCore):
    """Exchanges, queues, bindings and policies as code for RabbitMQ."""

    def topology_kinds(self) -> tuple[str, ...]:
        return ("exchange", "queue", "binding", "policy")

    def _topo_vhost(self, scope: str | None) -> str:
        return scope or self.settings.vhost

    # -- reading ---------------------------------------------------------------------------
    def topology_describe(self, query: TopologyQuery) -> LiveTopology:
        vhost = self._topo_vhost(query.scope)
        api = self.management()
        vh = quote_segment(vhost)
        from concurrent.futures import ThreadPoolExecutor

        # The listings are independent: fetch them side by side (httpx's client is
        # thread-safe); each is still bounded by the timeout.
        requests: dict[str, tuple[str, dict[str, str] | None]] = {
            "exchanges": (f"/exchanges/{vh}", {"columns": _EXCHANGE_COLUMNS}),
            "queues": (f"/queues/{vh}", _QUEUE_LISTING),
            "policies": (f"/policies/{vh}", None),
        }
        # All bindings of a vhost include one implicit binding per queue: on a busy vhost
        # that listing costs the server more than everything else. When only a few
        # exchanges' bindings matter, read just theirs.
        sources = query.binding_sources
        if sources is not None and len(sources) <= MAX_BINDING_SOURCES:
            binding_paths = [
                f"/exchanges/{vh}/{quote_segment(source)}/bindings/source"
                for source in sorted(sources - {""})
            ]
        else:
            binding_paths = [f"/bindings/{vh}"]
        with ThreadPoolExecutor(max_workers=min(len(requests) + len(binding_paths), 8)) as pool:
            futures = {k: pool.submit(api.get, path, p) for k, (path, p) in requests.items()}
            binding_futures = [pool.submit(api.get, path) for path in binding_paths]
        try:
            exchanges = futures["exchanges"].result()
        except NotFoundError:
            raise NotFoundError(
                f"vhost {vhost!r} does not exist on RabbitMQ at {self.target()}",
                "create it (rabbitmqctl add_vhost) or fix rabbitmq.vhost in the file",
            ) from None
        queues = futures["queues"].result()
        bindings: list[dict[str, Any]] = []
        for future in binding_futures:
            # Not found: a source exchange that does not exist yet (a missing vhost was
            # reported above).
            with contextlib.suppress(NotFoundError):
                bindings += future.result()
        policies = futures["policies"].result()
        live = LiveTopology(backend=self.name, scope=vhost)
        for item in exchanges:
            spec = ExchangeSpec(
                name=item["name"],
                type=item.get("type", "direct"),
                durable=bool(item.get("durable", True)),
                auto_delete=bool(item.get("auto_delete", False)),
                internal=bool(item.get("internal", False)),
                arguments=dict(item.get("arguments") or {}),
            )
            live.exchanges[spec.name] = spec
        for item in queues:
            args = dict(item.get("arguments") or {})
            args.pop("x-queue-type", None)
            messages = item.get("messages")
            live.queues[item["name"]] = LiveQueue(
                spec=QueueSpec(
                    name=item["name"],
                    type=item.get("type") or "classic",
                    durable=bool(item.get("durable", True)),
                    auto_delete=bool(item.get("auto_delete", False)),
                    arguments=args,
                ),
                messages=int(messages) if isinstance(messages, int) else None,
                consumers=item.get("consumers"),
                exclusive=bool(item.get("exclusive", False)),
                policy=item.get("policy") or None,
            )
        for item in bindings:
            live.bindings.append(
                BindingSpec(
                    source=item.get("source", ""),
                    destination=item["destination"],
                    destination_type=item.get("destination_type", "queue"),
                    routing_key=item.get("routing_key", ""),
                    arguments=dict(item.get("arguments") or {}),
                )
            )
        for item in policies:
            live.policies[item["name"]] = PolicySpec(
                name=item["name"],
                pattern=item.get("pattern", ""),
                definition=dict(item.get("definition") or {}),
                apply_to=item.get("apply-to", "all"),
                priority=int(item.get("priority", 0)),
            )
        if query.count_messages and query.names:
            self._topo_exact_counts(vhost, [n for n in query.names if n in live.queues], live)
        return live

    def _topo_exact_counts(self, vhost: str, names: list[str], live: LiveTopology) -> None:
        """Ready counts from the broker itself; the API's numbers are sampled every few s."""
        for name in names:
            try:
                depth = self.topology_queue_depth(vhost, name)
            except NotFoundError:
                continue
            queue = live.queues[name]
            unacked = 0
            if queue.messages is not None:
                unacked = max(queue.messages - depth.messages, 0)
            queue.messages = depth.messages + unacked
            queue.consumers = depth.consumers

    # -- changing --------------------------------------------------------------------------
    def topology_apply(
        self, scope: str | None, changes: Sequence[TopologyChange], progress: Progress | None
    ) -> list[ChangeResult]:
        vhost = self._topo_vhost(scope)
        api = self.management()
        results: list[ChangeResult] = []
        declares = [c for c in changes if c.action in ("create", "update")]
        deletes = [c for c in changes if c.action == "delete"]
        other = [c for c in changes if c.action not in ("create", "update", "delete")]
        results += [ChangeResult(c, False, f"cannot {c.action} here") for c in other]
        if len(declares) >= BULK_THRESHOLD:
            results += self._topo_import(api, vhost, declares, progress)
        else:
            results += [self._topo_one(api, vhost, c) for c in _declare_order(declares)]
        for change in _delete_order(deletes):
            results.append(self._topo_one(api, vhost, change))
        return results

    def _topo_import(
        self,
        api: ManagementAPI,
        vhost: str,
        changes: list[TopologyChange],
        progress: Progress | None,
    ) -> list[ChangeResult]:
        """One definitions import for many declarations; per object if it fails."""
        body: dict[str, list[dict[str, Any]]] = {
            "exchanges": [],
            "queues": [],
            "bindings": [],
            "policies": [],
        }
        for change in changes:
            kind = {"exchange": "exchanges", "queue": "queues", "binding": "bindings"}.get(
                change.kind, "policies"
            )
            item = _definition(change)
            if item is None:
                body = {}
                break
            body[kind].append(item)
        if body:
            try:
                api.post(f"/definitions/{quote_segment(vhost)}", body)
            except AuthenticationError:
                log.debug("definitions import refused; declaring one object at a time")
            except QctlError as exc:
                log.debug("definitions import failed (%s); declaring one object at a time", exc)
            else:
                if progress is not None:
                    progress(f"rabbitmq: declared {len(changes)} object(s) in one import")
                return [ChangeResult(c, True) for c in changes]
        return [self._topo_one(api, vhost, c) for c in _declare_order(changes)]

    def _topo_one(self, api: ManagementAPI, vhost: str, change: TopologyChange) -> ChangeResult:
        try:
            self._topo_request(api, vhost, change)
        except AuthenticationError:
            # Missing rights (e.g. no configure permission on the vhost) will refuse every
            # other object too: stop with that one error instead of a list of failures.
            raise
        except QctlError as exc:
            return ChangeResult(change, False, exc.what)
        return ChangeResult(change, True)

    def _topo_request(self, api: ManagementAPI, vhost: str, change: TopologyChange) -> None:
        vh = quote_segment(vhost)
        kind, action = change.kind, change.action
        if action in ("create", "update"):
            item = _definition(change)
            if item is None:
                raise QctlError(f"nothing to declare for {kind} {change.name!r}")
            if kind == "exchange":
                api.put(f"/exchanges/{vh}/{quote_segment(item['name'])}", item)
            elif kind == "queue":
                api.put(f"/queues/{vh}/{quote_segment(item['name'])}", item)
            elif kind == "policy":
                api.put(f"/policies/{vh}/{quote_segment(item['name'])}", item)
            elif kind == "binding":
                spec: BindingSpec = change.desired
                api.post(
                    _binding_path(vh, spec),
                    {"routing_key": spec.routing_key, "arguments": spec.arguments},
                )
            return
        if action != "delete":
            raise QctlError(f"cannot {action} a {kind}")
        if kind == "queue":
            self._topo_delete_queue(api, vhost, change)
        elif kind == "exchange":
            api.delete(f"/exchanges/{vh}/{quote_segment(change.name)}")
        elif kind == "policy":
            api.delete(f"/policies/{vh}/{quote_segment(change.name)}")
        elif kind == "binding":
            binding: BindingSpec = change.live
            path = _binding_path(vh, binding)
            for item in api.get(path):
                if (
                    item.get("routing_key", "") == binding.routing_key
                    and (item.get("arguments") or {}) == binding.arguments
                ):
                    api.delete(f"{path}/{quote_segment(item['properties_key'])}")
                    return
        else:
            raise QctlError(f"rabbitmq has no {kind}s")

    def _topo_delete_queue(self, api: ManagementAPI, vhost: str, change: TopologyChange) -> None:
        """Delete a queue, only when empty unless forced.

        Classic queues honour ``if-empty`` atomically. Quorum queues refuse the flag and
        streams ignore it (a stream with messages is deleted!), so for those the exact
        count is checked over AMQP right before an unconditional delete.
        """
        path = f"/queues/{quote_segment(vhost)}/{quote_segment(change.name)}"
        if change.force:
            api.delete(path)
            return
        qtype = change.live.type if isinstance(change.live, QueueSpec) else None
        if qtype is None:
            qtype = str(api.get(path, params={"columns": "type"}).get("type") or "classic")
        if qtype == "classic":
            try:
                api.delete(path, params={"if-empty": "true"})
            except QctlError as exc:
                if "not empty" in exc.what:
                    raise QctlError(
                        f"queue {change.name!r} is not empty (messages arrived after the plan)"
                    ) from exc
                raise
            return
        depth = self.topology_queue_depth(vhost, change.name)
        if depth.messages:
            raise QctlError(f"{qtype} queue {change.name!r} holds {depth.messages} message(s)")
        api.delete(path)

    # -- ownership records -----------------------------------------------------------------
    def _topo_parameter(self, vhost: str, owner: str) -> str:
        return f"{RABBIT_OWNER_PARAMETER_PREFIX}:{vhost}:{owner}"

    def topology_owner_records(self, scope: str | None) -> list[OwnerRecord]:
        vhost = self._topo_vhost(scope)
        prefix = f"{RABBIT_OWNER_PARAMETER_PREFIX}:{vhost}:"
        try:
            parameters = self.management().get("/global-parameters")
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"cannot read ownership records (global parameters) from RabbitMQ at "
                f"{self.target()}: {exc.what}",
                "the user needs the administrator tag to read and write ownership records",
            ) from exc
        records = []
        for item in parameters:
            name = str(item.get("name", ""))
            if not name.startswith(prefix):
                continue
            value = item.get("value")
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = None
            record = OwnerRecord.from_json(value)
            if record is not None:
                records.append(record)
        return records

    def topology_write_owner_record(self, record: OwnerRecord, delete: bool = False) -> None:
        vhost = self._topo_vhost(record.scope or None)
        record.scope = vhost
        name = self._topo_parameter(vhost, record.owner)
        path = f"/global-parameters/{quote_segment(name)}"
        api = self.management()
        if delete:
            with contextlib.suppress(NotFoundError):
                api.delete(path)
            return
        api.put(path, {"name": name, "value": record.to_json()})

    # -- queue migration -------------------------------------------------------------------
    def topology_queue_depth(self, scope: str | None, queue: str) -> QueueDepth:
        import pika.exceptions as pe

        vhost = self._topo_vhost(scope)
        connection = self._topo_connection(vhost)
        channel = connection.channel()
        try:
            frame = channel.queue_declare(queue, passive=True)
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise NotFoundError(f"queue {queue!r} does not exist in vhost {vhost!r}") from exc
            raise channel_refusal(exc, f"inspect queue {queue!r}", self.target()) from exc
        finally:
            if channel.is_open:
                channel.close()
        return QueueDepth(frame.method.message_count, frame.method.consumer_count)

    def topology_move_messages(
        self,
        scope: str | None,
        source: str,
        target: str,
        progress: Progress | None,
    ) -> int:
        from qctl.backends.rabbitmq.messaging import RabbitMessaging
        from qctl.backends.rabbitmq.topology_mover import move_messages

        # The move runs on the messaging mixin's connections, which the backend class
        # composes with this one.
        if not isinstance(self, RabbitMessaging):
            raise QctlError("this RabbitMQ backend cannot move messages")
        vhost = self._topo_vhost(scope)
        return move_messages(self, vhost, source, target, self.timeout, progress)

    def _topo_connection(self, vhost: str) -> Any:
        """An AMQP connection to ``vhost`` (the shared one when it is the context's)."""
        if vhost == self.settings.vhost:
            return self.connection()
        cache: dict[str, Any] = self.__dict__.setdefault("_topo_connections", {})
        conn = cache.get(vhost)
        if conn is None or not conn.is_open:
            import pika

            params = self.connection_parameters()
            params.virtual_host = vhost
            conn = self._topo_connect(pika, params)
            cache[vhost] = conn
            self._closers.append(conn.close)
        return conn

    def _topo_connect(self, pika: Any, params: Any) -> Any:
        import pika.exceptions as pe

        try:
            return pika.BlockingConnection(params)
        except pe.AMQPError as exc:
            raise AuthenticationError(
                f"cannot open vhost {params.virtual_host!r} on RabbitMQ at {self.target()}: {exc}",
                "check that the vhost exists and the user has permissions on it",
            ) from exc


def _binding_path(vh: str, binding: BindingSpec) -> str:
    letter = "q" if binding.destination_type == "queue" else "e"
    return (
        f"/bindings/{vh}/e/{quote_segment(binding.source)}/{letter}/"
        f"{quote_segment(binding.destination)}"
    )


def _definition(change: TopologyChange) -> dict[str, Any] | None:
    """The management API / definitions body of a declaration."""
    spec = change.desired
    if isinstance(spec, ExchangeSpec):
        return {
            "name": spec.name,
            "type": spec.type,
            "durable": spec.durable,
            "auto_delete": spec.auto_delete,
            "internal": spec.internal,
            "arguments": dict(spec.arguments),
        }
    if isinstance(spec, QueueSpec):
        return {
            "name": spec.name,
            "durable": spec.durable,
            "auto_delete": spec.auto_delete,
            "arguments": {**spec.arguments, "x-queue-type": spec.type},
        }
    if isinstance(spec, BindingSpec):
        return {
            "source": spec.source,
            "destination": spec.destination,
            "destination_type": spec.destination_type,
            "routing_key": spec.routing_key,
            "arguments": dict(spec.arguments),
        }
    if isinstance(spec, PolicySpec):
        return {
            "name": spec.name,
            "pattern": spec.pattern,
            "apply-to": spec.apply_to,
            "definition": dict(spec.definition),
            "priority": spec.priority,
        }
    return None


_DECLARE_ORDER = {"exchange": 0, "queue": 1, "policy": 2, "binding": 3}
_DELETE_ORDER = {"binding": 0, "queue": 1, "exchange": 2, "policy": 3}


def _declare_order(changes: list[TopologyChange]) -> list[TopologyChange]:
    return sorted(changes, key=lambda c: _DECLARE_ORDER.get(c.kind, 9))


def _delete_order(changes: list[TopologyChange]) -> list[TopologyChange]:
    return sorted(changes, key=lambda c: _DELETE_ORDER.get(c.kind, 9))
