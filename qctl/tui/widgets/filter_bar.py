"""The ``/`` filter: an input line that narrows the table as you type."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input


class FilterBar(Input):
    """Hidden until ``/``; Enter keeps the filter, Escape clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False)
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(placeholder="filter by name (Enter to keep, Esc to clear)", **kwargs)  # type: ignore[arg-type]

    def open(self) -> None:
        self.display = True
        self.focus()

    def close(self) -> None:
        self.display = False

    def action_clear_filter(self) -> None:
        self.value = ""
        self.close()
        self.post_message(self.Submitted(self, self.value))
