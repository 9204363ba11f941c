"""SIGTERM inside the importer process: the signal is never lost, wherever it lands."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading

import pytest
from sqlalchemy.exc import OperationalError

from visitor_sync.termination import (
    Terminated,
    deferred,
    raise_if_stopped_by,
    stop_if_asked,
    stop_on_sigterm,
)


def sigterm_myself() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as this call returns


def test_sigterm_raises_terminated_where_the_run_is() -> None:
    with pytest.raises(Terminated), stop_on_sigterm():
        sigterm_myself()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_sigterm_during_a_deferred_block_waits_for_the_next_check() -> None:
    with stop_on_sigterm():
        with deferred():
            sigterm_myself()
        with pytest.raises(Terminated):
            stop_if_asked()


def test_a_sigterm_swallowed_by_a_finaliser_stops_the_run_at_the_next_check(
        capfd: pytest.CaptureFixture[str]) -> None:
    """Found by the fault injection: a signal landing in psycopg's ServerCursor.__del__
    was printed as a traceback and the run went on."""

    class Finalised:
        def __del__(self) -> None:
            sigterm_myself()

    with stop_on_sigterm():
        Finalised()
        gc.collect()
        with pytest.raises(Terminated):
            stop_if_asked()
    assert "Traceback" not in capfd.readouterr().err


def test_outside_the_main_thread_sigterm_is_left_alone() -> None:
    """The CLI may run in a thread (an embedding test); only the main thread gets signals."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with stop_on_sigterm():
                pass
        except BaseException as error:  # whatever it was, the test reports it
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_tracebacks_of_what_a_stop_interrupted_are_not_logged(
        capfd: pytest.CaptureFixture[str]) -> None:
    """SQLAlchemy's pool logged the failed rollback of a connection cut mid-COPY."""
    logger = logging.getLogger("visitor_sync.test")
    handler = logging.StreamHandler()
    logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(Terminated), stop_on_sigterm():
            try:
                sigterm_myself()
            except Terminated:
                try:
                    raise RuntimeError("rollback failed: another command is in progress")
                except RuntimeError:
                    logger.exception("Exception during reset or similar")
                raise
        logger.error("an error after the stop is still logged")
    finally:
        logging.getLogger().removeHandler(handler)
    err = capfd.readouterr().err
    assert "Exception during reset" not in err
    assert "an error after the stop is still logged" in err


def test_an_error_a_stop_left_behind_is_the_stop() -> None:
    """A SIGTERM inside the database driver can surface as the driver's error (a cut
    connection, a failed rollback) with the stop only in its context: the file was
    stopped, and the run must end rather than record a database failure and go on."""
    try:
        try:
            raise Terminated()
        except Terminated:
            raise OperationalError("ROLLBACK", {}, ConnectionError("cut"))  # noqa: B904
    except OperationalError as left_behind:
        with pytest.raises(Terminated):
            raise_if_stopped_by(left_behind)
    raise_if_stopped_by(OperationalError("SELECT 1", {}, ConnectionError("down")))
