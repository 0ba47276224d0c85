"""SVG snapshots of the live view's layout, fed with recorded data so they are stable.

Update them after an intended change with ``pytest tests/tui --snapshot-update`` and
review the SVGs (``__snapshots__``) in the diff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from qctl.tui.app import LagApp
from tests.tui.recorded import RecordedSource, record

SIZE = (150, 36)


async def loaded(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, LagApp)
    for _ in range(200):
        if app.refresh_count and not app.refreshing:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def then(*keys: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.1)
        await pilot.pause(0.3)

    return run


def app_for(source: RecordedSource) -> LagApp:
    # Refreshing only on demand keeps the frames deterministic.
    return LagApp(source, interval=3600)


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("overview_sorted_by_lag", ()),
        ("sorted_by_time_lag", ("s",)),
        ("group_drill_down", ("down", "enter")),
        ("queue_drill_down", ("down", "down", "enter")),
        ("filtered_and_rabbitmq_only", ("b", "b", "slash", "e", "m", "a", "enter")),
        ("help", ("question_mark",)),
    ],
)
def test_layout(snap_compare: Any, name: str, keys: tuple[str, ...]) -> None:
    assert snap_compare(app_for(record()), terminal_size=SIZE, run_before=then(*keys))


def test_layout_while_a_backend_is_unreachable(snap_compare: Any) -> None:
    # The previous frame had RabbitMQ rows; the last one failed: rows stay, dimmed.
    healthy = record(steps=7)
    failing = record(steps=8, rabbit_down_at_end=True)
    source = RecordedSource(
        [healthy.frames[0], failing.frames[0]], failing.history, failing.context
    )

    async def run(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        await pilot.press("r")
        app = pilot.app
        assert isinstance(app, LagApp)
        for _ in range(200):
            if app.refresh_count >= 2 and not app.refreshing:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)

    assert snap_compare(app_for(source), terminal_size=SIZE, run_before=run)
