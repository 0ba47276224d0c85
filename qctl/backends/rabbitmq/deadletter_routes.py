"""Where a queue's dead letters go, worked out from the vhost's topology.

RabbitMQ republishes a dead-lettered message to the queue's dead-letter exchange with
the queue's dead-letter routing key or, when the queue has none, with the routing keys
the message was published with. From there the ordinary routing rules of each exchange
apply, exchange-to-exchange bindings included. This module applies those rules to the
management API's listings of queues, exchanges and bindings; nothing is sent.

* direct: a binding receives the message when its key equals the routing key;
* topic: the binding key is a pattern of dot-separated words, ``*`` one word, ``#``
  zero or more (the empty routing key has no words);
* fanout: every binding receives it;
* headers: the binding's conditions are matched against the message's headers, which
  the topology does not know, so such a binding *may* receive it; a binding without
  conditions is certain (``x-match`` ``all``: every message, ``any``: none);
* other exchange types (plugins): *may*, their routing is not modelled.

Without a dead-letter routing key the messages keep their own keys, and the topology
tells only which keys the source queue can receive: its name (the default exchange),
the key of each direct binding, the pattern of each topic binding, and any key through
a fanout, headers or other exchange. A DLQ whose binding matches one of these *may*
receive the dead letters. Keys a publisher adds with the ``CC`` header are not in the
topology. Through the default exchange, a source that can receive any key could send
its dead letters to any queue of the vhost; such routes are not listed.

Which queue's dead-letter settings apply: a queue argument (``x-dead-letter-exchange``,
``x-dead-letter-routing-key``) overrules the policy key (``dead-letter-exchange``,
``dead-letter-routing-key``), each key on its own, as RabbitMQ documents (classic and
quorum queues alike). Operator policies cannot set either key.

A stream before RabbitMQ 3.12 drops dead letters delivered "at most once" (see
``Behaviour.streams_take_at_most_once_dead_letters``): such a route is no route.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qctl.backends.capabilities.deadletters import Feeds


@dataclass(frozen=True)
class DeadLetterTarget:
    """Where one queue sends its dead letters."""

    queue: str
    exchange: str
    #: None: the messages keep their own routing keys.
    routing_key: str | None
    #: The broker republishes with confirms and retries (quorum queues with
    #: ``dead-letter-strategy`` at-least-once and ``overflow`` reject-publish); else it
    #: publishes once ("at most once").
    at_least_once: bool = False


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
    strategy = args.get("x-dead-letter-strategy", policy.get("dead-letter-strategy"))
    # For a quorum queue's overflow the policy wins (rabbit_quorum_queue), unlike above.
    overflow = policy.get("overflow", args.get("x-overflow"))
    return DeadLetterTarget(
        str(queue.get("name")),
        str(exchange),
        None if key is None else str(key),
        at_least_once=queue.get("type") == "quorum"
        and strategy == "at-least-once"
        and overflow == "reject-publish",
    )


# -- topic patterns ---------------------------------------------------------------------------
class Wild(enum.Enum):
    """The wildcards of a topic binding key."""

    ONE = "*"
    MANY = "#"


#: A routing key or binding key as words; a ``Wild`` only in topic patterns.
Pattern = tuple[str | Wild, ...]

#: Matches every routing key.
ANY_KEY: Pattern = (Wild.MANY,)


def key_words(key: str) -> Pattern:
    """A routing key (or a direct binding key) as literal words; ``""`` has none."""
    return tuple(key.split(".")) if key else ()


def topic_pattern(key: str) -> Pattern:
    """A topic binding key as words and wildcards."""
    return tuple(Wild.ONE if w == "*" else Wild.MANY if w == "#" else w for w in key_words(key))


def patterns_overlap(a: Pattern, b: Pattern) -> bool:
    """Whether some routing key matches both ``a`` and ``b`` (for a literal ``b``: whether
    ``a`` matches it).

    A walk over pairs of positions: ``#`` may match no word (move past it) or one more
    word (stay on it); two literal words must be equal; a wildcard matches any word.
    """
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] is Wild.MANY:
            todo.append((i + 1, j))
        if j < len(b) and b[j] is Wild.MANY:
            todo.append((i, j + 1))
        if i < len(a) and j < len(b):
            x, y = a[i], b[j]
            if isinstance(x, str) and isinstance(y, str) and x != y:
                continue
            todo.append((i if x is Wild.MANY else i + 1, j if y is Wild.MANY else j + 1))
    return False


def topic_matches(pattern: str, routing_key: str) -> bool:
    """RabbitMQ's topic match of a binding key against a routing key."""
    return patterns_overlap(topic_pattern(pattern), key_words(routing_key))


