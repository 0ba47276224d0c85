"""The live lag view: a table of groups and queues that refreshes itself.

All network I/O runs off the event loop (a worker awaiting a daemon thread), one refresh
at a time, so the UI never blocks and quitting never waits for a slow broker; a refresh
that comes due while one is running is skipped (``r`` queues one). A failing
backend never stops the app: its error goes to a notification and the status bar, its
last known rows stay (dimmed), and the next refresh tries again with a fresh
connection, so the view recovers by itself when the broker returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Input

from qctl.lag.collect import SnapshotSource
from qctl.lag.model import LagSnapshot
from qctl.tui.rows import SORTS, build_rows
from qctl.tui.widgets.filter_bar import FilterBar
from qctl.tui.widgets.group_detail import GroupScreen
from qctl.tui.widgets.help import HelpScreen
from qctl.tui.widgets.lag_table import LagTable
from qctl.tui.widgets.queue_detail import QueueScreen
from qctl.tui.widgets.status_bar import StatusBar


class LagApp(App[None]):
    CSS_PATH = Path(__file__).with_name("qctl.tcss")
    TITLE = "qctl lag"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("r", "refresh_now", "Refresh"),
        Binding("b", "cycle_backend", "Backend"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: SnapshotSource, interval: float = 5.0) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.snapshot: LagSnapshot | None = None
        self.errors: dict[str, str] = {}
        self.sort_index = 0
        self.backend_filter: str | None = None
        self.text_filter = ""
        self.paused = False
        self.refreshing = False
        self.pending_refresh = False
        self.refresh_count = 0

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        yield LagTable(id="lag-table")
        yield FilterBar(id="filter")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"context {self.source.context}"
        self.query_one(FilterBar).close()
        self.query_one(LagTable).focus()
        self._update_status()
        self.set_interval(self.interval, self._tick)
        self.refresh_data()

    # -- refreshing -----------------------------------------------------------------------
    def _tick(self) -> None:
        if not self.paused:
            self.refresh_data()

    def refresh_data(self) -> None:
        if self.refreshing:
            return
        self.refreshing = True
        self._update_status()
        self._fetch()

    @work(exit_on_error=False, group="fetch")
    async def _fetch(self) -> None:
        """Take a snapshot in a daemon thread and wait for it without blocking the UI.

        Not a thread worker: those run in the event loop's executor, which quitting
        would wait for; a daemon thread is simply left behind when the user quits in
        the middle of a slow refresh.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[LagSnapshot | None, str | None]] = loop.create_future()

        def deliver(result: tuple[LagSnapshot | None, str | None]) -> None:
            if not done.done():
                done.set_result(result)

        def run() -> None:
            result: tuple[LagSnapshot | None, str | None]
            try:
                result = (self.source.snapshot(), None)
            except Exception as exc:  # the view must survive anything a refresh throws
                result = (None, f"refresh failed: {type(exc).__name__}: {exc}")
            with contextlib.suppress(RuntimeError):  # the app has quit meanwhile
                loop.call_soon_threadsafe(deliver, result)

        threading.Thread(target=run, daemon=True, name="qctl-lag-refresh").start()
        snap, failure = await done
        self.apply_snapshot(snap, failure)

    def apply_snapshot(self, snap: LagSnapshot | None, failure: str | None = None) -> None:
        self.refreshing = False
        if snap is None:
            self._note_errors({"refresh": failure or "refresh failed"})
        else:
            self.snapshot = self._merge(snap)
            self._note_errors({e.backend: e.error for e in snap.errors})
            self.refresh_count += 1
        self._redraw()
        if self.pending_refresh:
            self.pending_refresh = False
            self.refresh_data()

    def _merge(self, snap: LagSnapshot) -> LagSnapshot:
        """Keep the last known rows of backends that failed this time (shown dimmed)."""
        previous = self.snapshot
        failed = {e.backend for e in snap.errors}
        if previous is None or not failed:
            return snap
        snap.groups += [g for g in previous.groups if g.backend in failed]
        snap.queues += [q for q in previous.queues if q.backend in failed]
        snap.groups.sort(key=lambda g: (g.backend, g.group))
        snap.queues.sort(key=lambda q: (q.backend, q.vhost, q.queue))
        return snap

    def _note_errors(self, current: dict[str, str]) -> None:
        for name, error in current.items():
            if self.errors.get(name) != error:
                self.notify(error, title=f"{name} unreachable", severity="error", timeout=8)
        for name in self.errors.keys() - current.keys():
            self.notify(f"{name} is answering again", title="recovered", timeout=5)
        self.errors = current

    # -- drawing --------------------------------------------------------------------------
    def _redraw(self) -> None:
        self._update_status()
        if self.snapshot is None:
            return
        rows = build_rows(
            self.snapshot,
            self.source.history,
            stale_backends=self.errors.keys(),
            sort=SORTS[self.sort_index],
            text_filter=self.text_filter,
            backend=self.backend_filter,
        )
        self.query_one(LagTable).show(rows)
        screen = self.screen
        if isinstance(screen, GroupScreen | QueueScreen):
            screen.update_from(self.snapshot, self.source.history, set(self.errors))

    def _update_status(self) -> None:
        snap = self.snapshot
        refreshed = None
        if snap is not None:
            at = dt.datetime.fromisoformat(snap.sampled_at)
            refreshed = at.strftime("%H:%M:%S UTC")
        self.query_one(StatusBar).show(
            context=self.source.context,
            targets=snap.targets if snap is not None else {},
            errors=self.errors,
            refreshed=refreshed,
            sort=SORTS[self.sort_index],
            text_filter=self.text_filter,
            backend=self.backend_filter,
            paused=self.paused,
            refreshing=self.refreshing,
        )

    # -- actions --------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value
        self._redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.text_filter = event.value
        self.query_one(FilterBar).close()
        self.query_one(LagTable).focus()
        self._redraw()

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._redraw()

    def action_cycle_backend(self) -> None:
        names = sorted(self.snapshot.targets) if self.snapshot is not None else []
        choices: list[str | None] = [None, *names]
        position = choices.index(self.backend_filter) if self.backend_filter in choices else 0
        self.backend_filter = choices[(position + 1) % len(choices)]
        self._redraw()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.notify("paused: press p to resume" if self.paused else "resumed", timeout=3)
        self._update_status()

    def action_refresh_now(self) -> None:
        if self.refreshing:
            self.pending_refresh = True
            return
        self.refresh_data()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_drill(self) -> None:
        key = self.query_one(LagTable).selected_key()
        if key is None or self.snapshot is None:
            return
        screen: GroupScreen | QueueScreen
        if any(g.key == key for g in self.snapshot.groups):
            screen = GroupScreen(key)
        elif any(q.key == key for q in self.snapshot.queues):
            screen = QueueScreen(key)
        else:
            return
        self.push_screen(screen)
        self.call_after_refresh(
            screen.update_from, self.snapshot, self.source.history, set(self.errors)
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, LagTable):
            self.action_drill()
