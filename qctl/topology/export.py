"""The live cluster as a topology file: defaults and internal objects left out.

The output loads back into exactly the live state, so ``apply`` of an export right after
exporting plans zero changes, whatever the cluster holds: settings the brokers accepted
but qctl doubts load with warnings, never errors. Known queue arguments are written with
their friendly keys (``message_ttl``), broker defaults (durable exchanges, classic
queues, configs that equal the broker default) are omitted, and ``$`` in names is
escaped so ``${...}`` is never expanded by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from qctl.backends.capabilities.topology import BindingSpec, LiveTopology
from qctl.topology import schema
from qctl.topology.ownership import is_internal
from qctl.topology.planner import config_equal

_INT_RE = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class ExportFilter:
    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None

    def keep(self, name: str) -> bool:
        if self.include is not None and not self.include.search(name):
            return False
        return not (self.exclude is not None and self.exclude.search(name))


def export_kafka(live: LiveTopology, filt: ExportFilter) -> dict[str, Any]:
    topics = []
    for name in sorted(live.topics):
        topic = live.topics[name]
        if topic.internal or is_internal("topic", name) or not filt.keep(name):
            continue
        item: dict[str, Any] = {"name": _escape(name)}
        if topic.spec.partitions:
            item["partitions"] = topic.spec.partitions
        if topic.spec.replication_factor:
            item["replication_factor"] = topic.spec.replication_factor
        configs = {}
        for key in sorted(topic.spec.configs):
            value = topic.spec.configs[key]
            default = topic.defaults.get(key)
            if default is not None and config_equal(key, value, default):
                continue
            if key not in schema.KAFKA_TOPIC_CONFIGS:
                continue  # a config this version of qctl cannot declare (nor plans reset)
            configs[key] = _config_value(key, value)
        if configs:
            item["configs"] = configs
        topics.append(item)
    return {"topics": topics}


def _config_value(key: str, value: str) -> Any:
    if key in schema.KAFKA_INT_CONFIGS and _INT_RE.match(value):
        return int(value)
    if key in schema.KAFKA_BOOL_CONFIGS and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return _escape(value)


def export_rabbit(live: LiveTopology, filt: ExportFilter, vhost: str | None) -> dict[str, Any]:
    section: dict[str, Any] = {}
    if vhost is not None:
        section["vhost"] = _escape(vhost)
    exchanges = [
        e
        for n, e in sorted(live.exchanges.items())
        if not is_internal("exchange", n) and filt.keep(n)
    ]
    queues = [
        q
        for n, q in sorted(live.queues.items())
        if not is_internal("queue", n) and not q.exclusive and filt.keep(n)
    ]
    policies = [p for n, p in sorted(live.policies.items()) if filt.keep(n)]
    exported_exchanges = {e.name for e in exchanges}
    exported_queues = {q.spec.name for q in queues}
    section["exchanges"] = [_exchange(e) for e in exchanges]
    section["queues"] = [_queue(q.spec) for q in queues]
    section["bindings"] = _bindings(live.bindings, exported_exchanges, exported_queues)
    section["policies"] = [
        {
            "name": _escape(p.name),
            "pattern": _escape(p.pattern),
            **({"apply_to": p.apply_to} if p.apply_to != "all" else {}),
            "definition": _escape_tree(p.definition),
            **({"priority": p.priority} if p.priority else {}),
        }
        for p in policies
    ]
    return {k: v for k, v in section.items() if v or k == "vhost"}


def _exchange(spec: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": _escape(spec.name), "type": spec.type}
    if not spec.durable:
        item["durable"] = False
    if spec.auto_delete:
        item["auto_delete"] = True
    if spec.internal:
        item["internal"] = True
    args = dict(spec.arguments)
    alternate = args.pop("alternate-exchange", None)
    if isinstance(alternate, str):
        item["alternate_exchange"] = _escape(alternate)
    elif alternate is not None:
        args["alternate-exchange"] = alternate
    if args:
        item["arguments"] = _escape_tree(args)
    return item


def _queue(spec: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": _escape(spec.name)}
    if spec.type != "classic":
        item["type"] = spec.type
    if not spec.durable:
        item["durable"] = False
    if spec.auto_delete:
        item["auto_delete"] = True
    raw: dict[str, Any] = {}
    for argument, value in sorted(spec.arguments.items()):
        arg = schema.QUEUE_ARGS_BY_ARGUMENT.get(argument)
        if arg is not None and spec.type in arg.queue_types and _fits(arg, value):
            item[arg.key] = _escape_tree(value)
        else:
            raw[argument] = _escape_tree(value)
    if raw:
        item["arguments"] = raw
    return item


def _fits(arg: schema.ArgSpec, value: Any) -> bool:
    """Whether the friendly key can carry this value (else keep it as a raw argument)."""
    if arg.kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if arg.kind == "bool":
        return isinstance(value, bool)
    if arg.kind == "choice":
        return value in arg.choices
    return isinstance(value, str)


def _bindings(
    bindings: list[BindingSpec], exchanges: set[str], queues: set[str]
) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str, str], list[str]] = {}
    with_args: list[BindingSpec] = []
    for b in sorted(bindings, key=lambda b: b.key()):
        if b.source == "":
            continue
        if not (b.source in exchanges or b.source.startswith("amq.")):
            continue
        dest_ok = (
            b.destination in queues
            if b.destination_type == "queue"
            else (b.destination in exchanges or b.destination.startswith("amq."))
        )
        if not dest_ok:
            continue
        if b.arguments:
            with_args.append(b)
        else:
            grouped.setdefault((b.source, b.destination, b.destination_type), []).append(
                b.routing_key
            )
    result: list[dict[str, Any]] = []
    for (source, destination, dtype), keys in grouped.items():
        item: dict[str, Any] = {"source": _escape(source), "destination": _escape(destination)}
        if dtype != "queue":
            item["destination_type"] = dtype
        if len(keys) == 1:
            if keys[0]:
                item["routing_key"] = _escape(keys[0])
        else:
            item["routing_keys"] = [_escape(k) for k in keys]
        result.append(item)
    for b in with_args:
        item = {"source": _escape(b.source), "destination": _escape(b.destination)}
        if b.destination_type != "queue":
            item["destination_type"] = b.destination_type
        if b.routing_key:
            item["routing_key"] = _escape(b.routing_key)
        item["arguments"] = _escape_tree(b.arguments)
        result.append(item)
    return result


_VAR_START = re.compile(r"\$(?=\{[A-Za-z_][A-Za-z0-9_]*\})")


def _escape(text: str) -> str:
    """Write a literal ``${X}`` as ``$${X}`` so loading it back does not expand it."""
    return _VAR_START.sub("$$", text)


def _escape_tree(value: Any) -> Any:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, dict):
        return {k: _escape_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_tree(v) for v in value]
    return value


def document(
    kafka: dict[str, Any] | None,
    rabbitmq: dict[str, Any] | None,
    owner: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": 1}
    if owner:
        doc["owner"] = owner
    if kafka is not None:
        doc["kafka"] = kafka
    if rabbitmq is not None:
        doc["rabbitmq"] = rabbitmq
    return doc


def to_yaml(doc: dict[str, Any], header: str | None = None) -> str:
    text = yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return text
