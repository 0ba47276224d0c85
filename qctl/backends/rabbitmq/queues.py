"""Queue depths, consumers and message rates from the RabbitMQ management API.

All queues of the vhost come from one ``GET /api/queues/{vhost}`` with only the columns
qctl needs; the bindings are read once more only when some queue dead-letters, to find
the queues behind each dead-letter exchange.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qctl.backends.capabilities.queues import QueueRates, QueueStats
from qctl.backends.rabbitmq.core import RabbitCore
from qctl.backends.rabbitmq.management import quote_segment

#: Names that say "dead letters" by convention (Spring's ``.DLT``, ``-dlq``, ...).
DEFAULT_DLQ_PATTERNS = ("*.dlq", "*-dlq", "*.dlt", "*.dead")

_COLUMNS = ",".join(
    (
        "name",
        "vhost",
        "type",
        "state",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "consumer_utilisation",
        "head_message_timestamp",
        "arguments",
        "effective_policy_definition",
        "message_stats",
        "messages_details",
    )
)


@dataclass(frozen=True)
class DeadLetterTarget:
    """Where one queue sends its dead letters."""

    queue: str
    exchange: str
    routing_key: str | None


def dead_letter_target(queue: Mapping[str, Any]) -> DeadLetterTarget | None:
    """The queue's dead-letter exchange and key; a queue argument wins over a policy."""
    args = queue.get("arguments") or {}
    policy = queue.get("effective_policy_definition") or {}
    if not isinstance(policy, Mapping):  # an empty policy is sometimes rendered as []
        policy = {}
    exchange = args.get("x-dead-letter-exchange", policy.get("dead-letter-exchange"))
    if exchange is None:
        return None
    key = args.get("x-dead-letter-routing-key", policy.get("dead-letter-routing-key"))
    return DeadLetterTarget(
        str(queue.get("name")), str(exchange), None if key is None else str(key)
    )


def classify_dead_letter_queues(
    queues: Sequence[Mapping[str, Any]],
    bindings: Sequence[Mapping[str, Any]],
    patterns: Iterable[str] = DEFAULT_DLQ_PATTERNS,
) -> dict[str, str]:
    """Queue name -> why it is a dead-letter queue, for every DLQ among ``queues``.

    A queue is a DLQ when another queue (by argument or policy) dead-letters into it:
    through an exchange bound to it with a key that matches the dead-letter routing key,
    or through the default exchange by name. A dead-letter loop (a work queue that
    dead-letters into a retry queue which dead-letters back) is a retry, not a DLQ, so
    neither end of such a loop counts; nor does the target of a queue with a message TTL
    (a delay queue expires into its target by design). Names matching a DLQ convention
    count too.
    """
    names = {str(q.get("name")) for q in queues}
    edges: dict[str, set[str]] = {}
    for queue in queues:
        target = dead_letter_target(queue)
        if target is None:
            continue
        if target.exchange == "":
            dests = {target.routing_key} & names if target.routing_key else set()
        else:
            dests = _queues_behind(target.exchange, target.routing_key, bindings)
        edges[target.queue] = {d for d in dests if d != target.queue}
    reasons: dict[str, str] = {}
    for queue in queues:
        target = dead_letter_target(queue)
        if target is None:
            continue
        if _is_delay_queue(queue):
            continue  # a TTL queue expiring into its target is a delay or retry route
        for dest in sorted(edges.get(target.queue, set())):
            if target.queue in edges.get(dest, set()):
                continue  # a retry loop: dest dead-letters straight back
            if target.exchange == "":
                why = f"queue {target.queue!r} dead-letters to it by routing key"
            else:
                why = f"bound to dead-letter exchange {target.exchange!r} of queue {target.queue!r}"
            reasons.setdefault(dest, why)
    lowered = [p.lower() for p in patterns]
    for name in sorted(names - set(reasons)):
        for pattern in lowered:
            if fnmatch.fnmatchcase(name.lower(), pattern):
                reasons[name] = f"name matches {pattern!r}"
                break
    return reasons


def _is_delay_queue(queue: Mapping[str, Any]) -> bool:
    args = queue.get("arguments") or {}
    policy = queue.get("effective_policy_definition") or {}
    if not isinstance(policy, Mapping):
        policy = {}
    return "x-message-ttl" in args or "message-ttl" in policy


