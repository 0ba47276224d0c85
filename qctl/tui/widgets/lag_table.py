"""The main table: one row per consumer group and queue, redrawn on every refresh."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from qctl.tui.rows import Row
from qctl.tui.widgets.styles import cell, status_text

COLUMNS = (
    ("kind", "TYPE"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("lag", "LAG"),
    ("time_lag", "TIME LAG"),
    ("trend", "TREND"),
    ("consume", "CONSUME/S"),
    ("produce", "PRODUCE/S"),
    ("eta", "ETA"),
    ("history", "LAG HISTORY"),
    ("detail", "DETAIL"),
)


class LagTable(DataTable[object]):
    """Rows keyed by ``backend:name`` so the cursor stays on its row across refreshes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Details")]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.row_keys: list[str] = []

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show(self, rows: Sequence[Row]) -> None:
        current = self.selected_key()
        self.clear()
        self.row_keys = [r.key for r in rows]
        for r in rows:
            self.add_row(
                cell(r.kind, r.stale, "dim"),
                cell(r.name, r.stale, "bold"),
                status_text(r.status, r.stale),
                cell(r.lag_text, r.stale),
                cell(r.time_lag_text, r.stale),
                cell(r.trend, r.stale),
                # Kafka: offsets committed and appended per second; queues: acks and
                # publishes per second.
                cell(r.consume, r.stale),
                cell(r.produce, r.stale),
                cell(r.eta, r.stale),
                cell(r.history, r.stale, "cyan"),
                cell(r.detail, r.stale, "dim"),
                key=r.key,
            )
        if current in self.row_keys:
            self.move_cursor(row=self.row_keys.index(current), animate=False)

    def selected_key(self) -> str | None:
        if not self.row_keys or self.cursor_row < 0 or self.cursor_row >= len(self.row_keys):
            return None
        return self.row_keys[self.cursor_row]
