"""Read a topology file: strict schema, file:line:column on every error, env overlays.

The file is parsed with PyYAML's node API (``yamlnodes``) so every value keeps its
position; this module then checks keys and types, applies the ``environments:`` overlay
chosen with ``--env``, expands the ``dlq:`` shorthand and friendly queue arguments, and
builds the neutral specs the planner works with. Cross-references (a binding to an
undeclared exchange, a DLX that points nowhere) are checked by ``validate``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from qctl.backends.capabilities.topology import (
    BindingSpec,
    ExchangeSpec,
    PolicySpec,
    QueueSpec,
    TopicSpec,
)
from qctl.errors import UsageError
from qctl.topology import schema
from qctl.topology.model import (
    FileIssue,
    KafkaTopology,
    Location,
    RabbitTopology,
    TopologyFile,
    TopologyFileError,
)
from qctl.topology.yamlnodes import YMap, YNode, YScalar, YSeq, describe, parse

T = TypeVar("T")

#: Files larger than this are refused before parsing (a topology file is small).
MAX_FILE_BYTES = 16 * 1024 * 1024

_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_DURATION_RE = re.compile(r"^\d+(Y|M|D|h|m|s)$")


def read_text(path: str | Path) -> tuple[str, str]:
    """The file's text and the name used in messages; unreadable files are exit 2."""
    label = str(path)
    if label == "-":
        import sys

        return sys.stdin.read(), "<stdin>"
    p = Path(path)
    try:
        if p.is_dir():
            raise UsageError(f"{label} is a directory, not a topology file")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UsageError(f"{label} is {size} bytes; a topology file is at most 16 MB")
        data = p.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{label}: no such file", "check the path") from None
    except OSError as exc:
        raise UsageError(f"cannot read {label}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig"), label
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        issue = FileIssue(Location(label, line, column), "the file is not valid UTF-8 text")
        raise TopologyFileError(label, [issue]) from None


def load(
    path: str | Path, env: str | None = None, environ: Mapping[str, str] | None = None
) -> TopologyFile:
    """Load and fully validate a topology file; raise ``TopologyFileError`` on any error."""
    from qctl.topology.validate import validate

    text, label = read_text(path)
    topo, issues = loads(text, label, env=env, environ=environ)
    if topo is not None:
        issues += validate(topo)
    errors = [i for i in issues if i.severity == "error"]
    if errors or topo is None:
        raise TopologyFileError(label, errors or issues)
    warnings = [i for i in issues if i.severity != "error"]
    topo.warnings = sorted(warnings, key=lambda i: (i.location.line, i.location.column))
    return topo


def environments_of(text: str, label: str) -> list[str]:
    """The names under ``environments:`` (for validating every overlay)."""
    issues: list[FileIssue] = []
    root = parse(text, label, _NoEnv(), issues)
    if not isinstance(root, YMap):
        return []
    envs = root.get("environments")
    return list(envs.entries) if isinstance(envs, YMap) else []