# -- the topology -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Binding:
    """One row of ``/api/bindings``."""

    source: str
    destination: str
    to_exchange: bool
    key: str
    arguments: Mapping[str, Any]

    @classmethod
    def from_listing(cls, item: Mapping[str, Any]) -> Binding:
        args = item.get("arguments")
        return cls(
            source=str(item.get("source", "")),
            destination=str(item.get("destination", "")),
            to_exchange=item.get("destination_type") == "exchange",
            key=str(item.get("routing_key") or ""),
            arguments=args if isinstance(args, Mapping) else {},
        )


@dataclass(frozen=True)
class Reach:
    """Whether dead letters reach a queue (or an exchange on the way), and if only maybe,
    why the topology cannot tell."""

    feeds: Feeds
    reason: str | None = None

    def then(self, hop: Reach) -> Reach:
        """Reaching something through this, then ``hop``: as sure as the less sure."""
        return self if self.feeds is Feeds.MAYBE else hop

    def beats(self, other: Reach) -> bool:
        return self.feeds is Feeds.ALWAYS and other.feeds is Feeds.MAYBE


ALWAYS = Reach(Feeds.ALWAYS)


@dataclass(frozen=True)
class OwnKey:
    """Routing keys a queue can receive its messages with, and through which binding."""

    pattern: Pattern
    #: The exchange of the binding ("" for the default exchange) and its type.
    exchange: str
    exchange_type: str | None
    key: str

    def describe(self) -> str:
        if self.exchange == "":
            return f"{self.key!r} (its name, through the default exchange)"
        if self.pattern == ANY_KEY:
            return f"any key (through {self.exchange_type or 'unknown'} exchange {self.exchange!r})"
        return f"{self.key!r} (through {self.exchange!r})"