def _key_matches(binding: Mapping[str, Any], routing_key: str | None) -> bool:
    """Whether a binding can receive a message dead-lettered with ``routing_key``.

    The exchange type is not in the bindings listing, so the rule is the union of the
    types: an empty binding key (fanout), header-match arguments (headers), an unknown
    dead-letter key (the message keeps its original keys), or a topic-pattern match
    (which includes the exact match of a direct exchange).
    """
    key = str(binding.get("routing_key", ""))
    args = binding.get("arguments") or {}
    if routing_key is None or key == "" or (isinstance(args, Mapping) and "x-match" in args):
        return True
    return _topic_match(key.split("."), routing_key.split("."))


def _topic_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_topic_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _topic_match(rest, words[1:])


def _queues_behind(
    exchange: str, routing_key: str | None, bindings: Sequence[Mapping[str, Any]]
) -> set[str]:
    """Queues a message sent to ``exchange`` with ``routing_key`` can reach, following
    exchange-to-exchange bindings."""
    seen = {exchange}
    todo = [exchange]
    found: set[str] = set()
    while todo:
        current = todo.pop()
        for binding in bindings:
            if str(binding.get("source", "")) != current:
                continue
            if not _key_matches(binding, routing_key):
                continue
            dest = str(binding.get("destination", ""))
            if binding.get("destination_type") == "queue":
                found.add(dest)
            elif binding.get("destination_type") == "exchange" and dest not in seen:
                seen.add(dest)
                todo.append(dest)
    return found


def _rate(stats: Mapping[str, Any], key: str) -> float | None:
    details = stats.get(f"{key}_details")
    if isinstance(details, Mapping) and details.get("rate") is not None:
        return float(details["rate"])
    return None


def queue_from_listing(item: Mapping[str, Any], dlq_reason: str | None) -> QueueStats:
    """One row of ``/api/queues`` as a ``QueueStats``."""
    stats = item.get("message_stats") or {}
    if not isinstance(stats, Mapping):
        stats = {}
    has_stats = bool(stats)
    depth_rate = _rate(item, "messages")
    rates = QueueRates(
        publish=_rate(stats, "publish") if has_stats else None,
        deliver=_rate(stats, "deliver_get") if has_stats else None,
        ack=_rate(stats, "ack") if has_stats else None,
        redeliver=_rate(stats, "redeliver") if has_stats else None,
        depth_change=depth_rate,
    )
    utilisation = item.get("consumer_utilisation")
    head = item.get("head_message_timestamp")
    target = dead_letter_target(item)
    return QueueStats(
        vhost=str(item.get("vhost", "/")),
        name=str(item.get("name")),
        type=str(item.get("type") or "classic"),
        state=str(item.get("state") or "running"),
        ready=int(item.get("messages_ready") or 0),
        unacked=int(item.get("messages_unacknowledged") or 0),
        consumers=int(item.get("consumers") or 0),
        consumer_utilisation=(
            float(utilisation) if isinstance(utilisation, (int, float)) else None
        ),
        rates=rates,
        head_message_timestamp=float(head) if isinstance(head, (int, float)) else None,
        dead_letter=dlq_reason is not None,
        dead_letter_reason=dlq_reason,
        dead_letter_exchange=target.exchange if target else None,
    )


class RabbitQueueStats(RabbitCore):
    """``SupportsQueueStats`` for RabbitMQ."""

    def dlq_patterns(self) -> list[str]:
        """The naming conventions plus the context's own ``dlq_patterns`` setting."""
        extra = self.config.settings.get("dlq_patterns") or []
        if isinstance(extra, str):
            extra = [p.strip() for p in extra.split(",") if p.strip()]
        return [*DEFAULT_DLQ_PATTERNS, *(str(p) for p in extra)]

    def queue_stats(self, names: Iterable[str] | None = None) -> list[QueueStats]:
        api = self.management()
        vhost = quote_segment(self.settings.vhost)
        listing: list[dict[str, Any]] = api.get(f"/queues/{vhost}", params={"columns": _COLUMNS})
        bindings: list[dict[str, Any]] = []
        if any(dead_letter_target(q) is not None for q in listing):
            bindings = api.get(
                f"/bindings/{vhost}",
                params={"columns": "source,destination,destination_type"},
            )
        reasons = classify_dead_letter_queues(listing, bindings, self.dlq_patterns())
        wanted = set(names) if names is not None else None
        return sorted(
            (
                queue_from_listing(item, reasons.get(str(item.get("name"))))
                for item in listing
                if wanted is None or item.get("name") in wanted
            ),
            key=lambda q: q.name,
        )
