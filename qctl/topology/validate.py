"""Semantic checks of a loaded topology file, without a cluster.

The loader has already checked keys and types; this finds what only the whole file can
show: duplicate names, bindings to undeclared exchanges or queues, dead-letter and
alternate exchanges that point nowhere, arguments a queue type does not support,
invalid policy patterns and doubtful Kafka settings.

What the brokers refuse is an error: the file cannot be applied. What they accept,
however odd, is a warning with the reason: a live cluster can hold it, so an export of
that cluster must load and plan (to no changes) without editing.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Mapping

from qctl.backends.capabilities.topology import QueueSpec, TopicSpec
from qctl.topology import schema
from qctl.topology.model import FileIssue, Location, RabbitTopology, TopologyFile
from qctl.topology.ownership import OWNERS_TOPIC

_TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_MAX_TOPIC_NAME = 249
_MAX_RABBIT_NAME = 255

#: The types of the exchanges every RabbitMQ vhost has.
_BROKER_EXCHANGE_TYPES = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.headers": "headers",
    "amq.match": "headers",
    "amq.topic": "topic",
    "amq.rabbitmq.trace": "topic",
}

#: PCRE syntax Python's ``re`` lacks, each with a stand-in ``re`` compiles.
_PCRE_ONLY = [
    (re.compile(r"\\Q.*?(?:\\E|$)", re.S), "x"),  # \Q...\E quoting
    (re.compile(r"\\[pP](?:\{[^}]*\}|[A-Za-z])"), "."),  # Unicode properties
    (re.compile(r"\\[xo]\{[0-9A-Fa-f]*\}"), "."),  # \x{..} and \o{..}
    (re.compile(r"\\[hHVRXN]"), "."),  # horizontal/vertical space, newline, grapheme
    (re.compile(r"\\[zKGEe]"), ""),  # end of subject, keep-out, match start, escape
    (re.compile(r"\\[gk](?:\{[^}]*\}|<[^>]*>|'[^']*'|-?\d+)"), ""),  # back references
    (re.compile(r"\(\?(?:<|')(?=[A-Za-z_])"), "(?P<"),  # named groups (?<n>...) (?'n'...)
    (re.compile(r"(?<=\(\?P<)([A-Za-z_]\w*)'"), r"\1>"),
    (re.compile(r"\(\?(?:R|[+-]?\d+|&\w+|P>\w+)\)"), ""),  # recursion
    (re.compile(r"\(\?\|"), "(?:"),  # branch reset
    (re.compile(r"\(\*[A-Z][A-Z0-9_]*(?:[:=][^)]*)?\)"), ""),  # verbs: (*UTF8), (*SKIP)
    (re.compile(r"\(\?[a-zA-Z]*-?[a-zA-Z]*\)"), ""),  # option settings anywhere
]


def validate(topo: TopologyFile) -> list[FileIssue]:
    """Every semantic problem of the file (errors and warnings)."""
    issues: list[FileIssue] = []
    _check_prefixes(topo, issues)
    if topo.kafka is not None:
        _check_topics(topo, topo.kafka.topics, issues)
    if topo.rabbitmq is not None:
        _check_rabbit(topo, topo.rabbitmq, issues)
    return issues


def _error(issues: list[FileIssue], loc: Location, message: str) -> None:
    issues.append(FileIssue(loc, message))


def _warn(issues: list[FileIssue], loc: Location, message: str) -> None:
    issues.append(FileIssue(loc, message, "warning"))


def _check_prefixes(topo: TopologyFile, issues: list[FileIssue]) -> None:
    for prefix in topo.prefixes:
        if prefix.startswith(("amq.", "__")):
            _error(
                issues,
                Location(topo.path, 1, 1),
                f"prefix {prefix!r} would claim broker-internal objects",
            )


# -- kafka ---------------------------------------------------------------------------------
def _check_topics(topo: TopologyFile, topics: list[TopicSpec], issues: list[FileIssue]) -> None:
    seen: dict[str, str] = {}
    for topic in topics:
        loc = topo.location("topic", topic.name)
        name = topic.name
        if not _TOPIC_NAME_RE.match(name) or name in (".", ".."):
            _error(
                issues,
                loc,
                f"topic name {name!r} may only contain letters, digits, '.', '_' and '-'",
            )
        if len(name) > _MAX_TOPIC_NAME:
            _error(issues, loc, f"topic name {name[:40]!r}... is longer than 249 characters")
        if name.startswith("__"):
            _error(issues, loc, f"topic {name!r}: names starting with '__' are Kafka-internal")
        if name == OWNERS_TOPIC:
            _error(issues, loc, f"topic {name!r} is where qctl keeps ownership records")
        # Kafka treats '.' and '_' as the same in metric names and refuses such pairs.
        collision = name.replace(".", "_")
        if collision in seen:
            other = seen[collision]
            what = "declared twice" if other == name else f"collides with {other!r} ('.' vs '_')"
            _error(issues, loc, f"topic {name!r} is {what}")
        else:
            seen[collision] = name
        isr = topic.configs.get("min.insync.replicas")
        rf = topic.replication_factor
        if isr is not None and rf is not None and int(isr) > rf:
            # Kafka 3.7 (KAFKA-15583) made the leader use min(min.insync.replicas, replica
            # count) for acks=all and the high watermark; 3.6 and older refuse every
            # acks=all write to such a topic with NOT_ENOUGH_REPLICAS.
            _warn(
                issues,
                loc,
                f"topic {name!r}: min.insync.replicas={isr} exceeds replication_factor={rf}; "
                "Kafka 3.7 and later (every version qctl supports) cap it at the replica "
                "count, so acks=all writes need every replica in sync; Kafka 3.6 and older "
                "refuse every acks=all write",
            )


# -- rabbitmq ------------------------------------------------------------------------------
def _check_rabbit(topo: TopologyFile, rabbit: RabbitTopology, issues: list[FileIssue]) -> None:
    if rabbit.vhost == "":
        _error(issues, Location(topo.path, 1, 1), "rabbitmq.vhost must not be empty")
    exchanges = {e.name: e for e in rabbit.exchanges}
    queues = {q.name: q for q in rabbit.queues}
    for kind, names in (
        ("exchange", [e.name for e in rabbit.exchanges]),
        ("queue", [q.name for q in rabbit.queues]),
        ("policy", [p.name for p in rabbit.policies]),
    ):
        for name, count in Counter(names).items():
            if count > 1:
                _error(
                    issues, topo.location(kind, name), f"{kind} {name!r} is declared {count} times"
                )
    for exchange in rabbit.exchanges:
        loc = topo.location("exchange", exchange.name)
        _check_rabbit_name(issues, loc, "exchange", exchange.name)
        alternate = exchange.arguments.get("alternate-exchange")
        if isinstance(alternate, str) and not _exchange_known(alternate, exchanges):
            _warn(
                issues,
                loc,
                f"exchange {exchange.name!r}: alternate exchange {alternate!r} is not declared "
                f"in the file{_undeclared_exchange('unroutable messages')}",
            )
    for queue in rabbit.queues:
        _check_queue(topo, queue, exchanges, issues)
    seen_bindings: set[str] = set()
    for binding in rabbit.bindings:
        loc = topo.location("binding", binding.key())
        what = f"binding {binding.source} -> {binding.destination}"
        if binding.key() in seen_bindings:
            _warn(issues, loc, f"{what} [{binding.routing_key}] is declared twice")
        seen_bindings.add(binding.key())
        if binding.source == "":
            _error(issues, loc, f"{what}: the default exchange cannot be bound explicitly")
        elif not _exchange_known(binding.source, exchanges):
            hint = schema.did_you_mean(binding.source, exchanges)
            _error(issues, loc, f"{what}: exchange {binding.source!r} is not declared{hint}")
        if binding.destination_type == "queue" and binding.destination not in queues:
            hint = schema.did_you_mean(binding.destination, queues)
            _error(issues, loc, f"{what}: queue {binding.destination!r} is not declared{hint}")
        if binding.destination_type == "exchange" and not _exchange_known(
            binding.destination, exchanges
        ):
            hint = schema.did_you_mean(binding.destination, exchanges)
            _error(issues, loc, f"{what}: exchange {binding.destination!r} is not declared{hint}")
        source = exchanges.get(binding.source)
        match = binding.arguments.get("x-match")
        if match is not None and match not in ("all", "any", "all-with-x", "any-with-x"):
            source_type = _BROKER_EXCHANGE_TYPES.get(
                binding.source, source.type if source is not None else None
            )
            if source_type in ("headers", None):
                _error(issues, loc, f"{what}: x-match must be all or any, not {match!r}")
            else:
                _warn(
                    issues,
                    loc,
                    f"{what}: x-match {match!r} is not all or any; RabbitMQ accepts it because "
                    f"only a headers exchange reads x-match, and a {source_type} exchange "
                    "ignores it",
                )
        if source is not None and source.type == "headers" and binding.routing_key:
            _warn(issues, loc, f"{what}: a headers exchange ignores the routing key")
        if source is not None and source.type == "fanout" and binding.routing_key:
            _warn(issues, loc, f"{what}: a fanout exchange ignores the routing key")
    for policy in rabbit.policies:
        loc = topo.location("policy", policy.name)
        _check_pattern(issues, loc, policy.name, policy.pattern)
        if not policy.definition:
            _error(issues, loc, f"policy {policy.name!r} has an empty definition")
        for key in policy.definition:
            if key in schema.POLICY_DEFINITION_KEYS:
                continue
            close = schema.near_miss(key, schema.POLICY_DEFINITION_KEYS)
            if close:
                _error(
                    issues,
                    loc,
                    f"policy {policy.name!r}: unknown definition key {key!r} "
                    f"(did you mean {close!r}?)",
                )
        dlx = policy.definition.get("dead-letter-exchange")
        if isinstance(dlx, str) and not _exchange_known(dlx, exchanges):
            _warn(
                issues,
                loc,
                f"policy {policy.name!r}: dead-letter exchange {dlx!r} is not declared in the "
                f"file{_undeclared_exchange('dead letters')}",
            )


def _check_pattern(issues: list[FileIssue], loc: Location, name: str, pattern: str) -> None:
    """RabbitMQ compiles policy patterns as PCRE. One Python's ``re`` refuses is an error,
    unless it compiles once PCRE-only syntax is replaced: then it is a warning, as qctl
    cannot check it and RabbitMQ accepts it (or refuses it when it is applied)."""
    problem = _re_problem(pattern)
    if problem is None:
        return
    stand_in = pattern
    for syntax, replacement in _PCRE_ONLY:
        stand_in = syntax.sub(replacement, stand_in)
    if _re_problem(stand_in) is not None:
        _error(issues, loc, f"policy {name!r}: invalid pattern {pattern!r}: {problem}")
        return
    _warn(
        issues,
        loc,
        f"policy {name!r}: pattern {pattern!r} uses PCRE syntax qctl cannot check "
        f"({problem}); RabbitMQ compiles patterns as PCRE and checks it on apply",
    )


def _undeclared_exchange(dropped: str) -> str:
    """Why an exchange name the file does not declare is only a warning."""
    return f"; RabbitMQ accepts the name, and drops {dropped} while no such exchange exists"


def _check_rabbit_name(issues: list[FileIssue], loc: Location, kind: str, name: str) -> None:
    if name.startswith("amq."):
        _error(issues, loc, f"{kind} {name!r}: names starting with 'amq.' are reserved")
    if len(name.encode()) > _MAX_RABBIT_NAME:
        _error(issues, loc, f"{kind} name {name[:40]!r}... is longer than 255 bytes")


def _exchange_known(name: str, exchanges: Mapping[str, object]) -> bool:
    """Declared in the file, or one the broker always has ("" and amq.*)."""
    return name == "" or name.startswith("amq.") or name in exchanges


def _check_queue(
    topo: TopologyFile, queue: QueueSpec, exchanges: Mapping[str, object], issues: list[FileIssue]
) -> None:
    loc = topo.location("queue", queue.name)
    what = f"queue {queue.name!r}"
    _check_rabbit_name(issues, loc, "queue", queue.name)
    if queue.type in ("quorum", "stream"):
        if not queue.durable:
            _error(issues, loc, f"{what}: {queue.type} queues are always durable")
        if queue.auto_delete:
            _error(issues, loc, f"{what}: {queue.type} queues cannot be auto-delete")
    for argument in queue.arguments:
        arg = schema.QUEUE_ARGS_BY_ARGUMENT.get(argument)
        if arg is not None and queue.type not in arg.queue_types:
            unsupported = (
                f"{what}: {arg.key} ({argument}) is not supported by {queue.type} queues "
                f"(only {', '.join(arg.queue_types)})"
            )
            accepted = arg.accepted_on.get(queue.type)
            if accepted is None:
                _error(issues, loc, unsupported)
            else:
                _warn(issues, loc, f"{unsupported}; {accepted}")
    args = queue.arguments
    if queue.type == "quorum" and args.get("x-overflow") == "reject-publish-dlx":
        _warn(
            issues,
            loc,
            f"{what}: quorum queues do not support overflow reject-publish-dlx; RabbitMQ "
            "accepts it and uses drop-head",
        )
    if "x-dead-letter-routing-key" in args and "x-dead-letter-exchange" not in args:
        _error(
            issues,
            loc,
            f"{what}: dead_letter_routing_key needs a dead_letter_exchange",
        )
    dlx = args.get("x-dead-letter-exchange")
    if isinstance(dlx, str) and not _exchange_known(dlx, exchanges):
        hint = schema.did_you_mean(dlx, exchanges)
        _warn(
            issues,
            loc,
            f"{what}: dead-letter exchange {dlx!r} is not declared in the file{hint}"
            f"{_undeclared_exchange('dead letters')}",
        )
    if (
        args.get("x-dead-letter-strategy") == "at-least-once"
        and args.get("x-overflow") != "reject-publish"
    ):
        _warn(
            issues,
            loc,
            f"{what}: dead_letter_strategy at-least-once needs overflow reject-publish; "
            "RabbitMQ falls back to at-most-once without it",
        )


def _re_problem(pattern: str) -> str | None:
    """Why Python's ``re`` cannot compile the pattern, or None (its warnings about PCRE
    look-alikes such as ``[[:alpha:]]`` are not the file's problem)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(pattern)
        except re.error as exc:
            return str(exc)
    return None