class DeadLetterRoutes:
    """The queues, exchanges and bindings of one vhost, and the routes of dead letters."""

    def __init__(
        self,
        queues: Sequence[Mapping[str, Any]],
        exchanges: Sequence[Mapping[str, Any]],
        bindings: Sequence[Mapping[str, Any]],
        streams_take_at_most_once: bool = True,
    ) -> None:
        self._names = {str(q.get("name")) for q in queues}
        self.queue_names = sorted(self._names)
        self.streams = {str(q.get("name")) for q in queues if q.get("type") == "stream"}
        #: See ``Behaviour.streams_take_at_most_once_dead_letters``.
        self.streams_take_at_most_once = streams_take_at_most_once
        #: Exchange name -> type; the default exchange is a direct exchange.
        self.types: dict[str, str] = {str(x.get("name", "")): str(x.get("type")) for x in exchanges}
        self.types[""] = "direct"
        self._from: dict[str, list[Binding]] = {}
        self._to: dict[str, list[Binding]] = {}
        for item in bindings:
            binding = Binding.from_listing(item)
            if binding.source == "":
                continue  # the default exchange's bindings are implied by the queue names
            self._from.setdefault(binding.source, []).append(binding)
            if not binding.to_exchange:
                self._to.setdefault(binding.destination, []).append(binding)

    def bindings_from(self, exchange: str, keys: Sequence[Pattern] = ()) -> list[Binding]:
        """The bindings of ``exchange``. For the default exchange (every queue is bound
        by its name) only those of queues named by one of ``keys``, the routing keys
        the message can have."""
        if exchange != "":
            return self._from.get(exchange, [])
        if all(all(isinstance(w, str) for w in k) for k in keys):
            names = {".".join(str(w) for w in k) for k in keys} & self._names
        else:
            names = {
                n for n in self.queue_names if any(patterns_overlap(k, key_words(n)) for k in keys)
            }
        return [Binding("", name, False, name, {}) for name in sorted(names)]

    def own_keys(self, queue: str) -> list[OwnKey]:
        """The routing keys ``queue`` can receive messages with, by binding."""
        keys = [OwnKey(key_words(queue), "", "direct", queue)]
        for binding in self._to.get(queue, []):
            kind = self.types.get(binding.source)
            if kind == "direct":
                pattern = key_words(binding.key)
            elif kind == "topic":
                pattern = topic_pattern(binding.key)
            else:
                pattern = ANY_KEY
            keys.append(OwnKey(pattern, binding.source, kind, binding.key))
        return keys

    def reached(self, target: DeadLetterTarget) -> dict[str, Reach]:
        """Queue name -> whether the dead letters of ``target.queue`` reach it (the source
        itself included when they route back to it)."""
        own = self.own_keys(target.queue) if target.routing_key is None else []
        # The keys the dead letters can have; through the default exchange a source
        # reached by any key could reach any queue: not listed (see the module docstring).
        if target.routing_key is not None:
            keys = [key_words(target.routing_key)]
        else:
            keys = [k.pattern for k in own if k.pattern != ANY_KEY]
        found: dict[str, Reach] = {}
        best: dict[str, Reach] = {target.exchange: ALWAYS}
        todo = [target.exchange]
        while todo:
            exchange = todo.pop()
            via = best[exchange]
            for binding in self.bindings_from(exchange, keys):
                hop = self._hop(exchange, binding, target, own)
                if hop is None:
                    continue
                reach = via.then(hop)
                dest = binding.destination
                if binding.to_exchange:
                    if dest not in best or reach.beats(best[dest]):
                        best[dest] = reach
                        todo.append(dest)
                elif not self._dropped(target, dest) and (
                    dest not in found or reach.beats(found[dest])
                ):
                    found[dest] = reach
        return found

    def _dropped(self, target: DeadLetterTarget, queue: str) -> bool:
        """The broker drops ``target``'s dead letters bound for ``queue``."""
        return (
            queue in self.streams
            and not self.streams_take_at_most_once
            and not target.at_least_once
        )

    def _hop(
        self, exchange: str, binding: Binding, target: DeadLetterTarget, own: list[OwnKey]
    ) -> Reach | None:
        """Whether ``binding`` of ``exchange`` receives the dead letters of ``target``."""
        kind = self.types.get(exchange)
        if kind == "fanout":
            return ALWAYS
        if kind == "headers":
            return _headers_reach(exchange, binding)
        if kind not in ("direct", "topic"):
            return Reach(
                Feeds.MAYBE,
                f"{kind or 'unknown'} exchange {exchange!r}: qctl does not model its routing",
            )
        bound = key_words(binding.key) if kind == "direct" else topic_pattern(binding.key)
        if target.routing_key is not None:
            return ALWAYS if patterns_overlap(bound, key_words(target.routing_key)) else None
        hits = [k for k in own if patterns_overlap(bound, k.pattern)]
        if not hits:
            return None
        shown = ", ".join(k.describe() for k in hits[:3])
        more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
        return Reach(
            Feeds.MAYBE,
            f"no dead-letter routing key: the messages keep their own, and "
            f"{target.queue!r} receives {shown}{more}",
        )


_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")


def _headers_reach(exchange: str, binding: Binding) -> Reach | None:
    mode = binding.arguments.get("x-match")
    if mode not in _MATCH_MODES:
        mode = "all"  # RabbitMQ's default (and its reading of unknown values)
    with_x = mode.endswith("-with-x")
    conditions = sorted(
        str(k)
        for k in binding.arguments
        if k != "x-match" and (with_x or not str(k).startswith("x-"))
    )
    if not conditions:
        return ALWAYS if mode.startswith("all") else None
    return Reach(
        Feeds.MAYBE,
        f"headers exchange {exchange!r}: depends on the message headers "
        f"(x-match {mode} of {', '.join(conditions)})",
    )
