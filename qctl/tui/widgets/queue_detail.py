"""Drill-down into one queue: depth, consumers, rates, dead-letter details."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Sparkline, Static

from qctl.lag import format as fmt
from qctl.lag.history import HistoryStore
from qctl.lag.model import LagSnapshot, QueueLag
from qctl.tui.rows import TREND_ARROWS
from qctl.tui.widgets.detail import DetailScreen
from qctl.tui.widgets.styles import status_text


class QueueScreen(DetailScreen):
    def compose(self) -> ComposeResult:
        with Vertical(id="detail"):
            yield from self.header("depth, oldest sample first")
            yield Static("rates (messages per second)", classes="caption")
            yield DataTable(id="rates", cursor_type="none", show_cursor=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#rates", DataTable).add_columns("", "PER SECOND")

    def update_from(self, snapshot: LagSnapshot, history: HistoryStore, stale: set[str]) -> None:
        queue = next((q for q in snapshot.queues if q.key == self.key), None)
        title = self.query_one("#detail-title", Static)
        if queue is None:
            title.update(Text(f"queue {self.key} is gone from the latest snapshot", "bold red"))
            return
        title.update(self._title(queue, queue.backend in stale))
        self.query_one("#detail-spark", Sparkline).data = [
            float(v) for v in history.queue_depth_series(queue.key)
        ]
        rates = self.query_one("#rates", DataTable)
        rates.clear()
        rows = [
            ("published", queue.publish_rate),
            ("delivered", queue.deliver_rate),
            ("acknowledged", queue.ack_rate),
            ("redelivered", queue.redeliver_rate),
            ("depth change", queue.depth_rate),
        ]
        if queue.dead_letter:
            rows.append(("dead letters in", queue.inflow_rate))
        for label, value in rows:
            rates.add_row(label, fmt.rate(value))

    @staticmethod
    def _title(q: QueueLag, stale: bool) -> Text:
        ev = q.evaluation
        text = Text()
        text.append(f"queue {q.queue}", style="bold")
        text.append(f"  ({q.backend}, vhost {q.vhost}, {q.type}, {q.state})  ", style="dim")
        text.append_text(status_text(ev.status, stale))
        text.append(f"  {ev.reason}\n")
        text.append(f"ready {fmt.count(q.ready)}", style="bold")
        text.append(f"   unacked {fmt.count(q.unacked)}")
        text.append(f"   consumers {q.consumers}")
        text.append(f"   utilisation {fmt.utilisation(q.consumer_utilisation)}")
        text.append(f"   oldest {fmt.duration(q.time_lag_seconds)}")
        text.append(f"   trend {TREND_ARROWS[ev.trend]}")
        text.append(f"   drain ETA {fmt.eta(ev.eta_seconds, q.depth)}")
        if q.dead_letter:
            text.append(f"\ndead-letter queue: {q.dead_letter_reason}", style="yellow")
        if stale:
            text.append("   (stale: backend unreachable)", style="bold red")
        return text
