"""Drill-down into one consumer group: partitions, members, lag history."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Sparkline, Static

from qctl.lag import format as fmt
from qctl.lag.history import HistoryStore
from qctl.lag.model import GroupLag, LagSnapshot, PartitionState
from qctl.tui.rows import TREND_ARROWS, sparkline
from qctl.tui.widgets.detail import DetailScreen
from qctl.tui.widgets.styles import cell, status_text


class GroupScreen(DetailScreen):
    def compose(self) -> ComposeResult:
        with Vertical(id="detail"):
            yield from self.header("total lag, oldest sample first")
            yield Static("partitions", classes="caption")
            yield DataTable(id="partitions", cursor_type="row", zebra_stripes=True)
            yield Static("members", classes="caption")
            yield DataTable(id="members", cursor_type="row", show_cursor=False)
        yield Footer()

    def on_mount(self) -> None:
        partitions = self.query_one("#partitions", DataTable)
        partitions.add_columns(
            "TOPIC",
            "PART",
            "COMMITTED",
            "LOG-END",
            "LAST-STABLE",
            "LAG",
            "TIME LAG",
            "STATE",
            "STATUS",
            "OWNER",
            "LAG HISTORY",
        )
        self.query_one("#members", DataTable).add_columns(
            "CLIENT ID", "HOST", "MEMBER ID", "PARTITIONS"
        )

    def update_from(self, snapshot: LagSnapshot, history: HistoryStore, stale: set[str]) -> None:
        group = next((g for g in snapshot.groups if g.key == self.key), None)
        title = self.query_one("#detail-title", Static)
        if group is None:
            title.update(Text(f"group {self.key} is gone from the latest snapshot", "bold red"))
            return
        title.update(self._title(group, group.backend in stale))
        self.query_one("#detail-spark", Sparkline).data = [
            float(v) for v in history.group_lag_series(group.key)
        ]
        table = self.query_one("#partitions", DataTable)
        cursor = table.cursor_row
        table.clear()
        is_stale = group.backend in stale
        for p in group.partitions:
            state = p.state.value
            if p.state is PartitionState.DATA_LOST:
                state = f"data lost: {fmt.count(p.data_lost)}"
            elif p.state is PartitionState.NEVER_COMMITTED:
                state = f"never committed ({fmt.count(p.backlog)} backlog)"
            owner = f"{p.owner.client_id}@{p.owner.host}" if p.owner else "-"
            table.add_row(
                cell(p.topic, is_stale),
                cell(str(p.partition), is_stale),
                cell(fmt.count(p.committed), is_stale),
                cell(fmt.count(p.log_end), is_stale),
                cell(fmt.count(p.last_stable), is_stale),
                cell(fmt.count(p.lag), is_stale, "bold"),
                cell(fmt.duration(p.time_lag_seconds, p.time_lag_exact), is_stale),
                cell(state, is_stale),
                status_text(p.evaluation.status, is_stale),
                cell(owner, is_stale, "dim"),
                cell(sparkline(history.group_lag_series(group.key, p.key)), is_stale, "cyan"),
                key=p.key,
            )
        if 0 <= cursor < table.row_count:
            table.move_cursor(row=cursor, animate=False)
        members = self.query_one("#members", DataTable)
        members.clear()
        for m in group.members:
            members.add_row(m.client_id, m.host, m.member_id, ", ".join(m.partitions) or "-")

    @staticmethod
    def _title(g: GroupLag, stale: bool) -> Text:
        ev = g.evaluation
        text = Text()
        text.append(f"group {g.group}", style="bold")
        text.append(f"  ({g.backend}, {g.state}, {g.isolation})  ", style="dim")
        text.append_text(status_text(ev.status, stale))
        text.append(f"  {ev.reason}\n")
        text.append(f"lag {fmt.count(g.lag)}", style="bold")
        text.append(f"   time lag {fmt.duration(g.time_lag_seconds, g.time_lag_exact)}")
        text.append(f"   trend {TREND_ARROWS[ev.trend]}")
        text.append(f"   consume {fmt.rate(ev.consume_rate)}/s")
        text.append(f"   produce {fmt.rate(ev.produce_rate)}/s")
        text.append(f"   ETA {fmt.eta(ev.eta_seconds, g.lag)}")
        if stale:
            text.append("   (stale: backend unreachable)", style="bold red")
        return text
