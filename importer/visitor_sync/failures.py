"""Failures described without the district's data, for logs many people can read.

An exception's message can quote student data: PostgreSQL's "Failing row contains
(...)" detail, SQLAlchemy's ``[parameters: ...]`` (a staged row, a summary quoting
cell values), a ``ValueError`` repeating the value it refused. Whoever may read the
pod's log or the namespace's Events is not necessarily allowed to see that data, so
a failure is described by what identifies it without quoting it: the exception's
type, the database's error code and the constraint or column it names, and where in
our code it was raised (file, line, function; source lines are ours, not the data).
The full text reaches nobody but the database's own server log.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def _driver_error(error: BaseException) -> BaseException | None:
    """The database driver's exception SQLAlchemy wraps, if any. (SQLAlchemy is imported
    here, not at the top: the CLI installs :func:`report_crash` before any command, and
    ``--help`` must not pay for loading it.)"""
    from sqlalchemy.exc import DBAPIError

    return error.orig if isinstance(error, DBAPIError) else None


def _database_facts(error: BaseException) -> list[str]:
    """SQLSTATE / SQLite error name and the schema object named; never the detail text."""
    original = _driver_error(error) or error
    facts = []
    code = getattr(original, "sqlstate", None) or getattr(original, "sqlite_errorname", None)
    if code:
        facts.append(f"code {code}")
    diagnostic = getattr(original, "diag", None)
    for name in ("table_name", "column_name", "constraint_name"):
        value = getattr(diagnostic, name, None) if diagnostic is not None else None
        if value:
            facts.append(f"{name.removesuffix('_name')} {value}")
    return facts


def describe_failure(error: BaseException, url: URL | None = None) -> str:
    """One line for logs and the termination log. Given the database's ``url``, a failure to
    reach it says so and where (``could not connect to HOST:PORT: <why>``: the driver's
    first line, which names the server, not data); anything else is
    ``IntegrityError (psycopg.errors.CheckViolation: code 23514, constraint x)``: the
    exception's type and database facts, then the same for what caused it."""
    if url is not None:
        where = f"{url.host}:{url.port or 5432}" if url.host else str(url.database or "memory")
        original = _driver_error(error) or error
        reason = (str(original).strip().splitlines() or [type(original).__name__])[0]
        if reason.startswith("connection failed:"):  # psycopg: "... port N failed: <why>"
            return f"could not connect to {where}: {reason.rpartition('failed: ')[2]}"
        if isinstance(original, OSError) or reason == "unable to open database file":
            return f"could not connect to {where}: {reason}"
        if getattr(error, "connection_invalidated", False):
            return f"lost the connection to {where}: {reason}"
        return f"{where}: {_failure_chain(error)}"
    return _failure_chain(error)


def _failure_chain(error: BaseException) -> str:
    parts = []
    seen: BaseException | None = error
    while seen is not None and len(parts) < 5:
        original = _driver_error(seen)
        kind = type(seen).__name__
        if original is not None:
            kind += f" ({type(original).__module__}.{type(original).__name__})"
        facts = _database_facts(seen)
        parts.append(kind + (f": {', '.join(facts)}" if facts else ""))
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "; caused by ".join(parts)


def frames(error: BaseException) -> str:
    """Where the error was raised: one ``file:line in function`` per frame, no values."""
    return "\n".join(f"  {frame.filename}:{frame.lineno} in {frame.name}"
                     for frame in traceback.extract_tb(error.__traceback__))


def report_crash(kind: type[BaseException], error: BaseException,
                 trace: TracebackType | None) -> None:
    """``sys.excepthook`` of the importer: an uncaught error is told without its message
    (a Job's log tail becomes its termination message when it dies without one)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    print(f"visitor-sync: internal_error: the importer crashed: {describe_failure(error)}\n"
          f"{frames(error)}", file=sys.stderr)
