"""Stopping a job cleanly on Ctrl-C or SIGTERM.

The first signal only raises a flag: the job stops taking new messages, lets what is in
flight be confirmed (or rolled back), acknowledges or commits exactly what was
confirmed, records its state and exits 130 with the command that resumes it. A second
signal gives up at once (``KeyboardInterrupt``): nothing is acknowledged that was not
confirmed, so even then nothing is lost — unconfirmed messages stay in the source.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any


class StopFlag:
    """Set when the user asked the job to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: str | None = None

    def set(self, why: str = "stop") -> None:
        self.signal = self.signal or why
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    __call__ = is_set


@contextlib.contextmanager
def stop_on_signals(message: str | None = None) -> Iterator[StopFlag]:
    """Turn SIGINT/SIGTERM into a StopFlag while the block runs (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set(name)
        if message:
            sys.stderr.write("\n" + message + "\n")
            sys.stderr.flush()

    for sig in (int(signal.SIGINT), int(signal.SIGTERM)):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
