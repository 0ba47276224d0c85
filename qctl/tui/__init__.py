"""The live view of ``qctl lag --watch``, built on textual.

textual is imported only here and below, and only when the live view starts, so every
other command stays fast to load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qctl.lag.collect import SnapshotSource


def run_lag_app(source: SnapshotSource, interval: float) -> None:
    """Run the live view until the user quits; the source is closed afterwards."""
    from qctl.tui.app import LagApp

    try:
        LagApp(source, interval=interval).run()
    finally:
        source.close()
