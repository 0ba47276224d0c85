"""Colours of the statuses, shared by every table of the live view."""

from __future__ import annotations

from rich.text import Text

from qctl.lag.model import Status

STATUS_STYLES = {
    Status.OK: "bold green",
    Status.WARN: "bold yellow",
    Status.REWIND: "bold magenta",
    Status.STALL: "bold dark_orange",
    Status.STOP: "bold red",
    Status.ERR: "bold white on red",
}


def status_text(status: Status, stale: bool = False) -> Text:
    """The status word in its colour; dimmed when the row is from an older snapshot."""
    style = "dim" if stale else STATUS_STYLES[status]
    return Text(status.value, style=style)


def cell(value: str, stale: bool = False, style: str = "") -> Text:
    return Text(value, style="dim" if stale else style)