class _NoEnv(dict[str, str]):
    """Every variable "exists" (as empty) so listing environments never fails on them."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return ""


def loads(
    text: str,
    label: str = "<topology>",
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[TopologyFile | None, list[FileIssue]]:
    """Parse text; returns the file (None when unusable) and every issue found."""
    issues: list[FileIssue] = []
    root = parse(text, label, os.environ if environ is None else environ, issues)
    if root is None:
        return None, issues
    reader = _Reader(label, issues)
    if not isinstance(root, YMap):
        reader.error(
            root.loc, f"a topology file is a mapping (kafka:, rabbitmq:), not {describe(root)}"
        )
        return None, issues
    reader.check_keys(root, schema.TOP_KEYS, "the file")
    root = reader.overlay(root, env)
    topo = reader.topology(root, env)
    return topo, issues


class _Reader:
    """Walks the located tree, collecting issues instead of stopping at the first."""

    def __init__(self, path: str, issues: list[FileIssue]) -> None:
        self.path = path
        self.issues = issues
        self.topo = TopologyFile(path=path)

    # -- reporting -----------------------------------------------------------------------
    def error(self, loc: Location, message: str) -> None:
        self.issues.append(FileIssue(loc, message))

    def warning(self, loc: Location, message: str) -> None:
        self.issues.append(FileIssue(loc, message, "warning"))

    def check_keys(self, node: YMap, allowed: tuple[str, ...], what: str) -> None:
        for key in node.entries:
            if key not in allowed:
                hint = schema.did_you_mean(key, allowed)
                if not hint:
                    hint = f" (allowed: {', '.join(allowed)})"
                self.error(node.key_loc(key), f"unknown key {key!r} in {what}{hint}")

    # -- typed getters -------------------------------------------------------------------
    def as_map(self, node: YNode | None, what: str) -> YMap | None:
        if node is None:
            return None
        if isinstance(node, YScalar) and node.value is None:
            return YMap(node.loc)  # `kafka:` with nothing under it is an empty section
        if not isinstance(node, YMap):
            self.error(node.loc, f"{what} must be a mapping, not {describe(node)}")
            return None
        return node

    def as_list(self, node: YNode | None, what: str) -> list[YNode]:
        if node is None or (isinstance(node, YScalar) and node.value is None):
            return []
        if not isinstance(node, YSeq):
            self.error(node.loc, f"{what} must be a list, not {describe(node)}")
            return []
        return node.items

    def scalar(
        self,
        parent: YMap,
        key: str,
        what: str,
        check: Callable[[Any], bool],
        expected: str,
        required: bool = False,
    ) -> Any:
        node = parent.get(key)
        if node is None:
            if required:
                self.error(parent.loc, f"{what} has no {key!r}")
            return None
        if _broken(node):
            return None
        if not isinstance(node, YScalar) or not check(node.value):
            self.error(node.loc, f"{key!r} of {what} must be {expected}, not {describe(node)}")
            return None
        return node.value

    def string(self, parent: YMap, key: str, what: str, required: bool = False) -> str | None:
        value: str | None = self.scalar(
            parent, key, what, lambda v: isinstance(v, str), "a string", required
        )
        return value

    def name(self, parent: YMap, what: str) -> str | None:
        node = parent.get("name")
        if node is None:
            self.error(parent.loc, f"{what} has no 'name'")
            return None
        if _broken(node):
            return None
        if not isinstance(node, YScalar) or not isinstance(node.value, str):
            hint = " (quote it)" if isinstance(node, YScalar) and node.value is not None else ""
            self.error(node.loc, f"the name of {what} must be a string{hint}, not {describe(node)}")
            return None
        if not node.value:
            self.error(node.loc, f"the name of {what} is empty")
            return None
        return node.value

    def integer(
        self,
        parent: YMap,
        key: str,
        what: str,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        node = parent.get(key)
        value: int | None = self.scalar(parent, key, what, _is_int, "an integer")
        if value is None or node is None:
            return None
        if minimum is not None and value < minimum:
            self.error(node.loc, f"{key!r} of {what} must be at least {minimum}, not {value}")
            return None
        if maximum is not None and value > maximum:
            self.error(node.loc, f"{key!r} of {what} must be at most {maximum}, not {value}")
            return None
        return value

    def boolean(self, parent: YMap, key: str, what: str) -> bool | None:
        value: bool | None = self.scalar(
            parent, key, what, lambda v: isinstance(v, bool), "true or false"
        )
        return value

    def choice(self, parent: YMap, key: str, what: str, choices: tuple[str, ...]) -> str | None:
        node = parent.get(key)
        value = self.string(parent, key, what)
        if value is None or node is None:
            return None
        if value not in choices:
            hint = schema.did_you_mean(value, choices) or f" (one of: {', '.join(choices)})"
            self.error(node.loc, f"{key!r} of {what} cannot be {value!r}{hint}")
            return None
        return value

    def plain_mapping(self, node: YNode | None, what: str) -> dict[str, Any] | None:
        """A mapping of scalar values (arguments, definitions), kept with YAML types."""
        ymap = self.as_map(node, what)
        if ymap is None:
            return None
        result: dict[str, Any] = {}
        for key, (_, value) in ymap.entries.items():
            plain = self.plain(value, f"{key!r} in {what}")
            if plain is not _INVALID:
                result[key] = plain
        return result

    def plain(self, node: YNode, what: str, depth: int = 0) -> Any:
        """Any JSON-like value (for policy definitions such as ha-params lists)."""
        if _broken(node):
            return _INVALID
        if isinstance(node, YScalar):
            if node.value is None or isinstance(node.value, (str, int, float, bool)):
                return node.value
            self.error(
                node.loc, f"{what} must be a string, number or boolean, not {describe(node)}"
            )
            return _INVALID
        if depth > 3:
            self.error(node.loc, f"{what} is nested too deeply")
            return _INVALID
        if isinstance(node, YSeq):
            return [self.plain(item, what, depth + 1) for item in node.items]
        assert isinstance(node, YMap)
        return {k: self.plain(v, what, depth + 1) for k, (_, v) in node.entries.items()}

    # -- environments ----------------------------------------------------------------------
    def overlay(self, root: YMap, env: str | None) -> YMap:
        envs_node = root.get("environments")
        envs = self.as_map(envs_node, "'environments'")
        if envs is not None:
            for name, (_key_loc, overlay) in envs.entries.items():
                body = self.as_map(overlay, f"environment {name!r}")
                if body is not None:
                    self.check_keys(body, schema.ENV_KEYS, f"environment {name!r}")
        if env is None:
            return root
        if envs is None or env not in envs.entries:
            known = list(envs.entries) if envs else []
            where = root.key_loc("environments") if envs else root.loc
            hint = schema.did_you_mean(env, known) or (
                f" (defined: {', '.join(known)})" if known else " (the file defines none)"
            )
            self.error(where, f"no environment named {env!r}{hint}")
            return root
        chosen = envs.get(env)
        if not isinstance(chosen, YMap):
            return root
        merged = merge_nodes(root, chosen)
        assert isinstance(merged, YMap)
        return merged

    # -- the file --------------------------------------------------------------------------
    def topology(self, root: YMap, env: str | None) -> TopologyFile:
        topo = self.topo
        topo.env = env
        version = root.get("version")
        if version is not None and not (isinstance(version, YScalar) and version.value == 1):
            self.error(version.loc, f"'version' must be 1, not {describe(version)}")
        owner_node = root.get("owner")
        owner = self.string(root, "owner", "the file")
        if owner is not None and owner_node is not None and not _OWNER_RE.match(owner):
            self.error(
                owner_node.loc,
                f"owner {owner!r} must be 1-100 letters, digits, '.', '_' or '-'",
            )
            owner = None
        topo.owner = owner
        for item in self.as_list(root.get("prefixes"), "'prefixes'"):
            if not isinstance(item, YScalar) or not isinstance(item.value, str):
                self.error(item.loc, f"a prefix must be a string, not {describe(item)}")
                continue
            if len(item.value.strip()) < 2:
                self.error(
                    item.loc,
                    f"prefix {item.value!r} is too short: it would claim almost every object "
                    "(use at least 2 characters)",
                )
                continue
            topo.prefixes.append(item.value)
        kafka = root.get("kafka")
        if kafka is not None:
            topo.kafka = self.kafka(kafka)
        rabbit = root.get("rabbitmq")
        if rabbit is not None:
            topo.rabbitmq = self.rabbitmq(rabbit)
        return topo

    # -- kafka -----------------------------------------------------------------------------
    def kafka(self, node: YNode) -> KafkaTopology:
        result = KafkaTopology()
        section = self.as_map(node, "'kafka'")
        if section is None:
            return result
        self.check_keys(section, schema.KAFKA_KEYS, "'kafka'")
        defaults = TopicSpec(name="")
        dnode = self.as_map(section.get("defaults"), "'kafka.defaults'")
        if dnode is not None:
            self.check_keys(dnode, schema.KAFKA_DEFAULT_KEYS, "'kafka.defaults'")
            defaults.partitions = self.integer(dnode, "partitions", "'kafka.defaults'", 1)
            defaults.replication_factor = self.integer(
                dnode, "replication_factor", "'kafka.defaults'", 1, 32767
            )
            defaults.configs = self.configs(dnode.get("configs"), "'kafka.defaults'")
        for item in self.as_list(section.get("topics"), "'kafka.topics'"):
            self.topic(item, defaults, result)
        return result

    def topic(self, item: YNode, defaults: TopicSpec, result: KafkaTopology) -> None:
        node = self.as_map(item, "a topic")
        if node is None:
            return
        name = self.name(node, "a topic")
        what = f"topic {name!r}" if name else "a topic"
        self.check_keys(node, schema.TOPIC_KEYS, what)
        partitions = self.integer(node, "partitions", what, 1, 1_000_000)
        rf = self.integer(node, "replication_factor", what, 1, 32767)
        configs = dict(defaults.configs)
        configs.update(self.configs(node.get("configs"), what))
        if name is None:
            return
        spec = TopicSpec(
            name=name,
            partitions=partitions if partitions is not None else defaults.partitions,
            replication_factor=rf if rf is not None else defaults.replication_factor,
            configs=configs,
        )
        result.topics.append(spec)
        self.topo.locations.setdefault(("topic", name), node.loc)
        dlq_node = node.get("dlq")
        if dlq_node is None:
            return
        dlq = self.dlq_topic(dlq_node, spec, defaults)
        if dlq is not None:
            result.topics.append(dlq)
            result.dlqs[dlq.name] = name
            self.topo.locations.setdefault(("topic", dlq.name), dlq_node.loc)

    def dlq_topic(self, node: YNode, source: TopicSpec, defaults: TopicSpec) -> TopicSpec | None:
        what = f"the dlq of topic {source.name!r}"
        spec = TopicSpec(
            name=f"{source.name}.dlq",
            partitions=source.partitions,
            replication_factor=source.replication_factor,
            configs={**defaults.configs, **schema.DLQ_TOPIC_CONFIGS},
        )
        if isinstance(node, YScalar) and isinstance(node.value, bool):
            return spec if node.value else None
        body = self.as_map(node, what)
        if body is None:
            return None
        self.check_keys(body, schema.DLQ_KEYS, what)
        name = self.string(body, "name", what)
        if name is not None:
            spec.name = name
        partitions = self.integer(body, "partitions", what, 1, 1_000_000)
        if partitions is not None:
            spec.partitions = partitions
        rf = self.integer(body, "replication_factor", what, 1, 32767)
        if rf is not None:
            spec.replication_factor = rf
        spec.configs.update(self.configs(body.get("configs"), what))
        return spec

    def configs(self, node: YNode | None, what: str) -> dict[str, str]:
        ymap = self.as_map(node, f"the configs of {what}")
        if ymap is None:
            return {}
        result: dict[str, str] = {}
        for key, (key_loc, value) in ymap.entries.items():
            if key not in schema.KAFKA_TOPIC_CONFIGS:
                hint = schema.did_you_mean(key, schema.KAFKA_TOPIC_CONFIGS)
                self.error(key_loc, f"{key!r} is not a Kafka topic config{hint}")
                continue
            text = self.config_value(key, value, what)
            if text is not None:
                result[key] = text
        return result

    def config_value(self, key: str, node: YNode, what: str) -> str | None:
        where = f"config {key!r} of {what}"
        if _broken(node):
            return None
        if key == "cleanup.policy" and isinstance(node, YSeq):
            parts = [i.value for i in node.items if isinstance(i, YScalar)]
            if len(parts) != len(node.items) or not all(isinstance(p, str) for p in parts):
                self.error(node.loc, f"{where} must list 'delete' and/or 'compact'")
                return None
            node = YScalar(node.loc, ",".join(parts))
        if not isinstance(node, YScalar) or node.value is None or not _is_scalar(node.value):
            self.error(
                node.loc, f"{where} must be a string, number or boolean, not {describe(node)}"
            )
            return None
        value = node.value
        if key in schema.KAFKA_INT_CONFIGS:
            if not _is_int(value) and not (isinstance(value, str) and _INT_RE.match(value)):
                self.error(node.loc, f"{where} must be an integer, not {describe(node)}")
                return None
            return str(int(value))
        if key in schema.KAFKA_BOOL_CONFIGS:
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower()
            self.error(node.loc, f"{where} must be true or false, not {describe(node)}")
            return None
        if key in schema.KAFKA_CHOICE_CONFIGS:
            choices = schema.KAFKA_CHOICE_CONFIGS[key]
            if value not in choices:
                hint = (
                    schema.did_you_mean(str(value), choices) or f" (one of: {', '.join(choices)})"
                )
                self.error(node.loc, f"{where} cannot be {value!r}{hint}")
                return None
            return str(value)
        if key == "cleanup.policy":
            parts = [p.strip() for p in str(value).split(",") if p.strip()]
            if any(p not in ("delete", "compact") for p in parts):
                self.error(node.loc, f"{where} must be delete, compact or 'compact,delete'")
                return None
            if not parts:
                self.warning(
                    node.loc,
                    f"{what}: an empty cleanup.policy neither deletes nor compacts, so the "
                    "topic keeps every record; Kafka accepts it (4.2 documents it as "
                    "infinite retention)",
                )
            return ",".join(sorted(set(parts)))
        if key == "min.cleanable.dirty.ratio":
            try:
                ratio = float(value)
            except (TypeError, ValueError):
                ratio = -1.0
            if isinstance(value, bool) or not 0.0 <= ratio <= 1.0:
                self.error(node.loc, f"{where} must be a number between 0 and 1")
                return None
            return repr(ratio) if isinstance(value, float) else str(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return repr(value)
        return str(value)

    # -- rabbitmq --------------------------------------------------------------------------
    def rabbitmq(self, node: YNode) -> RabbitTopology:
        result = RabbitTopology()
        section = self.as_map(node, "'rabbitmq'")
        if section is None:
            return result
        self.check_keys(section, schema.RABBIT_KEYS, "'rabbitmq'")
        result.vhost = self.string(section, "vhost", "'rabbitmq'")
        for item in self.as_list(section.get("exchanges"), "'rabbitmq.exchanges'"):
            self.exchange(item, result)
        for item in self.as_list(section.get("queues"), "'rabbitmq.queues'"):
            self.queue(item, result)
        for item in self.as_list(section.get("bindings"), "'rabbitmq.bindings'"):
            self.binding(item, result)
        for item in self.as_list(section.get("policies"), "'rabbitmq.policies'"):
            self.policy(item, result)
        return result

    def exchange(self, item: YNode, result: RabbitTopology) -> None:
        node = self.as_map(item, "an exchange")
        if node is None:
            return
        name = self.name(node, "an exchange")
        what = f"exchange {name!r}" if name else "an exchange"
        self.check_keys(node, schema.EXCHANGE_KEYS, what)
        ex_type = self.exchange_type(node, what)
        spec = ExchangeSpec(name=name or "", type=ex_type or "direct")
        spec.durable = _default(self.boolean(node, "durable", what), True)
        spec.auto_delete = _default(self.boolean(node, "auto_delete", what), False)
        spec.internal = _default(self.boolean(node, "internal", what), False)
        spec.arguments = self.plain_mapping(node.get("arguments"), f"the arguments of {what}") or {}
        alternate = self.string(node, "alternate_exchange", what)
        if alternate is not None:
            if "alternate-exchange" in spec.arguments:
                self.error(
                    node.key_loc("alternate_exchange"),
                    f"{what} sets the alternate exchange twice (alternate_exchange and "
                    "arguments.alternate-exchange)",
                )
            spec.arguments["alternate-exchange"] = alternate
        if name is None:
            return
        result.exchanges.append(spec)
        self.topo.locations.setdefault(("exchange", name), node.loc)

    def exchange_type(self, node: YMap, what: str) -> str | None:
        type_node = node.get("type")
        value = self.string(node, "type", what)
        if value is None or type_node is None:
            if type_node is None:
                self.error(
                    node.loc, f"{what} has no 'type' (one of: direct, topic, fanout, headers)"
                )
            return None
        if value not in schema.EXCHANGE_TYPES and not value.startswith("x-"):
            hint = schema.did_you_mean(value, schema.EXCHANGE_TYPES) or (
                " (one of: direct, topic, fanout, headers, or a plugin's x- type)"
            )
            self.error(type_node.loc, f"'type' of {what} cannot be {value!r}{hint}")
            return None
        return value

    def queue(self, item: YNode, result: RabbitTopology) -> None:
        node = self.as_map(item, "a queue")
        if node is None:
            return
        name = self.name(node, "a queue")
        what = f"queue {name!r}" if name else "a queue"
        self.check_keys(node, (*schema.QUEUE_KEYS, "exclusive"), what)
        if "exclusive" in node.entries:
            self.error(
                node.key_loc("exclusive"),
                f"{what}: exclusive queues belong to one connection and cannot be declared "
                "in a topology file",
            )
        q_type = self.choice(node, "type", what, schema.QUEUE_TYPES) or "classic"
        spec = QueueSpec(name=name or "", type=q_type)
        spec.durable = _default(self.boolean(node, "durable", what), True)
        spec.auto_delete = _default(self.boolean(node, "auto_delete", what), False)
        raw = self.plain_mapping(node.get("arguments"), f"the arguments of {what}") or {}
        if "x-queue-type" in raw:
            self.error(
                node.key_loc("arguments"),
                f"{what}: set the queue type with 'type:', not with x-queue-type",
            )
            raw.pop("x-queue-type")
        args_node = node.get("arguments")
        for argument, value in raw.items():
            arg = schema.QUEUE_ARGS_BY_ARGUMENT.get(argument)
            loc = args_node.key_loc(argument) if isinstance(args_node, YMap) else node.loc
            if arg is None:
                close = None
                if argument not in schema.OTHER_QUEUE_ARGUMENTS:
                    close = schema.near_miss(argument, schema.QUEUE_ARGS_BY_ARGUMENT)
                if close:
                    self.warning(
                        loc,
                        f"unknown argument {argument!r} of {what} (did you mean {close!r}?): "
                        "RabbitMQ accepts arguments it does not know, and ignores them",
                    )
            elif not self.arg_value_ok(arg, value, loc, f"argument {argument!r} of {what}"):
                continue
            spec.arguments[argument] = value
        for arg in schema.QUEUE_ARGS:
            value_node = node.get(arg.key)
            if value_node is None:
                continue
            if arg.argument in spec.arguments:
                self.error(
                    node.key_loc(arg.key),
                    f"{what} sets {arg.argument} twice ({arg.key} and arguments.{arg.argument})",
                )
                continue
            if _broken(value_node):
                continue
            value = value_node.value if isinstance(value_node, YScalar) else _INVALID
            if value is _INVALID:
                self.error(value_node.loc, f"{arg.key!r} of {what} must be a single value")
                continue
            if self.arg_value_ok(arg, value, value_node.loc, f"{arg.key!r} of {what}"):
                spec.arguments[arg.argument] = value
        if name is None:
            return
        result.queues.append(spec)
        self.topo.locations.setdefault(("queue", name), node.loc)
        dlq_node = node.get("dlq")
        if dlq_node is not None:
            self.queue_dlq(dlq_node, spec, result, what)

    def queue_dlq(self, node: YNode, source: QueueSpec, result: RabbitTopology, what: str) -> None:
        """``dlq: true``: declare ``<name>.dlq``; dead-letter there unless a DLX is set."""
        if not (isinstance(node, YScalar) and isinstance(node.value, bool)):
            self.error(node.loc, f"'dlq' of {what} must be true or false, not {describe(node)}")
            return
        if not node.value:
            return
        if source.type == "stream":
            self.error(node.loc, f"{what}: a stream does not dead-letter; remove 'dlq'")
            return
        dlq_name = f"{source.name}.dlq"
        dlq_type = "quorum" if source.type == "quorum" else "classic"
        result.queues.append(QueueSpec(name=dlq_name, type=dlq_type))
        result.dlqs[dlq_name] = source.name
        self.topo.locations.setdefault(("queue", dlq_name), node.loc)
        if "x-dead-letter-exchange" not in source.arguments:
            # The default exchange routes by queue name, so no extra exchange is needed.
            source.arguments["x-dead-letter-exchange"] = ""
            source.arguments.setdefault("x-dead-letter-routing-key", dlq_name)

    def arg_value_ok(self, arg: schema.ArgSpec, value: Any, loc: Location, where: str) -> bool:
        """Whether the value goes into the spec: a value RabbitMQ refuses is an error, one
        it accepts although it looks wrong is a warning (and kept)."""
        problem = _arg_value_problem(arg, value)
        if problem is None:
            return True
        if arg.broker_checks_value:
            accepted = (
                _is_int(value)
                and arg.accepted_minimum is not None
                and arg.accepted_minimum <= value < (arg.minimum or 0)
            )
            if not accepted:
                self.error(loc, f"{where} must be {problem}")
                return False
            meaning = f" and {arg.accepted_meaning}" if arg.accepted_meaning else ""
            self.warning(loc, f"{where} should be {problem}; RabbitMQ accepts it{meaning}")
            return True
        self.warning(
            loc,
            f"{where} should be {problem}; RabbitMQ accepts it without checking the value",
        )
        return True

    def binding(self, item: YNode, result: RabbitTopology) -> None:
        node = self.as_map(item, "a binding")
        if node is None:
            return
        self.check_keys(node, schema.BINDING_KEYS, "a binding")
        source = self.string(node, "source", "a binding", required=True)
        destination = self.string(node, "destination", "a binding", required=True)
        what = f"binding {source} -> {destination}" if source and destination else "a binding"
        dtype = self.choice(node, "destination_type", what, ("queue", "exchange")) or "queue"
        args = self.plain_mapping(node.get("arguments"), f"the arguments of {what}") or {}
        keys: list[str] = []
        if "routing_key" in node.entries and "routing_keys" in node.entries:
            self.error(node.key_loc("routing_keys"), f"{what}: give routing_key or routing_keys")
        single = self.string(node, "routing_key", what)
        if single is not None:
            keys.append(single)
        for key_node in self.as_list(node.get("routing_keys"), f"'routing_keys' of {what}"):
            if isinstance(key_node, YScalar) and isinstance(key_node.value, str):
                keys.append(key_node.value)
            else:
                self.error(
                    key_node.loc, f"a routing key must be a string, not {describe(key_node)}"
                )
        if source is None or destination is None:
            return
        for key in keys or [""]:
            spec = BindingSpec(source, destination, dtype, key, dict(args))
            result.bindings.append(spec)
            self.topo.locations.setdefault(("binding", spec.key()), node.loc)

    def policy(self, item: YNode, result: RabbitTopology) -> None:
        node = self.as_map(item, "a policy")
        if node is None:
            return
        name = self.name(node, "a policy")
        what = f"policy {name!r}" if name else "a policy"
        self.check_keys(node, schema.POLICY_KEYS, what)
        pattern = self.string(node, "pattern", what, required=True)
        apply_to = self.choice(node, "apply_to", what, schema.POLICY_APPLY_TO) or "all"
        priority = self.integer(node, "priority", what) or 0  # RabbitMQ takes negatives
        definition = self.plain_mapping(node.get("definition"), f"the definition of {what}")
        if definition is None and "definition" not in node.entries:
            self.error(node.loc, f"{what} has no 'definition'")
        if name is None or pattern is None or definition is None:
            return
        result.policies.append(PolicySpec(name, pattern, definition, apply_to, priority))
        self.topo.locations.setdefault(("policy", name), node.loc)


# -- helpers -------------------------------------------------------------------------------
class _Invalid:
    pass


_INVALID: Any = _Invalid()
_INT_RE = re.compile(r"^-?\d+$")


def _arg_value_problem(arg: schema.ArgSpec, value: Any) -> str | None:
    """What the value should be ("at least 1, not 0"), or None when it fits."""
    shown = f"{value!r}" if not isinstance(value, bool) else str(value).lower()
    if arg.kind == "int":
        if not _is_int(value):
            return f"an integer, not {shown}"
        if arg.minimum is not None and value < arg.minimum:
            return f"at least {arg.minimum}, not {value}"
        if arg.maximum is not None and value > arg.maximum:
            return f"at most {arg.maximum}, not {value}"
        return None
    if arg.kind == "bool":
        return None if isinstance(value, bool) else f"true or false, not {shown}"
    if arg.kind == "str":
        return None if isinstance(value, str) else f"a string, not {shown}"
    if arg.kind == "duration":
        if isinstance(value, str) and _DURATION_RE.match(value):
            return None
        return f"a duration like 7D, 12h, 30m or 1Y, not {shown}"
    if arg.kind == "choice" and value not in arg.choices:
        return f"one of: {', '.join(arg.choices)}, not {shown}"
    return None


def _broken(node: YNode) -> bool:
    return isinstance(node, YScalar) and node.broken


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _default(value: T | None, default: T) -> T:
    return default if value is None else value


def merge_nodes(base: YNode, over: YNode) -> YNode:
    """Overlay ``over`` on ``base``: mappings merge deeply, lists of named items merge by
    name (new names are appended), anything else is replaced by the overlay."""
    if isinstance(base, YMap) and isinstance(over, YMap):
        merged = YMap(base.loc, dict(base.entries))
        for key, (key_loc, value) in over.entries.items():
            if key in merged.entries:
                merged.entries[key] = (
                    merged.entries[key][0],
                    merge_nodes(merged.entries[key][1], value),
                )
            else:
                merged.entries[key] = (key_loc, value)
        return merged
    if isinstance(base, YSeq) and isinstance(over, YSeq) and _named(base) and _named(over):
        items = list(base.items)
        index = {_item_name(i): n for n, i in enumerate(items)}
        for item in over.items:
            name = _item_name(item)
            if name in index:
                items[index[name]] = merge_nodes(items[index[name]], item)
            else:
                index[name] = len(items)
                items.append(item)
        return YSeq(base.loc, items)
    return over


def _item_name(node: YNode) -> str:
    assert isinstance(node, YMap)
    name = node.get("name")
    assert isinstance(name, YScalar)
    return str(name.value)


def _named(seq: YSeq) -> bool:
    return all(
        isinstance(i, YMap) and isinstance(i.get("name"), YScalar) for i in seq.items
    ) and bool(seq.items)
