"""A one-line progress display on stderr: moved / remaining / rate / ETA.

Only on a terminal: in a pipe or a log file a rewritten line is noise, so nothing is
shown there (the summary at the end always is). The rate is averaged over the last
few seconds so the ETA follows changes in speed instead of the whole run's average.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import IO

from qctl.timespec import format_duration

#: Seconds between redraws.
_REDRAW = 0.2
#: Seconds of history the rate is computed over.
_WINDOW = 5.0


class ProgressLine:
    """Redraws ``label: moved N / remaining M · R msg/s · ETA T`` in place."""

    def __init__(
        self, label: str, stream: IO[str] | None = None, enabled: bool | None = None
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self._samples: deque[tuple[float, int]] = deque()
        self._last_draw = 0.0
        self._drawn = False

    def rate(self, moved: int, now: float | None = None) -> float:
        """Messages per second over the recent window."""
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, moved))
        while len(samples) > 2 and now - samples[0][0] > _WINDOW:
            samples.popleft()
        t0, n0 = samples[0]
        return (moved - n0) / (now - t0) if now > t0 else 0.0

    def text(self, moved: int, remaining: int | None, rate: float, extra: str = "") -> str:
        parts = [f"{self.label}: moved {moved:,}"]
        if remaining is not None:
            parts.append(f"remaining {remaining:,}")
        parts.append(f"{rate:,.0f} msg/s")
        if remaining is not None and rate > 0:
            parts.append(f"ETA {format_duration(remaining / rate)}")
        elif remaining == 0:
            parts.append("ETA 0s")
        line = " · ".join(parts)
        return f"{line} · {extra}" if extra else line

    def update(
        self, moved: int, remaining: int | None, extra: str = "", force: bool = False
    ) -> None:
        now = time.monotonic()
        rate = self.rate(moved, now)
        if not self.enabled or (not force and now - self._last_draw < _REDRAW):
            return
        self._last_draw = now
        self.stream.write("\r\x1b[K" + self.text(moved, remaining, rate, extra))
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Remove the line before something else is printed (and at the end)."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
