"""Queue depths, consumers and message rates from the RabbitMQ management API.

All queues of the vhost come from one ``GET /api/queues/{vhost}`` with only the columns
qctl needs; the exchanges and bindings are read only when some queue dead-letters, to
find the queues behind each dead-letter exchange (``deadletter_routes``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qctl.backends.capabilities.deadletters import DeadLetterSource, Feeds
from qctl.backends.capabilities.queues import QueueRates, QueueStats
from qctl.backends.rabbitmq.behaviour import behaviour_for
from qctl.backends.rabbitmq.core import RabbitCore
from qctl.backends.rabbitmq.deadletter_routes import DeadLetterRoutes, dead_letter_target
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
class DeadLetterMap:
    """Which queues of a vhost are dead-letter queues, and what feeds them."""

    #: Queue name -> why it is a DLQ.
    reasons: Mapping[str, str]
    #: Queue name -> every other queue whose dead letters reach it or may reach it,
    #: sorted by name (DLQ or not: a retry queue has sources too).
    sources: Mapping[str, tuple[DeadLetterSource, ...]]


def classify_dead_letter_queues(
    queues: Sequence[Mapping[str, Any]],
    exchanges: Sequence[Mapping[str, Any]],
    bindings: Sequence[Mapping[str, Any]],
    patterns: Iterable[str] = DEFAULT_DLQ_PATTERNS,
    streams_take_at_most_once: bool = True,
) -> DeadLetterMap:
    """Every DLQ among ``queues`` with the reason, and the sources of every queue.

    A queue is a DLQ when another queue (by argument or policy) dead-letters into it,
    by the routing rules of its dead-letter exchange (``deadletter_routes``), surely or
    maybe. A dead-letter loop (a work queue that dead-letters into a retry queue which
    dead-letters back) is a retry, not a DLQ, so neither end of such a loop counts; nor
    does the target of a queue with a message TTL (a delay queue expires into its target
    by design). Names matching a DLQ convention count too. The sources list every queue
    that feeds a queue, these included. ``streams_take_at_most_once``: see
    ``Behaviour.streams_take_at_most_once_dead_letters``.
    """
    names = {str(q.get("name")) for q in queues}
    routes = DeadLetterRoutes(queues, exchanges, bindings, streams_take_at_most_once)
    targets = [t for t in (dead_letter_target(q) for q in queues) if t is not None]
    delay = {str(q.get("name")) for q in queues if _is_delay_queue(q)}
    reached = {t.queue: routes.reached(t) for t in targets}
    sources: dict[str, list[DeadLetterSource]] = {}
    qualifying: set[str] = set()  # fed by a queue that makes it a DLQ
    for target in targets:
        for dest, reach in sorted(reached[target.queue].items()):
            if dest == target.queue:
                continue  # dead letters that route back to their own queue
            source = DeadLetterSource(
                queue=target.queue,
                dead_letter_exchange=target.exchange,
                dead_letter_routing_key=target.routing_key,
                feeds=reach.feeds,
                reason=reach.reason,
            )
            sources.setdefault(dest, []).append(source)
            if target.queue in delay:
                continue  # a TTL queue expiring into its target is a delay or retry route
            if target.queue in reached.get(dest, {}):
                continue  # a retry loop: dest dead-letters straight back
            qualifying.add(dest)
    reasons = {dest: dead_letter_reason(sources[dest]) for dest in qualifying}
    lowered = [p.lower() for p in patterns]
    for name in sorted(names - set(reasons)):
        for pattern in lowered:
            if fnmatch.fnmatchcase(name.lower(), pattern):
                reasons[name] = f"name matches {pattern!r}"
                break
    return DeadLetterMap(
        reasons=reasons,
        sources={
            dest: tuple(sorted(found, key=lambda s: s.queue)) for dest, found in sources.items()
        },
    )


def dead_letter_reason(sources: Sequence[DeadLetterSource]) -> str:
    """Why queues fed by ``sources`` are DLQs, naming every source: those whose dead
    letters always arrive first, grouped by dead-letter exchange."""
    parts = []
    for feeds in (Feeds.ALWAYS, Feeds.MAYBE):
        by_exchange: dict[str, list[str]] = {}
        for s in sources:
            if s.feeds is feeds:
                by_exchange.setdefault(s.dead_letter_exchange, []).append(s.queue)
        for exchange, queues in sorted(by_exchange.items()):
            which = ("queues " if len(queues) > 1 else "queue ") + ", ".join(
                repr(q) for q in sorted(queues)
            )
            if exchange == "" and feeds is Feeds.ALWAYS:
                verb = "dead-letter" if len(queues) > 1 else "dead-letters"
                parts.append(f"{which} {verb} to it by routing key")
            elif exchange == "":
                parts.append(f"{which} may dead-letter to it by routing key")
            elif feeds is Feeds.ALWAYS:
                parts.append(f"bound to dead-letter exchange {exchange!r} of {which}")
            else:
                parts.append(f"may be fed through dead-letter exchange {exchange!r} by {which}")
    return "; ".join(parts)


def _is_delay_queue(queue: Mapping[str, Any]) -> bool:
    args = queue.get("arguments") or {}
    policy = queue.get("effective_policy_definition") or {}
    if not isinstance(policy, Mapping):
        policy = {}
    return "x-message-ttl" in args or "message-ttl" in policy


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
        return self.queue_stats_and_dead_letters(names)[0]

    def queue_stats_and_dead_letters(
        self, names: Iterable[str] | None = None
    ) -> tuple[list[QueueStats], DeadLetterMap]:
        """``queue_stats`` and the vhost's dead-letter map, from one set of listings."""
        api = self.management()
        vhost = quote_segment(self.settings.vhost)
        listing: list[dict[str, Any]] = api.get(f"/queues/{vhost}", params={"columns": _COLUMNS})
        exchanges: list[dict[str, Any]] = []
        bindings: list[dict[str, Any]] = []
        streams_take_at_most_once = True
        if any(dead_letter_target(q) is not None for q in listing):
            streams_take_at_most_once = self._streams_take_at_most_once(listing)
            exchanges = api.get(f"/exchanges/{vhost}", params={"columns": "name,type"})
            bindings = api.get(
                f"/bindings/{vhost}",
                params={"columns": "source,destination,destination_type,routing_key,arguments"},
            )
        dead = classify_dead_letter_queues(
            listing,
            exchanges,
            bindings,
            self.dlq_patterns(),
            streams_take_at_most_once,
        )
        wanted = set(names) if names is not None else None
        stats = sorted(
            (
                queue_from_listing(item, dead.reasons.get(str(item.get("name"))))
                for item in listing
                if wanted is None or item.get("name") in wanted
            ),
            key=lambda q: q.name,
        )
        return stats, dead

    def _streams_take_at_most_once(self, listing: list[dict[str, Any]]) -> bool:
        """``Behaviour.streams_take_at_most_once_dead_letters`` of the node, asked only
        when the vhost has a stream."""
        if not any(q.get("type") == "stream" for q in listing):
            return True
        overview = self.management().get("/overview", params={"columns": "rabbitmq_version"})
        version = overview.get("rabbitmq_version") if isinstance(overview, dict) else None
        return behaviour_for(version).streams_take_at_most_once_dead_letters
