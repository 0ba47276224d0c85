"""Publisher confirms and ``mandatory`` returns, correlated exactly, for any transport.

A channel in confirm mode numbers its publishes 1, 2, 3, ... and settles each with
``basic.ack`` or ``basic.nack`` (one delivery tag, or with ``multiple`` every tag up
to it). A mandatory publish that reaches no queue first comes back as
``basic.return``, which carries no delivery tag: only the exchange, the routing key,
the properties and the body. RabbitMQ sends the return before the publish's confirm
(``rabbit_channel:deliver_to_queues``: "basic.returns must be sent before confirms"),
but it coalesces confirms: the confirms gathered while the channel handled other
work go out together, as one ``basic.ack(multiple)`` up to the oldest publish still
unconfirmed and single acks after it (``rabbit_channel:coalesce_and_send``; confirms
are flushed after a method, or once the channel's mailbox is empty,
``noreply_coalesce``). So the return of publish n can be followed by one multiple
ack that also covers a routed publish m < n; if m and n had the same exchange,
routing key and body, nothing on the wire says which of the two was returned.

``ConfirmTracker`` therefore keeps one invariant: **never two unconfirmed publishes
with the same key** (exchange, routing key, body) on a channel. The caller asks
``admit(key)`` before each publish; a publish that is not admitted waits until the
one in flight with its key is settled (acked or nacked). A return then names exactly
one unconfirmed publish: the return of n comes before n's confirm, and an identical
later publish is sent only after that confirm arrived, hence after the return. The
cost is that a run of identical messages goes one confirm round trip at a time.
Properties are not part of the key: the broker may add to them on the way (message
interceptors), and a key that the return does not reproduce byte for byte would
match nothing.

A return that names no unconfirmed publish, an ack of a publish never made, or a
second return of one publish is a ``ConfirmError``: the tracker no longer agrees with
the broker, so the caller stops and acknowledges nothing more.

The tracker does no I/O and knows no protocol library; the pika-based publisher and
qctl's own socket loop (``wiremove``) drive it from the frames they read.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

from qctl.backends.capabilities.messaging import OK, Outcome

#: (exchange, routing key, body): what a ``basic.return`` identifies a message by. A
#: plain tuple, as one is built per publish on the hot path.
PublishKey = tuple[str, str, bytes]

T = TypeVar("T")

NACKED = "nacked by the broker (a queue refused the message)"


class ConfirmError(Exception):
    """The broker's confirms or returns do not match what was published."""


class _Unconfirmed:
    __slots__ = ("key", "returned", "token")

    def __init__(self, key: PublishKey, token: Any) -> None:
        self.key = key
        self.token = token
        self.returned: str | None = None


class ConfirmTracker(Generic[T]):
    """The publishes of one confirm-mode channel awaiting their confirm (see the module
    docstring). Settling methods return ``(token, Outcome)`` for each publish they
    settle, in publishing order.

    ``mandatory=False``: the publishes cannot be returned, so identical keys may be in
    flight together, and any return is a ``ConfirmError``.
    """

    def __init__(self, mandatory: bool = True) -> None:
        self.mandatory = mandatory
        #: The channel's publish sequence number of the last publish.
        self.seq = 0
        self._unconfirmed: OrderedDict[int, _Unconfirmed] = OrderedDict()
        #: Key -> sequence number, for each unconfirmed mandatory publish.
        self._keys: dict[PublishKey, int] = {}

    def __len__(self) -> int:
        return len(self._unconfirmed)

    def admit(self, key: PublishKey) -> bool:
        """Whether a publish with ``key`` may be sent now (none with the same key is
        awaiting its confirm)."""
        return key not in self._keys

    def sent(self, key: PublishKey, token: T) -> int:
        """Record the channel's next publish; its sequence number (delivery tag)."""
        if self.mandatory:
            if key in self._keys:
                raise ConfirmError("a publish was sent while an identical one was unconfirmed")
            self._keys[key] = self.seq + 1
        self.seq += 1
        self._unconfirmed[self.seq] = _Unconfirmed(key, token)
        return self.seq

    def returned(self, key: PublishKey, reason: str) -> None:
        """A ``basic.return``: the unconfirmed publish with ``key`` failed (its ack,
        which follows, settles it as such)."""
        seq = self._keys.get(key)
        if seq is None:
            raise ConfirmError(
                f"RabbitMQ returned a message ({reason}) that matches no publish awaiting "
                "its confirm"
            )
        item = self._unconfirmed[seq]
        if item.returned is not None:
            raise ConfirmError(f"RabbitMQ returned publish {seq} twice")
        item.returned = reason

    def acked(self, tag: int, multiple: bool) -> list[tuple[T, Outcome]]:
        return self._settle(tag, multiple, None)

    def nacked(self, tag: int, multiple: bool) -> list[tuple[T, Outcome]]:
        return self._settle(tag, multiple, NACKED)

    def fail_all(self, reason: str) -> list[tuple[T, Outcome]]:
        """Every unconfirmed publish failed with ``reason`` (the channel is gone: it may
        or may not have been written)."""
        out = []
        while self._unconfirmed:
            _, item = self._unconfirmed.popitem(last=False)
            out.append((item.token, Outcome(ok=False, error=item.returned or reason)))
        self._keys.clear()
        return out

    def _settle(self, tag: int, multiple: bool, failure: str | None) -> list[tuple[T, Outcome]]:
        if tag > self.seq or tag < 0:
            raise ConfirmError(f"RabbitMQ confirmed publish {tag}, which was never made")
        if multiple and tag == 0:
            tag = self.seq  # the protocol's "every outstanding one"
        unconfirmed = self._unconfirmed
        done: list[_Unconfirmed] = []
        if multiple:
            while unconfirmed:
                first = next(iter(unconfirmed))
                if first > tag:
                    break
                done.append(unconfirmed.popitem(last=False)[1])
        else:
            item = unconfirmed.pop(tag, None)
            if item is None:
                raise ConfirmError(f"RabbitMQ confirmed publish {tag} a second time")
            done.append(item)
        out = []
        keys = self._keys
        for item in done:
            if self.mandatory:
                del keys[item.key]
            if item.returned is not None:
                out.append((item.token, Outcome(ok=False, error=item.returned, returned=True)))
            elif failure is not None:
                out.append((item.token, Outcome(ok=False, error=failure)))
            else:
                out.append((item.token, OK))
        return out
