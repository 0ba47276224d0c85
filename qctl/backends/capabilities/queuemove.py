"""Moving a queue's messages in the backend's own tight loop, routed by a few headers.

The generic mover (``qctl.jobs.mover``) hands every message to the engine as a neutral
``Message`` and back: right for anything, but most of a redrive's time goes into
building those objects. A redrive without ``--where`` decides each message's route from
a handful of headers (where it died, how often it was redriven), so a backend that
implements ``SupportsQueueMove`` can run the whole loop itself: read, decide (cached by
the values of those headers), rewrite the headers in place, publish with confirms, and
acknowledge each source message only after its copy was confirmed.

A backend may hand a move back (``QueueMoveReport.handover``) at any point where its
loop cannot go on (a target that refused a publish, an unusual frame); everything it
did not confirm is still in the source, so the engine continues with the generic mover.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from qctl.backends.capabilities.transactions import Rejected
from qctl.refs import Ref


@dataclass(frozen=True, slots=True)
class QueueRoute:
    """Publish the message to ``exchange`` with ``routing_key``, its headers changed:
    ``drop`` removed, then ``add`` (text values) appended."""

    exchange: str
    routing_key: str
    label: str
    add: tuple[tuple[str, str], ...] = ()
    drop: frozenset[str] = frozenset()
    parked: bool = False


QueueDecision = QueueRoute | Rejected


@dataclass(frozen=True)
class QueueMapper:
    """How to route a message, from the headers named in ``reads`` (decoded, those
    present), the exchange it was delivered from and its routing key.

    ``decide`` must depend on nothing else: the backend calls it once per distinct
    combination and reuses the answer. ``timeless``: the answer does not depend on the
    times or counts inside the broker's death records either, so messages that died
    in the same place at different times share one answer."""

    reads: frozenset[str]
    decide: Callable[[Mapping[str, Any], str, str], QueueDecision]
    timeless: bool = True


@dataclass
class QueueMoveRequest:
    source: Ref
    mapper: QueueMapper
    #: Copies published but not yet confirmed, at most (the duplicates after a crash).
    window: int = 1000
    limit: int | None = None
    rate: float | None = None
    timeout: float = 10.0


@dataclass
class QueueMoveReport:
    """What a move did. ``handover`` set: it stopped there, with everything it had not
    acknowledged back in the source, for the generic mover to continue."""

    moved: int = 0
    parked: int = 0
    failed: int = 0
    per_target: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    limited: bool = False
    exhausted: bool = False
    problem: BaseException | None = None
    handover: str | None = None
    warnings: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1


class QueueMoveControl(Protocol):
    def stopping(self) -> bool:
        """The user asked to stop: finish what is in flight, then end."""
        ...

    def progress(self, report: QueueMoveReport) -> None:
        """Called every few hundred milliseconds with the totals so far."""
        ...

    def failure(self, source: str, reason: str) -> None:
        """One message could not be moved and stays in the source."""
        ...


@runtime_checkable
class SupportsQueueMove(Protocol):
    def queue_move(self, request: QueueMoveRequest, control: QueueMoveControl) -> QueueMoveReport:
        """Move ``request.source``'s messages as ``request.mapper`` routes them."""
        ...
