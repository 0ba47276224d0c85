"""Run blocking calls side by side with a hard bound on the total wait.

Client libraries sometimes overrun their own timeouts (a half-open TCP connection, a
slow DNS lookup). Daemon threads let the CLI give up at the bound and exit without
waiting for a call that will never return.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any


def run_bounded(
    calls: Mapping[str, Callable[[], Any]], timeout: float
) -> dict[str, Any | BaseException | None]:
    """Run each call in its own daemon thread; wait at most ``timeout`` seconds in total.

    Each value of the result is what the call returned, the exception it raised, or
    None when it had not finished by the deadline.
    """
    results: dict[str, Any | BaseException | None] = dict.fromkeys(calls)
    threads = []

    def runner(key: str, call: Callable[[], Any]) -> None:
        try:
            results[key] = call()
        except BaseException as exc:  # handed to the caller, who decides
            results[key] = exc

    for key, call in calls.items():
        thread = threading.Thread(target=runner, args=(key, call), daemon=True, name=f"qctl-{key}")
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    return results
