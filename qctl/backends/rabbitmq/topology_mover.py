"""Move every message of one queue into another without ever losing one.

Used by topology migrations (``--allow-recreate``). The move is the queue move of
``wiremove`` with one fixed route (the target queue through the default exchange,
properties and body unchanged), so it has that loop's rules:

- publish with publisher confirms and ``mandatory``; acknowledge the source message only
  after the broker confirmed the copy with no return before it, so a crash leaves it in
  the source (at worst duplicated in the target, never lost);
- a return (the target disappeared) or a negative confirm stops the move: nothing more
  is read, the copies in flight are settled, and every message not confirmed stays in
  the source; the move then fails with an error naming both queues;
- at most ``WINDOW`` copies are unconfirmed at a time (the duplicates a crash can make).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qctl.backends.capabilities.queuemove import (
    QueueMapper,
    QueueMoveReport,
    QueueMoveRequest,
    QueueRoute,
)
from qctl.backends.capabilities.topology import Progress
from qctl.errors import NotFoundError, QctlError
from qctl.refs import Ref

if TYPE_CHECKING:
    from qctl.backends.rabbitmq.messaging import RabbitMessaging

#: Copies awaiting their confirm at any time.
WINDOW = 2000
_PROGRESS_EVERY = 5000


class MoveError(QctlError):
    """The move stopped; every unconfirmed message is still in the source."""


def move_messages(
    backend: RabbitMessaging,
    vhost: str,
    source: str,
    target: str,
    timeout: float,
    progress: Progress | None = None,
) -> int:
    """Move all messages from ``source`` to ``target`` in ``vhost``; how many moved."""
    from qctl.backends.rabbitmq.wiremove import WireMove

    target_ref = Ref("rabbitmq", "queue", target, vhost=vhost)
    conn = backend._msg_connect(vhost)
    try:
        backend._msg_check(conn, target_ref, vhost)  # the target must exist
    except NotFoundError as exc:
        raise MoveError(f"cannot move {source!r} to {target!r}: {exc.what}") from None
    finally:
        if conn.is_open:
            conn.close()
    route = QueueRoute("", target, f"rabbitmq:queue/{target}")
    request = QueueMoveRequest(
        source=Ref("rabbitmq", "queue", source, vhost=vhost),
        mapper=QueueMapper(frozenset(), lambda _headers, _exchange, _key: route),
        window=WINDOW,
        timeout=timeout,
    )
    control = _Control(target, progress)
    report = WireMove(backend, request, control).run()
    problem = report.problem
    if problem is not None:
        what = problem.what if isinstance(problem, QctlError) else str(problem)
        raise MoveError(
            f"moving {source!r} to {target!r} stopped: {what}; what was not moved is still "
            f"in {source!r}"
        )
    if report.failed:
        reason = max(report.errors, key=lambda r: report.errors[r])
        raise MoveError(
            f"moving {source!r} to {target!r} stopped: the broker did not take "
            f"{report.failed} message(s) ({reason}); they are still in {source!r}"
        )
    if report.handover is not None:
        raise MoveError(
            f"moving {source!r} to {target!r} stopped: {report.handover}; what was not "
            f"moved is still in {source!r}"
        )
    return report.moved


class _Control:
    """The move's control: never stopped by the user, stopped by the first message the
    broker does not take; progress every few thousand messages."""

    def __init__(self, target: str, progress: Progress | None) -> None:
        self.target = target
        self.say = progress
        self.next_report = _PROGRESS_EVERY
        self.failed = False

    def stopping(self) -> bool:
        return self.failed

    def progress(self, report: QueueMoveReport) -> None:
        if self.say is not None and report.moved >= self.next_report:
            self.next_report = (report.moved // _PROGRESS_EVERY + 1) * _PROGRESS_EVERY
            self.say(f"rabbitmq: moved {report.moved} message(s) to {self.target}")

    def failure(self, source: str, reason: str) -> None:
        self.failed = True
