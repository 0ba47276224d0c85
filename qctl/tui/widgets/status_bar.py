"""The bar above the key footer: context, brokers, last refresh, and what is wrong."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import Static


class StatusBar(Static):
    """Two lines: where we are and how we sort/filter; then the current errors."""

    def show(
        self,
        *,
        context: str,
        targets: Mapping[str, str],
        errors: Mapping[str, str],
        refreshed: str | None,
        sort: str,
        text_filter: str,
        backend: str | None,
        paused: bool,
        refreshing: bool,
    ) -> None:
        line = Text()
        line.append(" context ", style="dim")
        line.append(context, style="bold")
        for name, address in targets.items():
            line.append("  │  ", style="dim")
            ok = name not in errors
            line.append(f"{name} ", style="bold")
            line.append(address)
            line.append(" ✓" if ok else " ✗", style="green" if ok else "bold red")
        line.append("  │  ", style="dim")
        line.append("refreshed ", style="dim")
        line.append(refreshed or "never")
        if refreshing:
            line.append(" …", style="dim")
        line.append("\n sort ", style="dim")
        line.append(sort, style="bold")
        line.append("  │  backend ", style="dim")
        line.append(backend or "all", style="bold")
        if text_filter:
            line.append("  │  filter ", style="dim")
            line.append(text_filter, style="bold")
        if paused:
            line.append("  │  ", style="dim")
            line.append(" PAUSED ", style="bold black on yellow")
        for name, error in errors.items():
            line.append("\n ")
            line.append(f"{name}: {error}", style="bold red")
        self.update(line)
