"""Running the pipeline: start the services, create orders, wait until every order is
settled, stop, and summarise.

Each consumer (a *lane*) and each producer (an *outbox*) gets its own backend instance:
client connections are not shared between threads. The order service runs in the
calling thread; it paces itself (``--rate``) and throttles itself while the payment
service's backlog (Kafka: its group's lag; RabbitMQ: ``payment.work``'s depth) is above
``--max-lag``.

A run ends when every order it created is *settled*: the analytics service has seen it
reach a final state (completed, payment failed, refunded) or the payment service has
dead-lettered it; no retry is pending; and every consumer has been idle for a moment
(so the slowest service has caught up too). ``--resume`` starts only the services and
ends when they have been idle for ``--idle`` seconds (and, on Kafka, every group has
caught up): that is how redriven dead letters get processed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qctl.backends.base import Backend, require
from qctl.backends.capabilities.groups import SupportsConsumerGroups, TopicPartition
from qctl.backends.capabilities.messaging import (
    ConsumeRequest,
    ProduceOptions,
    SupportsConsume,
    SupportsProduce,
)
from qctl.backends.capabilities.queues import SupportsQueueStats
from qctl.errors import NotFoundError, QctlError
from qctl.messages import Message
from qctl.ratelimit import TokenBucket
from qctl.refs import Ref
from qctl_orders.events import Faults, OrderFactory
from qctl_orders.lanes import Lane
from qctl_orders.outbox import Outbox
from qctl_orders.runs import RunBook, RunRecord
from qctl_orders.services import (
    COMMANDS,
    DLQ,
    EVENTS,
    RETRY,
    TERMINAL,
    AnalyticsService,
    InventoryService,
    NotificationService,
    PaymentService,
    Service,
    Settings,
)
from qctl_orders.wiring import KAFKA, REFUND_COMMAND_KEY, SERVICES, Wiring

BackendFactory = Callable[[], Backend]


@dataclass
class Plan:
    """What ``qctl orders run`` was asked to do."""

    rate: float | None = 100.0
    orders: int | None = None
    duration: float | None = None
    faults: Faults = field(default_factory=Faults)
    slow: dict[str, float] = field(default_factory=dict)
    crash: dict[str, int] = field(default_factory=dict)
    seed: int | None = None
    max_lag: int = 10_000
    max_wait: float = 300.0
    resume: bool = False
    idle: float = 3.0


class Progress:
    """Progress on stderr: one rewritten line on a terminal, a line every few seconds
    otherwise (logs, CI)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._width = 0
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether a progress line would be shown now (so callers skip the work)."""
        interval = 0.25 if self.tty else 2.0
        return self.enabled and time.monotonic() - self._last >= interval

    def line(self, text: str, force: bool = False) -> None:
        if not self.enabled or not (force or self.due()):
            return
        self._last = time.monotonic()
        with self._lock:
            if self.tty:
                pad = max(self._width - len(text), 0)
                sys.stderr.write("\r" + text + " " * pad)
                self._width = len(text)
            else:
                sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def note(self, text: str) -> None:
        """A line that stays (crashes, back-pressure)."""
        with self._lock:
            if self.tty and self._width:
                sys.stderr.write("\r" + " " * self._width + "\r")
                self._width = 0
            sys.stderr.write(f"orders: {text}\n")
            sys.stderr.flush()

    def done(self) -> None:
        with self._lock:
            if self.tty and self._width:
                sys.stderr.write("\n")
                sys.stderr.flush()
                self._width = 0


class Pipeline:
    """The five services of one run on one backend."""

    def __init__(
        self,
        *,
        wiring: Wiring,
        settings: Settings,
        plan: Plan,
        runs: RunBook,
        backend_for: BackendFactory,
        progress: Progress,
        timeout: float,
    ) -> None:
        self.wiring = wiring
        self.settings = settings
        self.plan = plan
        self.runs = runs
        self.backend_for = backend_for
        self.progress = progress
        self.timeout = timeout
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.payment = PaymentService(settings, runs, resume=plan.resume)
        self.inventory = InventoryService(settings, runs, resume=plan.resume)
        self.notification = NotificationService(settings, runs, resume=plan.resume)
        self.analytics = AnalyticsService(settings, runs, resume=plan.resume)
        self.services: dict[str, Service] = {
            "payment": self.payment,
            "inventory": self.inventory,
            "notification": self.notification,
            "analytics": self.analytics,
        }
        self.lanes: list[Lane] = []
        self.outboxes: list[Outbox] = []
        self.order_outbox: Outbox | None = None
        self.created: list[str] = []
        self.throttled_seconds = 0.0
        self.throttles = 0
        self.refused = 0
        self.payment_lag: int | None = None
        self._probe: Backend | None = None
        self.started = time.monotonic()
        self.creating = False
        self.creation_seconds = 0.0
        self.timed_out = False

    # -- setup -------------------------------------------------------------------------------
    def check_topology(self) -> None:
        """Fail early, with the command that fixes it, when the topology is missing."""
        backend = self._probe_backend()
        wanted = self.wiring.required()
        if self.wiring.backend == KAFKA:
            groups = require(backend, SupportsConsumerGroups, "consumer groups")
            present = set(groups.topic_partitions(wanted))
        else:
            stats = require(backend, SupportsQueueStats, "queue statistics")
            present = {q.name for q in stats.queue_stats(wanted)}
        missing = [name for name in wanted if name not in present]
        if missing:
            kind = "topics" if self.wiring.backend == KAFKA else "queues"
            raise NotFoundError(
                f"the order pipeline's {kind} are missing on {backend.target()}: "
                + ", ".join(missing[:4])
                + (" ..." if len(missing) > 4 else ""),
                self.wiring.apply_hint(),
            )

    def _probe_backend(self) -> Backend:
        if self._probe is None:
            self._probe = self.backend_for()
        return self._probe

    def _outbox(self, target: Ref, name: str, routing_key: str | None = None) -> Outbox:
        producer = require(self.backend_for(), SupportsProduce, "produce")
        box = Outbox(
            producer,
            target,
            ProduceOptions(routing_key=routing_key, mandatory=True, window=1000),
            self.timeout,
            name,
        )
        self.outboxes.append(box)
        return box

    def start(self) -> None:
        """Open the producers and start every consumer."""
        w = self.wiring
        if w.backend == KAFKA:
            events: Ref = w.bus
            payment_boxes = {
                EVENTS: self._outbox(events, "payment"),
                RETRY: self._outbox(w.retry_topic, "payment-retry"),
                DLQ: self._outbox(w.dlq_topic, "payment-dlq"),
            }
            inventory_boxes = {EVENTS: self._outbox(events, "inventory")}
        else:
            events = w.events_exchange
            payment_boxes = {
                EVENTS: self._outbox(events, "payment"),
                RETRY: self._outbox(w.retry_exchange, "payment-retry"),
            }
            inventory_boxes = {
                EVENTS: self._outbox(events, "inventory"),
                COMMANDS: self._outbox(w.commands_exchange, "refunds", REFUND_COMMAND_KEY),
            }
        if not self.plan.resume:
            self.order_outbox = self._outbox(events, "order")
        boxes = {"payment": payment_boxes, "inventory": inventory_boxes}
        for name in SERVICES:
            self._lane(name, "main", boxes.get(name, {}))
        if w.backend == KAFKA:
            self._lane("payment", RETRY, payment_boxes)
        for lane in self.lanes:
            lane.start()

    def _lane(self, name: str, lane: str, outboxes: dict[str, Outbox]) -> None:
        w = self.wiring
        consumer = require(self.backend_for(), SupportsConsume, "consume")
        if w.backend == KAFKA:
            source = w.retry_topic if lane == RETRY else w.bus
            group = w.group("payment-retry" if lane == RETRY else name)
            request = ConsumeRequest(group=group, follow=True, isolation="read_committed")
        else:
            source = w.work_queue(name)
            request = ConsumeRequest(ack=True, follow=True, settle=True, prefetch=500)
        self.lanes.append(
            Lane(
                service=self.services[name],
                lane=lane,
                consumer=consumer,
                source=source,
                request=request,
                outboxes=outboxes,
                stop=self.stop,
                note=self.progress.note,
                failed=self._failed,
                slow_ms=self.plan.slow.get(name, 0.0) if lane == "main" else 0.0,
                crash_after=self.plan.crash.get(name) if lane == "main" else None,
            )
        )

    def _failed(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()

    def check(self) -> None:
        if self.error is not None:
            if isinstance(self.error, QctlError):
                raise self.error
            raise QctlError(f"a service failed: {type(self.error).__name__}: {self.error}")

    # -- the order service -------------------------------------------------------------------
    def create_orders(self, run: RunRecord) -> None:
        """Create orders at the planned rate until the count or duration is reached."""
        assert self.order_outbox is not None
        plan = self.plan
        factory = OrderFactory(run.run_id, plan.faults, plan.seed)
        bucket = TokenBucket(plan.rate, burst=max(1.0, plan.rate / 5)) if plan.rate else None
        start = time.monotonic()
        self.creating = True
        try:
            self._create(factory, bucket, start)
        finally:
            self.creating = False
            self.creation_seconds = time.monotonic() - start

    def _create(self, factory: OrderFactory, bucket: TokenBucket | None, start: float) -> None:
        plan = self.plan
        next_probe = 0.0
        throttled = False
        while not self.stop.is_set():
            self.check()
            now = time.monotonic()
            if plan.duration is not None and now - start >= plan.duration:
                break
            if plan.orders is not None and len(self.created) >= plan.orders:
                break
            if now >= next_probe:
                next_probe = now + 0.5
                self.payment_lag = self.backlog()
                over = self.payment_lag is not None and self.payment_lag > plan.max_lag
                if over and not throttled:
                    self.throttles += 1
                    self.progress.note(
                        f"order service: payment backlog {self.payment_lag} > --max-lag "
                        f"{plan.max_lag}; throttling"
                    )
                throttled = over
            if throttled:
                time.sleep(0.1)
                self.throttled_seconds += 0.1
                self.show_progress()
                continue
            cap = 500
            if plan.orders is not None:
                cap = min(cap, plan.orders - len(self.created))
            n = 0
            if bucket is None:
                n = cap
            else:
                while n < cap and bucket.try_acquire():
                    n += 1
            if n == 0:
                time.sleep(min(bucket.delay() if bucket else 0.01, 0.05))
                continue
            messages = [factory.next() for _ in range(n)]
            taken = self._send_orders(messages)
            self.created.extend(m.key.decode() for m in taken if m.key)
            if self.order_outbox is not None and self.order_outbox.interrupted:
                raise KeyboardInterrupt
            self.show_progress()

    def _send_orders(self, messages: list[Message]) -> list[Message]:
        """Send until the broker took them all (or Ctrl-C); the ones it took."""
        assert self.order_outbox is not None
        pending = messages
        taken: list[Message] = []
        attempt = 0
        while pending:
            outcomes = self.order_outbox.send(pending)
            refused = [m for m, o in zip(pending, outcomes, strict=True) if not o.ok]
            taken += [m for m, o in zip(pending, outcomes, strict=True) if o.ok]
            if not refused or self.order_outbox.interrupted:
                return taken
            returned = next((o for o in outcomes if not o.ok and o.returned), None)
            if returned is not None:
                raise QctlError(
                    f"{self.order_outbox.target} could not route an order: {returned.error}",
                    "the topology is incomplete; re-apply it with `qctl topology apply`",
                )
            attempt += 1
            self.refused += len(refused)
            if attempt == 1:
                self.progress.note(
                    f"order service: {len(refused)} orders refused by the broker "
                    "(a full queue rejects publishes); backing off"
                )
            self.check()
            time.sleep(min(0.05 * 2**attempt, 2.0))
            pending = refused
        return taken

    def backlog(self) -> int | None:
        """The payment service's backlog: its group's lag (Kafka) or its queue's depth."""
        try:
            backend = self._probe_backend()
            if self.wiring.backend == KAFKA:
                return self._group_lag(backend, self.wiring.payment_work)
            stats = require(backend, SupportsQueueStats, "queue statistics")
            found = stats.queue_stats([self.wiring.payment_work])
            return found[0].depth if found else None
        except QctlError:
            return None

    def _group_lag(self, backend: Backend, group: str, topic: str | None = None) -> int:
        groups = require(backend, SupportsConsumerGroups, "consumer groups")
        topic = topic or self.wiring.bus.name
        count = groups.topic_partitions([topic]).get(topic, 0)
        tps = [TopicPartition(topic, p) for p in range(count)]
        committed = groups.committed_offsets([group]).get(group, {})
        ends = groups.partition_offsets(tps)
        lag = 0
        for tp, offsets in ends.items():
            position = committed.get(tp)
            lag += max(
                offsets.last_stable - (position if position is not None else offsets.log_start), 0
            )
        return lag

    # -- waiting -----------------------------------------------------------------------------
    def settled(self) -> set[str]:
        return self.analytics.store.members("terminal") | self.payment.store.members(
            "dead_lettered"
        )

    def pending_retries(self) -> int:
        out = self.payment.store.members("retries_out")
        back = self.payment.store.members("retries_back")
        return len(out - back)

    def lanes_idle(self, seconds: float) -> bool:
        return all(lane.idle_for() >= seconds for lane in self.lanes)

    def wait_settled(self) -> None:
        """Wait until every created order is settled and the services are idle."""
        deadline = time.monotonic() + self.plan.max_wait
        created = set(self.created)
        while not self.stop.is_set():
            self.check()
            missing = created - self.settled()
            if not missing and not self.pending_retries() and self.lanes_idle(0.5):
                return
            if time.monotonic() > deadline:
                self.timed_out = True
                return
            self.show_progress()
            time.sleep(0.1)

    def wait_idle(self) -> None:
        """``--resume``: wait until the services have had nothing to do for a while."""
        deadline = time.monotonic() + self.plan.max_wait
        calm_since: float | None = None
        while not self.stop.is_set():
            self.check()
            now = time.monotonic()
            calm = (
                self.lanes_idle(self.plan.idle)
                and not self.pending_retries()
                and self._groups_caught_up()
            )
            if calm:
                calm_since = calm_since or now
                if now - calm_since >= 0.5:
                    return
            else:
                calm_since = None
            if now > deadline:
                self.timed_out = True
                return
            self.show_progress()
            time.sleep(0.2)

    def _groups_caught_up(self) -> bool:
        if self.wiring.backend != KAFKA:
            return True
        try:
            backend = self._probe_backend()
            for service in SERVICES:
                if self._group_lag(backend, self.wiring.group(service)):
                    return False
            return not self._group_lag(
                backend, self.wiring.group("payment-retry"), self.wiring.retry_topic.name
            )
        except QctlError:
            return False

    def shutdown(self) -> None:
        """Stop the consumers (each finishes and commits its batch) and the producers."""
        self.stop.set()
        for lane in self.lanes:
            lane.join(timeout=self.timeout + 10)
        for box in self.outboxes:
            box.close()
        for service in self.services.values():
            service.store.close()
        self.progress.done()

    # -- reporting ---------------------------------------------------------------------------
    def show_progress(self) -> None:
        if not self.progress.due():
            return
        terminal = self.analytics.store.members("terminal")
        dead = self.payment.store.members("dead_lettered")
        parts = []
        if self.plan.resume:
            states = self.analytics.states(terminal)
        else:
            created = set(self.created)
            states = self.analytics.states(created & terminal)
            dead &= created
            parts.append(f"{len(created)} created")
        parts += [f"{states.get(s, 0)} {s.replace('_', ' ')}" for s in TERMINAL]
        parts.append(f"{len(dead)} dead-lettered")
        retrying = self.pending_retries()
        if retrying:
            parts.append(f"{retrying} retrying")
        if self.creating and self.payment_lag is not None:
            parts.append(f"payment backlog {self.payment_lag}")
        busy = [lane.label for lane in self.lanes if not lane.idle]
        if busy:
            parts.append("busy: " + ",".join(busy))
        elapsed = time.monotonic() - self.started
        self.progress.line(f"orders [{elapsed:5.1f}s] " + " · ".join(parts), force=True)

    def summary(self, run: RunRecord | None) -> dict[str, Any]:
        created = set(self.created)
        terminal = self.analytics.store.members("terminal")
        dead = self.payment.store.members("dead_lettered")
        if created:
            states = self.analytics.states(created & terminal)
            parked = created - terminal
            states["dead_lettered"] = len(parked & dead)
            unsettled = parked - dead
            for state, count in self.analytics.states(unsettled).items():
                states[state] = states.get(state, 0) + count
        else:
            states = self.analytics.states(terminal)
        analytics = self.analytics.store.counters()
        events = {
            name.split(":", 1)[1]: count
            for name, count in sorted(analytics.items())
            if name.startswith("events:")
        }
        payment = self.payment.store.counters()
        duplicates = {
            name: service.store.counter("duplicates") for name, service in self.services.items()
        }
        elapsed = time.monotonic() - self.started
        w = self.wiring
        dlq = w.payment_dlq
        return {
            "run": run.run_id if run is not None else None,
            "mode": "resume" if self.plan.resume else "run",
            "backend": w.backend,
            "namespace": w.namespace,
            "elapsed_seconds": round(elapsed, 2),
            "orders_created": len(created),
            "orders_per_second": (
                round(len(created) / self.creation_seconds, 1) if self.creation_seconds else 0.0
            ),
            "orders": {k: states.get(k, 0) for k in sorted(states)},
            "events": events,
            "dead_lettered": payment.get("dead_lettered", 0),
            "retries": payment.get("retries", 0),
            "healed": payment.get("healed", 0),
            "duplicates_suppressed": sum(duplicates.values()),
            "duplicates_by_service": duplicates,
            "notifications": self.notification.store.counter("notifications"),
            "crashes": {lane.label: lane.crashes for lane in self.lanes if lane.crashes},
            "uncommitted_at_crash": {
                lane.label: lane.uncommitted for lane in self.lanes if lane.crashes
            },
            "backpressure": {
                "throttles": self.throttles,
                "throttled_seconds": round(self.throttled_seconds, 1),
                "refused_publishes": self.refused + sum(lane.refused for lane in self.lanes),
            },
            "dlq": str(dlq),
            "settled": not self.timed_out,
        }
