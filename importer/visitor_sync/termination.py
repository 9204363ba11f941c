"""SIGTERM stops a run cleanly: what Kubernetes sends at ``activeDeadlineSeconds``,
on eviction or on a node drain, about 30 s before it kills the pod.

The handler raises :class:`Terminated` in the main thread wherever the run is, so
the open transaction rolls back as the exception unwinds it, the district lock is
released and the CLI writes what was done to the termination log. It derives
from ``BaseException`` so that the per-file ``except Exception`` (which keeps a
bug in one file from stopping the others) lets it through. While a recorded file
is removed from the inbox the signal is deferred until the run has counted it:
a committed file is never reported as rolled back.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from visitor_sync.summary import ImportSummary

class Terminated(BaseException):
    """The run was asked to stop; ``summary`` says what it had done, when it got that far."""

    def __init__(self) -> None:
        super().__init__("stopped by SIGTERM")
        self.summary: ImportSummary | None = None


class _Signal:
    deferring = False
    #: a SIGTERM came and has not stopped the run yet
    pending = False
    #: the hook that reports every other exception a finaliser raises
    unraisable_hook = sys.__unraisablehook__


def _stop(_number: int, _frame: FrameType | None) -> None:
    # Once is enough: a second SIGTERM must not interrupt the cleanup of the first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _Signal.pending = True
    if not _Signal.deferring:
        raise Terminated()


def _drop_terminated(unraisable: sys.UnraisableHookArgs) -> None:
    """A signal that lands in a finaliser (``__del__``) is swallowed there; it stays
    pending and stops the run at the next :func:`stop_if_asked`, without a traceback."""
    if not isinstance(unraisable.exc_value, Terminated):
        _Signal.unraisable_hook(unraisable)


def _caused_by_terminated(error: BaseException | None) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Terminated):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def raise_if_stopped_by(error: BaseException) -> None:
    """Raise :class:`Terminated` when ``error`` is what a stop left behind: a SIGTERM
    that landed in the database driver can surface as the driver's error (a cut
    connection, a failed rollback) with the stop only in its context. Such a file was
    stopped, not broken by the database, and the run must end, not go on."""
    if _caused_by_terminated(error):
        raise Terminated() from error


class _QuietStop(logging.Filter):
    """Drops the tracebacks of what a stop interrupted (e.g. SQLAlchemy's pool logging
    the rollback of a connection cut mid-COPY): the CLI reports the stop, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _caused_by_terminated(record.exc_info[1]))


_QUIET_STOP = _QuietStop()


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` inside the block (only the main thread
    receives signals: called from another, e.g. the CLI embedded in a test, it does
    nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _stop)
    _Signal.unraisable_hook, sys.unraisablehook = sys.unraisablehook, _drop_terminated
    _Signal.pending = False
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(_QUIET_STOP)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = _Signal.unraisable_hook
        _Signal.pending = False  # a stop belongs to the block it came in
        for handler in handlers:
            handler.removeFilter(_QUIET_STOP)


@contextmanager
def deferred() -> Iterator[None]:
    """Keep a SIGTERM that arrives during the block for :func:`stop_if_asked`."""
    _Signal.deferring = True
    try:
        yield
    finally:
        _Signal.deferring = False


def stop_if_asked() -> None:
    """Raise :class:`Terminated` for a SIGTERM that has not stopped the run yet (it came
    during a :func:`deferred` block, or was swallowed by a finaliser)."""
    if _Signal.pending:
        raise Terminated()
