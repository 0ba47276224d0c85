"""What the drill-down screens share: going back, and a title over a history sparkline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Sparkline, Static


class DetailScreen(Screen[None]):
    """One group or queue (``key``), refreshed by the app with every new snapshot while
    it is shown."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("backspace", "app.pop_screen", "Back", show=False),
    ]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    @staticmethod
    def header(history_caption: str) -> Iterator[Widget]:
        """The title (filled on update) and the sparkline of the history."""
        yield Static(id="detail-title")
        yield Static(history_caption, classes="caption")
        yield Sparkline([], id="detail-spark")
