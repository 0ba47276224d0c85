"""Short human forms of lag numbers, shared by the tables and the live view."""

from __future__ import annotations

from qctl.timespec import format_duration

DASH = "-"


def count(value: int | None) -> str:
    """``1234567`` as ``1,234,567``; ``-`` for unknown."""
    return DASH if value is None else f"{value:,}"


def rate(value: float | None) -> str:
    """Messages per second: ``0``, ``0.25``, ``12.5``, ``1,204``."""
    if value is None:
        return DASH
    if value == 0:
        return "0"
    if value < 10:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if value < 100:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{round(value):,}"


def duration(seconds: float | None, exact: bool = True) -> str:
    """``2h 5m``; ``~`` in front when approximate; ``-`` for unknown."""
    if seconds is None:
        return DASH
    if seconds == 0:
        return "0s"
    text = format_duration(seconds)
    return text if exact else f"~{text}"


def eta(seconds: float | None, lag: int | None) -> str:
    """Time to catch up; ``never`` when lag is positive and not shrinking."""
    if seconds is None:
        return "never" if lag else DASH
    return duration(seconds)


def utilisation(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.0f}%"
