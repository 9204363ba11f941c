"""Locks that die with their holder: one import per district, one schema migration at a time.

A killed pod must never block a district. So no lock is a row that someone has
to delete: on PostgreSQL it is a session advisory lock, held by a connection of
its own that the server closes when the process dies; on SQLite it is an OS
file lock (``flock``) on a file beside the database, which the kernel drops
with the process. Either is free again at once after ``kill -9``.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

#: Name of the lock the schema migrations run under.
MIGRATIONS = "migrations"
#: How long a run waits for its district on PostgreSQL: the server ends a killed
#: holder's session when it sees the connection close, a moment after the kill.
BUSY_WAIT = "3s"
#: ``lock_timeout`` that waits as long as it takes.
NO_TIMEOUT = "0"
#: SQLSTATE of ``lock_timeout`` expiring.
LOCK_NOT_AVAILABLE = "55P03"


class DistrictBusy(Exception):
    def __init__(self, district_id: str) -> None:
        super().__init__(f"another import of district {district_id!r} is running")


class HeldLock(Protocol):
    def check(self) -> None:
        """Raise when the lock may have been lost (its database session is gone)."""


def lock_key(name: str) -> int:
    """The signed 64-bit PostgreSQL advisory lock key of ``name`` (stable across releases)."""
    digest = hashlib.sha256(f"visitor-sync/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_file(engine: Engine, name: str) -> Path | None:
    """The file beside a SQLite database whose ``flock`` is the lock ``name``
    (``None`` for an in-memory database, which no other process can open)."""
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.{name}.lock")


@contextmanager
def district_lock(engine: Engine, district_id: str) -> Iterator[HeldLock]:
    """Hold the district for one run, or raise :class:`DistrictBusy`."""
    name = f"district-{district_id}"
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, name, district_id, BUSY_WAIT) as held:
            yield held
    else:
        with _file_lock(lock_file(engine, name), district_id, wait=False):
            yield _FileLock()


@contextmanager
def migrations_lock(engine: Engine) -> Iterator[None]:
    """Serialise schema migrations: the second of two first runs waits, then finds
    the schema up to date. Take it before the migration's transaction begins, so
    that transaction sees what the previous holder committed."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, MIGRATIONS, MIGRATIONS, NO_TIMEOUT):
            yield
    else:
        with _file_lock(lock_file(engine, MIGRATIONS), MIGRATIONS, wait=True):
            yield


class _FileLock:
    def check(self) -> None:
        """A file lock cannot be lost while the process lives."""


class _SessionLock:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def check(self) -> None:
        """A lost session (the server restarted) means the lock was released: raise."""
        self.connection.execute(text("SELECT 1"))


@contextmanager
def _advisory_lock(engine: Engine, name: str, holder: str, wait: str) -> Iterator[HeldLock]:
    # A connection of its own, outside the pool, so closing it ends the session (and
    # the lock) and nothing else runs on it; autocommit keeps it from idling in a
    # transaction for the whole run.
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    connection.detach()
    try:
        connection.execute(text(f"SET lock_timeout = '{wait}'"))
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
        except OperationalError as error:
            if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            raise DistrictBusy(holder) from error
        yield _SessionLock(connection)
    finally:
        # The lock dies with the session; a session the server already dropped needs
        # no unlocking, and that failure must not hide why the run stopped.
        with suppress(SQLAlchemyError):
            connection.close()


@contextmanager
def _file_lock(path: Path | None, holder: str, *, wait: bool) -> Iterator[None]:
    if path is None:
        yield
        return
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise DistrictBusy(holder) from error
        yield  # closing the file releases the lock
