"""A long-lived producer per target, fed batch by batch, every outcome awaited.

qctl's ``SupportsProduce.produce`` sends what an iterable yields and reports each
message's fate; an iterable that yields ``None`` means "nothing right now" and keeps the
producer (Kafka producer, RabbitMQ confirm channel) open. An ``Outbox`` runs one such
call in a thread for the whole run and hands it the output events of each batch, so a
service pays for a connection once, not per batch, and still learns per message whether
the broker took it (a RabbitMQ queue at its ``max-length`` with ``reject-publish`` nacks:
that is back-pressure the service must see, not lose).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence

from qctl.backends.capabilities.messaging import Outcome, ProduceOptions, SupportsProduce
from qctl.errors import OperationTimeout, QctlError
from qctl.messages import Message
from qctl.refs import Ref

_CLOSE = object()


class _Ticket:
    """The outcomes of one ``send``."""

    def __init__(self, size: int) -> None:
        self.outcomes: list[Outcome | None] = [None] * size
        self.left = size
        self.done = threading.Event()
        if size == 0:
            self.done.set()


class Outbox:
    """Send messages to one target and wait for their outcomes."""

    def __init__(
        self,
        producer: SupportsProduce,
        target: Ref,
        options: ProduceOptions,
        timeout: float,
        name: str,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.name = name
        self._queue: queue.Queue[object] = queue.Queue()
        self._pending: dict[int, tuple[_Ticket, int]] = {}
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._finished = threading.Event()
        #: Ctrl-C arrived while a send waited for its outcomes (see ``send``).
        self.interrupted = False
        self._thread = threading.Thread(
            target=self._run, args=(producer, options), name=f"outbox-{name}", daemon=True
        )
        self._thread.start()

    # -- the producing thread ----------------------------------------------------------------
    def _run(self, producer: SupportsProduce, options: ProduceOptions) -> None:
        try:
            report = producer.produce(self.target, self._feed(), options, self._on_outcome)
            if report.aborted:
                self._error = QctlError(f"sending to {self.target} stopped: {report.aborted}")
        except BaseException as exc:  # handed to the service thread that sends next
            self._error = exc
        finally:
            self._finished.set()
            self._fail_pending("the producer stopped")

    def _feed(self) -> Iterator[Message | None]:
        while True:
            try:
                item = self._queue.get(timeout=0.01)
            except queue.Empty:
                yield None
                continue
            if item is _CLOSE:
                return
            assert isinstance(item, Message)
            yield item

    def _on_outcome(self, message: Message, outcome: Outcome) -> None:
        with self._lock:
            entry = self._pending.pop(id(message), None)
        if entry is None:
            return
        ticket, index = entry
        ticket.outcomes[index] = outcome
        ticket.left -= 1
        if ticket.left <= 0:
            ticket.done.set()

    def _fail_pending(self, reason: str) -> None:
        with self._lock:
            entries = list(self._pending.items())
            self._pending.clear()
        for _, (ticket, index) in entries:
            ticket.outcomes[index] = Outcome(ok=False, error=reason)
            ticket.left -= 1
            if ticket.left <= 0:
                ticket.done.set()

    # -- the service side --------------------------------------------------------------------
    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        """Send ``messages`` and return their outcomes, in order.

        Raises what stopped the producer (target gone, cluster unreachable), and
        OperationTimeout when the broker confirms nothing for the timeout.
        """
        self._check()
        ticket = _Ticket(len(messages))
        with self._lock:
            for index, message in enumerate(messages):
                self._pending[id(message)] = (ticket, index)
        for message in messages:
            self._queue.put(message)
        deadline = time.monotonic() + max(self.timeout * 3, 30.0)
        try:
            while not ticket.done.wait(0.2):
                self._check()
                if time.monotonic() > deadline:
                    raise OperationTimeout(
                        f"{self.target} confirmed nothing of {len(messages)} messages in time",
                        "check the broker (`qctl cluster info`)",
                    )
        except KeyboardInterrupt:
            # The messages are out: learn their fate, so the caller's counts stay true,
            # and let it stop after recording them.
            ticket.done.wait(self.timeout)
            self.interrupted = True
        self._check_failed_producer(ticket)
        return [
            o if o is not None else Outcome(ok=False, error="no outcome") for o in ticket.outcomes
        ]

    def _check(self) -> None:
        if self._finished.is_set() and self._error is not None:
            raise self._error

    def _check_failed_producer(self, ticket: _Ticket) -> None:
        if self._error is not None and any(o is None or not o.ok for o in ticket.outcomes):
            raise self._error

    def close(self) -> None:
        """Let the producer deliver what it has and stop."""
        self._queue.put(_CLOSE)
        self._thread.join(timeout=self.timeout + 5)
