"""One consumer of one service: read a batch, handle it, write its events, then commit.

The order is what makes delivery at-least-once: the batch's output events are sent and
*confirmed* first, then the service's store commits, then the input is committed
(Kafka offsets) or acknowledged (RabbitMQ). A failure anywhere before the last step
leaves the input to be delivered again.

``--crash SERVICE:AFTER_N`` makes a lane die like a killed process after N messages:
the events of the messages it handled in its current batch have been sent, but its
store changes are rolled back and its input is neither committed nor acknowledged; the
consumer is closed and a new one started, which receives the batch again.
``--slow SERVICE:MS`` adds MS milliseconds of work per message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from qctl.backends.capabilities.messaging import (
    ConsumeRequest,
    ConsumeSession,
    MessageBatch,
    RejectingSession,
    SettlingSession,
    SupportsConsume,
)
from qctl.errors import QctlError, UnsupportedCapability
from qctl.messages import Message
from qctl.refs import Ref
from qctl_orders.outbox import Outbox
from qctl_orders.services import H_NOT_BEFORE, RETRY, Decision, Service

if TYPE_CHECKING:
    from qctl.backends.capabilities.messaging import Outcome

log = logging.getLogger("qctl.orders")

#: Messages handled per batch at most (also bounds what one crash re-delivers).
BATCH = 250


class SimulatedCrash(Exception):
    """The consumer "died" (``--crash``): nothing of its batch is committed."""


class _Restart(Exception):
    """The consumer must be reopened (e.g. a commit refused after a rebalance)."""


class _Stopping(Exception):
    """The run is stopping in the middle of a batch: leave it uncommitted."""


class Lane(threading.Thread):
    """One service's consumer on one source, in its own thread."""

    def __init__(
        self,
        *,
        service: Service,
        lane: str,
        consumer: SupportsConsume,
        source: Ref,
        request: ConsumeRequest,
        outboxes: dict[str, Outbox],
        stop: threading.Event,
        note: Callable[[str], None],
        failed: Callable[[BaseException], None],
        slow_ms: float = 0.0,
        crash_after: int | None = None,
    ) -> None:
        label = service.name if lane == "main" else f"{service.name}-{lane}"
        super().__init__(name=f"lane-{label}", daemon=True)
        self.service = service
        self.lane = lane
        self.label = label
        self.consumer = consumer
        self.source = source
        self.request = request
        self.outboxes = outboxes
        self.stop = stop
        self.note = note
        self.failed = failed
        self.slow = slow_ms / 1000.0
        self.crash_after = crash_after
        #: Messages whose handling was committed.
        self.handled = 0
        #: Messages handled, committed or not (what --crash counts).
        self.counted = 0
        self.crashes = 0
        #: Messages handled but not committed when the lane was killed: delivered again.
        self.uncommitted = 0
        #: Output events the broker refused (back-pressure) before they were taken.
        self.refused = 0
        self._next_refusal_note = 0.0
        self.last_input = time.monotonic()
        self.idle = False
        self.started_at = time.monotonic()
        self.error: BaseException | None = None

    # -- state for the pipeline --------------------------------------------------------------
    def idle_for(self) -> float:
        """Seconds since this lane last received anything (0 while it is busy)."""
        return time.monotonic() - self.last_input if self.idle else 0.0

    # -- the thread --------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stop.is_set():
                session = self.consumer.open_consumer(self.source, self.request)
                try:
                    self._consume(session)
                except SimulatedCrash:
                    self.crashes += 1
                    self.note(
                        f"{self.label}: consumer killed after {self.counted} messages "
                        "(simulated crash): its in-flight batch was not committed; restarting"
                    )
                except _Restart as exc:
                    log.debug("%s: reopening the consumer: %s", self.label, exc)
                finally:
                    session.close()
                if not self.stop.is_set():
                    self.last_input = time.monotonic()
                    self.idle = False
        except BaseException as exc:  # every failure ends the run, with its reason
            self.error = exc
            self.failed(exc)

    def _consume(self, session: ConsumeSession) -> None:
        while not self.stop.is_set():
            batch = session.next_batch(BATCH)
            if batch is None:
                return
            if not len(batch):
                if not self.idle:
                    self.idle = True
                    self.last_input = time.monotonic()
                continue
            self.idle = False
            self.last_input = time.monotonic()
            try:
                self._handle(session, batch)
            except _Stopping:
                self.service.store.rollback()
                return
            self.last_input = time.monotonic()

    def _handle(self, session: ConsumeSession, batch: MessageBatch) -> None:
        messages = batch.messages()
        decisions: list[Decision] = []
        crash = False
        for message in messages:
            if self.lane == RETRY:
                self._wait_until_due(message)
            if self.slow:
                time.sleep(self.slow)
            decisions.append(self.service.handle(message, self.lane))
            self.counted += 1
            if self.crash_after is not None and not self.crashes:
                # Killed right after handling the Nth message: nothing of its batch is
                # committed, though the events of what it handled were already sent.
                crash = self.counted >= self.crash_after
                if crash:
                    break
        self._publish(decisions)
        if crash:
            self.service.store.rollback()
            self.uncommitted += len(decisions)
            raise SimulatedCrash
        self.service.store.commit()
        self._settle(session, batch, decisions)
        self.handled += len(messages)

    def _wait_until_due(self, message: Message) -> None:
        try:
            due = int(message.header_text(H_NOT_BEFORE) or 0) / 1000.0
        except ValueError:
            return
        while time.time() < due:
            if self.stop.is_set():
                raise _Stopping
            time.sleep(min(0.05, max(due - time.time(), 0.001)))

    # -- output ------------------------------------------------------------------------------
    def _publish(self, decisions: Sequence[Decision]) -> None:
        by_box: dict[str, list[Message]] = {}
        for decision in decisions:
            for box, message in decision.outputs:
                by_box.setdefault(box, []).append(message)
        for box, messages in by_box.items():
            self._send(self.outboxes[box], messages)

    def _send(self, outbox: Outbox, messages: list[Message]) -> None:
        """Send until the broker took every message; refused ones are retried with
        back-off (a full queue with ``reject-publish`` pushes back on the producer)."""
        pending = messages
        attempt = 0
        while pending:
            outcomes: list[Outcome] = outbox.send(pending)
            refused = [m for m, o in zip(pending, outcomes, strict=True) if not o.ok]
            if not refused:
                return
            returned = next((o for o in outcomes if not o.ok and o.returned), None)
            if returned is not None:
                raise QctlError(
                    f"{outbox.target} could not route an event: {returned.error}",
                    "the topology is incomplete; re-apply it with `qctl topology apply`",
                )
            attempt += 1
            self.refused += len(refused)
            if attempt == 1 and time.monotonic() >= self._next_refusal_note:
                self._next_refusal_note = time.monotonic() + 10.0
                reason = next((o.error for o in outcomes if not o.ok), None)
                self.note(
                    f"{self.label}: {outbox.target} refused {len(refused)} events "
                    f"({reason}); backing off and sending them again"
                )
            if self.stop.is_set() and attempt > 3:
                raise _Stopping
            time.sleep(min(0.05 * 2**attempt, 2.0))
            pending = refused

    # -- input -------------------------------------------------------------------------------
    def _settle(
        self, session: ConsumeSession, batch: MessageBatch, decisions: list[Decision]
    ) -> None:
        rejects = [i for i, d in enumerate(decisions) if d.reject]
        try:
            if isinstance(session, SettlingSession) and self.request.settle:
                if rejects:
                    if not isinstance(session, RejectingSession):
                        raise UnsupportedCapability(self.source.backend, "rejecting messages")
                    session.reject(batch, rejects)
                keep = set(rejects)
                session.settle(batch, [i for i in range(len(decisions)) if i not in keep])
            else:
                if rejects:
                    raise UnsupportedCapability(self.source.backend, "rejecting messages")
                session.commit(batch, len(decisions))
        except UnsupportedCapability:
            raise
        except QctlError as exc:
            # Kafka refuses commits for partitions a rebalance took away; what was
            # handled is delivered again to the next consumer and dropped as duplicates.
            raise _Restart(str(exc)) from exc
