"""One way for tests to wait: poll an observable condition, never sleep a fixed time.

Imports nothing of the project or pytest, so the support modules and benchmarks share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str | Callable[[], str], check: Callable[[], T | None],
             timeout: float = 30.0, interval: float = 0.05,
             detail: Callable[[], str] | None = None) -> T:
    """``check()``'s first truthy value, polled every ``interval`` seconds; after
    ``timeout`` fail naming ``what`` (a text, or a function giving the latest state) and
    ``detail()`` (e.g. a server's log) when given."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            name = what() if callable(what) else what
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {name}{extra}")
        time.sleep(interval)
