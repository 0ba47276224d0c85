"""The ``?`` screen: keys and how statuses are decided."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]Keys[/b]
  [b]/[/b]        filter by name            [b]s[/b]  cycle sort (lag, time lag, status, name)
  [b]enter[/b]    details of a group/queue  [b]b[/b]  switch backend (all, kafka, rabbitmq, ...)
  [b]p[/b]        pause / resume refreshing [b]r[/b]  refresh now
  [b]escape[/b]   back                      [b]q[/b]  quit

[b]Status[/b] (judged from the last samples, no thresholds)
  [green]OK[/green]      caught up at some point of the window, or consuming
  [yellow]WARN[/yellow]    lag rose at every sample while the consumer made progress
  [dark_orange]STALL[/dark_orange]   a live consumer owns it, its offset does not move, lag > 0
  [red]STOP[/red]    no commits (queues: no consumers) for the whole window while lag > 0
  [magenta]REWIND[/magenta]  the committed offset moved backwards
  [white on red]ERR[/white on red]     data lost to retention, offsets unavailable, queue down

Time lag is the age of the message at the committed offset; [b]~[/b] marks an
approximation (that message is gone). DLQ rows warn while dead letters arrive.

Press any key to close."""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(HELP, id="help-text")

    def on_key(self) -> None:
        self.dismiss()
